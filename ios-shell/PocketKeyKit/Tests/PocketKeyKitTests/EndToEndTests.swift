#if os(Linux)
import Foundation
import PocketKeyKit
import XCTest

/// Where the end-to-end tests find the programs (set by scripts/test-linux.sh):
/// PK_IOS_E2E_BIN          the directory holding pocketkey-relay, pocketkey-bridge, pocketkey-org
///                         and pocketkey-hybrid-browser
/// PK_IOS_E2E_PYTHON       a python3 with `cryptography` (default /usr/bin/python3)
/// PK_IOS_E2E_PYTHONPATH   where python-fido2 2.x is
struct EndToEnd {
    let relay: String
    let bridge: String
    let org: String
    /// The browser's side of hybrid (testkit's pocketkey-hybrid-browser).
    let hybridBrowser: String
    let python: String
    let scripts: URL
    /// tests/python/webauthn_client.py, the python-fido2 browser the Android tests use too.
    let webauthnClient: URL
    let environment: [String: String]

    static func fromEnvironment(file: StaticString = #filePath) throws -> EndToEnd {
        let env = ProcessInfo.processInfo.environment
        guard let bin = env["PK_IOS_E2E_BIN"], let pythonPath = env["PK_IOS_E2E_PYTHONPATH"] else {
            throw ChildFailed(description:
                "PK_IOS_E2E_BIN and PK_IOS_E2E_PYTHONPATH are not set: run ios-shell/scripts/test-linux.sh")
        }
        // .../ios-shell/PocketKeyKit/Tests/PocketKeyKitTests/EndToEndTests.swift
        let shell = URL(fileURLWithPath: "\(file)").deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return EndToEnd(
            relay: "\(bin)/pocketkey-relay", bridge: "\(bin)/pocketkey-bridge", org: "\(bin)/pocketkey-org",
            hybridBrowser: "\(bin)/pocketkey-hybrid-browser",
            python: env["PK_IOS_E2E_PYTHON"] ?? "/usr/bin/python3",
            scripts: shell.appendingPathComponent("scripts/e2e"),
            webauthnClient: shell.deletingLastPathComponent().appendingPathComponent("tests/python/webauthn_client.py"),
            environment: [
                "PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": pythonPath, "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1", "RUST_BACKTRACE": "1",
            ])
    }
}

/// The app model against real processes on loopback: a `pocketkey-relay`, a
/// `pocketkey-bridge` (the computer's virtual security key), python-fido2 as the browser, and
/// a webhook standing in for APNs. The model pairs from a camera scan of the bridge's code,
/// approvals arrive in its queue and are answered as the notification action answers them,
/// and python-fido2's Fido2Server verifies what the key made.
final class EndToEndTests: ModelTestCase {
    private var children: [Child] = []

    override func tearDown() {
        for child in children.reversed() { child.stop() }
        children = []
        super.tearDown()
    }

    private func start(_ executable: String, _ arguments: [String], _ e2e: EndToEnd, stdin: Bool = false) throws -> Child {
        let child = try Child(
            executable, arguments, environment: e2e.environment, logDirectory: freshDirectory(), stdin: stdin)
        children.append(child)
        return child
    }

    private func browser(_ e2e: EndToEnd, udp: UInt16, user: String, signIn: Bool) throws -> Child {
        try start(e2e.python, [
            e2e.webauthnClient.path, "--udp", "127.0.0.1:\(udp)",
            "--rp", "ios.example.org", "--user", user,
        ] + (signIn ? ["--sign-in"] : []), e2e)
    }

