package com.pocketkey.applogic

import com.pocketkey.core.Advertiser
import com.pocketkey.core.SecurityKey
import java.io.File

/** What the app model needs from the phone that only the platform knows. */
interface Device {
    /** The name computers show for this phone until the user changes it ("Pixel 8"). */
    val defaultName: String

    /** A screen lock or biometric is set up (Android: `KeyguardManager.isDeviceSecure`). */
    fun canVerifyUser(): Boolean
}

/** Everything the screens use once the key is open. */
class KeySession(val key: SecurityKey, settings: Settings, advertiser: Advertiser) {
    val pairings = Pairings(key, settings)
    val push = Push(key, settings)
    val scanner = Scanner(key, settings, advertiser, pairings, push)
    val keySettings = KeySettings(key, settings)

    fun close() {
        pairings.stopListening()
        key.close()
    }
}

/**
 * The app model the Android app holds once per process. No Android classes: the platform
 * hands in its [KeyVault], [Device], [SettingsStore] and BLE [Advertiser], and shows what
 * [approvals] holds.
 */
class AppModel(
    dataDir: File,
    vault: KeyVault,
    private val device: Device,
    settingsStore: SettingsStore,
    private val advertiser: Advertiser,
    approvalTimeoutMs: ULong? = null,
) {
    val approvals = ApprovalQueue()
    val settings = Settings(settingsStore, device.defaultName)
    private val opener = KeyOpener(dataDir, vault, approvals, device::canVerifyUser, approvalTimeoutMs)

    @Volatile var session: KeySession? = null
        private set

    /** Opens the key (once; later calls return the open one). Blocks on storage: off the main thread. */
    @Synchronized
    fun open(): OpenState {
        session?.let { return OpenState.Open(it.key) }
        return started(opener.open())
    }

    /** The reset screen's confirmed action: erase the key's data and master key, open a new key. */
    @Synchronized
    fun resetAndOpen(): OpenState {
        session?.close()
        session = null
        approvals.attach(null)
        settings.clearKeyState()
        return started(opener.resetAndOpen())
    }

    private fun started(state: OpenState): OpenState {
        if (state is OpenState.Open) {
            approvals.attach(state.key)
            session = KeySession(state.key, settings, advertiser)
        }
        return state
    }

    @Synchronized
    fun close() {
        session?.close()
        session = null
        approvals.attach(null)
    }
}
