import Foundation

// SHA-256, ES256 (ECDSA P-256 with SHA-256) verification and a software P-256 signing key (the
// tests' UV key) from the platform's crypto library: CryptoKit on Apple platforms, OpenSSL 3's
// libcrypto on Linux (CryptoKit does not exist there). Nothing here implements cryptography
// itself.
import PocketKeyKit

#if canImport(CryptoKit)
import CryptoKit

enum TestCrypto {
    static let backend = "CryptoKit"

    static func sha256<B: DataProtocol>(_ data: B) -> [UInt8] {
        Array(SHA256.hash(data: data))
    }

    /// Whether `derSignature` is a valid ECDSA P-256 / SHA-256 signature of `message` by the key
    /// with affine coordinates x, y.
    static func verifyES256(x: [UInt8], y: [UInt8], derSignature: [UInt8], message: [UInt8]) -> Bool {
        guard x.count == 32, y.count == 32,
              let key = try? P256.Signing.PublicKey(x963Representation: [0x04] + x + y),
              let signature = try? P256.Signing.ECDSASignature(derRepresentation: derSignature)
        else { return false }
        return key.isValidSignature(signature, for: message)
    }
}

/// The tests' UV key: a software P-256 key standing in for the app's Secure Enclave key.
final class SoftwareUvKeys: UvKeyProvider, @unchecked Sendable {
    private let key = P256.Signing.PrivateKey()
    func publicKey() throws -> Data { key.publicKey.x963Representation }
    func sign(_ challenge: Data) throws -> Data { try key.signature(for: challenge).derRepresentation }
}

#else
import CPocketKeyOpenSSL

enum TestCrypto {
    static var backend: String { String(cString: OpenSSL_version(OPENSSL_VERSION)) }

    static func sha256<B: DataProtocol>(_ data: B) -> [UInt8] {
        let input = Array(data)
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let ok = EVP_Digest(input, input.count, &digest, &length, EVP_sha256(), nil)
        precondition(ok == 1 && length == 32, "EVP_Digest(SHA-256) failed")
        return digest
    }

    /// Whether `derSignature` is a valid ECDSA P-256 / SHA-256 signature of `message` by the key
    /// with affine coordinates x, y (OpenSSL checks that the point is on the curve).
    static func verifyES256(x: [UInt8], y: [UInt8], derSignature: [UInt8], message: [UInt8]) -> Bool {
        guard x.count == 32, y.count == 32 else { return false }
        let point: [UInt8] = [0x04] + x + y
        let params = point.withUnsafeBufferPointer { pocketkey_p256_public_key_params($0.baseAddress, $0.count) }
        guard let params else { return false }
        defer { OSSL_PARAM_free(params) }
        guard let context = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { return false }
        defer { EVP_PKEY_CTX_free(context) }
        var pkey: OpaquePointer?
        guard EVP_PKEY_fromdata_init(context) == 1,
              EVP_PKEY_fromdata(context, &pkey, pocketkey_evp_pkey_public_key(), params) == 1,
              let key = pkey
        else { return false }
        defer { EVP_PKEY_free(key) }
        guard let digest = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(digest) }
        guard EVP_DigestVerifyInit(digest, nil, EVP_sha256(), nil, key) == 1 else { return false }
        return EVP_DigestVerify(digest, derSignature, derSignature.count, message, message.count) == 1
    }
}

/// The tests' UV key: a software P-256 key standing in for the app's Secure Enclave key.
final class SoftwareUvKeys: UvKeyProvider, @unchecked Sendable {
    private let key: OpaquePointer

    init() {
        key = pocketkey_p256_generate()!
    }

    deinit { EVP_PKEY_free(key) }

    func publicKey() throws -> Data {
        var point = [UInt8](repeating: 0, count: 65)
        precondition(pocketkey_p256_public_point(key, &point, point.count) == 1, "no public point")
        return Data(point)
    }

    func sign(_ challenge: Data) throws -> Data {
        let message = [UInt8](challenge)
        guard let context = EVP_MD_CTX_new() else { throw SigningFailed() }
        defer { EVP_MD_CTX_free(context) }
        var length = 0
        guard EVP_DigestSignInit(context, nil, EVP_sha256(), nil, key) == 1,
              EVP_DigestSign(context, nil, &length, message, message.count) == 1
        else { throw SigningFailed() }
        var signature = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(context, &signature, &length, message, message.count) == 1 else { throw SigningFailed() }
        return Data(signature[..<length])
    }

    struct SigningFailed: Error {}
}
#endif

extension SoftwareUvKeys {
    /// One key every test key registers (`KeyUnderTest`) and the `Phone` signs with.
    static let shared = SoftwareUvKeys()
}

/// Signs with a key of its own while presenting `registered`'s public key: a forged proof.
final class ForgingUvKeys: UvKeyProvider, @unchecked Sendable {
    let registered: SoftwareUvKeys
    private let forger = SoftwareUvKeys()
    init(registered: SoftwareUvKeys) { self.registered = registered }
    func publicKey() throws -> Data { try registered.publicKey() }
    func sign(_ challenge: Data) throws -> Data { try forger.sign(challenge) }
}
