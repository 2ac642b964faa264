package com.pocketkey.app

import android.os.Build
import android.os.Bundle
import android.widget.Toast
import androidx.appcompat.app.AlertDialog
import androidx.appcompat.app.AppCompatActivity
import androidx.biometric.BiometricManager.Authenticators.BIOMETRIC_STRONG
import androidx.biometric.BiometricManager.Authenticators.BIOMETRIC_WEAK
import androidx.biometric.BiometricManager.Authenticators.DEVICE_CREDENTIAL
import androidx.biometric.BiometricPrompt
import androidx.core.content.ContextCompat
import com.pocketkey.core.ApprovalAnswer
import com.pocketkey.core.ApprovalPrompt

/**
 * Opened by a notification's Approve action (or a tap on it): lets the user pick an account
 * when the site offered several, then verifies them with BiometricPrompt (biometric or the
 * screen lock) and answers ApproveVerified. Approving always verifies, even when only presence
 * was asked: a tap on a lock-screen notification alone must not sign anyone in.
 */
class ApprovalActivity : AppCompatActivity() {
    private val app get() = application as PocketKeyApp
    private var id: ULong = 0u

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        id = (intent?.getLongExtra(ApprovalNotifier.EXTRA_ID, 0) ?: 0L).toULong()
        val prompt = app.notifier.prompt(id)
        if (prompt == null) {
            done("That approval has already ended")
            return
        }
        app.notifier.onClosed = { closed -> if (closed == id) runOnUiThread { finish() } }
        if (prompt.accounts.isEmpty()) {
            verify(prompt, account = null)
        } else {
            val names = prompt.accounts.map { it.userName ?: it.displayName ?: "(no name)" }.toTypedArray()
            AlertDialog.Builder(this)
                .setTitle(ApprovalNotifier.title(prompt))
                .setItems(names) { _, which -> verify(prompt, which.toUInt()) }
                .setOnCancelListener { finish() }   // undecided: the prompt stays until it times out
                .show()
        }
    }

    override fun onDestroy() {
        app.notifier.onClosed = null
        super.onDestroy()
    }

    private fun verify(prompt: ApprovalPrompt, account: UInt?) {
        // Class 3 biometric or the screen lock; on Android 9–10 the screen lock can only back up
        // a Class 2 biometric.
        val authenticators = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.R) {
            BIOMETRIC_STRONG or DEVICE_CREDENTIAL
        } else {
            BIOMETRIC_WEAK or DEVICE_CREDENTIAL
        }
        val info = BiometricPrompt.PromptInfo.Builder()
            .setTitle(ApprovalNotifier.title(prompt))
            .setSubtitle(ApprovalNotifier.detail(prompt))
            .setAllowedAuthenticators(authenticators)   // no negative button with DEVICE_CREDENTIAL
            .build()
        val callback = object : BiometricPrompt.AuthenticationCallback() {
            override fun onAuthenticationSucceeded(result: BiometricPrompt.AuthenticationResult) {
                done(app.notifier.answer(id, ApprovalAnswer.ApproveVerified(account)))
            }

            override fun onAuthenticationError(errorCode: Int, errString: CharSequence) {
                val answer = when (errorCode) {
                    BiometricPrompt.ERROR_USER_CANCELED, BiometricPrompt.ERROR_NEGATIVE_BUTTON -> ApprovalAnswer.Deny
                    BiometricPrompt.ERROR_LOCKOUT, BiometricPrompt.ERROR_LOCKOUT_PERMANENT -> ApprovalAnswer.VerificationFailed
                    else -> null   // e.g. the activity went away: leave the prompt to its deadline
                }
                done(if (answer != null) app.notifier.answer(id, answer) else errString.toString())
            }
            // onAuthenticationFailed (one unrecognised finger): the system prompt lets the user retry.
        }
        BiometricPrompt(this, ContextCompat.getMainExecutor(this), callback).authenticate(info)
    }

    private fun done(message: String?) {
        message?.let { Toast.makeText(this, it, Toast.LENGTH_SHORT).show() }
        finish()
    }
}
