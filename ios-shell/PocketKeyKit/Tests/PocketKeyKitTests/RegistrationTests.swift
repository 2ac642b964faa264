import Foundation
import PocketKeyKit
import XCTest

/// WebAuthn registration and authentication through the generated bindings, the way a
/// transport feeds the key: CTAP2 bytes in, CTAP2 bytes out, checked here byte by byte and
/// with the platform's crypto library.
final class RegistrationTests: KeyTestCase {
    let rpId = "example.com"

    func testCryptoBackendChecksSignatures() {
        // The verifier must reject as well as accept, or the signature checks below prove nothing.
        // FIPS 180-2 test vector.
        XCTAssertEqual(hex(TestCrypto.sha256(Array("abc".utf8))),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertFalse(TestCrypto.verifyES256(x: [UInt8](repeating: 1, count: 32), y: [UInt8](repeating: 2, count: 32),
                                              derSignature: [0x30, 0x00], message: [1, 2, 3]))
        print("signature checks by \(TestCrypto.backend)")
    }

    func testRegistrationAndAuthenticationAnsweredFromAnotherThread() throws {
        let k = try makeKey()
        let userId = [UInt8](repeating: 0xA5, count: 16)

        // --- registration (authenticatorMakeCredential) ---
        let registerHash = TestCrypto.sha256(Array("{\"type\":\"webauthn.create\"}".utf8))
        let created = try k.ctap(Ctap.makeCredential(
            clientDataHash: registerHash, rpId: rpId, rpName: "Example", userId: userId,
            userName: "alice@example.com", displayName: "Alice"))
        XCTAssertEqual(created.status, Ctap.ok)
        let attestation = try XCTUnwrap(created.body)
        XCTAssertEqual(attestation.encoded, created.bodyBytes, "the reply is CTAP2 canonical CBOR")
        XCTAssertEqual(attestation[1], "packed")
        let authData = try AuthData(XCTUnwrap(attestation[2]?.bytesValue))
        XCTAssertEqual(authData.rpIdHash, TestCrypto.sha256(Array(rpId.utf8)))
        XCTAssertTrue(authData.userPresent)
        XCTAssertTrue(authData.userVerified)
        XCTAssertTrue(authData.attestedCredentialData)
        XCTAssertEqual(uuidString(try XCTUnwrap(authData.aaguid)), try k.key.info().aaguid)
        let credentialId = try XCTUnwrap(authData.credentialId)
        XCTAssertFalse(credentialId.isEmpty)
        let publicKey = try ES256PublicKey(cose: authData.credentialPublicKey)

        // Packed self attestation: signed by the new credential's own key, no certificate.
        let statement = try XCTUnwrap(attestation[3])
        XCTAssertEqual(statement["alg"], -7)
        XCTAssertNil(statement["x5c"])
        let attestationSignature = try XCTUnwrap(statement["sig"]?.bytesValue)
        XCTAssertTrue(publicKey.verify(signature: attestationSignature, message: authData.raw + registerHash),
                      "packed self-attestation signature")
        XCTAssertFalse(publicKey.verify(signature: attestationSignature,
                                        message: authData.raw + TestCrypto.sha256(Array("other".utf8))))

        // --- authentication (authenticatorGetAssertion), with an allow list ---
        let signInHash = TestCrypto.sha256(Array("{\"type\":\"webauthn.get\"}".utf8))
        let asserted = try k.ctap(Ctap.getAssertion(rpId: rpId, clientDataHash: signInHash, allow: [credentialId]))
        XCTAssertEqual(asserted.status, Ctap.ok)
        let assertion = try XCTUnwrap(asserted.body)
        XCTAssertEqual(assertion.encoded, asserted.bodyBytes)
        XCTAssertEqual(assertion[1]?["id"]?.bytesValue, credentialId)
        XCTAssertEqual(assertion[1]?["type"], "public-key")
        let assertionData = try AuthData(XCTUnwrap(assertion[2]?.bytesValue))
        XCTAssertEqual(assertionData.rpIdHash, authData.rpIdHash)
        XCTAssertTrue(assertionData.userPresent)
        XCTAssertTrue(assertionData.userVerified)
        XCTAssertFalse(assertionData.attestedCredentialData)
        XCTAssertGreaterThan(assertionData.signCount, authData.signCount)
        let signature = try XCTUnwrap(assertion[3]?.bytesValue)
        XCTAssertTrue(publicKey.verify(signature: signature, message: assertionData.raw + signInHash),
                      "ES256 assertion signature")
        XCTAssertFalse(publicKey.verify(signature: signature, message: assertionData.raw + registerHash))

        // --- authentication without an allow list: the passkey is discoverable ---
        let discoverHash = TestCrypto.sha256(Array("discoverable".utf8))
        let discovered = try XCTUnwrap(k.ctap(Ctap.getAssertion(rpId: rpId, clientDataHash: discoverHash)).body)
        XCTAssertEqual(discovered[4]?["id"]?.bytesValue, userId)
        XCTAssertEqual(discovered[4]?["name"], "alice@example.com")
        let discoveredData = try AuthData(XCTUnwrap(discovered[2]?.bytesValue))
        XCTAssertTrue(publicKey.verify(signature: try XCTUnwrap(discovered[3]?.bytesValue),
                                       message: discoveredData.raw + discoverHash))

        // --- what the phone was asked, and how it answered ---
        let prompts = k.phone.prompts
        XCTAssertEqual(prompts.map(\.operation), [.register, .signIn, .signIn])
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        for prompt in prompts {
            XCTAssertEqual(prompt.rpId, rpId)
            XCTAssertEqual(prompt.requester, "Work laptop")
            XCTAssertTrue(prompt.verificationRequired)
            XCTAssertTrue(prompt.accounts.isEmpty)
            XCTAssertGreaterThan(prompt.deadlineUnixMs, now)
            XCTAssertLessThan(prompt.id, 1 << 53)
        }
        XCTAssertEqual(prompts[0].rpName, "Example")
        XCTAssertEqual(prompts[0].userName, "alice@example.com")
        XCTAssertEqual(prompts[0].userDisplayName, "Alice")
        XCTAssertEqual(Set(prompts.map(\.id)).count, prompts.count, "prompt ids are unique")
        XCTAssertEqual(k.phone.closed.map(\.0), prompts.map(\.id))
        XCTAssertEqual(k.phone.closed.map(\.1), Array(repeating: .answered, count: prompts.count))
        XCTAssertTrue(k.phone.answerErrors.isEmpty, "\(k.phone.answerErrors)")
        let (asked, answered) = (k.phone.listenerThreads, k.phone.answerThreads)
        XCTAssertFalse(asked.isEmpty)
        XCTAssertFalse(answered.isEmpty)
        XCTAssertTrue(asked.isDisjoint(with: answered), "answers came from another thread")

        // An answered prompt is over.
        assertPocketKeyError(try k.key.answer(id: prompts[0].id, answer: .deny)) { error in
            XCTAssertEqual(error, .UnknownApproval(id: prompts[0].id))
        }
        XCTAssertEqual(try k.key.info().credentialCount, 1)
    }

    func testTheUserPicksOneOfSeveralAccounts() throws {
        let k = try makeKey { prompt in
            // First an index outside the choices (refused, the prompt stays open), then the second account.
            prompt.accounts.isEmpty ? [Phone.verified(prompt)]
                : [Phone.verified(prompt, account: 7), Phone.verified(prompt, account: 1)]
        }
        var keys: [[UInt8]: ES256PublicKey] = [:]
        for (i, name) in ["alice", "bob"].enumerated() {
            let reply = try k.ctap(Ctap.makeCredential(
                clientDataHash: TestCrypto.sha256([UInt8(i)]), rpId: rpId, rpName: "Example",
                userId: [UInt8(i + 1)], userName: name, displayName: name.capitalized))
            let authData = try AuthData(XCTUnwrap(reply.body?[2]?.bytesValue))
            keys[try XCTUnwrap(authData.credentialId)] = try ES256PublicKey(cose: authData.credentialPublicKey)
        }

        let hash = TestCrypto.sha256(Array("pick".utf8))
        let reply = try k.ctap(Ctap.getAssertion(rpId: rpId, clientDataHash: hash))
        XCTAssertEqual(reply.status, Ctap.ok)
        let body = try XCTUnwrap(reply.body)
        let prompt = try XCTUnwrap(k.phone.prompts.last)
        XCTAssertEqual(prompt.operation, .signIn)
        XCTAssertEqual(prompt.accounts.count, 2)
        XCTAssertEqual(Set(prompt.accounts.compactMap(\.userName)), ["alice", "bob"])
        let picked = prompt.accounts[1]
        XCTAssertEqual(body[4]?["id"]?.bytesValue, Array(picked.userId))
        XCTAssertEqual(body[6], true, "userSelected")
        XCTAssertNil(body[5], "no numberOfCredentials once the user chose")
        let credentialId = try XCTUnwrap(body[1]?["id"]?.bytesValue)
        let authData = try AuthData(XCTUnwrap(body[2]?.bytesValue))
        XCTAssertTrue(try XCTUnwrap(keys[credentialId]).verify(
            signature: try XCTUnwrap(body[3]?.bytesValue), message: authData.raw + hash))

        let errors = k.phone.answerErrors
        XCTAssertEqual(errors.count, 1)
        XCTAssertEqual(errors.first as? PocketKeyError, .InvalidAccount(index: 7, choices: 2))
    }
}
