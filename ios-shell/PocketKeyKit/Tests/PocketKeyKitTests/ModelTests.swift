import Foundation
import PocketKeyKit
import XCTest

/// PocketKeyModel against the real library, without network: scan routing, approvals through
/// the notification actions, user verification that is not available, storage recovery,
/// settings. (Pairing, listening and pushes with real processes: EndToEndTests.)
final class ModelTests: ModelTestCase {
    private let hybridCode = "FIDO:/" + String(repeating: "1", count: 17 * 4) + "123"

    private let registration = Ctap.makeCredential(
        clientDataHash: [UInt8](repeating: 5, count: 32), rpId: "example.com", rpName: "Example",
        userId: [4, 2], userName: "grace@example.com", displayName: "Grace")

    private func readyModel(verifier: UserVerifier = StubVerifier()) async throws -> PocketKeyModel {
        let model = try makeModel(verifier: verifier)
        await model.start()
        XCTAssertEqual(model.state.phase, .ready)
        return model
    }

    func testScansAreRoutedByKind() async throws {
        let model = try await readyModel()

        // iOS has no advertiser: a browser's code is recognised and explained, no session starts.
        let hybrid = await model.handleScan(hybridCode, source: .camera)
        XCTAssertEqual(hybrid, .hybridNotSupported(message: ScanOutcome.hybridNotSupportedMessage))
        XCTAssertNil(model.state.hybrid)
        XCTAssertEqual(model.state.notice, ScanOutcome.hybridNotSupportedMessage)

        // The custom scheme's form names no server to activate with: typed, before any network.
        let activation = await model.handleScan("pocketkey://activate?token=abc", source: .link)
        guard case let .activationFailed(failure) = activation else {
            return XCTFail("expected a failed activation, got \(activation)")
        }
        XCTAssertEqual(failure.problem, .damagedLink)
        XCTAssertNil(model.state.organisation)

        let fromLink = await model.handleScan("pocketkey://pair?k=abc&n=Work", source: .link)
        XCTAssertEqual(fromLink, .rejected(.PairingNeedsCamera))
        XCTAssertEqual(model.state.notice, ScanError.PairingNeedsCamera.userMessage())

        let notOurs = await model.handleScan("https://example.com/", source: .camera)
        XCTAssertEqual(notOurs, .rejected(.NotOurs))

        // A pairing code from the camera goes to `pair`, which refuses this one before any network.
        let damaged = await model.handleScan("pocketkey://pair?k=abc&n=Work", source: .camera)
        guard case .failed(.InvalidPairingCode) = damaged else {
            return XCTFail("expected InvalidPairingCode, got \(damaged)")
        }
        XCTAssertNil(model.state.pairing)
        XCTAssertEqual(model.state.pairings, [])
    }

    /// Where the platform can advertise (an `Advertiser` is configured), a `FIDO:/` code goes to
    /// `startHybrid`, which refuses this one (its digits are no valid code) before any network.
    func testHybridGoesToStartHybridWhereAnAdvertiserExists() async throws {
        let advertiser = RecordingAdvertiser()
        let model = try makeModel(advertiser: advertiser)
        await model.start()
        let outcome = await model.handleScan(hybridCode, source: .camera)
        guard case .failed(.InvalidHybridCode) = outcome else {
            return XCTFail("expected InvalidHybridCode from startHybrid, got \(outcome)")
        }
        XCTAssertNil(model.state.hybrid)
        XCTAssertEqual(advertiser.started.value, 0)
    }

