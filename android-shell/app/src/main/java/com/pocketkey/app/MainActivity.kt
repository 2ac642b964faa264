package com.pocketkey.app

import android.Manifest
import android.content.Intent
import android.os.Build
import android.os.Bundle
import android.widget.Button
import android.widget.LinearLayout
import android.widget.TextView
import android.widget.Toast
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import com.google.mlkit.vision.codescanner.GmsBarcodeScanning
import com.pocketkey.core.PocketKeyException
import com.pocketkey.core.ScanException
import com.pocketkey.core.ScannedCode
import com.pocketkey.core.ScanSource
import com.pocketkey.core.classifyScan

/**
 * The one entry point for the camera and for deep links: whatever was scanned or opened goes
 * through the engine's classifyScan, which says what it is (or why it is not ours).
 */
class MainActivity : AppCompatActivity() {
    private val app get() = application as PocketKeyApp
    private lateinit var status: TextView

    private val notificationPermission =
        registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
            if (!granted) toast("Without notifications PocketKey cannot ask you to approve sign-ins")
        }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        status = TextView(this)
        val scan = Button(this).apply {
            text = getString(R.string.scan)
            setOnClickListener { scan() }
        }
        setContentView(LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(48, 48, 48, 48)
            addView(status)
            addView(scan)
        })
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU) {
            notificationPermission.launch(Manifest.permission.POST_NOTIFICATIONS)
        }
        showKeyInfo()
        intent?.dataString?.let { handle(it, ScanSource.LINK) }
    }

    override fun onNewIntent(intent: Intent) {
        super.onNewIntent(intent)
        intent.dataString?.let { handle(it, ScanSource.LINK) }
    }

    private fun scan() {
        GmsBarcodeScanning.getClient(this).startScan()
            .addOnSuccessListener { barcode -> barcode.rawValue?.let { handle(it, ScanSource.CAMERA) } }
            .addOnFailureListener { e -> toast("The scanner is not available: ${e.message}") }
    }

    /** Camera text or deep link → what the engine says it is (a pairing code only from the camera). */
    private fun handle(text: String, source: ScanSource) {
        try {
            when (classifyScan(text, source)) {
                // Transports live in the engine too; wiring them is the next step of this shell.
                is ScannedCode.Hybrid -> toast("Connecting to the browser… (hybrid: not wired in this skeleton)")
                is ScannedCode.Pairing -> toast("Pairing with the computer… (not wired in this skeleton)")
                is ScannedCode.Activation -> toast("Activating… (not wired in this skeleton)")
            }
        } catch (e: ScanException) {
            toast(e.userMessage())   // NotOurs / Malformed / PairingNeedsCamera, as a sentence
        }
    }

    /** Opens the key (off the main thread) and shows what the settings screen would. */
    private fun showKeyInfo() {
        app.background.execute {
            val text = try {
                val info = app.key.info()
                "${info.label}: ${info.credentialCount} passkeys" + if (info.pinSet) ", PIN set" else ""
            } catch (e: PocketKeyException) {
                e.userMessage()
            }
            runOnUiThread { status.text = text }
        }
    }

    private fun toast(message: String) = Toast.makeText(this, message, Toast.LENGTH_LONG).show()
}