    func testPairFromTheCameraServeApprovalsThenWakeByPush() async throws {
        let e2e = try EndToEnd.fromEnvironment()
        let sink = try start(e2e.python, [e2e.scripts.appendingPathComponent("webhook_sink.py").path], e2e)
        let wakeURL = "http://\(try await sink.line("listening on "))/wake"
        let relay = try start(e2e.relay, ["--listen", "127.0.0.1:0", "--memory", "--webhook-allow", wakeURL], e2e)
        let relayAddress = try await relay.line("listening on ")
        let udp = try freeUDPPort()
        let bridge = try start(e2e.bridge, [
            "--key-file", "--udp", "127.0.0.1:\(udp)", "--relay", "ws://\(relayAddress)",
            "--state-dir", try freshDirectory().path, "--name", "Test laptop", "--phone-timeout", "60",
            "--print-url", "--auto-confirm",
        ], e2e)
        let pairingURL = try await bridge.line("pair: ")

        let verifier = StubVerifier()
        let model = try makeModel(verifier: verifier)
        await model.start()
        XCTAssertEqual(model.state.phase, .ready)

        // The camera scans the bridge's code: the model pairs, showing the confirmation code.
        let codes = Task { () -> [String] in
            var shown: [String] = []
            for await state in model.states() {
                if case let .confirm(code)? = state.pairing, shown.last != code { shown.append(code) }
                if !state.pairings.isEmpty { break }
            }
            return shown
        }
        let outcome = await model.handleScan(pairingURL, source: .camera)
        guard case let .paired(info) = outcome else { return XCTFail("not paired: \(outcome)") }
        XCTAssertEqual(info.computerName, "Test laptop")
        let shown = await codes.value
        XCTAssertEqual(shown.count, 1, "\(shown)")
        XCTAssertTrue(shown.allSatisfy { $0.count == 6 && $0.allSatisfy(\.isNumber) }, "\(shown)")
        XCTAssertNil(model.state.pairing)
        XCTAssertEqual(model.state.pairings.map(\.computerName), ["Test laptop"])

        // Listening (the app in the foreground): the browser registers and signs in.
        model.startListening()
        let first = try browser(e2e, udp: udp, user: "alice", signIn: true)
        let answered = try await approveFromNotifications(model, count: 2)
        // python-fido2 gets a UV token first (getPinUvAuthTokenUsingUvWithPermissions, CTAP 2.1
        // §6.5.5.7), scoped to the site: that is what the user approves, with verification.
        XCTAssertEqual(answered.map(\.operation), [.verifyUser, .verifyUser])
        XCTAssertEqual(answered.map(\.requester), ["Test laptop", "Test laptop"])
        XCTAssertEqual(answered.map(\.rpId), ["ios.example.org", "ios.example.org"])
        XCTAssertTrue(answered.allSatisfy(\.verificationRequired))
        let firstStatus = try await within(90, "the first browser's end") { await first.exitStatus() }
        XCTAssertEqual(firstStatus, 0, first.stderr)
        XCTAssertEqual(first.output, ["registered: alice uv=True", "signed in: alice"])
        XCTAssertEqual(verifier.calls, 2)

        // In the background: no connection; the relay pushes (the webhook standing in for
        // APNs), the push handler serves the computer, the approval arrives as before.
        await model.stopListening()
        // A webhook the computer's relay does not allow: its bad_push_target is a refusal for
        // good, told by the computer's name and not retried; the allowed one is then taken.
        let refused = await model.registerPush(.webhook(url: "http://127.0.0.1:9/wake"))
        guard refused.count == 1, refused[0].name == "Test laptop", case let .refused(reason) = refused[0].problem else {
            return XCTFail("not refused by the computer's relay: \(refused)")
        }
        XCTAssertTrue(reason.contains("--webhook-allow"), reason)
        XCTAssertEqual(model.state.notice, PocketKeyModel.pushRefusedMessage("Test laptop", reason: reason))
        let notRetried = await model.retryPushRegistration()
        XCTAssertNil(notRetried)
        model.dismissNotice()
        let notRegistered = await model.registerPush(.webhook(url: wakeURL))
        XCTAssertEqual(notRegistered, [])
        let second = try browser(e2e, udp: udp, user: "bob", signIn: false)
        let push = try await sink.line("push: ")
        let served = Task { await model.handlePush(payload: push) }
        let woken = try await approveFromNotifications(model, count: 1)
        XCTAssertEqual(woken.map(\.operation), [.verifyUser])
        XCTAssertEqual(woken.first?.requester, "Test laptop")
        let pushOutcome = try await within(90, "handlePush's return") { await served.value }
        XCTAssertEqual(pushOutcome, .served(computerName: "Test laptop", request: true))
        let secondStatus = try await within(90, "the second browser's end") { await second.exitStatus() }
        XCTAssertEqual(secondStatus, 0, second.stderr)
        XCTAssertEqual(second.output, ["registered: bob uv=True"])
        try await waitFor(model, "both passkeys listed") { $0.info?.credentialCount == 2 }

        // The pairing list: rename on this phone, then unpair (the bridge then shows a new code).
        try await model.renamePairing(info.id, to: "Desk computer")
        XCTAssertEqual(model.state.pairings.map(\.computerName), ["Desk computer"])
        try await model.unpair(info.id)
        XCTAssertEqual(model.state.pairings, [])
        let nextCode = try await bridge.line("pair: ")
        XCTAssertTrue(nextCode.hasPrefix("pocketkey://pair?"), nextCode)
    }

