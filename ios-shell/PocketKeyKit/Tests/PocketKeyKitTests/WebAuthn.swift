import Foundation

/// CTAP2 requests built by hand, as a browser's platform layer would send them.
enum Ctap {
    static let ok: UInt8 = 0x00
    static let noCredentials: UInt8 = 0x2E
    static let operationDenied: UInt8 = 0x27
    static let keepaliveCancel: UInt8 = 0x2D
    static let userActionTimeout: UInt8 = 0x2F

    /// authenticatorSelection (0x0B): asks the user to touch the key.
    static let selection = Data([0x0B])

    static func makeCredential(
        clientDataHash: [UInt8], rpId: String, rpName: String, userId: [UInt8], userName: String,
        displayName: String, rk: Bool = true, uv: Bool = true
    ) -> Data {
        let params: CBOR = [
            1: .bytes(clientDataHash),
            2: ["id": .text(rpId), "name": .text(rpName)],
            3: ["id": .bytes(userId), "name": .text(userName), "displayName": .text(displayName)],
            4: [["alg": -7, "type": "public-key"]],
            7: ["rk": .bool(rk), "uv": .bool(uv)],
        ]
        return Data([0x01] + params.encoded)
    }

    static func getAssertion(rpId: String, clientDataHash: [UInt8], allow: [[UInt8]] = [], uv: Bool = true) -> Data {
        var pairs: [CBOR.Pair] = [
            .init(key: 1, value: .text(rpId)),
            .init(key: 2, value: .bytes(clientDataHash)),
            .init(key: 5, value: ["uv": .bool(uv)]),
        ]
        if !allow.isEmpty {
            pairs.append(.init(key: 3, value: .array(allow.map { ["id": .bytes($0), "type": "public-key"] })))
        }
        return Data([0x02] + CBOR.map(pairs).encoded)
    }
}

struct Reply {
    let status: UInt8
    /// The CBOR after the status byte, if any.
    let body: CBOR?
    let bodyBytes: [UInt8]

    init(_ data: Data) throws {
        let bytes = Array(data)
        guard let first = bytes.first else { throw CBOR.DecodingError(description: "empty reply") }
        status = first
        bodyBytes = Array(bytes.dropFirst())
        body = bodyBytes.isEmpty ? nil : try CBOR.decode(bodyBytes)
    }
}

/// WebAuthn authenticator data (WebAuthn §6.1).
struct AuthData {
    let raw: [UInt8]
    let rpIdHash: [UInt8]
    let flags: UInt8
    let signCount: UInt32
    let aaguid: [UInt8]?
    let credentialId: [UInt8]?
    let credentialPublicKey: CBOR?
    let extensions: CBOR?

    var userPresent: Bool { flags & 0x01 != 0 }
    var userVerified: Bool { flags & 0x04 != 0 }
    var attestedCredentialData: Bool { flags & 0x40 != 0 }
    var extensionData: Bool { flags & 0x80 != 0 }

    init(_ raw: [UInt8]) throws {
        func fail(_ why: String) -> CBOR.DecodingError { CBOR.DecodingError(description: "authData: \(why)") }
        guard raw.count >= 37 else { throw fail("only \(raw.count) bytes") }
        self.raw = raw
        rpIdHash = Array(raw[0..<32])
        flags = raw[32]
        signCount = raw[33..<37].reduce(0) { $0 << 8 | UInt32($1) }
        var pos = 37
        if flags & 0x40 != 0 {
            guard raw.count >= pos + 18 else { throw fail("attested credential data truncated") }
            aaguid = Array(raw[pos..<pos + 16])
            let idLength = Int(raw[pos + 16]) << 8 | Int(raw[pos + 17])
            pos += 18
            guard raw.count >= pos + idLength else { throw fail("credential id truncated") }
            credentialId = Array(raw[pos..<pos + idLength])
            pos += idLength
            let (key, next) = try CBOR.decodePrefix(raw, at: pos)
            credentialPublicKey = key
            pos = next
        } else {
            (aaguid, credentialId, credentialPublicKey) = (nil, nil, nil)
        }
        if flags & 0x80 != 0 {
            let (ext, next) = try CBOR.decodePrefix(raw, at: pos)
            extensions = ext
            pos = next
        } else {
            extensions = nil
        }
        guard pos == raw.count else { throw fail("\(raw.count - pos) trailing bytes") }
    }
}

/// An ES256 credential public key read from its COSE_Key form (RFC 9053: kty 2 = EC2,
/// alg -7 = ES256, crv 1 = P-256, -2 = x, -3 = y).
struct ES256PublicKey {
    let x: [UInt8]
    let y: [UInt8]

    init(cose: CBOR?) throws {
        guard let cose, cose[1]?.intValue == 2, cose[3]?.intValue == -7, cose[-1]?.intValue == 1,
              let x = cose[-2]?.bytesValue, let y = cose[-3]?.bytesValue, x.count == 32, y.count == 32
        else { throw CBOR.DecodingError(description: "not an ES256 COSE key: \(String(describing: cose))") }
        (self.x, self.y) = (x, y)
    }

    func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        TestCrypto.verifyES256(x: x, y: y, derSignature: signature, message: message)
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// Bytes in the 8-4-4-4-12 UUID form, lower case.
func uuidString(_ bytes: [UInt8]) -> String {
    let digits = hex(bytes)
    let cuts = [8, 12, 16, 20]
    var out = ""
    for (i, c) in digits.enumerated() {
        if cuts.contains(i) { out.append("-") }
        out.append(c)
    }
    return out
}
