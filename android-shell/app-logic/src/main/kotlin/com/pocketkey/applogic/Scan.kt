package com.pocketkey.applogic

import com.pocketkey.core.Advertiser
import com.pocketkey.core.HybridSession
import com.pocketkey.core.PairingCodeListener
import com.pocketkey.core.PairingInfo
import com.pocketkey.core.PushNotRegistered
import com.pocketkey.core.PushProblem
import com.pocketkey.core.ScanException
import com.pocketkey.core.ScanSource
import com.pocketkey.core.ScannedCode
import com.pocketkey.core.SecurityKey
import com.pocketkey.core.classifyScan

/** What a scanned code or an opened link led to. */
sealed class ScanOutcome {
    /** Paired with [pairing]; [pushNotRegistered]: who did not take the push target (see [Push.notRegistered]). */
    data class Paired(val pairing: PairingInfo, val pushNotRegistered: List<PushNotRegistered>) : ScanOutcome()

    /** A hybrid session with a nearby browser runs: show progress, `cancel()` on Cancel. */
    data class HybridStarted(val session: HybridSession) : ScanOutcome()

    /** An invite's activation link joined [organisation]: show its name (and [OrganisationView.message]). */
    data class Activated(val organisation: OrganisationView) : ScanOutcome()

    /** An activation link that did not activate: show [ActivationError.message] and its next step. */
    data class ActivationFailed(val error: ActivationError) : ScanOutcome()

    /** Not a code the app takes from there (another QR code, a pairing link): show [message]. */
    data class Rejected(val message: String, val error: ScanException) : ScanOutcome()

    /** The action failed (pairing refused, relay unreachable, expired hybrid code): show [message]. */
    data class Failed(val message: String) : ScanOutcome()
}

/**
 * Scan → action, for the camera and every link the app is opened with. Blocks (pairing waits
 * for the computer's user to confirm, up to minutes): call it off the main thread.
 */
class Scanner(
    private val key: SecurityKey,
    private val settings: Settings,
    private val advertiser: Advertiser,
    private val pairings: Pairings,
    private val push: Push,
    private val organisation: Organisation,
) {
    /** [showCode] gets the six-digit confirmation code while a pairing runs. */
    fun handle(text: String, source: ScanSource, showCode: PairingCodeListener): ScanOutcome {
        val code = try {
            classifyScan(text, source)
        } catch (e: ScanException) {
            return ScanOutcome.Rejected(e.userMessage(), e)
        }
        return when (code) {
            is ScannedCode.Pairing -> pair(code.url, showCode)
            is ScannedCode.Hybrid -> when (val r = attempt { key.startHybrid(code.url, advertiser, settings.tunnelUrl) }) {
                is Outcome.Done -> ScanOutcome.HybridStarted(r.value)
                is Outcome.Error -> ScanOutcome.Failed(r.message)
            }
            // From the camera or an opened link alike (an App Link is the invite mail's button):
            // the token is single use and binds nothing until the server accepts this key.
            is ScannedCode.Activation -> organisation.activate(code.url)
        }
    }

    private fun pair(url: String, showCode: PairingCodeListener): ScanOutcome {
        val paired = attempt { key.pair(url, settings.phoneName, settings.allowInsecureRelay, showCode) }
        if (paired is Outcome.Error) return ScanOutcome.Failed(paired.message)
        val info = (paired as Outcome.Done).value
        // The new computer's relay must learn where to wake this phone, and a running
        // listener must serve the new pairing too.
        val unregistered = when (val r = push.register()) {
            is Outcome.Done -> r.value
            is Outcome.Error -> listOf(PushNotRegistered(info.computerName, PushProblem.TryLater))
        }
        pairings.restartIfListening()
        return ScanOutcome.Paired(info, unregistered)
    }
}