    /// An organisation's invite end to end: a real `pocketkey-org serve` invites through its
    /// REST API (scripts/e2e/org_admin.py), the link is read from the outbox mail and handed to
    /// the model as a camera scan and as an opened link (a Universal Link); the typed failures
    /// reach the screen with a next step; a revocation made while the app was closed shows at
    /// the next start, a suspension after a push wake-up.
    func testActivationFromAnInviteThenRevocationAtStartAndSuspensionOnAWake() async throws {
        let e2e = try EndToEnd.fromEnvironment()
        let orgDir = try freshDirectory()
        let admin = e2e.scripts.appendingPathComponent("org_admin.py").path
        _ = try await start(e2e.python, [admin, "serve", e2e.org, orgDir.path], e2e).line("listening: ")
        func org(_ arguments: String...) async throws -> String {
            let child = try start(e2e.python, [admin, arguments[0], orgDir.path] + arguments.dropFirst(), e2e)
            let status = await child.exitStatus()
            XCTAssertEqual(status, 0, child.stderr)
            return child.output.last ?? ""
        }
        func link(_ address: String) async throws -> String {
            String(try await org("invite", address).dropFirst("link: ".count))
        }
        func failure(_ outcome: ScanOutcome) -> ActivationFailure? {
            if case let .activationFailed(failure) = outcome { return failure }
            XCTFail("expected a failed activation, got \(outcome)")
            return nil
        }

        // Alice scans the invite's QR code (the page the link shows on a computer).
        let aliceDir = try freshDirectory()
        let provider = MemoryKeyProvider()
        var alice: PocketKeyModel? = try makeModel(directory: aliceDir, provider: provider)
        await alice!.start()
        let aliceLink = try await link("alice@acme.example")
        let scanned = await alice!.handleScan(aliceLink, source: .camera)
        XCTAssertEqual(scanned, .activated(OrganisationInfo(name: "Acme", status: .active)))
        XCTAssertEqual(alice!.state.organisation, OrganisationInfo(name: "Acme", status: .active))
        XCTAssertEqual(alice!.state.notice, "This key is managed by Acme.")

        // Bob opens his invite's link (the mail's button, a Universal Link); Alice's used one fails.
        let bob = try makeModel()
        await bob.start()
        let used = failure(await bob.handleScan(aliceLink, source: .link))
        XCTAssertEqual(used?.problem, .used)
        XCTAssertEqual(used?.message, "This activation link was already used")
        XCTAssertEqual(bob.state.notice, used.map { "\($0.message). \($0.nextStep)" })
        let opened = await bob.handleScan(try await link("bob@acme.example"), source: .link)
        XCTAssertEqual(opened, .activated(OrganisationInfo(name: "Acme", status: .active)))

        // Expired, revoked before use, a server that cannot be reached.
        let carol = try makeModel()
        await carol.start()
        let late = try await link("carol@acme.example")
        _ = try await org("expire")
        let expired = failure(await carol.handleScan(late, source: .link))
        XCTAssertEqual(expired?.problem, .expired)
        let daveLink = try await link("dave@acme.example")
        _ = try await org("revoke", "dave@acme.example", "Left the company")
        let revokedLink = failure(await carol.handleScan(daveLink, source: .camera))
        XCTAssertEqual(revokedLink?.problem, .revoked)
        XCTAssertEqual(revokedLink?.message, "Your organisation revoked this key")
        let closedPort = try freePort(SOCK_STREAM)
        let unreachable = failure(await carol.handleScan(
            "http://127.0.0.1:\(closedPort)/activate/" + String(repeating: "ab", count: 32), source: .link))
        XCTAssertEqual(unreachable?.problem, .network)
        XCTAssertNil(carol.state.organisation)

        // Revoked while Alice's app was closed: the next start shows it.
        _ = try await org("revoke", "alice@acme.example", "Phone reported lost")
        alice = nil
        let restarted = try makeModel(directory: aliceDir, provider: provider)
        await restarted.start()
        XCTAssertEqual(restarted.state.organisation,
                       OrganisationInfo(name: "Acme", status: .revoked, reason: "Phone reported lost"))
        XCTAssertEqual(restarted.state.notice,
                       "Your organisation revoked this key: Phone reported lost. "
                       + "It no longer signs in to Acme's sites; your own passkeys still work.")

        // Suspended while Bob's app runs: a wake-up (no data in it) brings it, and the resume.
        _ = try await org("suspend", "bob@acme.example", "Security review")
        let wake = await bob.handlePush(payload: "{}")
        XCTAssertEqual(wake, .ignored)
        XCTAssertEqual(bob.state.organisation?.status, .suspended)
        XCTAssertEqual(bob.state.organisation?.reason, "Security review")
        _ = try await org("resume", "bob@acme.example")
        _ = await bob.handlePush(payload: "{}")
        XCTAssertEqual(bob.state.organisation?.status, .active)
    }

