package com.pocketkey.applogic

import com.pocketkey.core.ApprovalAnswer
import com.pocketkey.core.ApprovalClosed
import com.pocketkey.core.ApprovalListener
import com.pocketkey.core.ApprovalListenerException
import com.pocketkey.core.ApprovalPrompt
import com.pocketkey.core.PocketKeyException
import com.pocketkey.core.SecurityKey
import java.util.concurrent.CopyOnWriteArrayList

/** What the phone's user verification (BiometricPrompt on Android) reported. */
enum class Verification {
    /**
     * The OS verified the user (biometric or screen lock) and unlocked the UV key for this one
     * use: the queue signs the prompt's challenge through the [UvKeyProvider].
     */
    VERIFIED,

    /** The OS locked verification out after failed attempts. */
    FAILED,

    /** The user dismissed the verification sheet. */
    CANCELLED,

    /**
     * The phone has no screen lock or biometric enrolled: nothing can verify the user. Not a
     * failed verification: answering `VerificationFailed` would burn the key's UV retries
     * (CTAP 2.1 §6.5.5.7) for something the user never attempted.
     */
    NOT_AVAILABLE,
}

/** Shows and hides prompts: the notification on Android, a recorder in tests. */
interface ApprovalObserver {
    /**
     * A new prompt. Throw [ApprovalListenerException.Failed] when it cannot be shown
     * (notifications off): the engine denies at once instead of letting the computer wait.
     */
    fun onPrompt(prompt: ApprovalPrompt)

    /** The prompt ended (answered, timed out, cancelled): remove what shows it. */
    fun onClosed(id: ULong, reason: ApprovalClosed)
}

/** How answering a prompt went. */
sealed class AnswerResult {
    /** The engine took [answer]; [notice], when set, is a sentence to show (e.g. why it was denied). */
    data class Answered(val answer: ApprovalAnswer, val notice: String? = null) : AnswerResult()

    /** The engine refused it (the prompt had ended, an account out of range): show [message]. */
    data class Refused(val message: String) : AnswerResult()
}

private const val ENDED = "That approval has already ended"

const val NO_VERIFICATION_NOTICE =
    "This phone has no screen lock, so PocketKey cannot verify you: set a screen lock to approve this"

/**
 * The approval queue: the engine's [ApprovalListener]. Prompts wait here, by id, until the
 * notification's actions answer them through [approve] or [deny] (from any thread). A verified
 * approval is signed with [uvKeys] (null: the phone has no UV key).
 */
class ApprovalQueue(private val uvKeys: UvKeyProvider?) : ApprovalListener {
    private val open = LinkedHashMap<ULong, ApprovalPrompt>()
    private val observers = CopyOnWriteArrayList<ApprovalObserver>()

    @Volatile private var key: SecurityKey? = null

    /** The key the answers go to; set once it is open. */
    fun attach(key: SecurityKey?) {
        this.key = key
    }

    fun addObserver(observer: ApprovalObserver) {
        observers += observer
    }

    fun removeObserver(observer: ApprovalObserver) {
        observers -= observer
    }

    /** The prompts waiting for an answer, oldest first. */
    fun pending(): List<ApprovalPrompt> = synchronized(open) { open.values.toList() }

    fun prompt(id: ULong): ApprovalPrompt? = synchronized(open) { open[id] }

    override fun onApprovalRequested(request: ApprovalPrompt) {
        synchronized(open) { open[request.id] = request }
        try {
            observers.forEach { it.onPrompt(request) }
        } catch (e: ApprovalListenerException) {
            synchronized(open) { open.remove(request.id) }
            throw e
        } catch (e: RuntimeException) {
            synchronized(open) { open.remove(request.id) }
            throw ApprovalListenerException.Failed(e.toString())
        }
    }

    override fun onApprovalClosed(id: ULong, reason: ApprovalClosed) {
        synchronized(open) { open.remove(id) }
        observers.forEach { runCatching { it.onClosed(id, reason) } }
    }

    /** The notification's Deny action, or a dismissed account choice. */
    fun deny(id: ULong): AnswerResult = send(id, ApprovalAnswer.Deny)

    /**
     * Approve, after the platform's verification said [verification]; [account] is the index
     * the user picked in the prompt's `accounts` (null when none were offered).
     */
    fun approve(id: ULong, account: UInt?, verification: Verification): AnswerResult {
        val prompt = prompt(id)
        return when (verification) {
            Verification.VERIFIED -> verified(id, account, prompt)
            Verification.FAILED -> send(id, ApprovalAnswer.VerificationFailed)
            Verification.CANCELLED -> send(id, ApprovalAnswer.Deny)
            // Presence is all a phone without a screen lock can give; where verification is
            // required the answer is a plain denial (CTAP2_ERR_OPERATION_DENIED), no retry spent.
            Verification.NOT_AVAILABLE ->
                if (prompt != null && !prompt.verificationRequired) {
                    send(id, ApprovalAnswer.ApprovePresent(account))
                } else {
                    when (val r = send(id, ApprovalAnswer.Deny)) {
                        is AnswerResult.Answered -> r.copy(notice = NO_VERIFICATION_NOTICE)
                        is AnswerResult.Refused -> r
                    }
                }
        }
    }

    /**
     * The UV key's signature over the prompt's challenge is the proof the engine checks. If it
     * will not sign (the OS invalidated it), presence is still true where only presence was
     * asked; where verification is required it is a denial — not a failed verification,
     * which would spend the key's UV retries for something the user did not do.
     */
    private fun verified(id: ULong, account: UInt?, prompt: ApprovalPrompt?): AnswerResult {
        prompt ?: return AnswerResult.Refused(ENDED)
        val signature = try {
            uvKeys?.sign(prompt.uvChallenge)
        } catch (e: Exception) {
            null
        }
        return when {
            signature != null -> send(id, ApprovalAnswer.ApproveVerified(account, signature))
            !prompt.verificationRequired -> send(id, ApprovalAnswer.ApprovePresent(account))
            else -> when (val r = send(id, ApprovalAnswer.Deny)) {
                is AnswerResult.Answered -> r.copy(notice = UV_KEY_NOTICE)
                is AnswerResult.Refused -> r
            }
        }
    }

    private fun send(id: ULong, answer: ApprovalAnswer): AnswerResult {
        val key = key ?: return AnswerResult.Refused(ENDED)
        return try {
            key.answer(id, answer)
            AnswerResult.Answered(answer)
        } catch (e: PocketKeyException) {
            AnswerResult.Refused(e.userMessage())
        }
    }
}
