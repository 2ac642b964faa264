package com.pocketkey.app

import android.app.Application
import com.pocketkey.core.SecurityKey
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * One SecurityKey per process. It is opened on first use — from a background thread (the
 * transport's, or [background]): opening reads the Keystore and the database. Its data lives
 * in noBackupFilesDir: the master key's Keystore wrapping key cannot leave the device, so a
 * backup of the data could never be opened elsewhere anyway.
 */
class PocketKeyApp : Application() {
    lateinit var notifier: ApprovalNotifier
        private set

    /** For the app's own engine calls (info, passkeys, opening); never the main thread. */
    val background: ExecutorService = Executors.newSingleThreadExecutor()

    private val keyHolder = lazy {
        SecurityKey.open(
            File(noBackupFilesDir, "pocketkey").path,
            KeystoreKeyProvider(this),
            notifier,
        )
    }

    /** Opens the key on first access; throws PocketKeyException (show `userMessage()`). */
    val key: SecurityKey by keyHolder

    /** The key if this process opened it already. A prompt can only exist if it did. */
    val keyIfOpen: SecurityKey? get() = if (keyHolder.isInitialized()) key else null

    override fun onCreate() {
        super.onCreate()
        notifier = ApprovalNotifier(this)
    }
}
