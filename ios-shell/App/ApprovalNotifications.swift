import Foundation
import PocketKeyKit
import UserNotifications

/// Local notifications for approval prompts, with Approve and Deny actions that answer the
/// prompt by id (the id travels in the notification's userInfo).
final class ApprovalNotifications: NSObject, UNUserNotificationCenterDelegate {
    static let shared = ApprovalNotifications()

    /// Prompts that need Face ID: Approve opens the app (LocalAuthentication needs it).
    static let verifyCategory = "POCKETKEY_APPROVAL_VERIFY"
    /// Prompts where presence is enough: Approve works from the lock screen once unlocked.
    static let presenceCategory = "POCKETKEY_APPROVAL_PRESENCE"
    static let approveAction = "POCKETKEY_APPROVE"
    static let denyAction = "POCKETKEY_DENY"
    private static let idKey = "approvalId"

    private weak var model: AppModel?

    func register(answering model: AppModel) {
        self.model = model
        let center = UNUserNotificationCenter.current()
        let deny = UNNotificationAction(identifier: Self.denyAction, title: "Deny", options: [.destructive])
        let approveVerified = UNNotificationAction(
            identifier: Self.approveAction, title: "Approve", options: [.authenticationRequired, .foreground])
        let approvePresent = UNNotificationAction(
            identifier: Self.approveAction, title: "Approve", options: [.authenticationRequired])
        center.setNotificationCategories([
            UNNotificationCategory(identifier: Self.verifyCategory, actions: [approveVerified, deny],
                                   intentIdentifiers: [], options: []),
            UNNotificationCategory(identifier: Self.presenceCategory, actions: [approvePresent, deny],
                                   intentIdentifiers: [], options: []),
        ])
        center.delegate = self
        center.requestAuthorization(options: [.alert, .sound, .badge]) { _, _ in }
    }

    func show(_ prompt: ApprovalPrompt) {
        let content = UNMutableNotificationContent()
        let site = prompt.rpId ?? "a website"
        switch prompt.operation {
        case .register, .u2fRegister: content.title = "Create a passkey for \(site)?"
        case .signIn, .u2fSignIn: content.title = "Sign in to \(site)?"
        case .reset: content.title = "Erase this security key?"
        case .verifyUser, .select: content.title = "Use this security key?"
        }
        let who = prompt.userDisplayName ?? prompt.userName
        content.body = [who, "Requested by \(prompt.requester)"].compactMap { $0 }.joined(separator: " · ")
        content.categoryIdentifier = prompt.verificationRequired ? Self.verifyCategory : Self.presenceCategory
        content.userInfo = [Self.idKey: String(prompt.id)]
        let request = UNNotificationRequest(identifier: Self.identifier(prompt.id), content: content, trigger: nil)
        UNUserNotificationCenter.current().add(request)
    }

    func remove(id: UInt64) {
        let center = UNUserNotificationCenter.current()
        center.removePendingNotificationRequests(withIdentifiers: [Self.identifier(id)])
        center.removeDeliveredNotifications(withIdentifiers: [Self.identifier(id)])
    }

    private static func identifier(_ id: UInt64) -> String { "approval-\(id)" }

    // MARK: UNUserNotificationCenterDelegate

    func userNotificationCenter(
        _ center: UNUserNotificationCenter, willPresent notification: UNNotification,
        withCompletionHandler completionHandler: @escaping (UNNotificationPresentationOptions) -> Void
    ) {
        completionHandler([.banner, .list, .sound])
    }

    func userNotificationCenter(
        _ center: UNUserNotificationCenter, didReceive response: UNNotificationResponse,
        withCompletionHandler completionHandler: @escaping () -> Void
    ) {
        let info = response.notification.request.content.userInfo
        guard let text = info[Self.idKey] as? String, let id = UInt64(text) else {
            completionHandler()
            return
        }
        let approve: Bool
        switch response.actionIdentifier {
        case Self.approveAction: approve = true
        case Self.denyAction: approve = false
        default:
            // The notification itself was tapped: the app opens and shows the prompt in its sheet.
            completionHandler()
            return
        }
        Task { @MainActor in
            await self.model?.answer(id: id, approve: approve)
            completionHandler()
        }
    }
}
