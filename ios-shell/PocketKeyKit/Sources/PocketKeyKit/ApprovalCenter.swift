import Foundation
@_exported import PocketKeyCore

/// Something that happened to an approval prompt, as the UI sees it.
public enum ApprovalEvent: Equatable, Sendable {
    /// Show this prompt (notification, approval sheet).
    case requested(ApprovalPrompt)
    /// Remove the prompt with this id: it was answered, timed out or cancelled, or showing it failed.
    case closed(id: UInt64, reason: ApprovalClosed)
}

/// The app's `ApprovalListener`: turns the engine's callbacks into `AsyncStream`s a SwiftUI view
/// (or the notification code) can iterate, keeps the prompts that are still open, and answers
/// them by id from any thread.
///
/// The engine calls the listener on the thread that runs `processCtap`, and waits for an answer;
/// `ApprovalCenter` returns at once and the answer comes later through `answer(_:with:)`.
///
/// ```swift
/// let center = ApprovalCenter()
/// let key = try SecurityKey.open(dataDir: dir, keyProvider: KeychainKeyProvider(), listener: center)
/// center.attach(key)
/// Task { for await event in center.events() { ... } }      // in a view model
/// try center.answer(prompt.id, with: .approveVerified(account: nil))  // after Face ID
/// ```
public final class ApprovalCenter: ApprovalListener, @unchecked Sendable {
    /// Decides whether a prompt can be shown at all; throwing denies the request at once
    /// (for example when notifications are off and the app is in the background).
    public typealias Gate = @Sendable (ApprovalPrompt) throws -> Void

    private let lock = NSLock()
    private var open: [ApprovalPrompt] = []
    private var subscribers: [UUID: AsyncStream<ApprovalEvent>.Continuation] = [:]
    private var gate: Gate?
    // Weak: the key holds this listener strongly (through the engine), so no cycle.
    private weak var key: SecurityKeyProtocol?

    public init(gate: Gate? = nil) {
        self.gate = gate
    }

    /// The key whose prompts this center answers. Call once, right after `SecurityKey.open`.
    public func attach(_ key: SecurityKeyProtocol) {
        lock.lock()
        self.key = key
        lock.unlock()
    }

    /// Replaces the gate (see `Gate`); `nil` shows every prompt.
    public func setGate(_ gate: Gate?) {
        lock.lock()
        self.gate = gate
        lock.unlock()
    }

    /// The prompts waiting for an answer, oldest first.
    public var pending: [ApprovalPrompt] {
        lock.lock()
        defer { lock.unlock() }
        return open
    }

    /// A stream of events for one consumer. It starts with a `.requested` event for every prompt
    /// that is already open (a view that appears late still sees them), then follows live.
    /// Ends when the consuming task is cancelled or the center goes away.
    public func events() -> AsyncStream<ApprovalEvent> {
        AsyncStream(bufferingPolicy: .unbounded) { continuation in
            let id = UUID()
            lock.lock()
            for prompt in open {
                continuation.yield(.requested(prompt))
            }
            subscribers[id] = continuation
            lock.unlock()
            continuation.onTermination = { [weak self] _ in
                guard let self else { return }
                self.lock.lock()
                self.subscribers[id] = nil
                self.lock.unlock()
            }
        }
    }

    /// Answers an open prompt, from any thread. Throws `PocketKeyError.UnknownApproval` when it
    /// has ended (or never existed) and `PocketKeyError.InvalidAccount` for a bad account index.
    public func answer(_ id: UInt64, with answer: ApprovalAnswer) throws {
        lock.lock()
        let key = self.key
        lock.unlock()
        guard let key else {
            throw PocketKeyError.Internal(detail: "ApprovalCenter.attach(_:) was not called")
        }
        try key.answer(id: id, answer: answer)
    }

    /// Denies every open prompt (for example when the user locks the app).
    public func denyAll() {
        for prompt in pending {
            try? answer(prompt.id, with: .deny)
        }
    }

    // MARK: ApprovalListener (called by the engine)

    public func onApprovalRequested(request: ApprovalPrompt) throws {
        lock.lock()
        let gate = self.gate
        lock.unlock()
        // Outside the lock: the gate is app code and may take its time or call back in.
        try gate?(request)
        lock.lock()
        open.append(request)
        // Yield under the lock so every subscriber sees events in the engine's order.
        for continuation in subscribers.values {
            continuation.yield(.requested(request))
        }
        lock.unlock()
    }

    public func onApprovalClosed(id: UInt64, reason: ApprovalClosed) throws {
        lock.lock()
        open.removeAll { $0.id == id }
        for continuation in subscribers.values {
            continuation.yield(.closed(id: id, reason: reason))
        }
        lock.unlock()
    }

    deinit {
        for continuation in subscribers.values {
            continuation.finish()
        }
    }
}
