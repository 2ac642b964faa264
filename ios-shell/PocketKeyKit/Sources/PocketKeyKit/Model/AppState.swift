import Foundation
import PocketKeyCore

/// Everything the app's screens show, as one value. `PocketKeyModel` publishes a new one after
/// every change (`PocketKeyModel.states()`); SwiftUI views read it through the app's
/// `ObservableObject`, tests wait on it.
public struct AppState: Equatable, Sendable {
    /// Whether the security key could be opened, and if not, what the user can do.
    public enum Phase: Equatable, Sendable {
        /// `start()` has not finished opening the key yet.
        case starting
        /// The key is open: every screen works.
        case ready
        /// The keychain did not hand out the master key (for example before the first unlock
        /// after a restart). Nothing is lost: `start()` again later.
        case keyUnavailable(message: String)
        /// The stored passkeys were sealed under another master key (the app's data was
        /// restored onto another phone, whose keychain has a different key) or the keychain
        /// holds a damaged key. They cannot be read on this phone: offer `resetStorage()`.
        case needsReset(message: String)
        /// Any other failure to open (disk full, damaged database): show the message.
        case failed(message: String)
    }

    /// A pairing that is under way (`handleScan` of a computer's pairing code).
    public enum PairingProgress: Equatable, Sendable {
        /// Reaching the computer through its relay.
        case connecting(computerHint: String?)
        /// Show these six digits: the computer's user compares them and confirms there.
        case confirm(code: String)
    }

    /// The last hybrid session started from a `FIDO:/` code.
    public enum HybridStatus: Equatable, Sendable {
        case running
        case finished(requests: UInt32)
        case failed(message: String)
    }

    public var phase: Phase = .starting
    public var info: KeyInfo?
    /// Why the UV key could not be registered at the last start or reset (nil: it was, or the
    /// app has none); without it computers are offered only the key's PIN.
    public var uvKeyProblem: String?
    /// The OS invalidated the UV key (the biometric set changed): verified approvals are
    /// declined until the user sets verification up again (`PocketKeyModel.renewUvKey()`).
    public var uvKeyNeedsRenewal = false
    /// Passkeys by site.
    public var sites: [Site] = []
    /// Paired computers, newest first (suspended ones included, flagged).
    public var pairings: [PairingInfo] = []
    /// Approval prompts waiting for the user, oldest first.
    public var prompts: [ApprovalPrompt] = []
    public var pairing: PairingProgress?
    public var hybrid: HybridStatus?
    /// Whether the app keeps a connection to every paired computer (while in the foreground).
    public var listening = false
    /// The computers' relays and the organisation that did not take this phone's push address
    /// at the last registration: `.tryLater` ones are registered again by
    /// `retryPushRegistration()` (the app calls it when it comes to the foreground), `.refused`
    /// ones were told to the user (`notice`) and are not retried with the same address.
    public var pushNotRegistered: [PushNotRegistered] = []
    /// Computers whose wake-ups are ignored for now (too many asked nothing), with the Unix
    /// time until when.
    public var pausedComputers: [String: UInt64] = [:]
    /// The organisation the key belongs to (activation, then each sync); nil: none.
    public var organisation: OrganisationInfo?
    /// A sentence for an alert or banner; the app clears it with `dismissNotice()`.
    public var notice: String?
    public var settings = AppSettings()

    public init() {}
}
