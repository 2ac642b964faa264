#if canImport(Security)
import Foundation
import PocketKeyCore
import Security

/// The app's `KeyProvider`: the 32-byte master key lives in the Keychain as a generic password,
/// readable after the first unlock following a restart (so requests that wake the app in the
/// background work) and never leaving this device (no iCloud Keychain, no backup restore onto
/// another phone: `kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly`).
///
/// The key is created on the first call. A read that fails for any reason other than "no such
/// item" throws `KeyProviderError.Unavailable` and never creates a new key: a new key would make
/// every stored passkey unreadable (`PocketKeyError.MasterKeyMismatch`).
///
/// Not built in CI (Linux has no Security framework); kept correct by reading Apple's Keychain
/// Services reference.
public final class KeychainKeyProvider: KeyProvider, @unchecked Sendable {
    public let service: String
    public let account: String
    /// A shared access group (for an app extension), or nil for the app's own keychain.
    public let accessGroup: String?
    private let lock = NSLock()

    public init(service: String = "com.pocketkey.master-key", account: String = "master", accessGroup: String? = nil) {
        self.service = service
        self.account = account
        self.accessGroup = accessGroup
    }

    public func masterKey() throws -> Data {
        lock.lock()
        defer { lock.unlock() }
        if let existing = try read() {
            return existing
        }
        let key = try Self.randomKey()
        var item = baseQuery()
        item[kSecValueData as String] = key
        item[kSecAttrAccessible as String] = kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly
        let status = SecItemAdd(item as CFDictionary, nil)
        switch status {
        case errSecSuccess:
            return key
        case errSecDuplicateItem:
            // Another process sharing the access group (an extension) created it first: use theirs.
            if let existing = try read() {
                return existing
            }
            throw Self.failure("the master key was created elsewhere but cannot be read", status)
        default:
            throw Self.failure("the master key could not be stored", status)
        }
    }

    /// Deletes the master key: every passkey sealed under it is lost. For "erase this app"
    /// flows only, together with deleting the data directory.
    public func deleteMasterKey() throws {
        lock.lock()
        defer { lock.unlock() }
        let status = SecItemDelete(baseQuery() as CFDictionary)
        guard status == errSecSuccess || status == errSecItemNotFound else {
            throw Self.failure("the master key could not be deleted", status)
        }
    }

    private func baseQuery() -> [String: Any] {
        var query: [String: Any] = [
            kSecClass as String: kSecClassGenericPassword,
            kSecAttrService as String: service,
            kSecAttrAccount as String: account,
            kSecAttrSynchronizable as String: kCFBooleanFalse as Any,
        ]
        if let accessGroup {
            query[kSecAttrAccessGroup as String] = accessGroup
        }
        #if os(macOS)
        // The iOS-style keychain on macOS too, so the same accessibility rules apply.
        query[kSecUseDataProtectionKeychain as String] = true
        #endif
        return query
    }

    private func read() throws -> Data? {
        var query = baseQuery()
        query[kSecReturnData as String] = true
        query[kSecMatchLimit as String] = kSecMatchLimitOne
        var result: CFTypeRef?
        let status = SecItemCopyMatching(query as CFDictionary, &result)
        switch status {
        case errSecSuccess:
            guard let data = result as? Data else {
                throw Self.failure("the keychain returned something that is not data", status)
            }
            return data
        case errSecItemNotFound:
            return nil
        case errSecInteractionNotAllowed:
            throw KeyProviderError.Unavailable(reason: "the device has not been unlocked since it restarted")
        default:
            throw Self.failure("the master key could not be read", status)
        }
    }

    private static func randomKey() throws -> Data {
        var bytes = [UInt8](repeating: 0, count: 32)
        let status = SecRandomCopyBytes(kSecRandomDefault, bytes.count, &bytes)
        guard status == errSecSuccess else {
            throw failure("no random bytes for a new master key", status)
        }
        return Data(bytes)
    }

    private static func failure(_ what: String, _ status: OSStatus) -> KeyProviderError {
        let text = SecCopyErrorMessageString(status, nil) as String? ?? "OSStatus \(status)"
        return KeyProviderError.Unavailable(reason: "\(what): \(text)")
    }
}
#endif
