import Foundation
import PocketKeyCore

/// What `PocketKeyModel.handleScan` did with a scanned code or opened link.
public enum ScanOutcome: Equatable, Sendable {
    /// Paired with the computer (its user confirmed the code the app showed).
    case paired(PairingInfo)
    /// A hybrid session started (only where the platform can advertise it).
    case hybridStarted
    /// A browser's `FIDO:/` code, on a phone whose apps cannot send the BLE advert hybrid needs
    /// (iOS lets apps advertise only a local name and service UUIDs, not service data).
    case hybridNotSupported(message: String)
    /// An organisation's activation link joined it.
    case activated(OrganisationInfo)
    /// An activation link that did not activate: what happened and what to do next.
    case activationFailed(ActivationFailure)
    /// Not accepted: not ours, damaged, or a pairing code from a link.
    case rejected(ScanError)
    /// Recognised, but pairing or starting hybrid failed.
    case failed(PocketKeyError)

    /// The sentence to show for this outcome, if any.
    public var message: String? {
        switch self {
        case let .paired(info): return "Paired with \(info.computerName)"
        case .hybridStarted: return nil
        case let .hybridNotSupported(message): return message
        case let .activated(organisation): return organisation.message
        case let .activationFailed(failure): return "\(failure.message). \(failure.nextStep)"
        case let .rejected(error): return error.userMessage()
        case let .failed(error): return error.userMessage()
        }
    }

    public static let hybridNotSupportedMessage =
        "iPhone apps cannot send the Bluetooth advert a browser's passkey QR code needs. "
        + "Pair this phone with the computer instead, or use the iPhone's own passkey sign-in."
}
