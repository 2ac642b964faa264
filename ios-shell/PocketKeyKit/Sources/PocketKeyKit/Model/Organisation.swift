import Foundation
import PocketKeyCore

/// The organisation this key belongs to, as the home screen shows it.
public struct OrganisationInfo: Equatable, Sendable {
    public var name: String
    public var status: OrganisationStatus
    /// The administrator's reason for a suspension or revocation.
    public var reason: String?

    public init(name: String, status: OrganisationStatus, reason: String? = nil) {
        self.name = name
        self.status = status
        self.reason = reason
    }

    /// The sentence to show: who manages the key, or why the organisation's sites are refused.
    public var message: String {
        let because = reason.map { ": \($0)" } ?? ""
        switch status {
        case .active:
            return "This key is managed by \(name)."
        case .suspended:
            return "Your organisation suspended this key\(because). "
                + "\(name)'s sites are refused until it is resumed; your own passkeys still work."
        case .revoked:
            return "Your organisation revoked this key\(because). "
                + "It no longer signs in to \(name)'s sites; your own passkeys still work."
        }
    }
}

/// Why an activation link did not activate, as a kind the screen can act on, the engine's
/// sentence, and what the person can do next.
public struct ActivationFailure: Equatable, Sendable {
    public enum Problem: Equatable, Sendable {
        case expired, used, revoked, network, notValid, damagedLink, alreadyActivated, refused
    }

    public var problem: Problem
    public var message: String
    public var nextStep: String

    static let askIT = "Ask your IT department to send you a new invite."

    init(_ error: PocketKeyError) {
        message = error.userMessage()
        let (problem, nextStep) = Self.kind(of: error)
        self.problem = problem
        self.nextStep = nextStep
    }

    private static func kind(of error: PocketKeyError) -> (Problem, String) {
        switch error {
        case .ActivationExpired:
            return (.expired, askIT)
        case .ActivationUsed:
            return (.used, "Each invite activates one phone. If that was not you, tell your IT department; \(askIT)")
        case .ActivationRevoked:
            return (.revoked, "Contact your IT department if you think this is a mistake.")
        case .OrganisationUnreachable:
            return (.network, "Check that the phone is online, then open the link again.")
        case .ActivationLinkNotValid:
            return (.notValid,
                    "Open the link in your newest invite e-mail; an invite sent again replaces the earlier link. \(askIT)")
        case .InvalidActivationLink:
            return (.damagedLink, "Open the Activate link from the invite e-mail again, or scan its QR code.")
        case .AlreadyActivated:
            return (.alreadyActivated, "Nothing to do: this key is already set up.")
        default:
            return (.refused, "Try again later; if it keeps failing, tell your IT department.")
        }
    }
}

extension PocketKeyModel {
    /// Joins the organisation whose invite `url` is (a scanned QR code or an opened link,
    /// Universal Links included): `state.organisation` then names it.
    func activate(url: String) async -> ScanOutcome {
        guard let key else { return .failed(.Internal(detail: ModelError.notOpen.localizedDescription)) }
        let deviceName = state.settings.phoneName
        do {
            let name = try await offThread { try key.activate(link: url, deviceName: deviceName) }
            let info = OrganisationInfo(name: name, status: .active)
            update { $0.organisation = info }
            return .activated(info)
        } catch let error as PocketKeyError {
            return .activationFailed(ActivationFailure(error))
        } catch {
            return .failed(.Internal(detail: error.localizedDescription))
        }
    }

    /// Asks the key's organisation where the key stands and applies it (a suspended or
    /// revoked key refuses the organisation's sites); `state.organisation` shows the answer.
    /// Runs at `start()` and after each push wake-up (the organisation's carry no data). A key
    /// of no organisation asks nothing; an unreachable server leaves the last state and
    /// sets the notice.
    public func syncOrganisation() async {
        guard let key else { return }
        do {
            let answer = try await offThread { try key.syncOrganisation() }
            let info = OrganisationInfo(name: answer.name, status: answer.status, reason: answer.reason)
            update { $0.organisation = info }
            if answer.status != .active {
                notify(info.message)
            }
        } catch PocketKeyError.NoOrganisation {
            update { $0.organisation = nil }
        } catch {
            notify(error.pocketKeyUserMessage)
        }
    }
}
