#if os(Linux)
import Foundation
import Glibc
import XCTest

/// A child process of an end-to-end test, with its stdout read line by line (waited on, never
/// polled) and its stderr kept in a log file for failure messages; its stdin is /dev/null, or
/// a pipe the test writes lines to (`send`) when made with `stdin: true`. Spawned and reaped with
/// posix_spawn/waitpid: Foundation's `Process` on Linux learns of the child's end through the
/// run loop of the thread that launched it, which an async test's thread never runs.
final class Child: @unchecked Sendable {
    let name: String
    private let pid: pid_t
    private let condition = NSCondition()
    private var lines: [String] = []
    private var consumed = 0
    private var ended = false
    private var status: Int32?
    private let log: URL
    /// The write end of the child's stdin pipe (guarded by `condition`); -1 when none or closed.
    private var input: Int32 = -1

    init(
        _ executable: String, _ arguments: [String], environment: [String: String], logDirectory: URL,
        stdin: Bool = false
    ) throws {
        name = URL(fileURLWithPath: arguments.first.flatMap { $0.hasSuffix(".py") ? $0 : nil } ?? executable)
            .lastPathComponent
        log = logDirectory.appendingPathComponent("\(name).stderr")
        var pipe: [Int32] = [0, 0]
        guard Glibc.pipe(&pipe) == 0 else { throw ChildFailed(description: "pipe: errno \(errno)") }
        var inPipe: [Int32] = [-1, -1]
        if stdin {
            guard Glibc.pipe(&inPipe) == 0 else {
                close(pipe[0])
                close(pipe[1])
                throw ChildFailed(description: "pipe: errno \(errno)")
            }
            // Close-on-exec: no later child inherits the write end, which would keep the
            // browser's stdin open after `stop()` (dup2 gives fd 0 without the flag).
            _ = fcntl(inPipe[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(inPipe[1], F_SETFD, FD_CLOEXEC)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if stdin {
            posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
            posix_spawn_file_actions_addclose(&actions, inPipe[0])
            posix_spawn_file_actions_addclose(&actions, inPipe[1])
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, log.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        posix_spawn_file_actions_addclose(&actions, pipe[1])
        // The spawning thread may be a Dispatch worker, which blocks signals: the child would
        // inherit that mask and never see SIGTERM. Start it with none blocked, defaults.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let spawned = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        close(pipe[1])
        if stdin { close(inPipe[0]) }
        guard spawned == 0 else {
            close(pipe[0])
            if stdin { close(inPipe[1]) }
            throw ChildFailed(description: "posix_spawn \(executable): error \(spawned)")
        }
        pid = child
        input = inPipe[1]
        let readFd = pipe[0]
        let reader = Thread { [self] in
            var buffer = [UInt8]()
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(readFd, &chunk, chunk.count)
                if n <= 0 { break }
                buffer += chunk[0..<n]
                while let newline = buffer.firstIndex(of: 0x0A) {
                    append(String(decoding: buffer[..<newline], as: UTF8.self))
                    buffer.removeSubrange(...newline)
                }
            }
            close(readFd)
            finish()
        }
        reader.name = "stdout-\(name)"
        reader.start()
        let reaper = Thread { [self] in
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
            condition.lock()
            // WIFEXITED ? WEXITSTATUS : 128 + signal, as a shell reports it.
            status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            condition.broadcast()
            condition.unlock()
        }
        reaper.name = "reaper-\(name)"
        reaper.start()
    }

    private func append(_ line: String) {
        condition.lock()
        lines.append(line)
        condition.broadcast()
        condition.unlock()
    }

    private func finish() {
        condition.lock()
        ended = true
        condition.broadcast()
        condition.unlock()
    }

    /// Everything printed so far.
    var output: [String] {
        condition.lock()
        defer { condition.unlock() }
        return lines
    }

    var stderr: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// The rest of the next stdout line starting with `prefix` (earlier lines are skipped).
    /// Waits on a background queue, so the test's task does not hold a cooperative thread.
    func line(_ prefix: String, timeout: TimeInterval = 90) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try self.waitForLine(prefix, timeout: timeout) })
            }
        }
    }

    private func waitForLine(_ prefix: String, timeout: TimeInterval) throws -> String {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while true {
            while consumed < lines.count {
                let line = lines[consumed]
                consumed += 1
                if line.hasPrefix(prefix) {
                    return String(line.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces)
                }
            }
            if ended {
                throw ChildFailed(description: "\(name) ended before printing \(prefix.debugDescription):\n\(stderr)")
            }
            if !condition.wait(until: deadline) {
                throw ChildFailed(description: "\(name) printed no \(prefix.debugDescription) line:\n\(stderr)")
            }
        }
    }

    /// Waits (on a background queue) for the process to end; its exit status.
    func exitStatus() async -> Int32 {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: self.waitForExit(until: nil) ?? -1)
            }
        }
    }

    /// The exit status once reaped, or nil at `deadline` (nil: no deadline; Foundation's
    /// `wait(until: .distantFuture)` traps on Linux).
    private func waitForExit(until deadline: Date?) -> Int32? {
        condition.lock()
        defer { condition.unlock() }
        while status == nil {
            if let deadline {
                if !condition.wait(until: deadline) { break }
            } else {
                condition.wait()
            }
        }
        return status
    }

    /// Writes `line` and a newline to the child's stdin (made with `stdin: true`).
    func send(_ line: String) throws {
        condition.lock()
        defer { condition.unlock() }
        guard input >= 0 else { throw ChildFailed(description: "\(name) has no stdin pipe") }
        // A child that already ended must give EPIPE here, not kill the test process.
        signal(SIGPIPE, SIG_IGN)
        var bytes = Array((line + "\n").utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(input, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ChildFailed(description: "writing to \(name)'s stdin: errno \(errno)") }
            bytes = bytes.dropFirst(n)
        }
    }

    /// SIGTERM, and SIGKILL if it is still there after 10 s; returns once it is reaped.
    func stop() {
        condition.lock()
        if input >= 0 {
            close(input)
            input = -1
        }
        condition.unlock()
        if waitForExit(until: Date()) != nil { return }
        kill(pid, SIGTERM)
        if waitForExit(until: Date(timeIntervalSinceNow: 10)) == nil {
            kill(pid, SIGKILL)
            _ = waitForExit(until: nil)
        }
    }
}

struct ChildFailed: Error, CustomStringConvertible {
    let description: String
}

/// A UDP port on loopback that was free a moment ago (for the bridge's `--udp`).
func freeUDPPort() throws -> UInt16 { try freePort(SOCK_DGRAM) }

/// A port of `kind` (`SOCK_DGRAM`, `SOCK_STREAM`) on loopback that was free a moment ago.
func freePort(_ kind: __socket_type) throws -> UInt16 {
    let fd = socket(AF_INET, Int32(kind.rawValue), 0)
    guard fd >= 0 else { throw ChildFailed(description: "socket: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
            bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
        }
    }
    guard bound else { throw ChildFailed(description: "bind: errno \(errno)") }
    return UInt16(bigEndian: address.sin_port)
}
#endif
