// The generated Kotlin bindings of pocketkey-ffi (package com.pocketkey.core), driven on the
// JVM as the Android app drives them: a KeyProvider and an ApprovalListener in Kotlin,
// approvals answered by id from another thread, and real WebAuthn registrations and
// authentications as CTAP2 bytes through SecurityKey.processCtap, checked with java.security.
//
// Run with tests/kotlin/run.sh [NAME-SUBSTRING...].
package com.pocketkey.tests

import com.pocketkey.core.ApprovalAnswer
import com.pocketkey.core.ApprovalClosed
import com.pocketkey.core.ApprovalListenerException
import com.pocketkey.core.ApprovalOperation
import com.pocketkey.core.AttestationKind
import com.pocketkey.core.KeyProviderException
import com.pocketkey.core.PocketKeyException
import com.pocketkey.core.ScanException
import com.pocketkey.core.ScannedCode
import com.pocketkey.core.ScanSource
import com.pocketkey.core.classifyScan
import java.io.File
import java.security.interfaces.ECPublicKey
import kotlin.concurrent.thread
import kotlin.system.exitProcess

const val RP_ID = "example.com"
const val ORIGIN = "https://example.com"
const val AAGUID = "9b1f5c0e-7d3a-4c62-a8e1-3f6b2d4c5a71"

class Registration(val authData: AuthData, val credentialId: ByteArray, val publicKey: ECPublicKey, val userId: ByteArray)

class Assertion(val authData: AuthData, val credentialId: ByteArray, val user: Map<Any?, Any?>?)

/**
 * authenticatorMakeCredential through the bindings; checks everything a relying party would:
 * status, fmt "packed" self attestation verified with the new credential's key, rpIdHash,
 * flags, AAGUID, COSE key (kty 2, crv 1, alg -7).
 */
fun register(
    k: KeyUnderTest,
    userName: String = "alice@example.com",
    rk: Boolean = true,
    uv: Boolean = true,
    rpId: String = RP_ID,
): Registration {
    val cdh = Ctap.clientDataHash("webauthn.create", ORIGIN)
    val userId = Ctap.randomBytes(16)
    val displayName = userName.substringBefore('@').replaceFirstChar { it.uppercase() }
    val response = Ctap.ok(
        k.ctap(Ctap.makeCredential(cdh, rpId, "Example", userId, userName, displayName, rk = rk, uv = uv)),
        "makeCredential",
    )
    assertEq("packed", response[1L], "fmt")
    val authData = AuthData(response[2L].asBytes("authData"))
    val attStmt = response[3L].asMap("attStmt")

    assertEq(Ctap.sha256(rpId.toByteArray()), authData.rpIdHash, "rpIdHash = SHA-256(rpId)")
    assertTrue(authData.userPresent) { "UP flag not set after registration" }
    assertEq(uv, authData.userVerified, "UV flag")
    assertTrue(authData.flags and Ctap.FLAG_AT != 0) { "AT flag not set" }
    assertEq(AAGUID, uuidString(authData.aaguid!!), "AAGUID in the attested credential data")
    val cose = authData.publicKey!!
    assertEq(-7L, cose.alg, "COSE alg")
    val credentialId = authData.credentialId!!
    assertTrue(credentialId.isNotEmpty()) { "empty credential id" }
    val publicKey = cose.toPublicKey()

    // Packed self attestation (WebAuthn §8.2): no x5c, alg = the credential's, signature by the
    // credential key over authenticatorData ‖ clientDataHash.
    assertEq(setOf<Any?>("alg", "sig"), attStmt.keys, "self attestation statement keys")
    assertEq(-7L, attStmt["alg"], "attStmt alg")
    assertTrue(verifyEs256(publicKey, attStmt["sig"].asBytes("attStmt sig"), authData.raw, cdh)) {
        "the packed self-attestation signature does not verify with the credential's public key"
    }
    // Sanity of the verifier itself: the same signature over another hash must fail.
    assertTrue(!verifyEs256(publicKey, attStmt["sig"].asBytes("sig"), authData.raw, Ctap.sha256(cdh))) {
        "the signature verifier accepts anything"
    }
    return Registration(authData, credentialId, publicKey, userId)
}

