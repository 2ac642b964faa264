import Foundation
import PocketKeyCore

extension PocketKeyModel {
    /// Registers this phone's push address with the relay of every paired computer, and
    /// remembers it for pairings made later. Returns (and puts in `state.pushNotRegistered`)
    /// the computers whose relay could not be told.
    @discardableResult
    public func registerPush(_ registration: PushRegistration) async -> [String] {
        withLock { pushRegistration = registration }
        guard let key else { return [] }
        do {
            let failed = try await offThread { try key.registerPush(target: registration) }
            update { $0.pushNotRegistered = failed }
            return failed
        } catch {
            notify(error.pocketKeyUserMessage)
            return state.pairings.map(\.computerName)
        }
    }

    /// The APNs device token `didRegisterForRemoteNotificationsWithDeviceToken` gave.
    /// `sandbox` for development builds (the APNs development environment).
    @discardableResult
    public func registerAPNs(deviceToken: Data, sandbox: Bool) async -> [String] {
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
