import CryptoKit
import Foundation
import LocalAuthentication
import PocketKeyKit
import Security

/// The UV key (docs/apps.md, "User verification bound to hardware"): a Secure Enclave P-256
/// key whose access control is `.privateKeyUsage` + `.biometryCurrentSet`, so it signs only
/// after Face ID / Touch ID with the biometrics enrolled when it was made (a changed set
/// invalidates it). The key's opaque `dataRepresentation` (usable only by this phone's Secure
/// Enclave) is kept in the keychain, this device only.
///
/// `LocalAuthenticationVerifier` hands over the `LAContext` it just evaluated; `sign` uses it
/// once, so the user sees one system sheet. Without one, `sign` throws: nothing signs without
/// the OS having verified the user.
///
/// Not compiled on Linux (no Security, LocalAuthentication or Secure Enclave there).
final class SecureEnclaveUvKeys: UvKeyProvider, @unchecked Sendable {
    private let lock = NSLock()
    private var context: LAContext?
    private static let account = "com.pocketkey.uv-key"

    struct NotVerified: Error {}

    /// From the verifier, right after `evaluatePolicy` succeeded.
    func verified(with context: LAContext) {
        lock.lock()
        self.context = context
        lock.unlock()
    }

    func publicKey() throws -> Data {
        if let data = load() {
            return try SecureEnclave.P256.Signing.PrivateKey(dataRepresentation: data).publicKey.x963Representation
        }
        var error: Unmanaged<CFError>?
        guard let access = SecAccessControlCreateWithFlags(
            nil, kSecAttrAccessibleWhenUnlockedThisDeviceOnly, [.privateKeyUsage, .biometryCurrentSet], &error)
        else { throw error!.takeRetainedValue() as Error }
        let key = try SecureEnclave.P256.Signing.PrivateKey(accessControl: access)
        try save(key.dataRepresentation)
        return key.publicKey.x963Representation
    }

    func sign(_ challenge: Data) throws -> Data {
        lock.lock()
        let context = self.context
        self.context = nil
        lock.unlock()
        guard let context, let data = load() else { throw NotVerified() }
        // The user was just verified with this context: a key that still refuses to sign was
        // invalidated by a change of the enrolled biometrics (`.biometryCurrentSet`).
        do {
            let key = try SecureEnclave.P256.Signing.PrivateKey(dataRepresentation: data, authenticationContext: context)
            return try key.signature(for: challenge).derRepresentation
        } catch {
            throw UvKeyError.invalidated
        }
    }

    /// After a fresh verification: the old key goes, a new one is made.
    func replaceKey() throws -> Data {
        discard()
        return try publicKey()
    }

    /// Forgets the key (after the OS invalidated it): the next `publicKey()` makes a new one.
    func discard() {
        SecItemDelete(Self.query as CFDictionary)
    }

    private static var query: [String: Any] {
        [kSecClass as String: kSecClassGenericPassword, kSecAttrAccount as String: account]
    }

    private func load() -> Data? {
        var query = Self.query
        query[kSecReturnData as String] = true
        var item: CFTypeRef?
        guard SecItemCopyMatching(query as CFDictionary, &item) == errSecSuccess else { return nil }
        return item as? Data
    }

    private func save(_ data: Data) throws {
        var item = Self.query
        item[kSecValueData as String] = data
        item[kSecAttrAccessible as String] = kSecAttrAccessibleWhenUnlockedThisDeviceOnly
        SecItemDelete(Self.query as CFDictionary)
        let status = SecItemAdd(item as CFDictionary, nil)
        guard status == errSecSuccess else { throw NSError(domain: NSOSStatusErrorDomain, code: Int(status)) }
    }
}