/** authenticatorGetAssertion through the bindings; verifies the signature with java.security. */
fun authenticate(
    k: KeyUnderTest,
    publicKeys: Map<String, ECPublicKey>,
    allow: List<ByteArray>,
    uv: Boolean = true,
): Assertion {
    val cdh = Ctap.clientDataHash("webauthn.get", ORIGIN)
    val response = Ctap.ok(k.ctap(Ctap.getAssertion(cdh, RP_ID, allow, uv)), "getAssertion")
    val credential = response[1L].asMap("credential")
    assertEq("public-key", credential["type"], "credential type")
    val credentialId = credential["id"].asBytes("credential id")
    val authData = AuthData(response[2L].asBytes("authData"))
    assertEq(Ctap.sha256(RP_ID.toByteArray()), authData.rpIdHash, "rpIdHash = SHA-256(rpId)")
    assertTrue(authData.userPresent) { "UP flag not set" }
    assertEq(uv, authData.userVerified, "UV flag")
    assertTrue(authData.flags and Ctap.FLAG_AT == 0) { "AT flag set in an assertion" }
    val key = publicKeys[credentialId.hex()] ?: fail("assertion names an unknown credential ${credentialId.hex()}")
    assertTrue(verifyEs256(key, response[3L].asBytes("signature"), authData.raw, cdh)) {
        "the assertion signature does not verify over authData ‖ clientDataHash"
    }
    return Assertion(authData, credentialId, response[4L]?.asMap("user"))
}

fun keysOf(vararg regs: Registration) = regs.associate { it.credentialId.hex() to it.publicKey }

/** Runs [block] on its own thread (as the transport would) and returns what it returned. */
fun <T> onTransportThread(block: () -> T): T {
    var result: Result<T>? = null
    thread(name = "transport") { result = runCatching(block) }.join()
    return result!!.getOrThrow()
}

fun waitUntil(what: String, timeoutMs: Long = 10_000, cond: () -> Boolean) {
    val end = System.currentTimeMillis() + timeoutMs
    while (!cond()) {
        if (System.currentTimeMillis() > end) fail("timed out waiting for $what")
        Thread.sleep(5)
    }
}

val QR = "FIDO:/" + "1".repeat(17 * 4) + "123"

