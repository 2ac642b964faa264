import Foundation

/// The phone's UV key: a P-256 key the OS uses only right after verifying the user. Its ES256
/// signature over a prompt's `uvChallenge` is the proof of "approved, verified" that the engine
/// checks against the public key registered at setup (docs/apps.md, "User verification bound
/// to hardware").
///
/// iOS: a Secure Enclave key created with `SecAccessControlCreateWithFlags(.privateKeyUsage,
/// .biometryCurrentSet)` (the app's `SecureEnclaveUvKeys`), used with the `LAContext` the
/// `UserVerifier` just evaluated. Tests: a software P-256 key.
public protocol UvKeyProvider: Sendable {
    /// The public key, uncompressed SEC1 (65 bytes: 0x04 ‖ x ‖ y), made on first use or after
    /// the OS invalidated the old one (a changed biometric set). Throws when the phone cannot
    /// hold one (no biometric enrolled).
    func publicKey() throws -> Data
    /// ES256 over `challenge`, DER-encoded; only for the verification that just succeeded.
    /// Throws `UvKeyError.invalidated` when the OS no longer lets the key be used although the
    /// user was just verified (the biometric set changed since the key was made).
    func sign(_ challenge: Data) throws -> Data
    /// Forgets the old key and makes a new one; returns its public key as `publicKey()` does.
    /// Called only after a fresh verification, to set verification up again.
    func replaceKey() throws -> Data
}

extension UvKeyProvider {
    /// For providers whose `publicKey()` already makes a new key when the old one is gone.
    public func replaceKey() throws -> Data { try publicKey() }
}

/// What a `UvKeyProvider` reports about its key.
public enum UvKeyError: Error, Equatable, Sendable {
    /// The OS invalidated the key (Face ID or Touch ID enrolment changed: `.biometryCurrentSet`).
    /// Nothing signs with it again: the model asks the user to set verification up again.
    case invalidated
}