    /// A registration an organisation asks for on the user's behalf: the sync's prompt is marked
    /// (`onBehalf`), the notification names the organisation, the site and the account, the
    /// user approves from it and the organisation's registration completes. The reset warning
    /// then names the organisation.
    func testARegistrationOnTheUsersBehalfIsPromptedAsTheOrganisations() async throws {
        let e2e = try EndToEnd.fromEnvironment()
        let orgDir = try freshDirectory()
        let admin = e2e.scripts.appendingPathComponent("org_admin.py").path
        _ = try await start(e2e.python, [admin, "serve", e2e.org, orgDir.path], e2e).line("listening: ")
        func org(_ arguments: String...) async throws -> String {
            let child = try start(e2e.python, [admin, arguments[0], orgDir.path] + arguments.dropFirst(), e2e)
            let status = await child.exitStatus()
            XCTAssertEqual(status, 0, child.stderr)
            return child.output.last ?? ""
        }
        let model = try makeModel()
        await model.start()
        let link = String(try await org("invite", "alice@acme.example").dropFirst("link: ".count))
        let activated = await model.handleScan(link, source: .link)
        XCTAssertEqual(activated, .activated(OrganisationInfo(name: "Acme", status: .active)))
        let job = String(try await org("register", "alice@acme.example", "login.example.com", "alice@acme.example")
            .dropFirst("registration: ".count))

        async let synced: Void = model.syncOrganisation()
        let state = try await waitFor(model, "the organisation's prompt") { !$0.prompts.isEmpty }
        let prompt = try XCTUnwrap(state.prompts.first)
        XCTAssertEqual(prompt.onBehalf, OnBehalf(organisation: "Acme", account: "alice@acme.example"))
        let notification = ApprovalNotification(prompt: prompt)
        XCTAssertEqual(notification.title, "Acme asks to register this key with login.example.com for alice@acme.example?")
        XCTAssertEqual(notification.onBehalf, prompt.onBehalf)
        let result = await model.handleNotificationAction(ApprovalNotification.approveAction, userInfo: notification.userInfo)
        guard case .answered(.approveVerified)? = result else { return XCTFail("\(String(describing: result))") }
        await synced
        let status = try await org("registration", job)
        XCTAssertEqual(status, "status: completed")
        XCTAssertTrue(model.factoryResetWarning.hasSuffix(
            "The passkeys Acme registered for you go too: ask Acme to register them again."), model.factoryResetWarning)
    }

    /// The push address and the organisation (a real `pocketkey-org serve`): refused for good
    /// (the server offers no webhook provider), the user is told and nothing is retried; not
    /// reached (the server stopped), nothing is shown and the model registers again when the
    /// app comes to the foreground, which succeeds once the server is back and takes it.
    func testAPushAddressTheOrganisationRefusesIsToldOneItCannotReachIsRetried() async throws {
        let e2e = try EndToEnd.fromEnvironment()
        let orgDir = try freshDirectory()
        let admin = e2e.scripts.appendingPathComponent("org_admin.py").path
        let server = try start(e2e.python, [admin, "serve", e2e.org, orgDir.path], e2e)
        _ = try await server.line("listening: ")
        let invite = try start(e2e.python, [admin, "invite", orgDir.path, "alice@acme.example"], e2e)
        let invited = await invite.exitStatus()
        XCTAssertEqual(invited, 0, invite.stderr)
        let model = try makeModel()
        await model.start()
        let link = String((invite.output.last ?? "").dropFirst("link: ".count))
        let activated = await model.handleScan(link, source: .link)
        XCTAssertEqual(activated, .activated(OrganisationInfo(name: "Acme", status: .active)))
        model.dismissNotice()

        let wakeURL = "http://127.0.0.1:9/wake"
        let refused = await model.registerPush(.webhook(url: wakeURL))
        guard refused.count == 1, refused[0].name == "Acme", case let .refused(reason) = refused[0].problem else {
            return XCTFail("not refused by Acme: \(refused)")
        }
        XCTAssertEqual(model.state.pushNotRegistered, refused)
        XCTAssertEqual(model.state.notice, PocketKeyModel.pushRefusedMessage("Acme", reason: reason))
        let notRetried = await model.retryPushRegistration()
        XCTAssertNil(notRetried, "a refusal for good is not retried")
        model.dismissNotice()
        let again = await model.registerPush(.webhook(url: wakeURL))
        XCTAssertEqual(again, refused)
        XCTAssertNil(model.state.notice, "the same refusal is told once")

        server.stop()
        let unreachable = await model.registerPush(.webhook(url: wakeURL))
        XCTAssertEqual(unreachable, [PushNotRegistered(name: "Acme", problem: .tryLater)])
        XCTAssertEqual(model.state.pushNotRegistered, unreachable)
        XCTAssertNil(model.state.notice, "nothing for the user to do")

        let restarted = try start(
            e2e.python, [admin, "restart", e2e.org, orgDir.path, "--webhook-allow", wakeURL], e2e)
        _ = try await restarted.line("listening: ")
        let retried = await model.retryPushRegistration()
        XCTAssertEqual(retried, [])
        XCTAssertEqual(model.state.pushNotRegistered, [])
        XCTAssertNil(model.state.notice)
    }

