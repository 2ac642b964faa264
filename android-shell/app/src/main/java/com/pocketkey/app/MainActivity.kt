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
import androidx.appcompat.app.AlertDialog
import androidx.appcompat.app.AppCompatActivity
import com.google.android.gms.tasks.Tasks
import com.google.firebase.messaging.FirebaseMessaging
import com.google.mlkit.vision.codescanner.GmsBarcodeScanning
import com.pocketkey.applogic.OpenState
import com.pocketkey.applogic.Outcome
import com.pocketkey.applogic.Push
import com.pocketkey.applogic.ScanOutcome
import com.pocketkey.core.PairingCodeListener
import com.pocketkey.core.PushProblem
import com.pocketkey.core.ScanSource

/**
 * The Scan screen and every link the app is opened with (the custom scheme, and App Links:
 * an organisation's https activation link). What a code leads to is the model's Scanner;
 * this activity only runs it off the main thread and shows what it says: the pairing
 * confirmation code, the hybrid session, the organisation joined or why not, a refusal, or
 * the reset flow when the key's data cannot be opened on this phone.
 */
class MainActivity : AppCompatActivity() {
    private val app get() = application as PocketKeyApp
    private lateinit var status: TextView
    private var codeDialog: AlertDialog? = null

    /** A link the app was opened with before the key was open: handled once it is. */
    private var pendingLink: String? = null

    private val permissions =
        registerForActivityResult(ActivityResultContracts.RequestMultiplePermissions()) { granted ->
            if (granted[Manifest.permission.POST_NOTIFICATIONS] == false) {
                toast("Without notifications PocketKey cannot ask you to approve sign-ins")
            }
        }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        status = TextView(this)
        val scan = Button(this).apply {
            text = getString(R.string.scan)
            setOnClickListener { scan() }
        }
        val manage = Button(this).apply {
            text = "Computers and PIN"
            setOnClickListener { startActivity(Intent(this@MainActivity, ManageActivity::class.java)) }
        }
        setContentView(LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(48, 48, 48, 48)
            addView(status)
            addView(scan)
            addView(manage)
        })
        val wanted = buildList {
            if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU) add(Manifest.permission.POST_NOTIFICATIONS)
            if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) add(Manifest.permission.BLUETOOTH_ADVERTISE)
        }
        if (wanted.isNotEmpty()) permissions.launch(wanted.toTypedArray())
        pendingLink = intent?.dataString
        openKey()
    }

    override fun onNewIntent(intent: Intent) {
        super.onNewIntent(intent)
        intent.dataString?.let { handle(it, ScanSource.LINK) }
    }

    // While the app is on screen it keeps its computers connected; in the background only a
    // push wakes it (WakeService). Coming to the foreground is also when a push registration
    // that did not reach a relay or the organisation is tried again.
    override fun onStart() {
        super.onStart()
        app.background.execute {
            app.model.session?.pairings?.startListening()
            app.model.session?.push?.retryIfNeeded()
        }
    }

    override fun onStop() {
        app.background.execute { app.model.session?.pairings?.stopListening() }
        super.onStop()
    }

    private fun scan() {
        GmsBarcodeScanning.getClient(this).startScan()
            .addOnSuccessListener { barcode -> barcode.rawValue?.let { handle(it, ScanSource.CAMERA) } }
            .addOnFailureListener { e -> toast("The scanner is not available: ${e.message}") }
    }

    /**
     * Opens the key and asks its organisation where it stands (`start`), registers the FCM
     * token, shows the key's state or the reset flow, then handles a pending link.
     */
    private fun openKey() {
        app.background.execute {
            when (val state = app.model.start()) {
                is OpenState.Open -> {
                    val session = app.model.session ?: return@execute
                    session.pairings.startListening()
                    // A refusal for good is the user's to know; the rest is retried in onStart.
                    val refusals = runCatching { Tasks.await(FirebaseMessaging.getInstance().token) }
                        .map { session.push.onNewToken(it) }
                        .getOrNull()
                        .let { if (it is Outcome.Done) Push.refusals(it.value) else emptyList() }
                    val text = when (val info = session.keySettings.info()) {
                        is Outcome.Done -> "${info.value.label}: ${info.value.credentialCount} passkeys"
                        is Outcome.Error -> info.message
                    }
                    val organisation = session.organisation.current?.message
                    runOnUiThread {
                        status.text = (listOfNotNull(text, organisation) + refusals).joinToString("\n")
                        pendingLink?.let { handle(it, ScanSource.LINK) }
                        pendingLink = null
                    }
                }
                is OpenState.NeedsReset -> runOnUiThread { offerReset(state.message) }
                is OpenState.Failed -> runOnUiThread { status.text = state.message }
            }
        }
    }

    private fun offerReset(message: String) {
        AlertDialog.Builder(this)
            .setTitle("PocketKey cannot open its data")
            .setMessage("$message\n\nReset erases the passkeys and pairings stored on this phone and starts a new, empty security key.")
            .setPositiveButton("Reset") { _, _ ->
                app.background.execute {
                    app.model.resetAndOpen()
                    runOnUiThread { openKey() }
                }
            }
            .setNegativeButton("Not now", null)
            .show()
    }

    /** Camera text or deep link → the model's Scanner (blocks while pairing: background thread). */
    private fun handle(text: String, source: ScanSource) {
        val session = app.model.session ?: return toast("The security key is not open yet")
        val showCode = object : PairingCodeListener {
            override fun showCode(code: String) = runOnUiThread {
                codeDialog = AlertDialog.Builder(this@MainActivity)
                    .setTitle(code.chunked(3).joinToString(" "))
                    .setMessage("Check that your computer shows this code, then confirm there")
                    .show()
            }
        }
        status.text = "Working…"
        app.background.execute {
            val message = when (val outcome = session.scanner.handle(text, source, showCode)) {
                is ScanOutcome.Paired -> (
                    listOf(
                        "Paired with ${outcome.pairing.computerName}" +
                            if (outcome.pushNotRegistered.none { it.problem is PushProblem.TryLater }) "" else " (it cannot wake this phone yet)",
                    ) + Push.refusals(outcome.pushNotRegistered)
                    ).joinToString("\n")
                is ScanOutcome.HybridStarted -> {
                    runOnUiThread { status.text = "Connected to the browser: approve on this phone" }
                    runCatching { outcome.session.wait() }
                        .fold({ "Done" }, { e -> e.toString() })
                }
                is ScanOutcome.Activated -> outcome.organisation.message
                is ScanOutcome.ActivationFailed -> "${outcome.error.message}. ${outcome.error.nextStep}"
                is ScanOutcome.Rejected -> outcome.message
                is ScanOutcome.Failed -> outcome.message
            }
            runOnUiThread {
                codeDialog?.dismiss()
                status.text = message
            }
        }
    }

    private fun toast(message: String) = Toast.makeText(this, message, Toast.LENGTH_LONG).show()
}
