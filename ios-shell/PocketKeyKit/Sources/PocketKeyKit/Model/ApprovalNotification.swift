import Foundation
import PocketKeyCore

/// What the approval notification of a prompt says and carries, and how its actions come
/// back: the platform-free half of the app's UNUserNotificationCenter code.
public struct ApprovalNotification: Equatable, Sendable {
    /// Prompts that need Face ID: Approve opens the app (LocalAuthentication needs it).
    public static let verifyCategory = "POCKETKEY_APPROVAL_VERIFY"
    /// Prompts where presence is enough: Approve answers from the lock screen once unlocked.
    public static let presenceCategory = "POCKETKEY_APPROVAL_PRESENCE"
    /// A relay's alert wake-up (`--apns-alert`: the relay's push sets this category): it
    /// offers no Approve or Deny, as there is no request to answer before the app has fetched
    /// it; tapping opens the app, which serves the computer and shows its request in one of the
    /// categories above.
    public static let wakeCategory = "POCKETKEY_APPROVAL_WAKE"
    public static let approveAction = "POCKETKEY_APPROVE"
    public static let denyAction = "POCKETKEY_DENY"
    /// The `userInfo` key holding the prompt id (a decimal string: ids are below 2^53).
    public static let idKey = "approvalId"

    /// The notification request's identifier (to replace or remove it).
    public let identifier: String
    public let title: String
    public let body: String
    public let category: String
    public let userInfo: [String: String]
    /// Set for a registration an organisation asks for on the user's behalf: the app shows
    /// it apart from a computer's requests (another title, the organisation and account named).
    public let onBehalf: OnBehalf?

    public init(prompt: ApprovalPrompt) {
        identifier = Self.identifier(for: prompt.id)
        // The site is named on the lock screen: it is what the user decides about.
        let site: String
        switch (prompt.rpName, prompt.rpId) {
        case let (name?, id?) where name != id: site = "\(name) (\(id))"
        case let (_, id?): site = id
        case let (name?, nil): site = name
        case (nil, nil): site = "a website"
        }
        onBehalf = prompt.onBehalf
        if let sentence = Self.onBehalfSentence(prompt) {
            title = sentence + "?"
            body = "A registration on your behalf · approve only if you expect it"
        } else {
            switch prompt.operation {
            case .register, .u2fRegister: title = "Create a passkey for \(site)?"
            case .signIn, .u2fSignIn: title = "Sign in to \(site)?"
            case .reset: title = "Erase this security key?"
            case .verifyUser, .select: title = "Use this security key?"
            }
            let who = prompt.userDisplayName ?? prompt.userName
            body = [who, "Requested by \(prompt.requester)"].compactMap { $0 }.joined(separator: " · ")
        }
        category = prompt.verificationRequired ? Self.verifyCategory : Self.presenceCategory
        userInfo = [Self.idKey: String(prompt.id)]
    }

    public static func identifier(for id: UInt64) -> String { "approval-\(id)" }

    /// "Acme IT asks to register this key with login.example.com for alice@acme.example", for
    /// a prompt on the user's behalf; nil for any other.
    public static func onBehalfSentence(_ prompt: ApprovalPrompt) -> String? {
        guard let onBehalf = prompt.onBehalf else { return nil }
        let site = prompt.rpId ?? "a website"
        return "\(onBehalf.organisation) asks to register this key with \(site) for \(onBehalf.account)"
    }

    /// The prompt id a notification's `userInfo` carries, if it is one of ours.
    public static func promptId(from userInfo: [AnyHashable: Any]) -> UInt64? {
        (userInfo[idKey] as? String).flatMap(UInt64.init)
    }
}
