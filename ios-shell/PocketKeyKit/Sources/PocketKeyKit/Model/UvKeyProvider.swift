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
    func sign(_ challenge: Data) throws -> Data
}
