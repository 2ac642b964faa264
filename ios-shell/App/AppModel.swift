import Foundation
import LocalAuthentication
import PocketKeyKit

/// The app's state: one SecurityKey per process, its ApprovalCenter, what the screens show.
@MainActor
final class AppModel: ObservableObject {
    static let shared = AppModel()

    @Published private(set) var prompts: [ApprovalPrompt] = []
    @Published private(set) var info: KeyInfo?
    @Published private(set) var sites: [Site] = []
    /// A sentence to show in an alert (errors use their `userMessage()`).
    @Published var message: String?

    let center = ApprovalCenter()
    private(set) var key: SecurityKey?
    /// Transports (the pairing bridge, hybrid) send their CTAP bytes through this runner.
    private(set) var runner: RequestRunner?
    private var started = false

    /// Opens the key in Application Support (created on first launch) and follows its prompts.
    func start() async {
        guard !started else { return }
        started = true
        do {
            let dir = try FileManager.default
                .url(for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
                .appendingPathComponent("pocketkey", isDirectory: true)
            // `open` does file I/O and asks the Keychain: keep it off the main thread.
            let center = self.center
            let key = try await Task.detached(priority: .userInitiated) {
                try SecurityKey.open(dataDir: dir.path, keyProvider: KeychainKeyProvider(), listener: center)
            }.value
            center.attach(key)
            self.key = key
            self.runner = RequestRunner(key: key)
            refresh()
        } catch {
            message = error.pocketKeyUserMessage
            return
        }
        for await event in center.events() {
            switch event {
            case let .requested(prompt):
                prompts.append(prompt)
                ApprovalNotifications.shared.show(prompt)
            case let .closed(id, _):
                prompts.removeAll { $0.id == id }
                ApprovalNotifications.shared.remove(id: id)
                refresh()
            }
        }
    }

    func refresh() {
        guard let key else { return }
        do {
            info = try key.info()
            sites = try key.passkeys()
        } catch {
            message = error.pocketKeyUserMessage
        }
    }

    /// Answers a prompt by id (from the in-app sheet or a notification action). Approving a
    /// prompt that needs verification runs Face ID / Touch ID / the passcode first.
    func answer(id: UInt64, approve: Bool, account: UInt32? = nil) async {
        let prompt = center.pending.first { $0.id == id }
        var answer: ApprovalAnswer = .deny
        if approve {
            if prompt?.verificationRequired ?? true {
                answer = await Self.verifyUser(reason: Self.reason(for: prompt), account: account)
            } else {
                answer = .approvePresent(account: account)
            }
        }
        do {
            try center.answer(id, with: answer)
        } catch {
            // Typically UnknownApproval: it timed out, was cancelled, or belongs to an earlier
            // run of the app (prompts do not survive a relaunch).
            message = error.pocketKeyUserMessage
        }
    }

    /// The camera's and the deep links' single entry point. `source`: `.camera` for the scan
    /// screen, `.link` for URLs the app is opened with (a pairing code pairs only from the camera).
    func handleScan(_ text: String, source: ScanSource) {
        do {
            switch try classifyScan(text: text, source: source) {
            case .hybrid:
                // Hybrid (caBLE v2) needs a BLE advert with service data, which iOS does not let
                // apps send (docs/architecture.md §1: the Advertiser is Android-only). Recognised, not run.
                message = "Signing in to a nearby browser is not available on iPhone yet"
            case .pairing:
                message = "Pairing with a computer is not available yet"
            case let .activation(_, token):
                message = "Activation link received (\(token.count) characters)"
            }
        } catch {
            message = error.pocketKeyUserMessage
        }
    }

    func delete(_ passkey: Passkey) {
        guard let key else { return }
        do {
            _ = try key.deletePasskey(credentialId: passkey.credentialId)
        } catch {
            message = error.pocketKeyUserMessage
        }
        refresh()
    }

    private static func reason(for prompt: ApprovalPrompt?) -> String {
        guard let prompt else { return "Approve the request" }
        let site = prompt.rpId ?? "your computer"
        switch prompt.operation {
        case .register, .u2fRegister: return "Create a passkey for \(site)"
        case .signIn, .u2fSignIn: return "Sign in to \(site)"
        case .reset: return "Erase the security key"
        case .verifyUser, .select: return "Confirm it is you (\(prompt.requester))"
        }
    }

    /// Face ID / Touch ID, or the device passcode: user verification in the WebAuthn sense.
    private static func verifyUser(reason: String, account: UInt32?) async -> ApprovalAnswer {
        let context = LAContext()
        var error: NSError?
        guard context.canEvaluatePolicy(.deviceOwnerAuthentication, error: &error) else {
            return .verificationFailed
        }
        do {
            let ok = try await context.evaluatePolicy(.deviceOwnerAuthentication, localizedReason: reason)
            return ok ? .approveVerified(account: account) : .verificationFailed
        } catch let error as LAError where error.code == .userCancel || error.code == .appCancel
            || error.code == .systemCancel
        {
            return .deny
        } catch {
            return .verificationFailed
        }
    }
}
