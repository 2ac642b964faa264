package com.pocketkey.app

import android.app.Application
import android.app.KeyguardManager
import android.content.Context
import android.os.Build
import com.pocketkey.applogic.AppModel
import com.pocketkey.applogic.Device
import com.pocketkey.applogic.SettingsStore
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * One [AppModel] per process (android-shell/app-logic: scan routing, pairings, push, the
 * approval queue, settings, recovery). This class only hands it the platform's pieces. The
 * key's data lives in noBackupFilesDir: its master key's Keystore wrapping key cannot leave the
 * device, so a backup of the data could never be opened elsewhere anyway.
 */
class PocketKeyApp : Application() {
    lateinit var model: AppModel
        private set
    lateinit var notifier: ApprovalNotifier
        private set

    /** The UV key; ApprovalActivity hands it the Signature BiometricPrompt unlocked. */
    val uvKeys = KeystoreUvKeys()

    /** For the app's own engine calls (opening, pairing, settings); never the main thread. */
    val background: ExecutorService = Executors.newCachedThreadPool()

    override fun onCreate() {
        super.onCreate()
        model = AppModel(
            File(noBackupFilesDir, "pocketkey"),
            KeystoreKeyProvider(this),
            AndroidDevice(this),
            PrefsSettingsStore(this),
            BleAdvertiser(this),
            uvKeys,
        )
        notifier = ApprovalNotifier(this)
        model.approvals.addObserver(notifier)
    }
}

private class AndroidDevice(private val context: Context) : Device {
    override val defaultName: String = Build.MODEL

    // No screen lock: nothing can verify the user; the model answers "not available".
    override fun canVerifyUser(): Boolean = context.getSystemService(KeyguardManager::class.java).isDeviceSecure
}

private class PrefsSettingsStore(context: Context) : SettingsStore {
    private val prefs = context.getSharedPreferences("settings", Context.MODE_PRIVATE)

    override fun get(name: String): String? = prefs.getString(name, null)

    override fun put(name: String, value: String?) {
        prefs.edit().apply { if (value == null) remove(name) else putString(name, value) }.apply()
    }
}
