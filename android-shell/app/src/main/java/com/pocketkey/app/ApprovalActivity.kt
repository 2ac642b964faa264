package com.pocketkey.app

import android.app.KeyguardManager
import android.os.Build
import android.os.Bundle
import android.widget.Toast
import androidx.appcompat.app.AlertDialog
import androidx.appcompat.app.AppCompatActivity
import androidx.biometric.BiometricManager
import androidx.biometric.BiometricManager.Authenticators.BIOMETRIC_STRONG
import androidx.biometric.BiometricManager.Authenticators.BIOMETRIC_WEAK
import androidx.biometric.BiometricManager.Authenticators.DEVICE_CREDENTIAL
import androidx.biometric.BiometricPrompt
import androidx.core.content.ContextCompat
import com.pocketkey.applogic.Verification
import com.pocketkey.core.ApprovalPrompt

/**
 * Opened by a notification's Approve action (or a tap on it): lets the user pick an account
 * when the site offered several, then verifies them with BiometricPrompt (biometric or the
 * screen lock) and hands the result to the model's approval queue. When the UV key is usable
 * the prompt carries it as a CryptoObject (Class 3 biometric only: the key allows nothing
 * else), and the success callback hands the unlocked Signature to [KeystoreUvKeys], with which
 * the model signs the prompt's challenge: the proof the engine checks. Approving always verifies
 * when the phone can: a tap on a lock-screen notification alone must not sign anyone in. A
 * phone without a screen lock reports NOT_AVAILABLE, which the model turns into presence or a
 * denial, never a failed verification.
 *
 * Rotation: the chosen account and "verifying" survive in the saved state; the running
 * BiometricPrompt (a retained fragment) gets its callback back without a second prompt.
 */
class ApprovalActivity : AppCompatActivity() {
    private val app get() = application as PocketKeyApp
    private var id: ULong = 0u
    private var account: Int = NO_ACCOUNT
    private var verifying = false

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        id = (intent?.getLongExtra(ApprovalNotifier.EXTRA_ID, 0) ?: 0L).toULong()
        val prompt = app.model.approvals.prompt(id)
        if (prompt == null) {
            done("That approval has already ended")
            return
        }
        app.notifier.onClosed = { closed -> if (closed == id) runOnUiThread { finish() } }
        account = savedInstanceState?.getInt(STATE_ACCOUNT, NO_ACCOUNT) ?: NO_ACCOUNT
        verifying = savedInstanceState?.getBoolean(STATE_VERIFYING) ?: false
        when {
            // Re-attach the callback to the prompt already on screen; do not ask again.
            verifying -> biometricPrompt(prompt)
            prompt.accounts.isEmpty() -> verify(prompt)
            account != NO_ACCOUNT -> verify(prompt)
            else -> chooseAccount(prompt)
        }
    }

    override fun onSaveInstanceState(outState: Bundle) {
        super.onSaveInstanceState(outState)
        outState.putInt(STATE_ACCOUNT, account)
        outState.putBoolean(STATE_VERIFYING, verifying)
    }

    override fun onDestroy() {
        if (!isChangingConfigurations) app.notifier.onClosed = null
        super.onDestroy()
    }

    private fun chooseAccount(prompt: ApprovalPrompt) {
        val names = prompt.accounts.map { it.userName ?: it.displayName ?: "(no name)" }.toTypedArray()
        AlertDialog.Builder(this)
            .setTitle(ApprovalNotifier.title(prompt))
            .setItems(names) { _, which ->
                account = which
                verify(prompt)
            }
            .setOnCancelListener { finish() }   // undecided: the prompt stays until it times out
            .show()
    }

    private fun chosen(): UInt? = if (account == NO_ACCOUNT) null else account.toUInt()

    // Class 3 biometric or the screen lock; on Android 9–10 the screen lock can only back up a
    // Class 2 biometric.
    private val authenticators = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.R) {
        BIOMETRIC_STRONG or DEVICE_CREDENTIAL
    } else {
        BIOMETRIC_WEAK or DEVICE_CREDENTIAL
    }

    private fun verify(prompt: ApprovalPrompt) {
        // Only a phone without any screen lock is "not available"; a biometric that is merely
        // unusable right now must not turn an approval into a tap-only one.
        if (!getSystemService(KeyguardManager::class.java).isDeviceSecure) {
            answer(Verification.NOT_AVAILABLE)
            return
        }
        if (BiometricManager.from(this).canAuthenticate(authenticators) != BiometricManager.BIOMETRIC_SUCCESS) {
            done(getString(R.string.verification_unusable))   // the prompt runs to its deadline
            return
        }
        // An invalidated or missing UV key: verify without it; the model then answers presence
        // where that is enough and denies (without spending UV retries) where it is not.
        val signature = runCatching { app.uvKeys.signatureForPrompt() }.getOrNull()
        val builder = BiometricPrompt.PromptInfo.Builder()
            .setTitle(ApprovalNotifier.title(prompt))
            .setSubtitle(ApprovalNotifier.detail(prompt))
        verifying = true
        if (signature != null) {
            val info = builder.setAllowedAuthenticators(BIOMETRIC_STRONG)
                .setNegativeButtonText(getString(android.R.string.cancel))
                .build()
            biometricPrompt(prompt).authenticate(info, BiometricPrompt.CryptoObject(signature))
        } else {
            // No negative button with DEVICE_CREDENTIAL.
            biometricPrompt(prompt).authenticate(builder.setAllowedAuthenticators(authenticators).build())
        }
    }

    private fun biometricPrompt(prompt: ApprovalPrompt): BiometricPrompt {
        val callback = object : BiometricPrompt.AuthenticationCallback() {
            override fun onAuthenticationSucceeded(result: BiometricPrompt.AuthenticationResult) {
                result.cryptoObject?.signature?.let(app.uvKeys::unlocked)
                try {
                    answer(Verification.VERIFIED)
                } finally {
                    app.uvKeys.forget()   // never left for another prompt
                }
            }

            override fun onAuthenticationError(errorCode: Int, errString: CharSequence) {
                when (errorCode) {
                    BiometricPrompt.ERROR_USER_CANCELED, BiometricPrompt.ERROR_NEGATIVE_BUTTON -> answer(Verification.CANCELLED)
                    BiometricPrompt.ERROR_LOCKOUT, BiometricPrompt.ERROR_LOCKOUT_PERMANENT -> answer(Verification.FAILED)
                    else -> done(errString.toString())   // the activity went away: the prompt runs to its deadline
                }
            }
            // onAuthenticationFailed (one unrecognised finger): the system prompt lets the user retry.
        }
        return BiometricPrompt(this, ContextCompat.getMainExecutor(this), callback)
    }

    private fun answer(verification: Verification) {
        verifying = false
        done(ApprovalNotifier.message(app.model.approvals.approve(id, chosen(), verification)))
    }

    private fun done(message: String?) {
        message?.let { Toast.makeText(this, it, Toast.LENGTH_LONG).show() }
        finish()
    }

    private companion object {
        const val STATE_ACCOUNT = "account"
        const val STATE_VERIFYING = "verifying"
        const val NO_ACCOUNT = -1
    }
}
