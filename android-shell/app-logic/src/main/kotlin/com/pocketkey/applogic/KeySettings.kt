package com.pocketkey.applogic

import com.pocketkey.core.KeyInfo
import com.pocketkey.core.SecurityKey
import com.pocketkey.core.Site

/**
 * The key's own settings screens: name, PIN, passkey list, factory reset. [afterReset] runs
 * after a factory reset (the model registers the UV key again: the reset forgot it).
 */
class KeySettings(
    private val key: SecurityKey,
    private val settings: Settings,
    private val afterReset: () -> Unit = {},
) {
    fun info(): Outcome<KeyInfo> = attempt { key.info() }

    fun rename(label: String): Outcome<Unit> = attempt { key.setLabel(label) }

    /** Sets the first PIN, or changes it when one is set ([current] required then). */
    fun setPin(current: String?, new: String): Outcome<Unit> =
        attempt { if (current == null) key.setPin(new) else key.changePin(current, new) }

    fun passkeys(): Outcome<List<Site>> = attempt { key.passkeys() }

    fun deletePasskey(credentialId: ByteArray): Outcome<Boolean> = attempt { key.deletePasskey(credentialId) }

    /** Erases every passkey and the PIN (after the user confirmed). */
    fun factoryReset(): Outcome<Unit> = attempt { key.factoryReset() }.also {
        if (it is Outcome.Done) {
            settings.clearKeyState()
            afterReset()
        }
    }
}