    func testNotificationActionsAnswerThePrompt() async throws {
        let verifier = StubVerifier()
        let model = try await readyModel(verifier: verifier)
        let runner = RequestRunner(key: try XCTUnwrap(model.securityKey))

        async let created = runner.processCtap(registration, requester: "Work laptop")
        let state = try await waitFor(model, "the registration prompt") { !$0.prompts.isEmpty }
        let prompt = try XCTUnwrap(state.prompts.first)
        let notification = ApprovalNotification(prompt: prompt)
        XCTAssertEqual(notification.title, "Create a passkey for Example (example.com)?")
        XCTAssertEqual(notification.body, "Grace · Requested by Work laptop")
        XCTAssertNil(notification.onBehalf, "a computer's request")
        XCTAssertEqual(notification.category, ApprovalNotification.verifyCategory)
        XCTAssertEqual(ApprovalNotification.promptId(from: notification.userInfo), prompt.id)

        // Tapping the notification itself answers nothing (the app opens on the prompt).
        let tapped = await model.handleNotificationAction("com.apple.UNNotificationDefaultActionIdentifier",
                                                          userInfo: notification.userInfo)
        XCTAssertNil(tapped)
        let result = await model.handleNotificationAction(ApprovalNotification.approveAction,
                                                          userInfo: notification.userInfo)
        guard case let .answered(.approveVerified(account: nil, signature)) = result else {
            return XCTFail("not a verified answer: \(String(describing: result))")
        }
        XCTAssertFalse(signature.isEmpty)
        let createdReply = await created
        XCTAssertEqual(try Reply(createdReply).status, Ctap.ok)
        XCTAssertEqual(verifier.calls, 1)
        // The prompt closes before the engine stores the passkey: read the list once the reply is in.
        await model.refresh()
        XCTAssertEqual(model.state.info?.credentialCount, 1)
        try await waitFor(model, "the prompt gone") { $0.prompts.isEmpty }

        // Deny from the notification: the computer gets CTAP2_ERR_OPERATION_DENIED.
        async let denied = runner.processCtap(registration, requester: "Work laptop")
        let second = try await waitFor(model, "the second prompt") { !$0.prompts.isEmpty }
        let deny = await model.handleNotificationAction(
            ApprovalNotification.denyAction, userInfo: ApprovalNotification(prompt: second.prompts[0]).userInfo)
        XCTAssertEqual(deny, .answered(.deny))
        let deniedReply = await denied
        XCTAssertEqual(try Reply(deniedReply).status, Ctap.operationDenied)
        XCTAssertEqual(verifier.calls, 1)

        // An ended prompt: typed result, and the user is told.
        let late = await model.respond(to: prompt.id, with: .approve(account: nil))
        XCTAssertEqual(late, .ended)
        XCTAssertEqual(model.state.notice, "That approval has already ended")
    }

    /// authenticatorClientPIN getUVRetries (CTAP 2.1 §6.5.5.3): the key's built-in UV retries left.
    private func uvRetries(_ key: SecurityKey) throws -> Int? {
        let request: CBOR = [1: 2, 2: 7]
        return try Reply(key.processCtap(request: Data([0x06] + request.encoded), requester: "")).body?[5]?.intValue
    }

    /// The proof the engine checks: a signature by another key than the registered one is
    /// refused (CTAP2_ERR_OPERATION_DENIED) and spends no UV retry; a UV key that will not
    /// sign is a denial the user is told about, not a failed verification.
    func testAForgedUvProofIsRefusedWithoutSpendingRetries() async throws {
        let registered = SoftwareUvKeys()
        let model = try makeModel(uvKeys: ForgingUvKeys(registered: registered))
        await model.start()
        XCTAssertNil(model.state.uvKeyProblem)
        XCTAssertEqual(model.state.info?.uvKeyRegistered, true)
        let key = try XCTUnwrap(model.securityKey)
        let runner = RequestRunner(key: key)
        let retriesBefore = try XCTUnwrap(try uvRetries(key))

        async let reply = runner.processCtap(registration, requester: "Work laptop")
        let state = try await waitFor(model, "the prompt") { !$0.prompts.isEmpty }
        XCTAssertEqual(state.prompts[0].uvChallenge.count, 81)
        let result = await model.respond(to: state.prompts[0].id, with: .approve(account: nil))
        guard case .answered(.approveVerified) = result else { return XCTFail("\(result)") }
        let replyBytes = await reply
        XCTAssertEqual(try Reply(replyBytes).status, Ctap.operationDenied)
        XCTAssertEqual(try uvRetries(key), retriesBefore)
    }

