import Foundation
import PocketKeyKit
import XCTest

/// LocalAuthentication's stand-in: answers every verification with `result`.
final class StubVerifier: UserVerifier, @unchecked Sendable {
    private let box: Box<(available: Bool, result: VerificationResult, calls: Int)>

    init(available: Bool = true, result: VerificationResult = .verified) {
        box = Box((available, result, 0))
    }

    var calls: Int { box.value.calls }

    /// What the next verifications report.
    func answer(_ result: VerificationResult) {
        var value = box.value
        value.result = result
        box.value = value
    }

    func isAvailable() -> Bool { box.value.available }

    func verify(reason: String) async -> VerificationResult {
        var value = box.value
        value.calls += 1
        box.value = value
        return value.result
    }
}

/// A keychain whose key can be taken away (locked phone) and given back.
final class SwitchableKeyProvider: KeyProvider, @unchecked Sendable {
    let current: Box<Data?>
    init(_ key: Data?) { current = Box(key) }
    func masterKey() throws -> Data {
        guard let key = current.value else {
            throw KeyProviderError.Unavailable(reason: "the device has not been unlocked since it restarted")
        }
        return key
    }
}

/// An Android-style advertiser (iOS has none): counts the adverts it was asked to start.
final class RecordingAdvertiser: Advertiser, @unchecked Sendable {
    let started = Box(0)
    func start(serviceData: Data) throws { started.value += 1 }
    func stop() {}
}

struct WaitTimedOut: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

class ModelTestCase: KeyTestCase {
    /// A model over a fresh directory (or `directory`), with its settings file beside it.
    func makeModel(
        directory: URL? = nil, provider: KeyProvider = MemoryKeyProvider(), verifier: UserVerifier = StubVerifier(),
        uvKeys: UvKeyProvider? = SoftwareUvKeys(), advertiser: Advertiser? = nil, hybridTunnelUrl: String? = nil,
        approvalTimeoutMs: UInt64? = 30_000
    ) throws -> PocketKeyModel {
        let dir = try directory ?? freshDirectory()
        return PocketKeyModel(configuration: .init(
            dataDirectory: dir.appendingPathComponent("key"), settingsFile: dir.appendingPathComponent("settings.json"),
            keyProvider: provider, verifier: verifier, uvKeys: uvKeys, advertiser: advertiser,
            hybridTunnelUrl: hybridTunnelUrl, approvalTimeoutMs: approvalTimeoutMs, pushIdleMs: 1_000))
    }

    /// The first published state that satisfies `predicate`. The timeout only keeps a broken
    /// run from hanging; nothing is asserted about how long it took.
    @discardableResult
    func waitFor(
        _ model: PocketKeyModel, _ what: String, timeout: TimeInterval = 90,
        until predicate: @escaping @Sendable (AppState) -> Bool
    ) async throws -> AppState {
        try await withThrowingTaskGroup(of: AppState?.self) { group in
            group.addTask {
                for await state in model.states() where predicate(state) {
                    return state
                }
                return nil
            }
            group.addTask {
                try await Task.sleep(nanoseconds: UInt64(timeout * 1_000_000_000))
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            guard let state = first else { throw WaitTimedOut(what: what) }
            return state
        }
    }

    /// Answers the next `count` prompts the way the notification's Approve action does, and
    /// returns them.
    func approveFromNotifications(_ model: PocketKeyModel, count: Int) async throws -> [ApprovalPrompt] {
        var answered: [ApprovalPrompt] = []
        while answered.count < count {
            let done = Set(answered.map(\.id))
            let state = try await waitFor(model, "prompt \(answered.count + 1) of \(count)") { state in
                state.prompts.contains { !done.contains($0.id) }
            }
            let prompt = try XCTUnwrap(state.prompts.first { !done.contains($0.id) })
            let notification = ApprovalNotification(prompt: prompt)
            let result = await model.handleNotificationAction(
                ApprovalNotification.approveAction, userInfo: notification.userInfo)
            if case .answered(.approveVerified(account: nil, _))? = result {} else {
                XCTFail("not a verified answer: \(String(describing: result))")
            }
            answered.append(prompt)
        }
        return answered
    }
}

/// `body`'s result, or `WaitTimedOut` after `seconds` even if `body` never returns (a hung
/// library call must fail the test with a message, not hang the run).
func within<T: Sendable>(
    _ seconds: TimeInterval, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let once = ResumeOnce(continuation)
        Task {
            do { once.resume(.success(try await body())) } catch { once.resume(.failure(error)) }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
            once.resume(.failure(WaitTimedOut(what: what)))
        }
    }
}

/// Resumes a continuation with the first result only.
private final class ResumeOnce<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Error>?
    init(_ continuation: CheckedContinuation<T, Error>) { self.continuation = continuation }
    func resume(_ result: Result<T, Error>) {
        lock.lock()
        let pending = continuation
        continuation = nil
        lock.unlock()
        pending?.resume(with: result)
    }
}
