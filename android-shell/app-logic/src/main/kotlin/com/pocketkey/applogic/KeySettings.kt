package com.pocketkey.applogic

import com.pocketkey.core.KeyInfo
import com.pocketkey.core.SecurityKey
import com.pocketkey.core.Site

/** What [KeySettings.factoryReset] came to. */
enum class FactoryReset {
    ERASED,

    /** The user dismissed the verification sheet: nothing was erased. */
    CANCELLED,

    /** The verification failed (locked out): nothing was erased. */
    VERIFICATION_FAILED,
}

/**
 * The key's own settings screens: name, PIN, passkey list, factory reset. [afterReset] runs
 * after a factory reset (the model registers the UV key again: the reset forgot it);
 * [organisationName] is the organisation the key belongs to, if any (the reset warning names it).
 */
class KeySettings(
    private val key: SecurityKey,
    private val settings: Settings,
    private val afterReset: () -> Unit = {},
    private val organisationName: () -> String? = { null },
) {
    fun info(): Outcome<KeyInfo> = attempt { key.info() }

    fun rename(label: String): Outcome<Unit> = attempt { key.setLabel(label) }

    /** Sets the first PIN, or changes it when one is set ([current] required then). */
    fun setPin(current: String?, new: String): Outcome<Unit> =
        attempt { if (current == null) key.setPin(new) else key.changePin(current, new) }

    fun passkeys(): Outcome<List<Site>> = attempt { key.passkeys() }

    fun deletePasskey(credentialId: ByteArray): Outcome<Boolean> = attempt { key.deletePasskey(credentialId) }

    /**
     * What the reset screen's confirmation says: everything goes, including the passkeys the
     * organisation registered for the user.
     */
    fun resetWarning(): String {
        val base = "This erases every passkey on this security key, its PIN and its name. " +
            "Sites and computers will no longer accept it until you register it again."
        val org = organisationName() ?: return base
        return "$base The passkeys $org registered for you go too: ask $org to register them again."
    }

    /**
     * The reset screen's action, after the user confirmed [resetWarning] and BiometricPrompt
     * (biometric or screen lock) reported [verification]: erases every passkey and the PIN.
     * A phone without a screen lock ([Verification.NOT_AVAILABLE]) relies on the confirmation.
     */
    fun factoryReset(verification: Verification): Outcome<FactoryReset> = when (verification) {
        Verification.CANCELLED -> Outcome.Done(FactoryReset.CANCELLED)
        Verification.FAILED -> Outcome.Done(FactoryReset.VERIFICATION_FAILED)
        Verification.VERIFIED, Verification.NOT_AVAILABLE -> attempt { key.factoryReset() }.let {
            when (it) {
                is Outcome.Done -> {
                    settings.clearKeyState()
                    afterReset()
                    Outcome.Done(FactoryReset.ERASED)
                }
                is Outcome.Error -> it
            }
        }
    }
}