val CASES = listOf(
    TestCase("registration and authentication, answered from another thread, verified with java.security") {
        val k = openKey()
        val reg = register(k)
        val first = authenticate(k, keysOf(reg), listOf(reg.credentialId))
        val second = authenticate(k, keysOf(reg), listOf(reg.credentialId))
        assertEq(reg.credentialId, first.credentialId, "asserted credential")
        assertTrue(first.authData.signCount > reg.authData.signCount) {
            "counter did not increase: registration ${reg.authData.signCount}, assertion ${first.authData.signCount}"
        }
        assertTrue(second.authData.signCount > first.authData.signCount) {
            "counter did not increase: ${first.authData.signCount} then ${second.authData.signCount}"
        }
        // A discoverable credential signs in without an allowList and names its user.
        val discovered = authenticate(k, keysOf(reg), emptyList())
        assertEq(reg.userId, discovered.user?.get("id"), "user.id of the discovered credential")
        assertEq("alice@example.com", discovered.user?.get("name"), "user.name (after UV)")

        val phone = k.phone
        assertEq(4, phone.prompts.size, "prompts (1 registration + 3 sign-ins)")
        assertEq(
            listOf(ApprovalOperation.REGISTER) + List(3) { ApprovalOperation.SIGN_IN },
            phone.prompts.map { it.operation },
            "operations",
        )
        for (p in phone.prompts) {
            assertEq(RP_ID, p.rpId, "prompt rpId")
            assertEq("Work laptop", p.requester, "prompt requester")
            assertEq("alice@example.com", p.userName, "prompt userName")
            assertTrue(p.verificationRequired) { "uv=true but the prompt does not require verification" }
            assertTrue(p.deadlineUnixMs.toLong() > System.currentTimeMillis() - 60_000) { "deadline in the past" }
            assertTrue(p.id < (1uL shl 53) && p.id != 0uL) { "prompt id ${p.id} out of range" }
        }
        assertEq("Alice", phone.prompts[0].userDisplayName, "prompt userDisplayName")
        assertEq("Example", phone.prompts[0].rpName, "prompt rpName")
        assertEq(phone.prompts.size, phone.prompts.map { it.id }.toSet().size, "unique prompt ids")
        assertEq(phone.prompts.map { it.id to ApprovalClosed.ANSWERED }, phone.closed.toList(), "closed events")
        assertEq(emptyList<Throwable>(), phone.answerErrors.toList(), "errors while answering")
        // The prompt was raised on the thread that called processCtap and answered on another.
        assertTrue(phone.listenerThreads.isNotEmpty() && phone.answerThreads.isNotEmpty()) { "no threads recorded" }
        assertTrue(phone.listenerThreads.intersect(phone.answerThreads).isEmpty()) {
            "answered on the listener's own thread: ${phone.listenerThreads} / ${phone.answerThreads}"
        }
        // An ended prompt cannot be answered again.
        val ended = assertThrows<PocketKeyException.UnknownApproval>("answer an ended prompt") {
            k.key.answer(phone.prompts[0].id, ApprovalAnswer.Deny)
        }
        assertEq(phone.prompts[0].id, ended.id, "UnknownApproval.id")
    },

    TestCase("presence-only registration and sign-in (non-discoverable, allowList)") {
        val k = openKey()
        k.requester = "Alice's laptop"
        k.phone.policy = { ApprovalAnswer.ApprovePresent(null) }
        val reg = onTransportThread { register(k, userName = "bob@example.com", rk = false, uv = false) }
        val a = onTransportThread { authenticate(k, keysOf(reg), listOf(reg.credentialId), uv = false) }
        assertTrue(a.authData.signCount > reg.authData.signCount) { "counter did not increase" }
        assertEq(2, k.phone.prompts.size, "prompts")
        val (create, signIn) = k.phone.prompts
        assertEq(ApprovalOperation.REGISTER, create.operation, "operation")
        assertEq("bob@example.com", create.userName, "userName")
        assertEq("Alice's laptop", create.requester, "requester")
        assertTrue(!create.verificationRequired) { "verification required without uv" }
        assertTrue(!signIn.verificationRequired) { "verification required without uv" }
        assertEq(ApprovalOperation.SIGN_IN, signIn.operation, "operation")
        assertEq(RP_ID, signIn.rpId, "rpId")
        assertEq(emptyList<Any>(), signIn.accounts, "accounts")
        assertEq(0u, k.key.info().credentialCount, "credentialCount (non-discoverable is not stored)")
        assertEq(emptyList<Any>(), k.key.passkeys(), "passkeys")
        // Without an allowList there is nothing to find.
        assertEq(
            Ctap.ERR_NO_CREDENTIALS,
            Ctap.status(k.ctap(Ctap.getAssertion(Ctap.randomBytes(32), RP_ID, emptyList(), uv = false))),
            "discoverable sign-in without discoverable credentials",
        )
    },

    TestCase("deny is CTAP2_ERR_OPERATION_DENIED (0x27)") {
        val k = openKey(phone = Phone(policy = { ApprovalAnswer.Deny }))
        val cdh = Ctap.randomBytes(32)
        val response = k.ctap(Ctap.makeCredential(cdh, RP_ID, "Example", Ctap.randomBytes(16), "a@b.c", "A", rk = true, uv = true))
        assertEq(Ctap.ERR_OPERATION_DENIED, Ctap.status(response), "status")
        assertEq(1, response.size, "a bare status byte")
        val prompt = k.phone.prompts.single()
        assertEq(listOf(prompt.id to ApprovalClosed.ANSWERED), k.phone.closed.toList(), "closed")
        assertEq(0u, k.key.info().credentialCount, "nothing stored")
    },

    TestCase("answer for an unknown id throws PocketKeyException.UnknownApproval") {
        val k = openKey()
        val e = assertThrows<PocketKeyException.UnknownApproval>("unknown id") {
            k.key.answer(123456789uL, ApprovalAnswer.ApproveVerified(null, ByteArray(8)))
        }
        assertEq(123456789uL, e.id, "id")
        assertEq("That approval has already ended", e.userMessage(), "userMessage()")
        assertEq(e.userMessage(), e.toString(), "toString() is the user message")
        assertTrue(e is PocketKeyException) { "not a PocketKeyException" }
    },

    TestCase("unanswered prompt times out (0x2F) and its late answer is refused") {
        val k = openKey(phone = Phone(policy = { null }), timeoutMs = 300uL)
        val t0 = System.nanoTime()
        val response = k.ctap(byteArrayOf(Ctap.SELECTION.toByte()))
        val ms = (System.nanoTime() - t0) / 1_000_000
        assertEq(Ctap.ERR_USER_ACTION_TIMEOUT, Ctap.status(response), "status")
        assertTrue(ms >= 300) { "returned after $ms ms, before the 300 ms timeout" }
        val prompt = k.phone.prompts.single()
        assertEq(ApprovalOperation.SELECT, prompt.operation, "operation")
        assertEq(listOf(prompt.id to ApprovalClosed.TIMED_OUT), k.phone.closed.toList(), "closed")
        assertThrows<PocketKeyException.UnknownApproval>("late answer") {
            k.key.answer(prompt.id, ApprovalAnswer.ApprovePresent(null))
        }
    },

    TestCase("a verified answer needs the UV key's signature: another key's is OPERATION_DENIED; malformed ones are typed errors") {
        val k = openKey(phone = Phone(policy = { null }))
        assertEq(true, k.key.info().uvKeyRegistered, "UV key registered at attach")
        val forger = Phone()
        k.phone.policy = { p -> ApprovalAnswer.ApproveVerified(null, forger.signUv(p.uvChallenge)) }
        val request = Ctap.makeCredential(
            Ctap.clientDataHash("webauthn.create", "https://$RP_ID"), RP_ID, "Example",
            Ctap.randomBytes(16), "alice", "Alice", rk = true, uv = true,
        )
        assertEq(Ctap.ERR_OPERATION_DENIED, Ctap.status(k.ctap(request)), "status for a forged proof")
        assertThrows<PocketKeyException.InvalidUvKey>("malformed UV key") { k.key.registerUvKey(ByteArray(65) { 4 }) }

        k.phone.policy = { null }
        var response: ByteArray? = null
        val transport = thread(name = "transport") { response = k.ctap(request) }
        waitUntil("the prompt") { k.phone.prompts.size == 2 }
        val prompt = k.phone.prompts[1]
        assertEq(81, prompt.uvChallenge.size, "challenge length")
        val e = assertThrows<PocketKeyException.InvalidUvProof>("80-byte signature") {
            k.key.answer(prompt.id, ApprovalAnswer.ApproveVerified(null, ByteArray(80)))
        }
        assertEq(80u, e.length, "length")
        k.key.answer(prompt.id, k.phone.verified(prompt))
        transport.join(10_000)
        assertEq(Ctap.OK, response?.let { Ctap.status(it) }, "status after the right signature")
    },

    TestCase("cancelPending ends the wait with CTAP2_ERR_KEEPALIVE_CANCEL") {
        val k = openKey(phone = Phone(policy = { null }))
        var response: ByteArray? = null
        val transport = thread(name = "transport") { response = k.ctap(byteArrayOf(Ctap.SELECTION.toByte())) }
        waitUntil("the prompt") { k.phone.prompts.isNotEmpty() }
        // The app's own calls answer at once while a request waits for the user.
        assertEq(0u, k.key.info().credentialCount, "info() while waiting")
        k.key.cancelPending()
        transport.join(10_000)
        assertEq(Ctap.ERR_KEEPALIVE_CANCEL, response?.let { Ctap.status(it) }, "status")
        assertEq(listOf(k.phone.prompts[0].id to ApprovalClosed.CANCELLED), k.phone.closed.toList(), "closed")
    },

    TestCase("a listener that throws denies the request (0x27) and the key keeps working") {
        val k = openKey(phone = Phone(failWith = IllegalStateException("notification permission missing")))
        assertEq(Ctap.ERR_OPERATION_DENIED, Ctap.status(k.ctap(byteArrayOf(Ctap.SELECTION.toByte()))), "status")
        val prompt = k.phone.prompts.single()
        assertEq(listOf(prompt.id to ApprovalClosed.LISTENER_FAILED), k.phone.closed.toList(), "closed")
        // Its declared error type is a denial too.
        k.phone.failWith = ApprovalListenerException.Failed("no UI")
        assertEq(Ctap.ERR_OPERATION_DENIED, Ctap.status(k.ctap(byteArrayOf(Ctap.SELECTION.toByte()))), "status")
        assertEq(ApprovalClosed.LISTENER_FAILED, k.phone.closed.last().second, "closed")
        // Still working: a full registration and sign-in.
        k.phone.failWith = null
        val reg = register(k)
        authenticate(k, keysOf(reg), listOf(reg.credentialId))
        assertEq(1u, k.key.info().credentialCount, "credentialCount")
    },

    TestCase("a KeyProvider that throws makes open throw a typed, readable error") {
        val e = assertThrows<PocketKeyException.KeyProviderFailed>("provider throws RuntimeException") {
            openKey(provider = MemoryKeyProvider(failure = RuntimeException("keystore locked")))
        }
        assertTrue("keystore locked" in e.reason) { "reason does not carry the provider's message: ${e.reason}" }
        assertEq("The device keychain did not hand out the security key's master key", e.userMessage(), "userMessage()")
        assertEq(e.userMessage(), e.toString(), "toString()")

        val declared = assertThrows<PocketKeyException.KeyProviderFailed>("provider throws its declared error") {
            openKey(provider = MemoryKeyProvider(failure = KeyProviderException.Unavailable("user not authenticated")))
        }
        assertTrue("user not authenticated" in declared.reason) { "reason: ${declared.reason}" }

        val short = assertThrows<PocketKeyException.MasterKeyWrongLength>("16-byte master key") {
            openKey(provider = MemoryKeyProvider(key = ByteArray(16) { 1 }))
        }
        assertEq(16u, short.length, "length")
        assertEq("The device keychain returned a master key of the wrong length (16 bytes, expected 32)", short.userMessage(), "userMessage()")
    },

    TestCase("reopening keeps passkeys; another master key is refused") {
        val k = openKey()
        val reg = register(k)
        k.close()
        val again = closeLater(KeyUnderTest(k.dir, MemoryKeyProvider(key = k.provider.key)))
        assertEq(1u, again.key.info().credentialCount, "credentialCount after reopening")
        authenticate(again, keysOf(reg), listOf(reg.credentialId))
        // Another master key (keystore reset, data copied to another phone): never a key that
        // silently works. open() refuses when it has a sealed setting to check (here: no PIN
        // yet, so it may open); then the first read of a passkey must say MasterKeyMismatch.
        val wrong = try {
            closeLater(KeyUnderTest(k.dir, MemoryKeyProvider()))
        } catch (_: PocketKeyException.MasterKeyMismatch) {
            null
        }
        if (wrong != null) {
            val e = assertThrows<PocketKeyException.MasterKeyMismatch>("passkeys() under another master key") {
                wrong.key.passkeys()
            }
            assertEq("The security key's data cannot be unlocked with this device's key", e.userMessage(), "userMessage()")
            val status = Ctap.status(wrong.ctap(Ctap.getAssertion(Ctap.randomBytes(32), RP_ID, listOf(reg.credentialId), uv = true)))
            assertTrue(status != Ctap.OK) { "signed in with a passkey under another master key" }
            wrong.close()
        }
        // With a PIN set, the sealed PIN hash makes open() itself refuse.
        again.key.setPin("1234")
        assertEq(true, again.key.info().pinSet, "pinSet")
        assertThrows<PocketKeyException.MasterKeyMismatch>("open a PIN-protected key with another master key") {
            closeLater(KeyUnderTest(k.dir, MemoryKeyProvider()))
        }
    },

    TestCase("info, passkeys, deletePasskey, setLabel") {
        val k = openKey()
        val info = k.key.info()
        assertEq(AAGUID, info.aaguid, "aaguid")
        assertEq("PocketKey", info.label, "label")
        assertEq(false, info.pinSet, "pinSet")
        assertEq(true, info.uvAvailable, "uvAvailable")
        assertEq(0u, info.credentialCount, "credentialCount")
        assertEq(AttestationKind.SELF_ATTESTATION, info.attestation, "attestation")
        assertTrue(File(k.dir, "pocketkey.sqlite").isFile) { "no database in the data directory" }

        // authenticatorGetInfo says the same AAGUID and options.
        val getInfo = Ctap.ok(k.ctap(byteArrayOf(Ctap.GET_INFO.toByte())), "getInfo")
        assertTrue("FIDO_2_0" in getInfo[1L].asList("versions")) { "versions: ${getInfo[1L]}" }
        assertEq(info.aaguid, uuidString(getInfo[3L].asBytes("aaguid")), "getInfo aaguid")
        val options = getInfo[4L].asMap("options")
        assertEq(true, options["rk"], "rk option")
        assertEq(true, options["uv"], "uv option")

        val alice = register(k, userName = "alice@example.com")
        val bob = register(k, userName = "bob@example.com")
        val site = k.key.passkeys().single()
        assertEq(RP_ID, site.rpId, "site rpId")
        assertEq("Example", site.rpName, "site rpName")
        assertEq(listOf("bob@example.com", "alice@example.com"), site.passkeys.map { it.userName }, "passkeys, newest first")
        assertEq(bob.credentialId, site.passkeys[0].credentialId, "credentialId")
        val now = System.currentTimeMillis() / 1000
        assertTrue(site.passkeys.all { kotlin.math.abs(it.createdAtUnix - now) < 120 }) { "createdAtUnix off" }
        assertEq(2u, k.key.info().credentialCount, "credentialCount")

        assertEq(true, k.key.deletePasskey(bob.credentialId), "delete bob")
        assertEq(false, k.key.deletePasskey(bob.credentialId), "delete bob again")
        assertEq(listOf("alice@example.com"), k.key.passkeys().single().passkeys.map { it.userName }, "after delete")
        // The deleted passkey no longer signs; the other one does.
        assertEq(
            Ctap.ERR_NO_CREDENTIALS,
            Ctap.status(k.ctap(Ctap.getAssertion(Ctap.randomBytes(32), RP_ID, listOf(bob.credentialId), uv = true))),
            "sign-in with the deleted passkey",
        )
        authenticate(k, keysOf(alice), listOf(alice.credentialId))

        k.key.setLabel("Alice's phone")
        assertEq("Alice's phone", k.key.info().label, "label after setLabel")
        val bad = assertThrows<PocketKeyException.InvalidLabel>("empty label") { k.key.setLabel("") }
        assertEq(64u, bad.maxChars, "maxChars")
        assertTrue(bad.userMessage().isNotBlank()) { "blank userMessage" }
    },

    TestCase("classifyScan: FIDO:/ is Hybrid, pocketkey://pair is Pairing, others typed errors") {
        assertEq(ScannedCode.Hybrid(QR), classifyScan(QR, ScanSource.LINK), "FIDO:/ QR")
        assertEq(ScannedCode.Hybrid(QR), classifyScan("  $QR ", ScanSource.CAMERA), "surrounding spaces")
        assertEq(ScannedCode.Pairing("pocketkey://pair?k=abc&n=Work"), classifyScan("pocketkey://pair?k=abc&n=Work", ScanSource.CAMERA), "pairing")
        val link = assertThrows<ScanException.PairingNeedsCamera>("pairing from a link") {
            classifyScan("pocketkey://pair?k=abc&n=Work", ScanSource.LINK)
        }
        assertEq("Scan the code shown by PocketKey on your computer with the app's camera", link.userMessage(), "userMessage()")
        assertEq(
            ScannedCode.Activation("https://keys.example.com/activate?token=a%2Fb", "a/b"),
            classifyScan("https://keys.example.com/activate?token=a%2Fb", ScanSource.LINK),
            "activation",
        )
        for (text in listOf("https://example.com/", "WIFI:S:home;T:WPA;P:secret;;", "", "garbage")) {
            val e = assertThrows<ScanException.NotOurs>("classifyScan(\"$text\")") { classifyScan(text, ScanSource.CAMERA) }
            assertEq("This is not a PocketKey or passkey code", e.userMessage(), "userMessage()")
        }
        for (text in listOf("FIDO:/12ab", "pocketkey://pair", "$QR\n")) {
            val e = assertThrows<ScanException.Malformed>("classifyScan(${text.trim()})") { classifyScan(text, ScanSource.CAMERA) }
            assertTrue(e.userMessage().isNotBlank()) { "blank userMessage" }
        }
    },
)

fun main(args: Array<String>) {
    // Load the library up front so a missing libpocketkey_ffi fails once, clearly.
    try {
        classifyScan(QR, ScanSource.CAMERA)
    } catch (e: Throwable) {
        println("cannot load the pocketkey_ffi library through JNA (jna.library.path=${System.getProperty("jna.library.path")}): $e")
        println("kotlin: 0 passed, ${CASES.size} failed")
        exitProcess(1)
    }
    exitProcess(runTests(CASES, args.toList()))
}
