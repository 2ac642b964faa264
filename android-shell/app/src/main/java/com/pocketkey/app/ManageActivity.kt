package com.pocketkey.app

import android.app.KeyguardManager
import android.os.Build
import android.os.Bundle
import android.text.InputType
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.EditText
import android.widget.LinearLayout
import android.widget.ListView
import android.widget.Toast
import androidx.appcompat.app.AlertDialog
import androidx.appcompat.app.AppCompatActivity
import androidx.biometric.BiometricManager.Authenticators.BIOMETRIC_STRONG
import androidx.biometric.BiometricManager.Authenticators.BIOMETRIC_WEAK
import androidx.biometric.BiometricManager.Authenticators.DEVICE_CREDENTIAL
import androidx.biometric.BiometricPrompt
import androidx.core.content.ContextCompat
import com.pocketkey.applogic.FactoryReset
import com.pocketkey.applogic.KeySession
import com.pocketkey.applogic.Outcome
import com.pocketkey.applogic.Verification
import com.pocketkey.core.PairingInfo
import com.pocketkey.core.Passkey
import com.pocketkey.core.Site

/**
 * The pairing list (rename, unpair, resume a suspended computer), the PIN (set, change), the
 * passkey list (delete) and the factory reset (confirm, then verify).
 * Glue only: every action is the model's (`Pairings`, `KeySettings`), run off the main
 * thread; this screen shows the list and the model's sentences.
 */
