import Foundation
import PocketKeyCore

extension PocketKeyModel {
    /// Registers this phone's push address with the relay of every paired computer and the
    /// organisation, and remembers it for pairings made later. Returns (and puts in
    /// `state.pushNotRegistered`) those that did not take it. A refusal for good (a computer's
    /// relay or the organisation will not take this address, or the organisation no longer
    /// serves this key) is told to the user; the rest is for `retryPushRegistration()`.
    @discardableResult
    public func registerPush(_ registration: PushRegistration) async -> [PushNotRegistered] {
        withLock { pushRegistration = registration }
        guard let key else { return [] }
        let failed: [PushNotRegistered]
        do {
            failed = try await offThread { try key.registerPush(target: registration) }
        } catch {
            notify(error.pocketKeyUserMessage)
            failed = state.pairings.map { PushNotRegistered(name: $0.computerName, problem: .tryLater) }
        }
        update { state in
            // Told once: a retry for another relay or the organisation meets the same
            // refusals (a relay's or the organisation's) again.
            let refusals = failed.compactMap { entry -> String? in
                guard case let .refused(reason) = entry.problem, !state.pushNotRegistered.contains(entry) else {
                    return nil
                }
                return Self.pushRefusedMessage(entry.name, reason: reason)
            }
            state.pushNotRegistered = failed
            if !refusals.isEmpty { state.notice = refusals.joined(separator: "\n") }
        }
        return failed
    }

    /// Registers the remembered push address again when the last registration left some
    /// relay or the organisation to try later (no network, a server busy); nil, with nothing
    /// sent, when there is nothing to retry: none failed, or only refusals for good, which the
    /// same address would meet again. The app calls it when it comes to the foreground.
    @discardableResult
    public func retryPushRegistration() async -> [PushNotRegistered]? {
        guard state.pushNotRegistered.contains(where: { $0.problem == .tryLater }),
              let registration = withLock({ pushRegistration })
        else { return nil }
        return await registerPush(registration)
    }

    public static func pushRefusedMessage(_ name: String, reason: String) -> String {
        "\(name) refused this phone's notification address (\(reason)), so it cannot wake PocketKey "
            + "while the app is closed. Keep the app open to approve its requests, or ask whoever manages \(name) for help."
    }

    /// The APNs device token `didRegisterForRemoteNotificationsWithDeviceToken` gave.
    /// `sandbox` for development builds (the APNs development environment).
    @discardableResult
    public func registerAPNs(deviceToken: Data, sandbox: Bool) async -> [PushNotRegistered] {
        let hex = deviceToken.map { String(format: "%02x", $0) }.joined()
        return await registerPush(.apns(deviceToken: hex, sandbox: sandbox))
    }

    /// A push notification's payload as JSON: serves the computer it woke this phone for (its
    /// request's approval arrives in `state.prompts` as usual) and returns once the computer
    /// went quiet. Opens the key first if needed (a push may launch the app).
    public func handlePush(payload: String) async -> PushOutcome {
        if key == nil {
            await start()
        }
        guard let key else { return .ignored }
        let phoneName = state.settings.phoneName
        let idle = config.pushIdleMs
        var served: PushOutcome?
        do {
            served = try await offThread { try key.handlePush(payload: payload, phoneName: phoneName, idleMs: idle) }
        } catch {
            notify(error.pocketKeyUserMessage)
        }
        // The organisation's wake-ups carry no data: each wake-up is also the chance to learn
        // of a suspension or revocation. After the computer, which waits for an answer.
        await syncOrganisation()
        guard let outcome = served else { return .ignored }
        switch outcome {
        case let .paused(name, until):
            update { $0.pausedComputers[name] = until }
            notify(Self.pausedMessage(name))
        case .served:
            await refresh()
        case .ignored, .organisation:
            break  // the organisation's wake-up: synced above
        }
        return outcome
    }

    /// `handlePush(payload:)` for a notification's `userInfo` (APNs: `aps` beside our keys).
    public func handlePush(userInfo: [AnyHashable: Any]) async -> PushOutcome {
        guard let json = Self.json(userInfo) else { return .ignored }
        return await handlePush(payload: json)
    }

    static func json(_ userInfo: [AnyHashable: Any]) -> String? {
        var object: [String: Any] = [:]
        for (key, value) in userInfo {
            guard let key = key.base as? String else { continue }
            object[key] = value
        }
        guard JSONSerialization.isValidJSONObject(object),
              let data = try? JSONSerialization.data(withJSONObject: object)
        else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    static func pausedMessage(_ computer: String) -> String {
        "\(computer) woke this phone too often without asking anything: its wake-ups are ignored for now. "
            + "If you did not expect this, unpair it."
    }
}
