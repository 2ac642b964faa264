import Foundation
import PocketKeyKit
import XCTest

/// The event-driven approval API: deny, time out, cancel, unknown ids, failing listeners.
final class ApprovalTests: KeyTestCase {
    private let registration = Ctap.makeCredential(
        clientDataHash: [UInt8](repeating: 7, count: 32), rpId: "example.com", rpName: "Example",
        userId: [1, 2, 3], userName: "carol@example.com", displayName: "Carol")

    func testDenyReachesTheComputerAsOperationDenied() throws {
        let k = try makeKey { _ in [.deny] }
        let reply = try k.ctap(registration)
        XCTAssertEqual(reply.status, Ctap.operationDenied)
        XCTAssertNil(reply.body)
        let prompt = try XCTUnwrap(k.phone.prompts.first)
        XCTAssertEqual(prompt.operation, .register)
        XCTAssertEqual(k.phone.closed.map(\.0), [prompt.id])
        XCTAssertEqual(k.phone.closed.map(\.1), [.answered])
        XCTAssertEqual(try k.key.info().credentialCount, 0)
    }

    func testFailedVerificationDeniesToo() throws {
        let k = try makeKey { _ in [.verificationFailed] }
        XCTAssertNotEqual(try k.ctap(registration).status, Ctap.ok)
        XCTAssertEqual(try k.key.info().credentialCount, 0)
    }

    func testPresenceIsNotEnoughWhenVerificationIsRequired() throws {
        let k = try makeKey { _ in [.approvePresent(account: nil)] }
        XCTAssertNotEqual(try k.ctap(registration).status, Ctap.ok)
        XCTAssertTrue(try XCTUnwrap(k.phone.prompts.first).verificationRequired)
        XCTAssertEqual(try k.key.info().credentialCount, 0)
    }

    func testUnknownApprovalIdIsATypedError() throws {
        let k = try makeKey()
        assertPocketKeyError(try k.key.answer(id: 123_456_789, answer: .approveVerified(account: nil, signature: Data(repeating: 0x30, count: 8)))) { error in
            guard case let .UnknownApproval(id) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(id, 123_456_789)
            XCTAssertEqual(error.userMessage(), "That approval has already ended")
            XCTAssertEqual(error.description, error.userMessage())
        }
    }

    func testUnansweredPromptTimesOut() throws {
        let k = try makeKey(policy: { _ in [] }, timeoutMs: 400)
        let started = Date()
        XCTAssertEqual(try k.ctap(Ctap.selection).status, Ctap.userActionTimeout)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.4)
        let prompt = try XCTUnwrap(k.phone.prompts.first)
        XCTAssertEqual(prompt.operation, .select)
        XCTAssertEqual(k.phone.closed.map(\.1), [.timedOut])
        assertPocketKeyError(try k.key.answer(id: prompt.id, answer: .approvePresent(account: nil))) { error in
            XCTAssertEqual(error, .UnknownApproval(id: prompt.id))
        }
    }

    func testCancelPendingEndsTheWait() throws {
        let k = try makeKey(policy: { _ in [] })
        let done = expectation(description: "request returned")
        let reply = Box<Data?>(nil)
        DispatchQueue.global().async {
            reply.value = k.key.processCtap(request: Ctap.selection, requester: "Work laptop")
            done.fulfill()
        }
        XCTAssertTrue(k.phone.waitForPrompts(1))
        k.key.cancelPending()
        wait(for: [done], timeout: 10)
        XCTAssertEqual(reply.value, Data([Ctap.keepaliveCancel]))
        XCTAssertEqual(k.phone.closed.map(\.1), [.cancelled])
    }

    func testAThrowingListenerDeniesTheRequest() throws {
        struct NotificationsOff: Error {}
        let k = try makeKey()
        k.phone.fail = NotificationsOff()
        XCTAssertEqual(try k.ctap(Ctap.selection).status, Ctap.operationDenied)
        let prompt = try XCTUnwrap(k.phone.prompts.first)
        XCTAssertEqual(k.phone.closed.map(\.0), [prompt.id])
        XCTAssertEqual(k.phone.closed.map(\.1), [.listenerFailed])

        // The declared error type is handled the same way.
        k.phone.fail = ApprovalListenerError.Failed(reason: "no UI")
        XCTAssertEqual(try k.ctap(Ctap.selection).status, Ctap.operationDenied)
        XCTAssertEqual(k.phone.closed.map(\.1), [.listenerFailed, .listenerFailed])

        // And the key keeps working afterwards.
        k.phone.fail = nil
        XCTAssertEqual(try k.ctap(Ctap.selection).status, Ctap.ok)
        XCTAssertEqual(k.phone.closed.map(\.1).last, .answered)
    }

    func testPromptNamesTheRequester() throws {
        let k = try makeKey()
        _ = try k.ctap(Ctap.selection, requester: "Alice's laptop")
        XCTAssertEqual(k.phone.prompts.first?.requester, "Alice's laptop")
        XCTAssertNil(k.phone.prompts.first?.rpId)
        XCTAssertFalse(try XCTUnwrap(k.phone.prompts.first).verificationRequired)
    }
}
