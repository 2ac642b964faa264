import Foundation
import PocketKeyCore

/// The iOS app's model: everything the app does that is not a platform API call. It opens the
/// security key, routes scans, keeps the pairing list, handles pushes, queues approvals for
/// the notification actions and recovers from storage errors. SwiftUI views, notifications,
/// LocalAuthentication and the camera live in `App/` and only adapt it.
///
/// Thread-safe: every method may be called from any thread or task. The library's blocking
/// calls (opening, pairing, pushes, listening) run on the model's own background queue, never
/// on the caller's thread. State changes are published in order through `states()`.
public final class PocketKeyModel: @unchecked Sendable {
    public struct Configuration: @unchecked Sendable {
        /// Where the key's database and pairings live (created if missing).
        public var dataDirectory: URL
        /// The settings file (kept apart from `dataDirectory`: a storage reset keeps it).
        public var settingsFile: URL
        public var keyProvider: KeyProvider
        public var verifier: UserVerifier
        /// The UV key that signs verified approvals; nil: none, so the key offers computers
        /// only its PIN for user verification.
        public var uvKeys: UvKeyProvider?
        /// The hybrid BLE advertiser; nil where apps cannot advertise service data (iOS).
        public var advertiser: Advertiser?
        /// Replaces the hybrid tunnel server (tests, self-hosting).
        public var hybridTunnelUrl: String?
        /// How long a prompt waits for the user (the library's default when nil).
        public var approvalTimeoutMs: UInt64?
        /// How long a push-woken connection stays after the computer went quiet.
        public var pushIdleMs: UInt32
        /// Called by `resetStorage()` after the data directory is erased, so that the next
        /// open makes a new master key (the app passes `KeychainKeyProvider.deleteMasterKey`).
        public var discardMasterKey: (() throws -> Void)?

        public init(
            dataDirectory: URL, settingsFile: URL, keyProvider: KeyProvider, verifier: UserVerifier,
            uvKeys: UvKeyProvider? = nil,
            advertiser: Advertiser? = nil, hybridTunnelUrl: String? = nil, approvalTimeoutMs: UInt64? = nil,
            pushIdleMs: UInt32 = 2_000, discardMasterKey: (() throws -> Void)? = nil
        ) {
            self.dataDirectory = dataDirectory
            self.settingsFile = settingsFile
            self.keyProvider = keyProvider
            self.verifier = verifier
            self.uvKeys = uvKeys
            self.advertiser = advertiser
            self.hybridTunnelUrl = hybridTunnelUrl
            self.approvalTimeoutMs = approvalTimeoutMs
            self.pushIdleMs = pushIdleMs
            self.discardMasterKey = discardMasterKey
        }
    }

    /// The key's approval listener: its prompts become `state.prompts`.
    public let center = ApprovalCenter()
    let config: Configuration

    private let lock = NSLock()
    private var _state = AppState()
    private var observers: [UUID: AsyncStream<AppState>.Continuation] = [:]
    // Guarded by `lock`.
    private var _key: SecurityKey?
    var listener: PairingListener?
    var pushRegistration: PushRegistration?
    private var eventsTask: Task<Void, Never>?

    /// Concurrent: a pairing may wait minutes for the computer's user while pushes and
    /// listing go on.
    private let blocking = DispatchQueue(
        label: "com.pocketkey.model", qos: .userInitiated, attributes: .concurrent)

    public init(configuration: Configuration) {
        config = configuration
        _state.settings = AppSettings.load(from: configuration.settingsFile)
        let events = center.events()
        eventsTask = Task { [weak self] in
            for await event in events {
                self?.apply(event)
            }
        }
    }

    deinit {
        eventsTask?.cancel()
        listener?.stop()
    }

    // MARK: State

    /// The current state.
    public var state: AppState { withLock { _state } }

    /// The current state, then every change, in order. Ends when the consuming task is
    /// cancelled.
    public func states() -> AsyncStream<AppState> {
        AsyncStream(bufferingPolicy: .unbounded) { continuation in
            let id = UUID()
            withLock {
                continuation.yield(_state)
                observers[id] = continuation
            }
            continuation.onTermination = { [weak self] _ in
                self?.withLock { self?.observers[id] = nil }
            }
        }
    }

    /// Changes the state and publishes it (under the lock, so observers see changes in order).
    func update(_ change: (inout AppState) -> Void) {
        withLock {
            change(&_state)
            for continuation in observers.values {
                continuation.yield(_state)
            }
        }
    }

    /// Shows `text` to the user (an alert or banner in the app).
    func notify(_ text: String) {
        update { $0.notice = text }
    }

