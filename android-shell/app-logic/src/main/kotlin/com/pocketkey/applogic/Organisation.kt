package com.pocketkey.applogic

import com.pocketkey.core.OrganisationStatus
import com.pocketkey.core.PocketKeyException
import com.pocketkey.core.SecurityKey

/** The organisation this key belongs to, as the home screen shows it. */
data class OrganisationView(val name: String, val status: OrganisationStatus, val reason: String?) {
    /** The sentence to show: "Managed by Acme", or why the organisation's sites are refused. */
    val message: String
        get() = when (status) {
            OrganisationStatus.ACTIVE -> "This key is managed by $name."
            OrganisationStatus.SUSPENDED -> "Your organisation suspended this key${because()}. " +
                "$name's sites are refused until it is resumed; your own passkeys still work."
            OrganisationStatus.REVOKED -> "Your organisation revoked this key${because()}. " +
                "It no longer signs in to $name's sites; your own passkeys still work."
        }

    private fun because() = reason?.let { ": $it" } ?: ""
}

/** Why an activation did not happen, in kinds the screen can act on. */
enum class ActivationProblem { EXPIRED, USED, REVOKED, NETWORK, NOT_VALID, DAMAGED_LINK, ALREADY_ACTIVATED, REFUSED }

/** A failed activation: what happened ([message]) and what the person can do about it ([nextStep]). */
data class ActivationError(val problem: ActivationProblem, val message: String, val nextStep: String, val error: PocketKeyException)

/** What the last organisation check came to. */
sealed class OrgSync {
    /** The key belongs to no organisation: nothing was asked. */
    object NotManaged : OrgSync()

    data class Synced(val organisation: OrganisationView) : OrgSync()

    /** The server could not be asked (offline) or refused: [message]; the last known state stays. */
    data class Failed(val message: String, val error: PocketKeyException) : OrgSync()
}

/**
 * The phone's side of the organisation (docs/org.md): an invite's activation link (scanned or
 * opened) joins it, and [sync] asks where the key stands: at app start and on each push
 * wake-up. Both block on the network: call them off the main thread.
 */
class Organisation(private val key: SecurityKey, private val deviceName: () -> String) {
    /** The last state learnt (activation or sync); null: none yet, or not managed. */
    @Volatile var current: OrganisationView? = null
        private set

    /** What the last [sync] came to (null: none ran yet). */
    @Volatile var lastSync: OrgSync? = null
        private set

    /** Joins the organisation whose invite [url] is (as `classifyScan` returned it). */
    fun activate(url: String): ScanOutcome = try {
        val name = key.activate(url, deviceName())
        ScanOutcome.Activated(OrganisationView(name, OrganisationStatus.ACTIVE, null).also { current = it })
    } catch (e: PocketKeyException) {
        ScanOutcome.ActivationFailed(activationError(e))
    }

    /**
     * Asks the organisation where this key stands and applies it (a suspended or revoked key
     * refuses the organisation's sites). A key that belongs to no organisation asks nothing.
     */
    fun sync(): OrgSync = try {
        val state = key.syncOrganisation()
        OrgSync.Synced(OrganisationView(state.name, state.status, state.reason).also { current = it })
    } catch (e: PocketKeyException.NoOrganisation) {
        current = null
        OrgSync.NotManaged
    } catch (e: PocketKeyException) {
        OrgSync.Failed(e.userMessage(), e)
    }.also { lastSync = it }
}

private const val ASK_IT = "Ask your IT department to send you a new invite."

/** The engine's typed activation errors as a kind, a sentence and a next step. */
fun activationError(e: PocketKeyException): ActivationError {
    val (problem, next) = when (e) {
        is PocketKeyException.ActivationExpired -> ActivationProblem.EXPIRED to ASK_IT
        is PocketKeyException.ActivationUsed -> ActivationProblem.USED to
            "Each invite activates one phone. If that was not you, tell your IT department; $ASK_IT"
        is PocketKeyException.ActivationRevoked -> ActivationProblem.REVOKED to
            "Contact your IT department if you think this is a mistake."
        is PocketKeyException.OrganisationUnreachable -> ActivationProblem.NETWORK to
            "Check that the phone is online, then open the link again."
        is PocketKeyException.ActivationLinkNotValid -> ActivationProblem.NOT_VALID to
            "Open the link in your newest invite e-mail; an invite sent again replaces the earlier link. $ASK_IT"
        is PocketKeyException.InvalidActivationLink -> ActivationProblem.DAMAGED_LINK to
            "Open the Activate link from the invite e-mail again, or scan its QR code."
        is PocketKeyException.AlreadyActivated -> ActivationProblem.ALREADY_ACTIVATED to
            "Nothing to do: this key is already set up."
        else -> ActivationProblem.REFUSED to "Try again later; if it keeps failing, tell your IT department."
    }
    return ActivationError(problem, e.userMessage(), next, e)
}