    func testAUvKeyThatWillNotSignDeniesAndTellsTheUser() async throws {
        final class Refusing: UvKeyProvider, @unchecked Sendable {
            let inner = SoftwareUvKeys()
            func publicKey() throws -> Data { try inner.publicKey() }
            func sign(_ challenge: Data) throws -> Data { throw CocoaError(.userCancelled) }
        }
        let model = try makeModel(uvKeys: Refusing())
        await model.start()
        let key = try XCTUnwrap(model.securityKey)
        let runner = RequestRunner(key: key)
        let retriesBefore = try XCTUnwrap(try uvRetries(key))
        async let reply = runner.processCtap(registration, requester: "Work laptop")
        let state = try await waitFor(model, "the prompt") { !$0.prompts.isEmpty }
        let result = await model.respond(to: state.prompts[0].id, with: .approve(account: nil))
        XCTAssertEqual(result, .verificationKeyUnusable)
        let replyBytes = await reply
        XCTAssertEqual(try Reply(replyBytes).status, Ctap.operationDenied)
        XCTAssertEqual(model.state.notice, PocketKeyModel.verificationKeyUnusableMessage)
        XCTAssertEqual(try uvRetries(key), retriesBefore)
    }

    /// Face ID or Touch ID changed: the Secure Enclave key (`.biometryCurrentSet`) is invalidated.
    /// The provider says so with a typed error; the request is declined without spending a UV
    /// retry, the user is told, and after a fresh verification a new key is registered and
    /// verified approvals work again.
    func testAnInvalidatedUvKeyIsReportedAndReplacedAfterAFreshVerification() async throws {
        let uvKeys = InvalidatableUvKeys()
        let verifier = StubVerifier()
        let model = try makeModel(verifier: verifier, uvKeys: uvKeys)
        await model.start()
        let key = try XCTUnwrap(model.securityKey)
        let runner = RequestRunner(key: key)
        let retriesBefore = try XCTUnwrap(try uvRetries(key))

        uvKeys.invalidated.value = true
        async let refused = runner.processCtap(registration, requester: "Work laptop")
        let first = try await waitFor(model, "the prompt") { !$0.prompts.isEmpty }
        let result = await model.respond(to: first.prompts[0].id, with: .approve(account: nil))
        XCTAssertEqual(result, .verificationKeyInvalidated)
        let refusedReply = await refused
        XCTAssertEqual(try Reply(refusedReply).status, Ctap.operationDenied)
        XCTAssertEqual(try uvRetries(key), retriesBefore)
        XCTAssertTrue(model.state.uvKeyNeedsRenewal)
        XCTAssertEqual(model.state.notice, PocketKeyModel.verificationKeyInvalidatedMessage)
        try await waitFor(model, "the prompt gone") { $0.prompts.isEmpty }

        // Setting it up again needs a fresh verification: cancelled, nothing changes.
        verifier.answer(.cancelled)
        let cancelled = try await model.renewUvKey()
        XCTAssertEqual(cancelled, .cancelled)
        XCTAssertTrue(model.state.uvKeyNeedsRenewal)
        XCTAssertEqual(uvKeys.replaced.value, 0)
        verifier.answer(.verified)
        let renewed = try await model.renewUvKey()
        XCTAssertEqual(renewed, .renewed)
        XCTAssertFalse(model.state.uvKeyNeedsRenewal)
        XCTAssertEqual(uvKeys.replaced.value, 1)

        // The engine now checks signatures against the new key: a verified approval goes through.
        async let created = runner.processCtap(registration, requester: "Work laptop")
        let second = try await waitFor(model, "the second prompt") { !$0.prompts.isEmpty }
        let approved = await model.respond(to: second.prompts[0].id, with: .approve(account: nil))
        guard case .answered(.approveVerified) = approved else { return XCTFail("not a verified answer: \(approved)") }
        let createdReply = await created
        XCTAssertEqual(try Reply(createdReply).status, Ctap.ok)
    }

