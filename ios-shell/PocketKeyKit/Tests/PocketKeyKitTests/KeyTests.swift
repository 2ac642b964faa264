import Foundation
import PocketKeyKit
import XCTest

/// Opening a key, and the app's own calls on it: info, passkeys, delete, label, PIN.
final class KeyTests: KeyTestCase {
    private func register(_ k: KeyUnderTest, rpId: String = "example.com", user: String) throws -> [UInt8] {
        let reply = try k.ctap(Ctap.makeCredential(
            clientDataHash: TestCrypto.sha256(Array(user.utf8)), rpId: rpId, rpName: "Example",
            userId: Array(user.utf8), userName: user, displayName: user.uppercased()))
        XCTAssertEqual(reply.status, Ctap.ok)
        return try XCTUnwrap(AuthData(XCTUnwrap(reply.body?[2]?.bytesValue)).credentialId)
    }

    func testAThrowingKeyProviderFailsOpenWithATypedError() throws {
        struct KeychainLocked: Error, CustomStringConvertible {
            var description: String { "keychain locked" }
        }
        let phone = makePhone()
        let dir = try freshDirectory()

        assertPocketKeyError(try SecurityKey.open(
            dataDir: dir.appendingPathComponent("a").path, keyProvider: FailingKeyProvider(KeychainLocked()),
            listener: phone)) { error in
            guard case let .KeyProviderFailed(reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("keychain locked"), reason)
            XCTAssertEqual(error.userMessage(), "The device keychain did not hand out the security key's master key")
        }
        assertPocketKeyError(try SecurityKey.open(
            dataDir: dir.appendingPathComponent("b").path,
            keyProvider: FailingKeyProvider(KeyProviderError.Unavailable(reason: "user not authenticated")),
            listener: phone)) { error in
            guard case let .KeyProviderFailed(reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("user not authenticated"), reason)
        }
        assertPocketKeyError(try SecurityKey.open(
            dataDir: dir.appendingPathComponent("c").path,
            keyProvider: MemoryKeyProvider(key: Data(repeating: 1, count: 16)), listener: phone)) { error in
            XCTAssertEqual(error, .MasterKeyWrongLength(length: 16))
            XCTAssertEqual(error.userMessage(),
                           "The device keychain returned a master key of the wrong length (16 bytes, expected 32)")
        }
    }

    func testReopeningKeepsPasskeysAndAnotherMasterKeyIsRefused() throws {
        let k = try makeKey()
        _ = try register(k, user: "dave")

        // Another master key never serves the passkeys sealed under the first one: it is refused
        // when the key opens, or (while nothing but passkeys is stored yet) when they are read.
        do {
            let other = try SecurityKey.open(
                dataDir: k.directory.path, keyProvider: MemoryKeyProvider(), listener: k.phone)
            assertPocketKeyError(try other.passkeys()) { XCTAssertEqual($0, .MasterKeyMismatch) }
        } catch let error as PocketKeyError {
            XCTAssertEqual(error, .MasterKeyMismatch)
        }

        try k.key.setPin(pin: "1234")
        let reopened = try SecurityKey.open(
            dataDir: k.directory.path, keyProvider: MemoryKeyProvider(key: k.provider.key), listener: k.phone)
        XCTAssertEqual(try reopened.info().credentialCount, 1)
        XCTAssertTrue(try reopened.info().pinSet)
        XCTAssertEqual(try reopened.passkeys().first?.passkeys.first?.userName, "dave")
        // With the PIN's settings sealed too, opening with another master key fails at once.
        assertPocketKeyError(try SecurityKey.open(
            dataDir: k.directory.path, keyProvider: MemoryKeyProvider(), listener: k.phone)) { error in
            XCTAssertEqual(error, .MasterKeyMismatch)
            XCTAssertEqual(error.userMessage(), "The security key's data cannot be unlocked with this device's key")
        }
    }

