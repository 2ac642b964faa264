package com.pocketkey.applogic

import com.pocketkey.core.PushNotRegistered
import com.pocketkey.core.PushOutcome
import com.pocketkey.core.PushProblem
import com.pocketkey.core.PushRegistration
import com.pocketkey.core.SecurityKey

/** What a wake-up came to, for the foreground service's notification and the log. */
sealed class PushResult {
    /** Not ours, or for no pairing in use: nothing was done. */
    object Ignored : PushResult()

    /** [computerName] was served; [asked]: it had a request. */
    data class Served(val computerName: String, val asked: Boolean) : PushResult()

    /** [computerName]'s wake-ups are ignored until [untilUnixSeconds]: tell the user. */
    data class Paused(val computerName: String, val untilUnixSeconds: ULong) : PushResult() {
        val message: String
            get() = "$computerName woke this phone too often without asking anything; " +
                "its wake-ups are paused for now. Unpair it if you do not recognise this."
    }

    /** [organisation] woke the phone: [Push.onPayload] has synced with it. */
    data class Organisation(val organisation: String) : PushResult()

    data class Failed(val message: String) : PushResult()
}

/**
 * Push: registers the phone's push target with every paired computer's relay, and serves the
 * computer a wake-up is for. On Android the FCM token arrives in `onNewToken` and a
 * high-priority data message starts a short foreground service that calls [onMessage].
 */
class Push(
    private val key: SecurityKey,
    private val settings: Settings,
    private val organisation: Organisation,
    private val idleMs: UInt = DEFAULT_IDLE_MS,
) {
    /**
     * What the last registration left: the computers' relays and the organisation that did not
     * take the target, each `TryLater` (retried by [retryIfNeeded]) or `Refused` (for good:
     * shown to the user with [refusals], not retried with the same target).
     */
    @Volatile
    var notRegistered: List<PushNotRegistered> = emptyList()
        private set

    /** A new FCM token (`onNewToken`): stored and registered; returns who did not take it. */
    fun onNewToken(token: String): Outcome<List<PushNotRegistered>> = setTarget(PushRegistration.Fcm(token))

    /** Self-hosted relays and tests: wake-ups POSTed to [url]. */
    fun useWebhook(url: String): Outcome<List<PushNotRegistered>> = setTarget(PushRegistration.Webhook(url))

    private fun setTarget(target: PushRegistration): Outcome<List<PushNotRegistered>> {
        settings.pushTarget = target
        return register()
    }

    /**
     * Registers the stored target with every paired computer's relay and the organisation
     * (after pairing, at app start); an empty list when all took it.
     */
    fun register(): Outcome<List<PushNotRegistered>> {
        val target = settings.pushTarget ?: return Outcome.Done(emptyList())
        return attempt { key.registerPush(target) }.also { if (it is Outcome.Done) notRegistered = it.value }
    }

    /**
     * Registers the stored target again when the last registration left a relay or the
     * organisation to try later (no network, a server busy); null, with nothing sent, when
     * there is nothing to retry: none failed, or only refusals for good, which the same target
     * would meet again. The app calls it when it comes to the foreground. Blocks.
     */
    fun retryIfNeeded(): Outcome<List<PushNotRegistered>>? =
        if (notRegistered.any { it.problem is PushProblem.TryLater }) register() else null

    /** An FCM data message (`RemoteMessage.data`). Blocks until the computer is served. */
    fun onMessage(data: Map<String, String>): PushResult = onPayload(jsonObject(data))

    /**
     * A wake-up's payload as JSON (the webhook's body, the FCM data as an object). Blocks.
     * After serving the computer, asks the organisation where the key stands: its wake-ups
     * carry no data (docs/org.md), so every wake-up is also the chance to learn of a
     * revocation; first the computer, which is waiting for an answer.
     */
    fun onPayload(json: String): PushResult = serve(json).also { organisation.sync() }

    private fun serve(json: String): PushResult = when (val r = attempt { key.handlePush(json, settings.phoneName, idleMs) }) {
        is Outcome.Error -> PushResult.Failed(r.message)
        is Outcome.Done -> when (val o = r.value) {
            PushOutcome.Ignored -> PushResult.Ignored
            is PushOutcome.Served -> PushResult.Served(o.computerName, o.request)
            is PushOutcome.Paused -> PushResult.Paused(o.computerName, o.until)
            is PushOutcome.Organisation -> PushResult.Organisation(o.organisation)
        }
    }

    companion object {
        /** How long a woken phone stays for further requests of the same sign-in. */
        const val DEFAULT_IDLE_MS: UInt = 5_000u

        /** The sentence for each refusal for good in [notRegistered] (nothing for `TryLater`). */
        fun refusals(notRegistered: List<PushNotRegistered>): List<String> = notRegistered.mapNotNull { entry ->
            (entry.problem as? PushProblem.Refused)?.let { refusedMessage(entry.name, it.reason) }
        }

        fun refusedMessage(name: String, reason: String): String =
            "$name refused this phone's notification address ($reason), so it cannot wake PocketKey " +
                "while the app is closed. Keep the app open to approve its requests, or ask whoever manages $name for help."
    }
}

/** A flat string map as a JSON object. */
internal fun jsonObject(map: Map<String, String>): String =
    map.entries.joinToString(",", "{", "}") { (k, v) -> "${jsonString(k)}:${jsonString(v)}" }

private fun jsonString(s: String): String = buildString {
    append('"')
    for (c in s) {
        when {
            c == '"' -> append("\\\"")
            c == '\\' -> append("\\\\")
            c < ' ' -> append("\\u%04x".format(c.code))
            else -> append(c)
        }
    }
    append('"')
}
