package com.pocketkey.applogic

import com.pocketkey.core.PushRegistration
import java.util.concurrent.ConcurrentHashMap

/** Where the app keeps its own preferences: SharedPreferences on Android, a map in tests. */
interface SettingsStore {
    fun get(name: String): String?

    /** Stores [value]; null removes it. */
    fun put(name: String, value: String?)
}

class MemorySettingsStore : SettingsStore {
    private val values = ConcurrentHashMap<String, String>()

    override fun get(name: String): String? = values[name]

    override fun put(name: String, value: String?) {
        if (value == null) values.remove(name) else values[name] = value
    }
}

/** The app's settings screen, over a [SettingsStore]. */
class Settings(private val store: SettingsStore, private val defaultPhoneName: String) {
    /** What computers show for this phone (pairing, approvals). */
    var phoneName: String
        get() = store.get(PHONE_NAME) ?: defaultPhoneName
        set(value) = store.put(PHONE_NAME, value.trim().ifEmpty { null })

    /** Developer mode: accept `ws://` relays off loopback when pairing. */
    var allowInsecureRelay: Boolean
        get() = store.get(INSECURE_RELAY) == "1"
        set(value) = store.put(INSECURE_RELAY, if (value) "1" else null)

    /** The hybrid tunnel server instead of the browser's own (self-hosting, tests); null: default. */
    var tunnelUrl: String?
        get() = store.get(TUNNEL_URL)
        set(value) = store.put(TUNNEL_URL, value?.trim()?.ifEmpty { null })

    /**
     * Where relays send this phone's wake-ups: the FCM token on Android; a webhook URL for
     * self-hosted relays and tests. Null until the platform handed out a token.
     */
    var pushTarget: PushRegistration?
        get() {
            val value = store.get(PUSH_VALUE) ?: return null
            return when (store.get(PUSH_KIND)) {
                "fcm" -> PushRegistration.Fcm(value)
                "webhook" -> PushRegistration.Webhook(value)
                else -> null
            }
        }
        set(target) {
            val (kind, value) = when (target) {
                is PushRegistration.Fcm -> "fcm" to target.token
                is PushRegistration.Webhook -> "webhook" to target.url
                is PushRegistration.Apns, null -> null to null
            }
            store.put(PUSH_KIND, kind)
            store.put(PUSH_VALUE, value)
        }

    /** Forgets everything but the phone's name (factory reset of the key). */
    fun clearKeyState() {
        store.put(PUSH_KIND, null)
        store.put(PUSH_VALUE, null)
    }

    private companion object {
        const val PHONE_NAME = "phone_name"
        const val INSECURE_RELAY = "allow_insecure_relay"
        const val TUNNEL_URL = "tunnel_url"
        const val PUSH_KIND = "push_kind"
        const val PUSH_VALUE = "push_value"
    }
}
