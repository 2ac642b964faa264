import Foundation

/// What a user verification (Face ID, Touch ID, the device passcode) came to.
public enum VerificationResult: Equatable, Sendable {
    case verified
    /// The user (or the system) cancelled: a denial, not a failed verification.
    case cancelled
    /// The biometric or passcode check failed: counts against the key's UV retries.
    case failed
    /// This phone cannot verify its user (no passcode set, no biometric enrolled): neither
    /// an approval nor a failed verification, which would spend retries for nothing.
    case notAvailable
}

/// The platform's user verification: LocalAuthentication in the iOS app, a stub in tests.
public protocol UserVerifier: Sendable {
    /// Whether `verify` can succeed at all on this device right now.
    func isAvailable() -> Bool
    /// Asks the user; `reason` is the sentence the system sheet shows.
    func verify(reason: String) async -> VerificationResult
}
