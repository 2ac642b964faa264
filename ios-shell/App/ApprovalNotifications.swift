import Foundation
import PocketKeyKit
import UserNotifications

/// Local notifications for approval prompts, with Approve and Deny actions. What they say and
/// carry is `ApprovalNotification` (PocketKeyKit); the actions go to
/// `PocketKeyModel.handleNotificationAction`.
final class ApprovalNotifications: NSObject, UNUserNotificationCenterDelegate {
    static let shared = ApprovalNotifications()

    private var model: PocketKeyModel?

    /// Before the app finishes launching: tapping an action may be what launches it.
    func register(answering model: PocketKeyModel) {
        self.model = model
        let center = UNUserNotificationCenter.current()
        let deny = UNNotificationAction(
            identifier: ApprovalNotification.denyAction, title: "Deny", options: [.destructive])
        // Verification needs LocalAuthentication, which needs the app in the foreground.
        let approveVerified = UNNotificationAction(
            identifier: ApprovalNotification.approveAction, title: "Approve",
            options: [.authenticationRequired, .foreground])
        let approvePresent = UNNotificationAction(
            identifier: ApprovalNotification.approveAction, title: "Approve", options: [.authenticationRequired])
        center.setNotificationCategories([
            UNNotificationCategory(identifier: ApprovalNotification.verifyCategory,
                                   actions: [approveVerified, deny], intentIdentifiers: [], options: []),
            UNNotificationCategory(identifier: ApprovalNotification.presenceCategory,
                                   actions: [approvePresent, deny], intentIdentifiers: [], options: []),
            // A relay's alert wake-up: nothing to approve or deny yet, only the tap.
            UNNotificationCategory(identifier: ApprovalNotification.wakeCategory,
                                   actions: [], intentIdentifiers: [], options: []),
        ])
        center.delegate = self
        center.requestAuthorization(options: [.alert, .sound, .badge, .timeSensitive]) { _, _ in }
    }

    func show(_ prompt: ApprovalPrompt) {
        let n = ApprovalNotification(prompt: prompt)
        let content = UNMutableNotificationContent()
        content.title = n.title
        content.body = n.body
        content.categoryIdentifier = n.category
        content.userInfo = n.userInfo
        content.sound = .default
        // Breaks through Focus: the computer waits for the answer (needs the Time Sensitive
        // Notifications capability).
        content.interruptionLevel = .timeSensitive
        UNUserNotificationCenter.current().add(
            UNNotificationRequest(identifier: n.identifier, content: content, trigger: nil))
    }

    func remove(id: UInt64) {
        let identifier = ApprovalNotification.identifier(for: id)
        let center = UNUserNotificationCenter.current()
        center.removePendingNotificationRequests(withIdentifiers: [identifier])
        center.removeDeliveredNotifications(withIdentifiers: [identifier])
    }

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
        let userInfo = response.notification.request.content.userInfo
        let action = response.actionIdentifier
        guard let model else { return completionHandler() }
        guard ApprovalNotification.promptId(from: userInfo) != nil else {
            // Not one of our prompts: a relay's wake-up sent as an alert push (`--apns-alert`,
            // category `wakeCategory`, which has no actions, text POCKETKEY_WAKE in
            // Localizable.strings), tapped, so the app is in the foreground now. Serve the
            // computer (unless the app's listener already does); its request comes as a prompt
            // of our own, with Approve and Deny.
            completionHandler()
            if !model.state.listening {
                Task { _ = await model.handlePush(userInfo: userInfo) }
            }
            return
        }
        Task {
            _ = await model.handleNotificationAction(action, userInfo: userInfo)
            completionHandler()
        }
    }
}
