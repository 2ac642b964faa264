import Combine
import Foundation
import LocalAuthentication
import PocketKeyKit

/// The SwiftUI side of `PocketKeyModel` (PocketKeyKit, where the logic and its tests live):
/// mirrors its state into `@Published` for the views, and forwards the views' actions.
@MainActor
final class AppModel: ObservableObject {
    static let shared = AppModel()

    @Published private(set) var state = AppState()
    /// An error from a settings-screen call, for an alert (the model's own notices are in
    /// `state.notice`).
    @Published var error: String?
    let model: PocketKeyModel
    private var started = false

    private init() {
        let support = FileManager.default.urls(for: .applicationSupportDirectory, in: .userDomainMask)[0]
        let keychain = KeychainKeyProvider()
        let uvKeys = SecureEnclaveUvKeys()
        model = PocketKeyModel(configuration: .init(
            dataDirectory: support.appendingPathComponent("pocketkey", isDirectory: true),
            settingsFile: support.appendingPathComponent("settings.json"),
            keyProvider: keychain,
            verifier: LocalAuthenticationVerifier(uvKeys: uvKeys),
            uvKeys: uvKeys,
            advertiser: nil,  // iOS apps cannot advertise hybrid service data
            discardMasterKey: { try keychain.deleteMasterKey() }))
    }

    /// Opens the key once per process and follows the model's state.
    func start() async {
        guard !started else { return }
        started = true
        Task { [weak self, model] in
            var shown = Set<UInt64>()
            for await state in model.states() {
                guard let self else { return }
                self.state = state
                // One notification per prompt, removed when the prompt closes.
                let open = Set(state.prompts.map(\.id))
                for prompt in state.prompts where !shown.contains(prompt.id) {
                    ApprovalNotifications.shared.show(prompt)
                }
                for id in shown.subtracting(open) {
                    ApprovalNotifications.shared.remove(id: id)
                }
                shown = open
            }
        }
        await model.start()
    }

    func scan(_ text: String, source: ScanSource) {
        Task { await model.handleScan(text, source: source) }
    }

    func respond(to id: UInt64, with decision: ApprovalDecision) {
        Task { await model.respond(to: id, with: decision) }
    }

    /// Foreground: keep a connection to the paired computers, and register the push address
    /// where the last try did not reach; background: pushes wake us.
    func sceneBecame(active: Bool) {
        if active {
            Task { await model.retryPushRegistration() }
        }
        if active && state.settings.listenInForeground {
            model.startListening()
        } else if !active {
            Task { await model.stopListening() }
        }
    }

    /// Runs a throwing model call and shows its error.
    func perform(_ body: @escaping (PocketKeyModel) async throws -> Void) {
        Task {
            do { try await body(model) } catch { self.error = error.pocketKeyUserMessage }
        }
    }

    func dismissNotice() { model.dismissNotice() }
}

/// Face ID / Touch ID, or the device passcode: user verification in the WebAuthn sense.
/// A phone with none of them set up is `.notAvailable`, never a failed verification.
struct LocalAuthenticationVerifier: UserVerifier {
    /// Gets the evaluated context, to sign the prompt's challenge without a second sheet.
    let uvKeys: SecureEnclaveUvKeys

    func isAvailable() -> Bool {
        var error: NSError?
        return LAContext().canEvaluatePolicy(.deviceOwnerAuthentication, error: &error)
    }

    /// Biometrics only: the UV key's `.biometryCurrentSet` access control accepts no passcode,
    /// so a passcode could not produce the proof a verified answer carries.
    func verify(reason: String) async -> VerificationResult {
        let context = LAContext()
        var error: NSError?
        guard context.canEvaluatePolicy(.deviceOwnerAuthenticationWithBiometrics, error: &error) else {
            return .notAvailable
        }
        do {
            guard try await context.evaluatePolicy(.deviceOwnerAuthenticationWithBiometrics, localizedReason: reason)
            else {
                return .failed
            }
            uvKeys.verified(with: context)
            return .verified
        } catch let error as LAError {
            switch error.code {
            case .userCancel, .appCancel, .systemCancel, .userFallback: return .cancelled
            case .passcodeNotSet, .biometryNotEnrolled, .biometryNotAvailable: return .notAvailable
            default: return .failed
            }
        } catch {
            return .failed
        }
    }
}
