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
import com.pocketkey.applogic.AnswerResult
import com.pocketkey.applogic.ApprovalObserver
import com.pocketkey.applogic.PromptText
import com.pocketkey.applogic.PushResult
import com.pocketkey.core.ApprovalClosed
import com.pocketkey.core.ApprovalListenerException
import com.pocketkey.core.ApprovalPrompt

/**
 * Shows the model's approval queue: each prompt becomes a notification with Deny and Approve
 * actions. Approve opens [ApprovalActivity] (account choice + BiometricPrompt); Deny goes to
 * [ApprovalActionReceiver]. Both answer through `model.approvals` by prompt id.
 *
 * On the lock screen the notification shows its public version: the site and the computer,
 * never the account name (VISIBILITY_PRIVATE with a redacted public version).
 */
class ApprovalNotifier(private val app: PocketKeyApp) : ApprovalObserver {
    private val notifications = NotificationManagerCompat.from(app)

    /** Set by a visible ApprovalActivity, to close itself when its prompt ends elsewhere. */
    @Volatile var onClosed: ((ULong) -> Unit)? = null

    init {
        val channel = NotificationChannel(CHANNEL, app.getString(R.string.channel_approvals), NotificationManager.IMPORTANCE_HIGH)
            .apply { lockscreenVisibility = android.app.Notification.VISIBILITY_PRIVATE }
        app.getSystemService(NotificationManager::class.java).createNotificationChannel(channel)
    }

    @SuppressLint("MissingPermission")   // areNotificationsEnabled() first; SecurityException caught
    override fun onPrompt(prompt: ApprovalPrompt) {
        // Nobody would see it: deny now rather than let the computer wait for the timeout.
        if (!notifications.areNotificationsEnabled()) {
            throw ApprovalListenerException.Failed("notifications are turned off for PocketKey")
        }
        val approve = PendingIntent.getActivity(
            app, 0,
            Intent(app, ApprovalActivity::class.java).setData(promptUri(prompt.id)).putExtra(EXTRA_ID, prompt.id.toLong()),
            PendingIntent.FLAG_IMMUTABLE or PendingIntent.FLAG_UPDATE_CURRENT,
        )
        val deny = PendingIntent.getBroadcast(
            app, 0,
            Intent(app, ApprovalActionReceiver::class.java).setData(promptUri(prompt.id)).putExtra(EXTRA_ID, prompt.id.toLong()),
            PendingIntent.FLAG_IMMUTABLE or PendingIntent.FLAG_UPDATE_CURRENT,
        )
        val timeout = (prompt.deadlineUnixMs.toLong() - System.currentTimeMillis()).coerceAtLeast(1)
        val text = PromptText.of(prompt)
        val public = NotificationCompat.Builder(app, CHANNEL)
            .setSmallIcon(android.R.drawable.ic_lock_lock)
            .setContentTitle(title(prompt))
            .setContentText(prompt.requester)
            .build()
        val notification = NotificationCompat.Builder(app, CHANNEL)
            .setSmallIcon(android.R.drawable.ic_lock_lock)
            .setContentTitle(text.title)
            .setContentText(text.detail)
            // An organisation's registration on the user's behalf is marked apart from a computer's.
            .setSubText(text.onBehalf?.let { app.getString(R.string.on_behalf_of, it.organisation) })
            .setStyle(NotificationCompat.BigTextStyle().bigText(text.title))
            .setPriority(NotificationCompat.PRIORITY_HIGH)
            .setCategory(NotificationCompat.CATEGORY_STATUS)   // heads-up and sound: the IMPORTANCE_HIGH channel
            .setVisibility(NotificationCompat.VISIBILITY_PRIVATE)
            .setPublicVersion(public)
            .setOngoing(true)
            .setTimeoutAfter(timeout)
            .setContentIntent(approve)
            .addAction(0, app.getString(R.string.deny), deny)
            .addAction(0, app.getString(R.string.approve), approve)
            .build()
        try {
            notifications.notify(tag(prompt.id), NOTIFICATION_ID, notification)
        } catch (e: SecurityException) {   // POST_NOTIFICATIONS revoked in between
            throw ApprovalListenerException.Failed("notification permission missing")
        }
    }

    /** A computer whose wake-ups are paused for asking nothing too often: the user should know. */
    @SuppressLint("MissingPermission")
    fun showPaused(paused: PushResult.Paused) {
        if (!notifications.areNotificationsEnabled()) return
        val notification = NotificationCompat.Builder(app, CHANNEL)
            .setSmallIcon(android.R.drawable.ic_lock_lock)
            .setContentTitle(paused.computerName)
            .setStyle(NotificationCompat.BigTextStyle().bigText(paused.message))
            .setContentText(paused.message)
            .build()
        runCatching { notifications.notify("paused-${paused.computerName}", NOTIFICATION_ID, notification) }
    }

    override fun onClosed(id: ULong, reason: ApprovalClosed) {
        notifications.cancel(tag(id), NOTIFICATION_ID)
        onClosed?.invoke(id)
    }

    companion object {
        const val EXTRA_ID = "com.pocketkey.app.APPROVAL_ID"
        private const val CHANNEL = "approvals"
        private const val NOTIFICATION_ID = 1

        fun tag(id: ULong) = "approval-$id"

        /** Makes each prompt's PendingIntents distinct (extras alone do not). */
        private fun promptUri(id: ULong): Uri = Uri.parse("pocketkey-approval:$id")

        fun title(p: ApprovalPrompt): String = PromptText.of(p).title

        fun detail(p: ApprovalPrompt): String = PromptText.of(p).detail

        /** The sentence to show for an answer, if any. */
        fun message(result: AnswerResult): String? = when (result) {
            is AnswerResult.Answered -> result.notice
            is AnswerResult.Refused -> result.message
        }
    }
}

/** A notification's Deny action. */
class ApprovalActionReceiver : BroadcastReceiver() {
    override fun onReceive(context: Context, intent: Intent) {
        val app = context.applicationContext as PocketKeyApp
        val id = intent.getLongExtra(ApprovalNotifier.EXTRA_ID, 0).toULong()
        ApprovalNotifier.message(app.model.approvals.deny(id))?.let { Toast.makeText(context, it, Toast.LENGTH_SHORT).show() }
        // If the prompt had ended (process restarted), its notification is stale: remove it.
        NotificationManagerCompat.from(context).cancel(ApprovalNotifier.tag(id), 1)
    }
}
