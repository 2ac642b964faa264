import Foundation
import PocketKeyCore

/// What the user decided about a prompt (in the app's sheet or a notification action).
public enum ApprovalDecision: Equatable, Sendable {
    /// Approve; `account` indexes the prompt's `accounts` when it offered several.
    case approve(account: UInt32?)
    case deny
}

/// What answering a prompt came to.
public enum ApprovalResult: Equatable, Sendable {
    /// The key got this answer.
    case answered(ApprovalAnswer)
    /// Verification was required but this phone cannot verify its user (no passcode): the
    /// request was denied without spending a verification retry.
    case verificationNotAvailable
    /// The user was verified but the UV key would not sign (the OS invalidated it): the
    /// request was denied, without spending a verification retry.
    case verificationKeyUnusable
    /// The OS invalidated the UV key (the biometric set changed): the request was denied
    /// without spending a verification retry, and `state.uvKeyNeedsRenewal` asks the user to
    /// set verification up again (`renewUvKey()`).
    case verificationKeyInvalidated
    /// The prompt had already ended (answered, timed out, cancelled).
    case ended
}

extension PocketKeyModel {
    func apply(_ event: ApprovalEvent) {
        switch event {
        case let .requested(prompt):
            update { $0.prompts.append(prompt) }
        case let .closed(id, _):
            update { $0.prompts.removeAll { $0.id == id } }
            // A registration may have added a passkey. The prompt closes before the engine
            // stores it, so this read can come too early: screens showing passkeys also call
            // `refresh()` when they appear, and `handlePush` refreshes once it has served.
            Task { await self.refresh() }
        }
    }

    /// Answers prompt `id`. Approving a prompt that requires verification asks the
    /// `UserVerifier` first: verified → the UV key signs the prompt's challenge (the proof the
    /// engine checks), cancelled → deny, failed → a failed verification (it counts against the
    /// retries), not available or a UV key that will not sign → deny, and the user is told why.
    @discardableResult
    public func respond(to id: UInt64, with decision: ApprovalDecision) async -> ApprovalResult {
        guard let prompt = center.pending.first(where: { $0.id == id }) else {
            notify(PocketKeyError.UnknownApproval(id: id).userMessage())
            return .ended
        }
        var result: ApprovalResult
        switch decision {
        case .deny:
            result = .answered(.deny)
        case let .approve(account) where !prompt.verificationRequired:
            result = .answered(.approvePresent(account: account))
        case let .approve(account):
            switch await config.verifier.verify(reason: Self.reason(for: prompt)) {
            case .verified:
                do {
                    guard let uvKeys = config.uvKeys else { throw UvKeyError.invalidated }
                    let signature = try uvKeys.sign(prompt.uvChallenge)
                    result = .answered(.approveVerified(account: account, signature: signature))
                } catch UvKeyError.invalidated {
                    result = .verificationKeyInvalidated
                } catch {
                    result = .verificationKeyUnusable
                }
            case .cancelled: result = .answered(.deny)
            case .failed: result = .answered(.verificationFailed)
            case .notAvailable: result = .verificationNotAvailable
            }
        }
        let answer: ApprovalAnswer
        switch result {
        case let .answered(a): answer = a
        default: answer = .deny
        }
        do {
            try center.answer(id, with: answer)
        } catch {
            notify(error.pocketKeyUserMessage)
            return .ended
        }
        if result == .verificationNotAvailable {
            notify(Self.verificationNotAvailableMessage)
        }
        if result == .verificationKeyUnusable {
            notify(Self.verificationKeyUnusableMessage)
        }
        if result == .verificationKeyInvalidated {
            update {
                $0.uvKeyNeedsRenewal = true
                $0.notice = Self.verificationKeyInvalidatedMessage
            }
        }
        return result
    }

    /// A notification action (`ApprovalNotification.approveAction` / `denyAction`) on the
    /// notification whose `userInfo` it was. Nil when it is not ours or not an answer (the
    /// notification itself was tapped: the app opens and shows the prompt).
    public func handleNotificationAction(_ actionIdentifier: String, userInfo: [AnyHashable: Any]) async
        -> ApprovalResult?
    {
        guard let id = ApprovalNotification.promptId(from: userInfo) else { return nil }
        switch actionIdentifier {
        case ApprovalNotification.approveAction: return await respond(to: id, with: .approve(account: nil))
        case ApprovalNotification.denyAction: return await respond(to: id, with: .deny)
        default: return nil
        }
    }

    public static let verificationKeyUnusableMessage =
        "PocketKey's verification key could not be used (Face ID or Touch ID changed?), so the request was declined. "
        + "Open PocketKey to set up verification again."

    public static let verificationKeyInvalidatedMessage =
        "Face ID or Touch ID changed on this phone, so PocketKey's verification key stopped working "
        + "and the request was declined. Open PocketKey and set up verification again."

    public static let verificationNotAvailableMessage =
        "This request needs Face ID, Touch ID or the phone's passcode, and this phone has none set up. "
        + "It was declined. Set a passcode in Settings to approve such requests."

    /// The sentence the system's verification sheet shows.
    static func reason(for prompt: ApprovalPrompt) -> String {
        if let onBehalf = ApprovalNotification.onBehalfSentence(prompt) { return onBehalf }
        let site = prompt.rpId ?? prompt.requester
        switch prompt.operation {
        case .register, .u2fRegister: return "Create a passkey for \(site)"
        case .signIn, .u2fSignIn: return "Sign in to \(site)"
        case .reset: return "Erase the security key"
        case .verifyUser, .select: return "Confirm it is you (\(prompt.requester))"
        }
    }
}