    /// The passkey list shows a passkey made through a real registration, delete removes it,
    /// and the factory reset erases only after the user verified.
    func testPasskeyListDeleteAndAFactoryResetThatAsksForVerification() async throws {
        let verifier = StubVerifier()
        let model = try await readyModel(verifier: verifier)
        let runner = RequestRunner(key: try XCTUnwrap(model.securityKey))
        func register() async throws {
            async let created = runner.processCtap(registration, requester: "Work laptop")
            let state = try await waitFor(model, "a registration prompt") { !$0.prompts.isEmpty }
            _ = await model.respond(to: state.prompts[0].id, with: .approve(account: nil))
            let reply = await created
            XCTAssertEqual(try Reply(reply).status, Ctap.ok)
            try await waitFor(model, "the prompt gone") { $0.prompts.isEmpty }
            await model.refresh()
        }
        try await register()
        XCTAssertEqual(model.state.sites.map(\.rpId), ["example.com"])
        let passkey = try XCTUnwrap(model.state.sites.first?.passkeys.first)
        XCTAssertEqual(passkey.userName, "grace@example.com")
        try await model.deletePasskey(passkey)
        XCTAssertEqual(model.state.sites.flatMap(\.passkeys), [])

        try await register()
        XCTAssertEqual(model.factoryResetWarning,
                       "This erases every passkey on this security key, its PIN and its name. "
                       + "Sites and computers will no longer accept it until you register it again.")
        let callsBefore = verifier.calls
        verifier.answer(.cancelled)
        let cancelled = try await model.factoryReset()
        XCTAssertEqual(cancelled, .cancelled)
        verifier.answer(.failed)
        let failed = try await model.factoryReset()
        XCTAssertEqual(failed, .verificationFailed)
        await model.refresh()
        XCTAssertEqual(model.state.sites.map(\.rpId), ["example.com"], "nothing erased without verification")
        verifier.answer(.verified)
        let erased = try await model.factoryReset()
        XCTAssertEqual(erased, .erased)
        XCTAssertEqual(verifier.calls, callsBefore + 3)
        XCTAssertEqual(model.state.sites, [])
        XCTAssertEqual(model.state.info?.credentialCount, 0)
    }

    /// Without a UV key the key offers computers no built-in UV (getInfo has no "uv" option);
    /// with one, a factory reset forgets it and the model registers it again.
    func testTheUvKeyIsRegisteredAtStartAndAgainAfterAReset() async throws {
        let without = try makeModel(uvKeys: nil)
        await without.start()
        XCTAssertEqual(without.state.info?.uvKeyRegistered, false)
        let info = try Reply(try XCTUnwrap(without.securityKey).processCtap(request: Data([0x04]), requester: ""))
        XCTAssertNil(info.body?[4]?["uv"])

        let model = try makeModel()
        await model.start()
        XCTAssertEqual(model.state.info?.uvKeyRegistered, true)
        try await model.factoryReset()
        XCTAssertEqual(model.state.info?.uvKeyRegistered, true)
        let after = try Reply(try XCTUnwrap(model.securityKey).processCtap(request: Data([0x04]), requester: ""))
        XCTAssertEqual(after.body?[4]?["uv"], true)
    }

    /// A phone without a passcode cannot verify: the request is declined, and is not a failed
    /// verification, which would spend one of the key's UV retries (CTAP 2.1 §6.1.2 step 11).
    func testNoPasscodeIsNotAvailableNotAFailedVerification() async throws {
        let verifier = StubVerifier(available: true, result: .notAvailable)
        let model = try await readyModel(verifier: verifier)
        let key = try XCTUnwrap(model.securityKey)
        let runner = RequestRunner(key: key)
        let retriesBefore = try XCTUnwrap(try uvRetries(key))

        async let reply = runner.processCtap(registration, requester: "Work laptop")
        let state = try await waitFor(model, "the prompt") { !$0.prompts.isEmpty }
        let result = await model.respond(to: state.prompts[0].id, with: .approve(account: nil))
        XCTAssertEqual(result, .verificationNotAvailable)
        let replyBytes = await reply
        XCTAssertEqual(try Reply(replyBytes).status, Ctap.operationDenied)
        XCTAssertEqual(model.state.notice, PocketKeyModel.verificationNotAvailableMessage)
        XCTAssertEqual(try uvRetries(key), retriesBefore)
    }