    /// A forged proof end to end: the phone answers "verified" with a signature by another key
    /// than the one it registered; the engine refuses it, python-fido2's UV-required
    /// registration through the bridge gets CTAP2_ERR_OPERATION_DENIED, and no UV retry is spent.
    func testAForgedUvProofIsRefusedThroughTheBridge() async throws {
        let e2e = try EndToEnd.fromEnvironment()
        let relay = try start(e2e.relay, ["--listen", "127.0.0.1:0", "--memory"], e2e)
        let relayAddress = try await relay.line("listening on ")
        let udp = try freeUDPPort()
        let bridge = try start(e2e.bridge, [
            "--key-file", "--udp", "127.0.0.1:\(udp)", "--relay", "ws://\(relayAddress)",
            "--state-dir", try freshDirectory().path, "--name", "Test laptop", "--phone-timeout", "60",
            "--print-url", "--auto-confirm",
        ], e2e)
        let pairingURL = try await bridge.line("pair: ")

        let model = try makeModel(uvKeys: ForgingUvKeys(registered: SoftwareUvKeys()))
        await model.start()
        XCTAssertEqual(model.state.info?.uvKeyRegistered, true)
        guard case .paired = await model.handleScan(pairingURL, source: .camera) else {
            return XCTFail("not paired")
        }
        let key = try XCTUnwrap(model.securityKey)
        let getUvRetries = Data([0x06] + ([1: 2, 2: 7] as CBOR).encoded)
        let retriesBefore = try Reply(key.processCtap(request: getUvRetries, requester: "")).body?[5]
        XCTAssertNotNil(retriesBefore)

        model.startListening()
        let browser = try browser(e2e, udp: udp, user: "mallory", signIn: false)
        let answered = try await approveFromNotifications(model, count: 1)
        XCTAssertEqual(answered.map(\.verificationRequired), [true])
        let refused = try await browser.line("refused: ")
        XCTAssertEqual(refused, "mallory OPERATION_DENIED")
        let status = try await within(90, "the browser's end") { await browser.exitStatus() }
        XCTAssertEqual(status, 2, browser.stderr)
        await model.stopListening()
        XCTAssertEqual(try Reply(key.processCtap(request: getUvRetries, requester: "")).body?[5], retriesBefore)
    }

    /// What a hybrid sign-in from a browser's QR code came to.
    private struct HybridRun {
        /// The browser's exit status and its `result:` line.
        let status: Int32
        let result: String
        /// The prompts the model queued, in order, and what each notification action came to.
        let prompts: [ApprovalPrompt]
        let answers: [ApprovalResult?]
        let model: PocketKeyModel
    }

