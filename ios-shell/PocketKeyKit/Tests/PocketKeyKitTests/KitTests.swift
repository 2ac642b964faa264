import Foundation
import PocketKeyKit
import XCTest

/// The app-facing helpers of PocketKeyKit: ApprovalCenter (listener → AsyncStream, answers by
/// id), RequestRunner (blocking calls as async, cancellation), MemoryKeyProvider.
final class KitTests: KeyTestCase {
    private func openKey(center: ApprovalCenter, timeoutMs: UInt64 = 10_000) throws -> SecurityKey {
        let key = try SecurityKey.open(
            dataDir: freshDirectory().appendingPathComponent("key").path, keyProvider: MemoryKeyProvider(),
            listener: center, approvalTimeoutMs: timeoutMs)
        try key.registerUvKey(publicKey: SoftwareUvKeys.shared.publicKey())
        center.attach(key)
        return key
    }

    private let registration = Ctap.makeCredential(
        clientDataHash: [UInt8](repeating: 3, count: 32), rpId: "example.com", rpName: "Example",
        userId: [9], userName: "frank@example.com", displayName: "Frank")

    func testApprovalCenterStreamsPromptsAndAnswersThemFromATask() async throws {
        let center = ApprovalCenter()
        let key = try openKey(center: center)
        let runner = RequestRunner(key: key)

        // The "UI": approves every prompt it sees, from a task (not the engine's thread).
        let stream = center.events()   // subscribed now, before any prompt
        let ui = Task { () -> [ApprovalEvent] in
            var seen: [ApprovalEvent] = []
            for await event in stream {
                seen.append(event)
                if case let .requested(prompt) = event {
                    try? center.answer(prompt.id, with: Phone.verified(prompt))
                }
                if seen.count == 4 { break }
            }
            return seen
        }
        let created = try Reply(await runner.processCtap(registration, requester: "Work laptop"))
        XCTAssertEqual(created.status, Ctap.ok)
        let credentialId = try XCTUnwrap(AuthData(XCTUnwrap(created.body?[2]?.bytesValue)).credentialId)
        let asserted = try Reply(await runner.processCtap(
            Ctap.getAssertion(rpId: "example.com", clientDataHash: [UInt8](repeating: 4, count: 32), allow: [credentialId]),
            requester: "Work laptop"))
        XCTAssertEqual(asserted.status, Ctap.ok)

        let events = await ui.value
        guard events.count == 4, case let .requested(first) = events[0], case let .requested(second) = events[2] else {
            return XCTFail("unexpected events \(events)")
        }
        XCTAssertEqual(first.operation, .register)
        XCTAssertEqual(first.userName, "frank@example.com")
        XCTAssertEqual(second.operation, .signIn)
        XCTAssertEqual(events[1], .closed(id: first.id, reason: .answered))
        XCTAssertEqual(events[3], .closed(id: second.id, reason: .answered))
        XCTAssertTrue(center.pending.isEmpty)
    }

    func testALateSubscriberSeesOpenPromptsAndDenyAllAnswersThem() throws {
        let center = ApprovalCenter()
        let key = try openKey(center: center)
        let done = expectation(description: "request returned")
        let reply = Box<Data?>(nil)
        DispatchQueue.global().async {
            reply.value = key.processCtap(request: self.registration, requester: "Work laptop")
            done.fulfill()
        }
        let deadline = Date(timeIntervalSinceNow: 10)
        while center.pending.isEmpty && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        let prompt = try XCTUnwrap(center.pending.first)

        // A stream opened now starts with the prompt that is already open.
        let replayed = expectation(description: "replayed")
        let stream = center.events()
        let watcher = Task {
            for await event in stream {
                if event == .requested(prompt) { replayed.fulfill() }
                if case .closed = event { break }
            }
        }
        wait(for: [replayed], timeout: 10)
        center.denyAll()
        wait(for: [done], timeout: 10)
        watcher.cancel()
        XCTAssertEqual(reply.value, Data([Ctap.operationDenied]))
        XCTAssertTrue(center.pending.isEmpty)
    }

    func testTheGateDeniesPromptsTheAppCannotShow() throws {
        struct NoNotificationPermission: Error {}
        let center = ApprovalCenter(gate: { _ in throw NoNotificationPermission() })
        let key = try openKey(center: center)
        XCTAssertEqual(key.processCtap(request: Ctap.selection, requester: "x"), Data([Ctap.operationDenied]))
        XCTAssertTrue(center.pending.isEmpty)
        center.setGate(nil)
        let stream = center.events()
        let answered = Task {
            for await event in stream {
                if case let .requested(prompt) = event {
                    try? center.answer(prompt.id, with: .approvePresent(account: nil))
                    return
                }
            }
        }
        XCTAssertEqual(key.processCtap(request: Ctap.selection, requester: "x"), Data([Ctap.ok]))
        answered.cancel()
    }

    func testAnsweringWithoutAKeyIsAnError() {
        XCTAssertThrowsError(try ApprovalCenter().answer(1, with: .deny)) { error in
            guard case PocketKeyError.Internal = error else { return XCTFail("\(error)") }
        }
    }

    func testCancellingTheTaskCancelsTheRequest() async throws {
        let center = ApprovalCenter()   // nobody answers
        let key = try openKey(center: center)
        let runner = RequestRunner(key: key)
        let stream = center.events()
        let closed = Task { () -> ApprovalClosed? in
            for await event in stream {
                if case let .closed(_, reason) = event { return reason }
            }
            return nil
        }
        let request = Task { await runner.processCtap(self.registration, requester: "Work laptop") }
        let deadline = Date(timeIntervalSinceNow: 10)
        while center.pending.isEmpty && Date() < deadline {
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        XCTAssertFalse(center.pending.isEmpty, "the request never asked")
        request.cancel()
        let reply = await request.value
        XCTAssertEqual(reply, Data([Ctap.keepaliveCancel]))
        let reason = await closed.value
        XCTAssertEqual(reason, .cancelled)

        // A task cancelled before its turn does not run at all.
        let early = Task { () -> Data in
            withUnsafeCurrentTask { $0?.cancel() }
            return await runner.processCtap(Ctap.selection, requester: "Work laptop")
        }
        let earlyReply = await early.value
        XCTAssertEqual(earlyReply, RequestRunner.keepaliveCancel)
        XCTAssertEqual(try key.info().credentialCount, 0)
    }

    func testMemoryKeyProviderHandsOutStableRandomKeys() throws {
        let a = MemoryKeyProvider()
        let b = MemoryKeyProvider()
        XCTAssertEqual(try a.masterKey().count, 32)
        XCTAssertEqual(try a.masterKey(), try a.masterKey())
        XCTAssertNotEqual(try a.masterKey(), try b.masterKey())
    }
}
