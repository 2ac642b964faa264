package com.pocketkey.applogic

import com.pocketkey.core.Advertiser
import com.pocketkey.core.PocketKeyException
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
class KeySession(val key: SecurityKey, settings: Settings, advertiser: Advertiser, afterReset: () -> Unit = {}) {
    val pairings = Pairings(key, settings)
    val organisation = Organisation(key) { settings.phoneName }
    val push = Push(key, settings, organisation)
    val scanner = Scanner(key, settings, advertiser, pairings, push, organisation)
    val keySettings = KeySettings(key, settings, afterReset) { organisation.current?.name }

    fun close() {
        pairings.stopListening()
        key.close()
    }
}

/**
 * The app model the Android app holds once per process. No Android classes: the platform
 * hands in its [KeyVault], [Device], [SettingsStore], BLE [Advertiser] and [UvKeyProvider]
 * (null: no UV key, so the key offers computers only the PIN), and shows what [approvals]
 * holds.
 */
class AppModel(
    dataDir: File,
    vault: KeyVault,
    private val device: Device,
    settingsStore: SettingsStore,
    private val advertiser: Advertiser,
    private val uvKeys: UvKeyProvider?,
    approvalTimeoutMs: ULong? = null,
) {
    val approvals = ApprovalQueue(uvKeys)

    /** Why the UV key could not be registered at the last open (null: it was, or there is none). */
    @Volatile var uvKeyProblem: String? = null
        private set
    val settings = Settings(settingsStore, device.defaultName)
    private val opener = KeyOpener(dataDir, vault, approvals, device::canVerifyUser, approvalTimeoutMs)

    @Volatile var session: KeySession? = null
        private set

    /**
     * What the app runs at launch: [open], then asks the key's organisation (if any) where the
     * key stands, so that a revocation made while the app was closed is shown at once
     * (`session.organisation.current`). Blocks on storage and the network: off the main thread.
     */
    fun start(): OpenState = open().also { if (it is OpenState.Open) session?.organisation?.sync() }

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
            registerUvKey(state.key)
            approvals.attach(state.key)
            session = KeySession(state.key, settings, advertiser) { registerUvKey(state.key) }
        }
        return state
    }

    /**
     * Setup's UV step, at every open: registers the UV key's public key with the engine. Again
     * at each open because a reset forgets it and the OS may have replaced the key (a new
     * fingerprint invalidates the old one).
     */
    private fun registerUvKey(key: SecurityKey) {
        uvKeyProblem = null
        val keys = uvKeys ?: return
        if (!device.canVerifyUser()) return
        uvKeyProblem = try {
            key.registerUvKey(keys.publicKey())
            null
        } catch (e: PocketKeyException) {
            e.userMessage()
        } catch (e: Exception) {
            "The phone could not make a verification key: $e"
        }
    }

    @Synchronized
    fun close() {
        session?.close()
        session = null
        approvals.attach(null)
    }
}
