import Foundation

// SHA-256 and ES256 (ECDSA P-256 with SHA-256) verification for the tests, from the platform's
// crypto library: CryptoKit on Apple platforms, OpenSSL 3's libcrypto on Linux (CryptoKit does
// not exist there). Nothing here implements cryptography itself.

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
#endif
