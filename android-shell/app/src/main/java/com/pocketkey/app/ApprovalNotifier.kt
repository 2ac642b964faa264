package com.pocketkey.app

import android.annotation.SuppressLint
import android.app.NotificationChannel
import android.app.NotificationManager
import android.app.PendingIntent
import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.net.Uri
import android.widget.Toast
import androidx.core.app.NotificationCompat
import androidx.core.app.NotificationManagerCompat
import com.pocketkey.core.ApprovalAnswer
import com.pocketkey.core.ApprovalClosed
import com.pocketkey.core.ApprovalListener
import com.pocketkey.core.ApprovalListenerException
import com.pocketkey.core.ApprovalOperation
import com.pocketkey.core.ApprovalPrompt
import com.pocketkey.core.PocketKeyException
import java.util.concurrent.ConcurrentHashMap

/**
 * The engine's approval listener: each prompt becomes a notification with Deny and Approve
 * actions. Approve opens [ApprovalActivity] (account choice + BiometricPrompt); Deny goes to
 * [ApprovalActionReceiver]. Both answer by prompt id through `SecurityKey.answer`.
 *
 * Both callbacks run on the transport's thread that called processCtap: they only post or
 * cancel a notification and return.
 */
class ApprovalNotifier(private val app: PocketKeyApp) : ApprovalListener {
    private val open = ConcurrentHashMap<ULong, ApprovalPrompt>()
    private val notifications = NotificationManagerCompat.from(app)

    /** Set by a visible ApprovalActivity, to close itself when its prompt ends elsewhere. */
    @Volatile var onClosed: ((ULong) -> Unit)? = null

    init {
        val channel = NotificationChannel(CHANNEL, app.getString(R.string.channel_approvals), NotificationManager.IMPORTANCE_HIGH)
        app.getSystemService(NotificationManager::class.java).createNotificationChannel(channel)
    }

    fun prompt(id: ULong): ApprovalPrompt? = open[id]

    @SuppressLint("MissingPermission")   // areNotificationsEnabled() first; SecurityException caught
    override fun onApprovalRequested(request: ApprovalPrompt) {
        // Nobody would see it: deny now rather than let the computer wait for the timeout.
        if (!notifications.areNotificationsEnabled()) {
            throw ApprovalListenerException.Failed("notifications are turned off for PocketKey")
        }
        open[request.id] = request
        val approve = PendingIntent.getActivity(
            app, 0,
            Intent(app, ApprovalActivity::class.java).setData(promptUri(request.id)).putExtra(EXTRA_ID, request.id.toLong()),
            PendingIntent.FLAG_IMMUTABLE or PendingIntent.FLAG_UPDATE_CURRENT,
        )
        val deny = PendingIntent.getBroadcast(
            app, 0,
            Intent(app, ApprovalActionReceiver::class.java).setData(promptUri(request.id)).putExtra(EXTRA_ID, request.id.toLong()),
            PendingIntent.FLAG_IMMUTABLE or PendingIntent.FLAG_UPDATE_CURRENT,
        )
        val notification = NotificationCompat.Builder(app, CHANNEL)
            .setSmallIcon(android.R.drawable.ic_lock_lock)
            .setContentTitle(title(request))
            .setContentText(detail(request))
            .setPriority(NotificationCompat.PRIORITY_HIGH)
            .setCategory(NotificationCompat.CATEGORY_STATUS)
            .setOngoing(true)
            .setTimeoutAfter((request.deadlineUnixMs.toLong() - System.currentTimeMillis()).coerceAtLeast(1))
            .setContentIntent(approve)
            .addAction(0, app.getString(R.string.deny), deny)
            .addAction(0, app.getString(R.string.approve), approve)
            .build()
        try {
            notifications.notify(tag(request.id), NOTIFICATION_ID, notification)
        } catch (e: SecurityException) {   // POST_NOTIFICATIONS revoked in between
            open.remove(request.id)
            throw ApprovalListenerException.Failed("notification permission missing")
        }
    }

    override fun onApprovalClosed(id: ULong, reason: ApprovalClosed) {
        open.remove(id)
        notifications.cancel(tag(id), NOTIFICATION_ID)
        onClosed?.invoke(id)
    }

    /** Answers a prompt; returns the sentence to show when that failed (e.g. it had ended). */
    fun answer(id: ULong, answer: ApprovalAnswer): String? {
        val key = app.keyIfOpen ?: return "That approval has already ended"
        return try {
            key.answer(id, answer)
            null
        } catch (e: PocketKeyException) {
            e.userMessage()
        }
    }

    companion object {
        const val EXTRA_ID = "com.pocketkey.app.APPROVAL_ID"
        private const val CHANNEL = "approvals"
        private const val NOTIFICATION_ID = 1

        private fun tag(id: ULong) = "approval-$id"

        /** Makes each prompt's PendingIntents distinct (extras alone do not). */
        private fun promptUri(id: ULong): Uri = Uri.parse("pocketkey-approval:$id")

        fun title(p: ApprovalPrompt): String {
            val site = p.rpId ?: "a site"
            return when (p.operation) {
                ApprovalOperation.REGISTER -> "Create a passkey for $site?"
                ApprovalOperation.SIGN_IN, ApprovalOperation.U2F_SIGN_IN -> "Sign in to $site?"
                ApprovalOperation.U2F_REGISTER -> "Register this key with $site?"
                ApprovalOperation.VERIFY_USER -> "Confirm it's you"
                ApprovalOperation.SELECT -> "Use this security key?"
                ApprovalOperation.RESET -> "Erase this security key?"
            }
        }

        fun detail(p: ApprovalPrompt): String =
            listOfNotNull(p.requester, p.userName ?: p.userDisplayName).joinToString(" · ")
    }
}

/** A notification's Deny action. */
class ApprovalActionReceiver : BroadcastReceiver() {
    override fun onReceive(context: Context, intent: Intent) {
        val app = context.applicationContext as PocketKeyApp
        val id = intent.getLongExtra(ApprovalNotifier.EXTRA_ID, 0).toULong()
        app.notifier.answer(id, ApprovalAnswer.Deny)?.let { Toast.makeText(context, it, Toast.LENGTH_SHORT).show() }
        // If the prompt had ended (process restarted), its notification is stale: remove it.
        NotificationManagerCompat.from(context).cancel("approval-$id", 1)
    }
}