    /// Opened on a phone that cannot verify its user, the key says so to computers (they ask
    /// for its PIN instead) and its prompts never require verification.
    func testNoPasscodeAtOpenMeansNoBuiltInVerification() async throws {
        let model = try await readyModel(verifier: StubVerifier(available: false))
        XCTAssertEqual(model.state.info?.uvAvailable, false)
        let available = try await readyModel(verifier: StubVerifier(available: true))
        XCTAssertEqual(available.state.info?.uvAvailable, true)
    }

    /// Restored onto a new phone: the keychain's key is not the one the data was sealed
    /// with. The model offers a reset (and only then), which leaves a working, empty key.
    func testMasterKeyMismatchLeadsToTheResetFlow() async throws {
        let dir = try freshDirectory()
        let old = try makeModel(directory: dir, provider: MemoryKeyProvider())
        await old.start()
        XCTAssertEqual(old.state.phase, .ready)
        try await old.setLabel("Old phone")

        let model = try makeModel(directory: dir, provider: MemoryKeyProvider())
        await model.start()
        XCTAssertEqual(model.state.phase, .needsReset(message: PocketKeyModel.needsResetMessage))
        XCTAssertNil(model.securityKey)

        try await model.resetStorage()
        XCTAssertEqual(model.state.phase, .ready)
        XCTAssertEqual(model.state.info?.credentialCount, 0)
        XCTAssertNotEqual(model.state.info?.label, "Old phone")

        do {
            try await model.resetStorage()
            XCTFail("a working key was reset")
        } catch {
            XCTAssertEqual(error as? ModelError, .resetNotNeeded)
        }
    }

    /// A keychain that cannot hand out the key (locked since restart) is not a reason to
    /// reset: the model waits, and opens the same key once it can.
    func testKeyProviderFailureIsRetriedNotReset() async throws {
        let dir = try freshDirectory()
        let secret = MemoryKeyProvider().key
        let first = try makeModel(directory: dir, provider: MemoryKeyProvider(key: secret))
        await first.start()
        try await first.setLabel("Kept")

        let provider = SwitchableKeyProvider(nil)
        let model = try makeModel(directory: dir, provider: provider)
        await model.start()
        guard case .keyUnavailable = model.state.phase else {
            return XCTFail("expected keyUnavailable, got \(model.state.phase)")
        }
        do {
            try await model.resetStorage()
            XCTFail("reset while the key was only unavailable")
        } catch {
            XCTAssertEqual(error as? ModelError, .resetNotNeeded)
        }
        provider.current.value = secret
        await model.start()
        XCTAssertEqual(model.state.phase, .ready)
        XCTAssertEqual(model.state.info?.label, "Kept")
    }

    func testSettingsPersistAndPushPayloadsThatAreNotOursAreIgnored() async throws {
        let dir = try freshDirectory()
        let model = try makeModel(directory: dir)
        await model.start()
        try model.updateSettings { $0.phoneName = "Ada's iPhone" }
        XCTAssertEqual(model.state.settings.phoneName, "Ada's iPhone")
        XCTAssertEqual(try makeModel(directory: dir).state.settings.phoneName, "Ada's iPhone")

        let other = await model.handlePush(userInfo: ["aps": ["alert": "Your parcel"], "v": 1, "w": "00"])
        XCTAssertEqual(other, .ignored)
        let unknown = await model.handlePush(userInfo: ["v": 1, "w": String(repeating: "ab", count: 16)])
        XCTAssertEqual(unknown, .ignored)
    }
}

/// A Secure Enclave key as the OS treats it after a biometric change: once `invalidated`, it
/// refuses to sign with `UvKeyError.invalidated`; `replaceKey()` makes a new one.
final class InvalidatableUvKeys: UvKeyProvider, @unchecked Sendable {
    let current = Box(SoftwareUvKeys())
    let invalidated = Box(false)
    let replaced = Box(0)
    func publicKey() throws -> Data { try current.value.publicKey() }
    func sign(_ challenge: Data) throws -> Data {
        if invalidated.value { throw UvKeyError.invalidated }
        return try current.value.sign(challenge)
    }
    func replaceKey() throws -> Data {
        current.value = SoftwareUvKeys()
        invalidated.value = false
        replaced.value += 1
        return try current.value.publicKey()
    }
}
