package com.pocketkey.applogic

import com.pocketkey.core.ApprovalListener
import com.pocketkey.core.KeyProvider
import com.pocketkey.core.PocketKeyException
import com.pocketkey.core.SecurityKey
import java.io.File

/** The platform's key storage: the Android Keystore wrapping the master key. */
interface KeyVault {
    /** Hands out the master key (creating it on first use). */
    val provider: KeyProvider

    /** Deletes the master key and whatever wraps it, so the next [provider] call makes a new one. */
    fun destroy()
}

/** What opening the key came to. */
sealed class OpenState {
    data class Open(val key: SecurityKey) : OpenState()

    /**
     * The stored data cannot be opened with this phone's master key (restored to a new phone,
     * Keystore key lost or damaged): only a reset — erasing the passkeys and pairings — makes
     * the key usable again. Show [message] and offer the reset.
     */
    data class NeedsReset(val message: String) : OpenState()

    /** Something that may pass (storage busy, disk full): show [message], offer a retry. */
    data class Failed(val message: String) : OpenState()
}

/**
 * Opens the key in [dataDir] with the master key from [vault], prompts going to [listener];
 * [canVerifyUser] says whether the phone has a screen lock or biometric enrolled (without one
 * the key claims no built-in user verification, so computers ask for a PIN instead of
 * getting failed verifications).
 */
class KeyOpener(
    private val dataDir: File,
    private val vault: KeyVault,
    private val listener: ApprovalListener,
    private val canVerifyUser: () -> Boolean,
    private val approvalTimeoutMs: ULong? = null,
) {
    fun open(): OpenState = try {
        OpenState.Open(SecurityKey.open(dataDir.path, vault.provider, listener, approvalTimeoutMs, canVerifyUser()))
    } catch (e: PocketKeyException) {
        when (e) {
            is PocketKeyException.MasterKeyMismatch,
            is PocketKeyException.KeyProviderFailed,
            is PocketKeyException.MasterKeyWrongLength,
            -> OpenState.NeedsReset(e.userMessage())
            else -> OpenState.Failed(e.userMessage())
        }
    }

    /**
     * The reset flow's last step, after the user confirmed: erases the key's data and its
     * master key, then opens a new, empty key. Only for a key that is not open.
     */
    fun resetAndOpen(): OpenState {
        vault.destroy()
        dataDir.deleteRecursively()
        return open()
    }
}
