package com.pocketkey.app

import android.app.Notification
import android.app.NotificationChannel
import android.app.NotificationManager
import android.app.Service
import android.content.Intent
import android.content.pm.ServiceInfo
import android.os.Build
import android.os.Bundle
import android.os.IBinder
import androidx.core.app.NotificationCompat
import androidx.core.app.ServiceCompat
import com.google.firebase.messaging.FirebaseMessagingService
import com.google.firebase.messaging.RemoteMessage
import com.pocketkey.applogic.OpenState
import com.pocketkey.applogic.PushResult

/**
 * FCM: a new token is registered with every paired computer's relay; a high-priority data
 * message starts [WakeService]. The FCM callback itself may run only ~10 s, too short for the
 * user to answer the approval, so the work moves into a short foreground service.
 */
class PushMessagingService : FirebaseMessagingService() {
    private val app get() = application as PocketKeyApp

    override fun onNewToken(token: String) {
        app.background.execute {
            if (app.model.open() is OpenState.Open) app.model.session?.push?.onNewToken(token)
        }
    }

    override fun onMessageReceived(message: RemoteMessage) {
        // Only a high-priority message may start a foreground service from the background.
        if (message.priority != RemoteMessage.PRIORITY_HIGH) return
        val data = Bundle().apply { message.data.forEach { (k, v) -> putString(k, v) } }
        startForegroundService(Intent(this, WakeService::class.java).putExtra(WakeService.EXTRA_DATA, data))
    }
}

/** Runs one wake-up's `handlePush` in the foreground (API 34+: a `shortService`). */
class WakeService : Service() {
    private val app get() = application as PocketKeyApp

    override fun onBind(intent: Intent?): IBinder? = null

    override fun onStartCommand(intent: Intent?, flags: Int, startId: Int): Int {
        val type = if (Build.VERSION.SDK_INT >= 34) ServiceInfo.FOREGROUND_SERVICE_TYPE_SHORT_SERVICE else 0
        ServiceCompat.startForeground(this, NOTIFICATION_ID, notification(), type)
        val bundle = intent?.getBundleExtra(EXTRA_DATA)
        val data = bundle?.keySet()?.associateWith { bundle.getString(it).orEmpty() }.orEmpty()
        app.background.execute {
            val result = if (app.model.open() is OpenState.Open) {
                app.model.session?.push?.onMessage(data) ?: PushResult.Ignored
            } else {
                PushResult.Failed("the security key could not be opened")
            }
            if (result is PushResult.Paused) app.notifier.showPaused(result)
            stopSelf(startId)
        }
        return START_NOT_STICKY
    }

    // A short service that overruns its time is stopped by the system: end now.
    override fun onTimeout(startId: Int) = stopSelf(startId)

    private fun notification(): Notification {
        val manager = getSystemService(NotificationManager::class.java)
        manager.createNotificationChannel(NotificationChannel(CHANNEL, getString(R.string.channel_wake), NotificationManager.IMPORTANCE_LOW))
        return NotificationCompat.Builder(this, CHANNEL)
            .setSmallIcon(android.R.drawable.ic_lock_lock)
            .setContentTitle(getString(R.string.waking))
            .setCategory(NotificationCompat.CATEGORY_SERVICE)
            .build()
    }

    companion object {
        const val EXTRA_DATA = "com.pocketkey.app.PUSH_DATA"
        private const val CHANNEL = "wake"
        private const val NOTIFICATION_ID = 2
    }
}