    /// A browser's `FIDO:/` code end to end (CTAP 2.2 hybrid transport): testkit's
    /// `pocketkey-hybrid-browser` shows its code and waits for the phone's advert, a
    /// `pocketkey-relay` is the tunnel server. The code goes to the model as a camera scan; the
    /// model's advertiser (where a platform has one) carries the advert to the browser's stdin,
    /// as the radio would; then the browser registers a passkey for hybrid.example and signs in
    /// with it, every prompt answered from the model's queue with the notification action
    /// `action`. Ends when the browser has printed its result and exited.
    private func hybridFromBrowser(_ e2e: EndToEnd, answering action: String) async throws -> HybridRun {
        let tunnel = try start(e2e.relay, ["--listen", "127.0.0.1:0", "--memory"], e2e)
        let tunnelURL = "ws://\(try await tunnel.line("listening on "))"
        let browser = try start(e2e.hybridBrowser, ["--relay", tunnelURL, "--rp", "hybrid.example"], e2e, stdin: true)
        let code = "FIDO:/" + (try await browser.line("FIDO:/"))
        let radio = AdvertToBrowser(browser)
        let model = try makeModel(advertiser: radio, hybridTunnelUrl: tunnelURL)
        await model.start()
        XCTAssertEqual(model.state.phase, .ready)

        // Every prompt, as it is queued, answered the way the notification's action answers it.
        let answering = Task { () -> ([ApprovalPrompt], [ApprovalResult?]) in
            var prompts: [ApprovalPrompt] = []
            var answers: [ApprovalResult?] = []
            for await state in model.states() {
                for prompt in state.prompts where !prompts.contains(where: { $0.id == prompt.id }) {
                    prompts.append(prompt)
                    let notification = ApprovalNotification(prompt: prompt)
                    answers.append(await model.handleNotificationAction(action, userInfo: notification.userInfo))
                }
            }
            return (prompts, answers)
        }
        let outcome = await model.handleScan(code, source: .camera)
        XCTAssertEqual(outcome, .hybridStarted)
        let result = try await browser.line("result: ")
        let status = try await within(90, "the browser's end") { await browser.exitStatus() }
        // The session ends once the browser has gone.
        try await waitFor(model, "the hybrid session's end") { state in
            if case .running? = state.hybrid { return false }
            return state.hybrid != nil
        }
        answering.cancel()
        let (prompts, answers) = await answering.value
        XCTAssertEqual(radio.adverts.value.map(\.count), [20], "one advert of 20 bytes of service data")
        return HybridRun(status: status, result: result, prompts: prompts, answers: answers, model: model)
    }

    func testHybridFromABrowsersCodeRegistersAndSignsInThroughTheTunnel() async throws {
        let run = try await hybridFromBrowser(try EndToEnd.fromEnvironment(), answering: ApprovalNotification.approveAction)
        XCTAssertTrue(run.result.hasPrefix("verified rp=hybrid.example credential="), run.result)
        XCTAssertEqual(run.status, 0, run.result)
        XCTAssertEqual(run.prompts.map(\.operation), [.register, .signIn])
        XCTAssertEqual(run.prompts.map(\.rpId), ["hybrid.example", "hybrid.example"])
        XCTAssertEqual(run.answers.count, 2)
        for answer in run.answers {
            guard case .answered(.approveVerified)? = answer else { return XCTFail("not approved: \(String(describing: answer))") }
        }
        guard case .finished? = run.model.state.hybrid else {
            return XCTFail("session: \(String(describing: run.model.state.hybrid))")
        }
        await run.model.refresh()
        XCTAssertEqual(run.model.state.sites.map(\.rpId), ["hybrid.example"])
    }

    func testHybridRegistrationDeniedFromTheNotificationFailsTheBrowser() async throws {
        let run = try await hybridFromBrowser(try EndToEnd.fromEnvironment(), answering: ApprovalNotification.denyAction)
        // CTAP2_ERR_OPERATION_DENIED (0x27): the browser stops after the refused registration.
        XCTAssertEqual(run.result, "failed makeCredential status 0x27")
        XCTAssertEqual(run.status, 1, run.result)
        XCTAssertEqual(run.prompts.map(\.operation), [.register])
        XCTAssertEqual(run.answers, [.answered(.deny)])
        await run.model.refresh()
        XCTAssertEqual(run.model.state.sites, [])
    }
}

/// The phone's BLE advertiser in the hybrid end-to-end tests: on loopback there is no radio,
/// so the service data the engine asks it to advertise goes to the browser program's stdin.
private final class AdvertToBrowser: Advertiser, @unchecked Sendable {
    let adverts = Box<[Data]>([])
    private let browser: Child
    init(_ browser: Child) { self.browser = browser }

    func start(serviceData: Data) throws {
        adverts.value.append(serviceData)
        do {
            try browser.send("advert: " + serviceData.map { String(format: "%02X", $0) }.joined())
        } catch {
            throw AdvertiserError.Failed(reason: "\(error)")
        }
    }

    func stop() {}
}
#endif