    public func dismissNotice() {
        update { $0.notice = nil }
    }

    var key: SecurityKey? { withLock { _key } }

    /// The open key, for the transports that feed it CTAP bytes (`RequestRunner`); nil until
    /// `start()` succeeded.
    public var securityKey: SecurityKey? { key }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Runs a blocking library call on the model's queue.
    func offThread<T>(_ body: @escaping () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            blocking.async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// The open key, or `ModelError.notOpen`.
    func requireKey() throws -> SecurityKey {
        guard let key else { throw ModelError.notOpen }
        return key
    }

    // MARK: Opening and recovery

    /// Opens the key (created on first launch). Afterwards `state.phase` says how it went;
    /// call again after `keyUnavailable` (for example once the phone is unlocked).
    public func start() async {
        if key != nil { return }
        update { $0.phase = .starting }
        let config = self.config
        let center = self.center
        do {
            let key = try await offThread {
                // Without a passcode or biometric the key claims no built-in user verification:
                // computers then ask for its PIN instead of prompts that cannot be verified.
                try SecurityKey.open(
                    dataDir: config.dataDirectory.path, keyProvider: config.keyProvider, listener: center,
                    approvalTimeoutMs: config.approvalTimeoutMs, builtinUv: config.verifier.isAvailable())
            }
            center.attach(key)
            withLock { _key = key }
            await registerUvKey()
            update { $0.phase = .ready }
            await refresh()
            // A revocation made while the app was closed is shown at once.
            await syncOrganisation()
        } catch {
            update { $0.phase = Self.phase(afterOpenFailed: error) }
        }
    }

    /// Setup's UV step, at every start and after a factory reset (which forgets the key):
    /// registers the UV key's public key with the engine. A failure leaves the key without
    /// built-in UV (computers use its PIN) and is kept in `state.uvKeyProblem`.
    func registerUvKey() async {
        guard let key, let uvKeys = config.uvKeys, config.verifier.isAvailable() else { return }
        var problem: String?
        do {
            try await offThread { try key.registerUvKey(publicKey: try uvKeys.publicKey()) }
        } catch {
            problem = error.pocketKeyUserMessage
        }
        update { $0.uvKeyProblem = problem }
    }

    static func phase(afterOpenFailed error: Error) -> AppState.Phase {
        switch error as? PocketKeyError {
        case .MasterKeyMismatch?, .MasterKeyWrongLength?:
            return .needsReset(message: needsResetMessage)
        case .KeyProviderFailed?:
            return .keyUnavailable(message: error.pocketKeyUserMessage)
        default:
            return .failed(message: error.pocketKeyUserMessage)
        }
    }

    public static let needsResetMessage =
        "The passkeys saved in this app were locked with a key this phone does not have "
        + "(for example after restoring a backup onto a new phone), so they cannot be used here. "
        + "Reset the security key to start again; then register it again with your sites and computers."

    /// Erases the unreadable key storage and opens a new, empty key. Only in the
    /// `needsReset` phase: anywhere else it would destroy passkeys that still work.
    public func resetStorage() async throws {
        guard case .needsReset = state.phase else { throw ModelError.resetNotNeeded }
        let config = self.config
        try await offThread {
            if FileManager.default.fileExists(atPath: config.dataDirectory.path) {
                try FileManager.default.removeItem(at: config.dataDirectory)
            }
            try config.discardMasterKey?()
        }
        await start()
    }

    /// Reads the key's info, passkeys and pairings again.
    public func refresh() async {
        guard let key else { return }
        do {
            let (info, sites, pairings) = try await offThread {
                (try key.info(), try key.passkeys(), try key.pairings())
            }
            update {
                $0.info = info
                $0.sites = sites
                $0.pairings = pairings
            }
        } catch {
            notify(error.pocketKeyUserMessage)
        }
    }

    // MARK: Settings

    /// Changes the settings and saves them.
    public func updateSettings(_ change: (inout AppSettings) -> Void) throws {
        var settings = state.settings
        change(&settings)
        try settings.save(to: config.settingsFile)
        update { $0.settings = settings }
    }
}

/// What the model itself refuses.
public enum ModelError: Error, Equatable, LocalizedError {
    /// The key is not open (`start()` has not succeeded).
    case notOpen
    /// `resetStorage()` outside the `needsReset` phase.
    case resetNotNeeded

    public var errorDescription: String? {
        switch self {
        case .notOpen: return "The security key is not open"
        case .resetNotNeeded: return "The security key works: there is nothing to reset"
        }
    }
}
