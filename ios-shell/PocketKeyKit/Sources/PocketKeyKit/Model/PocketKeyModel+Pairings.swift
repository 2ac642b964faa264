import Foundation
import PocketKeyCore

/// Hands the pairing's confirmation code to the model's state.
private final class CodeShower: PairingCodeListener, @unchecked Sendable {
    let show: (String) -> Void
    init(show: @escaping (String) -> Void) { self.show = show }
    func showCode(code: String) { show(code) }
}

extension PocketKeyModel {
    /// Pairs with the computer of a scanned pairing code: `state.pairing` goes `connecting`,
    /// then `confirm(code:)` (show it: the computer's user compares it and confirms there),
    /// then nil. Afterwards the new pairing is listed, told this phone's push address, and
    /// served if the model is listening.
    func pair(url: String) async -> ScanOutcome {
        guard let key else { return .failed(.Internal(detail: ModelError.notOpen.localizedDescription)) }
        let settings = state.settings
        update { $0.pairing = .connecting(computerHint: nil) }
        let shower = CodeShower { [weak self] code in self?.update { $0.pairing = .confirm(code: code) } }
        do {
            let info = try await offThread {
                try key.pair(
                    url: url, phoneName: settings.phoneName, allowInsecureRelay: settings.allowInsecureRelay,
                    listener: shower)
            }
            update { $0.pairing = nil }
            await pairingsChanged()
            return .paired(info)
        } catch {
            update { $0.pairing = nil }
            return .failed(error as? PocketKeyError ?? .PairingFailed(detail: error.localizedDescription))
        }
    }

    /// After a pairing was added or resumed: list it, tell its relay where to push, serve it.
    private func pairingsChanged() async {
        await refresh()
        if let registration = withLock({ pushRegistration }) {
            await registerPush(registration)
        }
        if state.listening {
            await stopListening()
            startListening()
        }
    }

    /// Keeps a connection to every paired computer (while the app is in the foreground; in
    /// the background pushes wake it instead). Approvals arrive in `state.prompts`.
    public func startListening() {
        guard let key else { return }
        let phoneName = state.settings.phoneName
        let started: Bool = withLock {
            guard listener == nil else { return false }
            listener = key.listen(phoneName: phoneName)
            return true
        }
        if started {
            update { $0.listening = true }
        }
    }

    /// Stops serving the paired computers (cancels a prompt they asked for).
    public func stopListening() async {
        let running = withLock { () -> PairingListener? in
            defer { listener = nil }
            return listener
        }
        if let running {
            _ = try? await offThread { running.stop() }
        }
        update { $0.listening = false }
    }

    /// Renames a paired computer on this phone.
    public func renamePairing(_ id: String, to name: String) async throws {
        let key = try requireKey()
        _ = try await offThread { try key.renamePairing(id: id, name: name) }
        await refresh()
    }

    /// Unpairs a computer: tells it and its relay when reachable (bounded wait), forgets it.
    public func unpair(_ id: String) async throws {
        let key = try requireKey()
        _ = try await offThread { try key.unpair(id: id) }
        await refresh()
    }

    /// Serves a suspended pairing again (the relay said the computer removed it, which the
    /// relay cannot prove; the user knows better).
    public func resumePairing(_ id: String) async throws {
        let key = try requireKey()
        _ = try await offThread { try key.resumePairing(id: id) }
        await pairingsChanged()
    }
}