    func testInfoPasskeysDeleteAndLabel() throws {
        let k = try makeKey()
        let info = try k.key.info()
        XCTAssertEqual(info.aaguid, "9b1f5c0e-7d3a-4c62-a8e1-3f6b2d4c5a71")
        XCTAssertEqual(info.label, "PocketKey")
        XCTAssertFalse(info.pinSet)
        XCTAssertTrue(info.uvAvailable)
        XCTAssertEqual(info.credentialCount, 0)
        XCTAssertEqual(info.attestation, .selfAttestation)
        XCTAssertEqual(try k.key.passkeys(), [])

        let alice = try register(k, user: "alice@example.com")
        let bob = try register(k, user: "bob@example.com")
        _ = try register(k, rpId: "login.example.org", user: "alice@example.org")

        let sites = try k.key.passkeys()
        XCTAssertEqual(sites.map(\.rpId), ["example.com", "login.example.org"])
        XCTAssertEqual(sites[0].rpName, "Example")
        XCTAssertEqual(sites[0].passkeys.map(\.userName), ["bob@example.com", "alice@example.com"], "newest first")
        XCTAssertEqual(sites[0].passkeys.map { Array($0.credentialId) }, [bob, alice])
        XCTAssertEqual(sites[0].passkeys[0].userDisplayName, "BOB@EXAMPLE.COM")
        let now = Int64(Date().timeIntervalSince1970)
        for passkey in sites.flatMap(\.passkeys) {
            XCTAssertLessThan(abs(passkey.createdAtUnix - now), 120)
        }
        XCTAssertEqual(try k.key.info().credentialCount, 3)

        XCTAssertTrue(try k.key.deletePasskey(credentialId: Data(bob)))
        XCTAssertFalse(try k.key.deletePasskey(credentialId: Data(bob)))
        XCTAssertEqual(try k.key.passkeys()[0].passkeys.map(\.userName), ["alice@example.com"])
        XCTAssertEqual(try k.key.info().credentialCount, 2)
        // The deleted passkey no longer signs in.
        let reply = try k.ctap(Ctap.getAssertion(rpId: "example.com", clientDataHash: [UInt8](repeating: 0, count: 32),
                                                 allow: [bob]))
        XCTAssertEqual(reply.status, Ctap.noCredentials)

        try k.key.setLabel(label: "Alice's phone")
        XCTAssertEqual(try k.key.info().label, "Alice's phone")
        assertPocketKeyError(try k.key.setLabel(label: "")) { error in
            guard case .InvalidLabel = error else { return XCTFail("\(error)") }
            XCTAssertFalse(error.userMessage().isEmpty)
        }
    }

    func testPinErrorsAreTyped() throws {
        let k = try makeKey()
        assertPocketKeyError(try k.key.setPin(pin: "123")) { error in
            XCTAssertEqual(error, .PinTooShort(minLength: 4))
            XCTAssertEqual(error.userMessage(), "The PIN must be at least 4 characters")
        }
        try k.key.setPin(pin: "1234")
        XCTAssertTrue(try k.key.info().pinSet)
        assertPocketKeyError(try k.key.setPin(pin: "5678")) { XCTAssertEqual($0, .PinAlreadySet) }
        assertPocketKeyError(try k.key.changePin(oldPin: "0000", newPin: "5678")) { error in
            XCTAssertEqual(error, .PinWrong(retriesLeft: 7))
            XCTAssertEqual(error.pocketKeyUserMessage, "The PIN is wrong (7 tries left)")
        }
        try k.key.changePin(oldPin: "1234", newPin: "5678")
    }

    func testFactoryResetErasesEverything() throws {
        let k = try makeKey()
        _ = try register(k, user: "erin")
        try k.key.setPin(pin: "1234")
        try k.key.setLabel(label: "Old phone")
        try k.key.factoryReset()
        let info = try k.key.info()
        XCTAssertFalse(info.pinSet)
        XCTAssertEqual(info.credentialCount, 0)
        XCTAssertEqual(info.label, "PocketKey")
        XCTAssertEqual(try k.key.passkeys(), [])
    }
}
