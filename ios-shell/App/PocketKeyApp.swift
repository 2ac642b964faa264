// The iOS app target (SwiftUI): thin glue over PocketKeyKit's PocketKeyModel. NOT built in
// CI: Linux has no UIKit/SwiftUI/UserNotifications/LocalAuthentication/AVFoundation. See
// ../README.md for how to put these files into an Xcode app target.
import PocketKeyKit
import SwiftUI
import UIKit
import UserNotifications

@main
struct PocketKeyApp: App {
    @UIApplicationDelegateAdaptor(AppDelegate.self) private var appDelegate
    @StateObject private var app = AppModel.shared
    @Environment(\.scenePhase) private var scenePhase

    var body: some Scene {
        WindowGroup {
            ContentView()
                .environmentObject(app)
                // Custom-scheme links (pocketkey://activate…) and the system camera's hand-over.
                .onOpenURL { url in app.scan(url.absoluteString, source: .link) }
                // Universal Links (https://<org>/activate?token=…; the Associated Domains
                // entitlement lists the hosts).
                .onContinueUserActivity(NSUserActivityTypeBrowsingWeb) { activity in
                    if let url = activity.webpageURL { app.scan(url.absoluteString, source: .link) }
                }
                .task { await app.start() }
        }
        .onChange(of: scenePhase) { phase in app.sceneBecame(active: phase == .active) }
    }
}

/// Notification actions and push registration must be wired at launch: a notification
/// action or a push may be what launches the app.
final class AppDelegate: NSObject, UIApplicationDelegate {
    func application(
        _ application: UIApplication,
        didFinishLaunchingWithOptions launchOptions: [UIApplication.LaunchOptionsKey: Any]? = nil
    ) -> Bool {
        ApprovalNotifications.shared.register(answering: AppModel.shared.model)
        application.registerForRemoteNotifications()
        return true
    }

    func application(_ application: UIApplication, didRegisterForRemoteNotificationsWithDeviceToken deviceToken: Data) {
        #if DEBUG
        let sandbox = true  // development builds get tokens of the APNs sandbox
        #else
        let sandbox = false
        #endif
        Task { await AppModel.shared.model.registerAPNs(deviceToken: deviceToken, sandbox: sandbox) }
    }

    /// The relay's wake-up (a background push). `handlePush` serves the computer; its approval
    /// shows as a local notification in the approval category; the user taps it.
    func application(
        _ application: UIApplication, didReceiveRemoteNotification userInfo: [AnyHashable: Any],
        fetchCompletionHandler completionHandler: @escaping (UIBackgroundFetchResult) -> Void
    ) {
        Task {
            let outcome = await AppModel.shared.model.handlePush(userInfo: userInfo)
            switch outcome {
            case .served, .organisation: completionHandler(.newData)
            case .ignored, .paused: completionHandler(.noData)
            }
        }
    }
}
