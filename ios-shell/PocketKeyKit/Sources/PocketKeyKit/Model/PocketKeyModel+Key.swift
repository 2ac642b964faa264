import Foundation
import PocketKeyCore

/// The settings screens' calls on the key itself. Errors are the library's typed
/// `PocketKeyError`s (show `userMessage()`).
extension PocketKeyModel {
    public func setLabel(_ label: String) async throws {
        let key = try requireKey()
        try await offThread { try key.setLabel(label: label) }
        await refresh()
    }

    public func setPin(_ pin: String) async throws {
        let key = try requireKey()
        try await offThread { try key.setPin(pin: pin) }
        await refresh()
    }

    public func changePin(old: String, new: String) async throws {
        let key = try requireKey()
        try await offThread { try key.changePin(oldPin: old, newPin: new) }
        await refresh()
    }

    public func deletePasskey(_ passkey: Passkey) async throws {
        let key = try requireKey()
        _ = try await offThread { try key.deletePasskey(credentialId: passkey.credentialId) }
        await refresh()
    }

    /// Erases every passkey, the PIN and the label (pairings stay).
    public func factoryReset() async throws {
        let key = try requireKey()
        try await offThread { try key.factoryReset() }
        await registerUvKey()
        await refresh()
    }
}