class ManageActivity : AppCompatActivity() {
    private val app get() = application as PocketKeyApp
    private lateinit var list: ListView
    private lateinit var pin: Button
    private var pairings: List<PairingInfo> = emptyList()
    @Volatile private var pinSet = false

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        list = ListView(this)
        pin = Button(this).apply { setOnClickListener { askPin() } }
        val passkeys = Button(this).apply {
            text = getString(R.string.passkeys)
            setOnClickListener { showPasskeys() }
        }
        val erase = Button(this).apply {
            text = getString(R.string.erase_key)
            setOnClickListener { confirmReset() }
        }
        setContentView(LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(48, 48, 48, 48)
            addView(pin)
            addView(passkeys)
            addView(erase)
            addView(list)
        })
        list.setOnItemClickListener { _, _, position, _ -> pairings.getOrNull(position)?.let { choose(it) } }
    }

    override fun onResume() {
        super.onResume()
        reload()
    }

    private fun reload() = background { session ->
        val listed = session.pairings.list()
        pinSet = (session.keySettings.info() as? Outcome.Done)?.value?.pinSet ?: false
        runOnUiThread {
            pin.text = if (pinSet) "Change PIN" else "Set a PIN"
            when (listed) {
                is Outcome.Done -> {
                    pairings = listed.value
                    list.adapter = ArrayAdapter(
                        this, android.R.layout.simple_list_item_1,
                        pairings.map { if (it.suspended) "${it.computerName} (removed by the computer)" else it.computerName },
                    )
                }
                is Outcome.Error -> toast(listed.message)
            }
        }
    }

    private fun choose(pairing: PairingInfo) {
        val actions = buildList {
            add("Rename" to { rename(pairing) })
            if (pairing.suspended) add("Use again" to { act { it.pairings.resume(pairing.id) } })
            add("Unpair" to { confirmUnpair(pairing) })
        }
        AlertDialog.Builder(this)
            .setTitle(pairing.computerName)
            .setItems(actions.map { it.first }.toTypedArray()) { _, which -> actions[which].second() }
            .show()
    }

    private fun rename(pairing: PairingInfo) {
        val name = EditText(this).apply { setText(pairing.computerName) }
        AlertDialog.Builder(this)
            .setTitle("Rename")
            .setView(name)
            .setPositiveButton("Save") { _, _ -> act { it.pairings.rename(pairing.id, name.text.toString()) } }
            .setNegativeButton("Cancel", null)
            .show()
    }

    private fun confirmUnpair(pairing: PairingInfo) {
        AlertDialog.Builder(this)
            .setTitle("Unpair ${pairing.computerName}?")
            .setMessage("It can no longer ask this phone to sign in until you pair again.")
            .setPositiveButton("Unpair") { _, _ -> act { it.pairings.unpair(pairing.id) } }
            .setNegativeButton("Cancel", null)
            .show()
    }

    /** Current PIN (only when one is set) and the new one; the model checks both. */
    private fun askPin() {
        val change = pinSet
        fun field(hint: String) = EditText(this).apply {
            this.hint = hint
            inputType = InputType.TYPE_CLASS_TEXT or InputType.TYPE_TEXT_VARIATION_PASSWORD
        }
        val current = field("Current PIN")
        val new = field("New PIN")
        AlertDialog.Builder(this)
            .setTitle(pin.text)
            .setView(LinearLayout(this).apply {
                orientation = LinearLayout.VERTICAL
                if (change) addView(current)
                addView(new)
            })
            .setPositiveButton("Save") { _, _ ->
                val old = if (change) current.text.toString() else null
                act { it.keySettings.setPin(old, new.text.toString()) }
            }
            .setNegativeButton("Cancel", null)
            .show()
    }

    /** The passkeys by site; choosing one offers to delete it. */
    private fun showPasskeys() = background { session ->
        val listed = session.keySettings.passkeys()
        runOnUiThread {
            when (listed) {
                is Outcome.Done -> {
                    val rows: List<Pair<Site, Passkey>> = listed.value.flatMap { site -> site.passkeys.map { site to it } }
                    AlertDialog.Builder(this)
                        .setTitle(R.string.passkeys)
                        .setItems(rows.map { (site, p) -> "${site.rpId} · ${p.userName ?: p.userDisplayName ?: "(no name)"}" }
                            .toTypedArray()) { _, which -> confirmDelete(rows[which].first, rows[which].second) }
                        .setPositiveButton(android.R.string.ok, null)
                        .show()
                }
                is Outcome.Error -> toast(listed.message)
            }
        }
    }

    private fun confirmDelete(site: Site, passkey: Passkey) {
        AlertDialog.Builder(this)
            .setTitle("Delete the passkey for ${site.rpId}?")
            .setMessage("${site.rpId} will no longer accept this key for ${passkey.userName ?: "this account"}.")
            .setPositiveButton(R.string.delete) { _, _ -> act { it.keySettings.deletePasskey(passkey.credentialId) } }
            .setNegativeButton("Cancel", null)
            .show()
    }

    /** The model's warning (naming the organisation, if any), then the phone's verification. */
    private fun confirmReset() = background { session ->
        val warning = session.keySettings.resetWarning()
        runOnUiThread {
            AlertDialog.Builder(this)
                .setTitle(R.string.erase_key)
                .setMessage(warning)
                .setPositiveButton(R.string.erase) { _, _ -> verifyThenReset() }
                .setNegativeButton("Cancel", null)
                .show()
        }
    }

    private fun verifyThenReset() {
        if (!getSystemService(KeyguardManager::class.java).isDeviceSecure) {
            reset(Verification.NOT_AVAILABLE)
            return
        }
        val authenticators = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.R) {
            BIOMETRIC_STRONG or DEVICE_CREDENTIAL
        } else {
            BIOMETRIC_WEAK or DEVICE_CREDENTIAL
        }
        val callback = object : BiometricPrompt.AuthenticationCallback() {
            override fun onAuthenticationSucceeded(result: BiometricPrompt.AuthenticationResult) =
                reset(Verification.VERIFIED)
            override fun onAuthenticationError(code: Int, message: CharSequence) = reset(
                if (code == BiometricPrompt.ERROR_LOCKOUT || code == BiometricPrompt.ERROR_LOCKOUT_PERMANENT) {
                    Verification.FAILED
                } else {
                    Verification.CANCELLED
                },
            )
        }
        BiometricPrompt(this, ContextCompat.getMainExecutor(this), callback).authenticate(
            BiometricPrompt.PromptInfo.Builder()
                .setTitle(getString(R.string.erase_key))
                .setAllowedAuthenticators(authenticators)
                .build(),
        )
    }

    private fun reset(verification: Verification) = background { session ->
        val result = session.keySettings.factoryReset(verification)
        runOnUiThread {
            when {
                result is Outcome.Error -> toast(result.message)
                result is Outcome.Done && result.value == FactoryReset.ERASED -> toast("The security key was erased")
                else -> {}   // cancelled or not verified: nothing erased, nothing to say
            }
        }
        reload()
    }

    /** Runs a model action in the background, shows its error sentence, then reloads. */
    private fun act(action: (KeySession) -> Outcome<*>) = background { session ->
        val result = action(session)
        runOnUiThread { if (result is Outcome.Error) toast(result.message) }
        reload()
    }

    private fun background(block: (KeySession) -> Unit) {
        val session = app.model.session ?: return toast("The security key is not open yet")
        app.background.execute { block(session) }
    }

    private fun toast(message: String) = Toast.makeText(this, message, Toast.LENGTH_LONG).show()
}
