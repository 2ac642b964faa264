import Foundation
import PocketKeyCore

/// Runs a key's blocking calls (`processCtap`, `processU2f`, which wait for the user's answer)
/// on one serial background queue and exposes them as `async` functions, so Swift concurrency
/// threads and the main thread are never blocked. Cancelling the calling task cancels the
/// request (`cancelPending`): the computer gets CTAP2_ERR_KEEPALIVE_CANCEL, the prompt closes
/// with `.cancelled`.
///
/// Send all of a key's requests through one runner: `cancelPending` cancels whatever request the
/// key is running, and the runner only calls it while its own request is the one running.
public final class RequestRunner: @unchecked Sendable {
    /// CTAP2_ERR_KEEPALIVE_CANCEL: the reply to a request cancelled before it started.
    public static let keepaliveCancel = Data([0x2D])

    public let key: SecurityKeyProtocol
    private let queue: DispatchQueue
    private let lock = NSLock()
    private var running: UUID?

    public init(key: SecurityKeyProtocol, label: String = "com.pocketkey.requests") {
        self.key = key
        self.queue = DispatchQueue(label: label, qos: .userInitiated)
    }

    /// One CTAP2 message (command byte ‖ CBOR) → status byte ‖ CBOR.
    public func processCtap(_ request: Data, requester: String) async -> Data {
        await run { key in key.processCtap(request: request, requester: requester) }
    }

    /// One U2F APDU → response data ‖ status word (a cancelled request answers 0x6985,
    /// "conditions not satisfied", as a U2F key that was not touched).
    public func processU2f(_ apdu: Data, requester: String) async -> Data {
        await run(cancelled: Data([0x69, 0x85])) { key in key.processU2f(apdu: apdu, requester: requester) }
    }

    private func run(cancelled: Data = RequestRunner.keepaliveCancel, _ body: @escaping @Sendable (SecurityKeyProtocol) -> Data) async -> Data {
        let id = UUID()
        let state = CancelState()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Data, Never>) in
                queue.async { [self] in
                    lock.lock()
                    if state.cancelled {
                        lock.unlock()
                        continuation.resume(returning: cancelled)
                        return
                    }
                    running = id
                    lock.unlock()
                    let reply = body(key)
                    lock.lock()
                    running = nil
                    lock.unlock()
                    continuation.resume(returning: reply)
                }
            }
        } onCancel: { [self] in
            lock.lock()
            state.cancelled = true
            // Only while our request runs: the serial queue cannot start another one before
            // ours has cleared `running`, which needs this lock.
            if running == id {
                key.cancelPending()
            }
            lock.unlock()
        }
    }
}

private final class CancelState: @unchecked Sendable {
    var cancelled = false
}
