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

    /// What the reset screen's confirmation says: everything goes, including the passkeys the
    /// organisation registered for the user (they must be registered again).
    public var factoryResetWarning: String {
        var text = "This erases every passkey on this security key, its PIN and its name. "
            + "Sites and computers will no longer accept it until you register it again."
        if let organisation = state.organisation?.name {
            text += " The passkeys \(organisation) registered for you go too: ask \(organisation) to register them again."
        }
        return text
    }

    /// The reset screen's confirmed action: erases every passkey, the PIN and the label
    /// (pairings stay). The user confirmed `factoryResetWarning`; a phone that can verify its
    /// user verifies first (a borrowed unlocked phone must not erase the key). A phone that
    /// cannot (no passcode) relies on the confirmation alone.
    @discardableResult
    public func factoryReset() async throws -> FactoryResetResult {
        let key = try requireKey()
        if config.verifier.isAvailable() {
            switch await config.verifier.verify(reason: "Erase the security key") {
            case .verified, .notAvailable: break
            case .cancelled: return .cancelled
            case .failed: return .verificationFailed
            }
        }
        try await offThread { try key.factoryReset() }
        update { $0.uvKeyNeedsRenewal = false }
        await registerUvKey()
        await refresh()
        return .erased
    }

    /// Sets verification up again after the OS invalidated the UV key
    /// (`state.uvKeyNeedsRenewal`): verifies the user afresh, then replaces the key and
    /// registers the new one with the engine.
    @discardableResult
    public func renewUvKey() async throws -> UvKeyRenewal {
        let key = try requireKey()
        guard let uvKeys = config.uvKeys, config.verifier.isAvailable() else { return .notAvailable }
        switch await config.verifier.verify(reason: "Set up verification for PocketKey again") {
        case .verified: break
        case .cancelled: return .cancelled
        case .failed: return .verificationFailed
        case .notAvailable: return .notAvailable
        }
        try await offThread { try key.registerUvKey(publicKey: try uvKeys.replaceKey()) }
        update {
            $0.uvKeyNeedsRenewal = false
            $0.uvKeyProblem = nil
        }
        await refresh()
        return .renewed
    }
}

/// What `factoryReset()` came to.
public enum FactoryResetResult: Equatable, Sendable {
    case erased
    /// The user cancelled the verification: nothing was erased.
    case cancelled
    /// The verification failed: nothing was erased.
    case verificationFailed
}

/// What `renewUvKey()` came to.
public enum UvKeyRenewal: Equatable, Sendable {
    /// A new UV key is registered: verified approvals work again.
    case renewed
    case cancelled
    case verificationFailed
    /// This phone has no biometric or passcode (or the app no UV key): nothing to set up.
    case notAvailable
}
