import Foundation
import PocketKeyKit
import XCTest

/// Thread identity for "answered on another thread" checks.
func currentThreadID() -> ObjectIdentifier { ObjectIdentifier(Thread.current) }

/// A value written on one thread and read on another.
final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var _value: T
    init(_ value: T) { _value = value }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return _value }
        set { lock.lock(); _value = newValue; lock.unlock() }
    }
}

/// The phone's side in the tests: an `ApprovalListener` that only enqueues prompts, and a worker
/// `Thread` that answers them through `SecurityKey.answer` (never on the thread that was asked).
final class Phone: ApprovalListener, @unchecked Sendable {
    /// The answers to give a prompt, tried in order (an empty list leaves it unanswered).
    typealias Policy = (ApprovalPrompt) -> [ApprovalAnswer]

    static let approveVerified: Policy = { prompt in [verified(prompt)] }

    /// "Approve with biometrics": the shared UV key's signature over the prompt's challenge.
    static func verified(_ prompt: ApprovalPrompt, account: UInt32? = nil) -> ApprovalAnswer {
        .approveVerified(account: account, signature: try! SoftwareUvKeys.shared.sign(prompt.uvChallenge))
    }

    private let condition = NSCondition()
    private var queue: [ApprovalPrompt] = []
    private var stopped = false
    private var worker: Thread?
    private let policy: Policy
    private weak var key: SecurityKey?

    // Everything below is read by the tests; guarded by `condition`.
    private var _prompts: [ApprovalPrompt] = []
    private var _closed: [(UInt64, ApprovalClosed)] = []
    private var _listenerThreads = Set<ObjectIdentifier>()
    private var _answerThreads = Set<ObjectIdentifier>()
    private var _answerErrors: [Error] = []
    private var _fail: Error?

    init(policy: @escaping Policy = Phone.approveVerified) {
        self.policy = policy
    }

    /// Starts the worker thread that answers `key`'s prompts.
    func attach(_ key: SecurityKey) {
        self.key = key
        let thread = Thread { [weak self] in self?.work() }
        thread.name = "phone-approvals"
        worker = thread
        thread.start()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    /// When set, `onApprovalRequested` throws it.
    var fail: Error? {
        get { locked { _fail } }
        set { locked { _fail = newValue } }
    }

    var prompts: [ApprovalPrompt] { locked { _prompts } }
    var closed: [(UInt64, ApprovalClosed)] { locked { _closed } }
    var listenerThreads: Set<ObjectIdentifier> { locked { _listenerThreads } }
    var answerThreads: Set<ObjectIdentifier> { locked { _answerThreads } }
    var answerErrors: [Error] { locked { _answerErrors } }

    /// Waits until `count` prompts have arrived.
    func waitForPrompts(_ count: Int, timeout: TimeInterval = 10) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while _prompts.count < count {
            if !condition.wait(until: deadline) { return _prompts.count >= count }
        }
        return true
    }

    func onApprovalRequested(request: ApprovalPrompt) throws {
        condition.lock()
        defer { condition.unlock() }
        _prompts.append(request)
        _listenerThreads.insert(currentThreadID())
        if let fail = _fail {
            condition.broadcast()
            throw fail
        }
        queue.append(request)
        condition.broadcast()
    }

    func onApprovalClosed(id: UInt64, reason: ApprovalClosed) throws {
        locked { _closed.append((id, reason)) }
    }

    private func work() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopped {
                condition.wait()
            }
            if stopped {
                condition.unlock()
                return
            }
            let prompt = queue.removeFirst()
            _answerThreads.insert(currentThreadID())
            condition.unlock()
            for answer in policy(prompt) {
                do {
                    try key?.answer(id: prompt.id, answer: answer)
                    break
                } catch {
                    locked { _answerErrors.append(error) }
                }
            }
        }
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body()
    }
}

/// A KeyProvider that fails the way a keychain does.
final class FailingKeyProvider: KeyProvider, @unchecked Sendable {
    let error: Error
    init(_ error: Error) { self.error = error }
    func masterKey() throws -> Data { throw error }
}

/// One key in a fresh temporary directory, with its phone.
final class KeyUnderTest {
    let directory: URL
    let provider: MemoryKeyProvider
    let phone: Phone
    let key: SecurityKey

    init(directory: URL, provider: MemoryKeyProvider, phone: Phone, timeoutMs: UInt64?) throws {
        self.directory = directory
        self.provider = provider
        self.phone = phone
        key = try SecurityKey.open(
            dataDir: directory.path, keyProvider: provider, listener: phone, approvalTimeoutMs: timeoutMs)
        try key.registerUvKey(publicKey: SoftwareUvKeys.shared.publicKey())
        phone.attach(key)
    }

    /// Sends one CTAP2 message as the computer "Work laptop" would.
    func ctap(_ request: Data, requester: String = "Work laptop") throws -> Reply {
        try Reply(key.processCtap(request: request, requester: requester))
    }
}

class KeyTestCase: XCTestCase {
    private var directories: [URL] = []
    private var phones: [Phone] = []

    /// A fresh, empty directory below the system's temporary directory, removed after the test.
    func freshDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("pocketkey-swift-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        directories.append(dir)
        return dir
    }

    /// Opens a key in a fresh directory. The approval timeout is short enough that a broken
    /// answering path fails a test instead of hanging it.
    func makeKey(
        policy: @escaping Phone.Policy = Phone.approveVerified, timeoutMs: UInt64? = 10_000,
        provider: MemoryKeyProvider = MemoryKeyProvider()
    ) throws -> KeyUnderTest {
        let phone = Phone(policy: policy)
        phones.append(phone)
        return try KeyUnderTest(
            directory: freshDirectory().appendingPathComponent("key"), provider: provider, phone: phone,
            timeoutMs: timeoutMs)
    }

    /// A phone that is stopped after the test (for keys opened by hand).
    func makePhone(policy: @escaping Phone.Policy = Phone.approveVerified) -> Phone {
        let phone = Phone(policy: policy)
        phones.append(phone)
        return phone
    }

    override func tearDown() {
        for phone in phones { phone.stop() }
        for dir in directories { try? FileManager.default.removeItem(at: dir) }
        phones = []
        directories = []
        super.tearDown()
    }
}

/// Asserts that `body` throws a `PocketKeyError` and hands it to `check`.
func assertPocketKeyError<T>(
    _ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line,
    _ check: (PocketKeyError) -> Void
) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        guard let error = error as? PocketKeyError else {
            return XCTFail("not a PocketKeyError: \(error)", file: file, line: line)
        }
        check(error)
    }
}
