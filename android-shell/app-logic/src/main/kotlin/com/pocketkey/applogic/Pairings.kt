package com.pocketkey.applogic

import com.pocketkey.core.PairingInfo
import com.pocketkey.core.PairingListener
import com.pocketkey.core.PocketKeyException
import com.pocketkey.core.SecurityKey

/** The result of an action on the key that the user started: done, or a sentence to show. */
sealed class Outcome<out T> {
    data class Done<T>(val value: T) : Outcome<T>()

    data class Error(val message: String, val error: PocketKeyException) : Outcome<Nothing>()
}

/** Runs [block], turning the engine's errors into [Outcome.Error] with the user's sentence. */
inline fun <T> attempt(block: () -> T): Outcome<T> = try {
    Outcome.Done(block())
} catch (e: PocketKeyException) {
    Outcome.Error(e.userMessage(), e)
}

/**
 * The pairing list screen (rename, unpair, suspended → resume) and the connection that serves
 * every paired computer while the app keeps it up ([startListening]).
 */
class Pairings(private val key: SecurityKey, private val settings: Settings) {
    private var listener: PairingListener? = null

    fun list(): Outcome<List<PairingInfo>> = attempt { key.pairings() }

    /** False when there was no such pairing (removed meanwhile). */
    fun rename(id: String, name: String): Outcome<Boolean> = attempt { key.renamePairing(id, name) }

    /**
     * Unpairs, then serves the remaining computers. Blocks on the network: not on the main thread.
     * The listener is stopped first: the engine tells the computer in a session on the
     * pairing's mailbox, which a running listener holds; otherwise only the relay would be
     * told, and a computer cannot trust the relay's word (docs/pairing-protocol.md §3.4), so
     * it would keep the pairing suspended instead of deleting it.
     */
    fun unpair(id: String): Outcome<Boolean> {
        val wasListening = isListening
        if (wasListening) stopListening()
        return attempt { key.unpair(id) }.also { if (wasListening) startListening() }
    }

    /** A suspended pairing (the relay said it was removed) served again. */
    fun resume(id: String): Outcome<Boolean> = attempt { key.resumePairing(id) }.also { restartIfListening() }

    val isListening: Boolean get() = synchronized(this) { listener != null }

    /** Serves every paired computer (one connection each) until [stopListening]. */
    fun startListening() = synchronized(this) {
        if (listener == null) listener = key.listen(settings.phoneName)
    }

    fun stopListening() {
        val running = synchronized(this) { listener.also { listener = null } }
        running?.stop()
        running?.close()
    }

    /** After the set of pairings changed: a running listener only serves the pairings it started with. */
    fun restartIfListening() {
        if (!isListening) return
        stopListening()
        startListening()
    }
}
