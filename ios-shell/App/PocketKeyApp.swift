// The iOS app target (SwiftUI), a minimal skeleton over PocketKeyKit. NOT built in CI: Linux
// has no UIKit/SwiftUI/UserNotifications/LocalAuthentication. See ../README.md for how to put
// these files into an Xcode app target.
import PocketKeyKit
import SwiftUI
import UserNotifications

@main
struct PocketKeyApp: App {
    @UIApplicationDelegateAdaptor(AppDelegate.self) private var appDelegate
    @StateObject private var model = AppModel.shared

    var body: some Scene {
        WindowGroup {
            ContentView()
                .environmentObject(model)
                // Deep links (pocketkey://pair…, pocketkey://activate…, https://…/activate…)
                // go through the same entry point as the camera.
                .onOpenURL { url in model.handleScan(url.absoluteString, source: .link) }
                .task { await model.start() }
        }
    }
}

/// Notification actions must be wired before the app finishes launching, because tapping
/// Approve/Deny on a notification may be what launches it.
final class AppDelegate: NSObject, UIApplicationDelegate {
    func application(
        _ application: UIApplication,
        didFinishLaunchingWithOptions launchOptions: [UIApplication.LaunchOptionsKey: Any]? = nil
    ) -> Bool {
        ApprovalNotifications.shared.register(answering: AppModel.shared)
        return true
    }
}
