// The Android app's model (android-shell/app-logic) driven on the JVM against the real engine
// through the generated bindings, and end to end against real processes: a pocketkey-relay, a
// pocketkey-bridge and python-fido2 registering through it (webauthn_client.py).
//
// Run with tests/kotlin/run-app-logic.sh [NAME-SUBSTRING...].
package com.pocketkey.tests.applogic

import com.pocketkey.applogic.ActivationProblem
import com.pocketkey.applogic.AnswerResult
import com.pocketkey.applogic.AppModel
import com.pocketkey.applogic.ApprovalObserver
import com.pocketkey.applogic.Device
import com.pocketkey.applogic.FactoryReset
import com.pocketkey.applogic.KeySession
import com.pocketkey.applogic.KeyVault
import com.pocketkey.applogic.MemorySettingsStore
import com.pocketkey.applogic.NO_VERIFICATION_NOTICE
import com.pocketkey.applogic.OpenState
import com.pocketkey.applogic.OrgSync
import com.pocketkey.applogic.Outcome
import com.pocketkey.applogic.PromptText
import com.pocketkey.applogic.Push
import com.pocketkey.applogic.PushResult
import com.pocketkey.applogic.ScanOutcome
import com.pocketkey.applogic.UV_KEY_NOTICE
import com.pocketkey.applogic.UvKeyProvider
import com.pocketkey.applogic.Verification
import com.pocketkey.core.Advertiser
import com.pocketkey.core.ApprovalAnswer
import com.pocketkey.core.ApprovalClosed
import com.pocketkey.core.ApprovalListenerException
import com.pocketkey.core.ApprovalOperation
import com.pocketkey.core.ApprovalPrompt
import com.pocketkey.core.KeyProvider
import com.pocketkey.core.KeyProviderException
import com.pocketkey.core.OnBehalf
import com.pocketkey.core.OrganisationStatus
import com.pocketkey.core.PairingCodeListener
import com.pocketkey.core.PocketKeyException
import com.pocketkey.core.PushNotRegistered
import com.pocketkey.core.PushProblem
import com.pocketkey.core.ScanException
import com.pocketkey.core.ScanSource
import com.pocketkey.tests.Ctap
import com.pocketkey.tests.TestCase
import com.pocketkey.tests.TestContext
import com.pocketkey.tests.assertEq
import com.pocketkey.tests.assertTrue
import com.pocketkey.tests.asLong
import com.pocketkey.tests.asMap
import com.pocketkey.tests.fail
import com.pocketkey.tests.runTests
import com.pocketkey.tests.Cbor
import java.io.File
import java.security.KeyPairGenerator
import java.security.interfaces.ECPublicKey
import java.security.spec.ECGenParameterSpec
import java.util.Collections
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread
import kotlin.system.exitProcess

// ---- the platform, as the Android glue provides it -----------------------------------------

/** The Keystore-wrapped master key: [destroy] is the reset flow deleting it. */
class TestVault(@Volatile var key: ByteArray = Ctap.randomBytes(32), @Volatile var failure: Exception? = null) : KeyVault {
    @Volatile var destroyed = 0
        private set

    override val provider = object : KeyProvider {
        override fun masterKey(): ByteArray {
            failure?.let { throw it }
            return key.copyOf()
        }
    }

    override fun destroy() {
        destroyed++
        failure = null
        key = Ctap.randomBytes(32)
    }
}

class TestDevice(private val secure: Boolean) : Device {
    override val defaultName = "Test phone"
    override fun canVerifyUser() = secure
}

/** The BLE advertiser: records what it was asked to send, and each stop. */
class RecordingAdvertiser : Advertiser {
    val started: MutableList<ByteArray> = Collections.synchronizedList(mutableListOf())
    val events = LinkedBlockingQueue<String>()
    override fun start(serviceData: ByteArray) {
        started += serviceData
        events.put("start")
    }
    override fun stop() {
        events.put("stop")
    }

    fun next(): String = events.poll(WAIT_SECONDS, TimeUnit.SECONDS) ?: fail("no advertiser call within ${WAIT_SECONDS}s")
}

/**
 * The phone's UV key as the tests hold it: a software P-256 key (the app's is a Keystore key
 * with per-use biometric authentication). [signWith] signs instead of the registered key (a
 * forgery); [failSigning] is the OS refusing the key (invalidated by a new enrollment).
 */
class SoftwareUvKeys : UvKeyProvider {
    private val pair = KeyPairGenerator.getInstance("EC").apply { initialize(ECGenParameterSpec("secp256r1")) }.generateKeyPair()
    @Volatile var signWith: java.security.PrivateKey = pair.private
    @Volatile var failSigning = false
    val signed: MutableList<ByteArray> = Collections.synchronizedList(mutableListOf())

    override fun publicKey(): ByteArray {
        val w = (pair.public as ECPublicKey).w
        fun fixed(n: java.math.BigInteger) = n.toByteArray().takeLast(32).toByteArray().let { ByteArray(32 - it.size) + it }
        return byteArrayOf(4) + fixed(w.affineX) + fixed(w.affineY)
    }

    override fun sign(challenge: ByteArray): ByteArray {
        if (failSigning) throw IllegalStateException("key permanently invalidated")
        signed += challenge
        return java.security.Signature.getInstance("SHA256withECDSA").run {
            initSign(signWith)
            update(challenge)
            sign()
        }
    }

    /** A key of its own, to forge with. */
    fun otherKey(): java.security.PrivateKey =
        KeyPairGenerator.getInstance("EC").apply { initialize(ECGenParameterSpec("secp256r1")) }.generateKeyPair().private
}

/**
 * A browser's `FIDO:/` code (CTAP 2.2, hybrid transport: the QR code): a CBOR map of its compressed
 * P-256 key, a 16-byte secret, the tunnel domain count, the time and the request type, as
 * decimal digits (7 bytes → 17 digits, little-endian; a shorter last chunk fewer).
 */
fun hybridCode(): String {
    val pair = KeyPairGenerator.getInstance("EC").apply { initialize(ECGenParameterSpec("secp256r1")) }.generateKeyPair()
    val point = (pair.public as ECPublicKey).w
    val x = point.affineX.toByteArray().takeLast(32).toByteArray().let { ByteArray(32 - it.size) + it }
    val compressed = byteArrayOf(if (point.affineY.testBit(0)) 3 else 2) + x
    val cbor = Cbor.encode(
        mapOf(0 to compressed, 1 to Ctap.randomBytes(16), 2 to 2, 3 to System.currentTimeMillis() / 1000, 4 to false, 5 to "mc"),
    )
    val widths = intArrayOf(0, 3, 5, 8, 10, 13, 15, 17)
    val digits = cbor.toList().chunked(7).joinToString("") { chunk ->
        val value = chunk.foldIndexed(0L) { i, acc, b -> acc or ((b.toLong() and 0xff) shl (8 * i)) }
        value.toString().padStart(widths[chunk.size], '0')
    }
    return "FIDO:/$digits"
}

/** A pocketkey-relay on loopback as the tunnel server; returns it and its `ws://` URL. */
fun TestContext.tunnelServer(): Pair<Proc, String> {
    val tunnel = closeLater(
        Proc(
            "tunnel",
            listOf(File(Env.binDir, "pocketkey-relay").path, "--listen", "127.0.0.1:0"),
            File(tmp, "tunnel.log"),
            mapOf("POCKETKEY_RELAY_STATE" to ":memory:"),
        ),
    )
    return tunnel to "ws://${tunnel.readLine("listening on ")}"
}

/**
 * The browser's side of hybrid (pocketkey-hybrid-browser) against [tunnelUrl]: it shows its
 * `FIDO:/` code, the model scans it, the advert the model starts is carried to the browser on
 * its stdin (on loopback there is no radio), then the browser registers a credential for
 * hybrid.example and signs in with it, each answered by [answer] from the model's queue.
 * Returns the browser's exit code and its `result:` line.
 */
fun TestContext.hybridFromBrowser(answer: (ModelUnderTest, ApprovalPrompt) -> Unit): Pair<Int, String> {
    val (_, tunnelUrl) = tunnelServer()
    val browser = closeLater(
        Proc(
            "browser",
            listOf(File(Env.binDir, "pocketkey-hybrid-browser").path, "--relay", tunnelUrl, "--rp", "hybrid.example"),
            File(tmp, "browser.log"),
        ),
    )
    val qr = "FIDO:/" + browser.readLine("FIDO:/")
    val m = model()
    val session = m.session()
    m.model.settings.tunnelUrl = tunnelUrl
    val outcome = session.scanner.handle(qr, ScanSource.CAMERA, ShownCodes())
    val started = outcome as? ScanOutcome.HybridStarted ?: fail("scan of the browser's code: $outcome")
    assertEq("start", m.advertiser.next(), "first advertiser call")
    val advert = m.advertiser.started.single().joinToString("") { "%02X".format(it) }
    browser.process.outputStream.run {
        write("advert: $advert\n".toByteArray())
        flush()
    }
    val register = m.notifications.next("makeCredential over hybrid")
    assertEq(ApprovalOperation.REGISTER to "hybrid.example", register.operation to register.rpId, "first prompt")
    answer(m, register)
    // Until the browser's result: after an approved registration it signs in (one more prompt);
    // after a refusal it stops.
    val result = mutableListOf<String>()
    val reader = thread(name = "browser-result") { runCatching { result += browser.readLine("result: ") } }
    while (reader.isAlive) {
        val signIn = m.notifications.poll() ?: continue
        assertEq(ApprovalOperation.SIGN_IN to "hybrid.example", signIn.operation to signIn.rpId, "second prompt")
        answer(m, signIn)
    }
    reader.join(WAIT_SECONDS * 1000)
    val code = browser.exitCode()
    runCatching { started.session.wait() }
    return code to (result.singleOrNull() ?: fail("no result line from the browser; stderr: ${File(tmp, "browser.log").readText()}"))
}

/** The notification side: prompts as they are posted; [failWith] as notifications turned off. */
class Notifications(@Volatile var failWith: Exception? = null) : ApprovalObserver {
    private val posted = LinkedBlockingQueue<ApprovalPrompt>()
    val closed: MutableList<Pair<ULong, ApprovalClosed>> = Collections.synchronizedList(mutableListOf())

    override fun onPrompt(prompt: ApprovalPrompt) {
        failWith?.let { throw it }
        posted.put(prompt)
    }

    override fun onClosed(id: ULong, reason: ApprovalClosed) {
        closed += id to reason
    }

    fun take(): ApprovalPrompt = posted.take()

    /** The next prompt posted within a short while, or null. */
    fun poll(): ApprovalPrompt? = posted.poll(100, TimeUnit.MILLISECONDS)

    /** The next prompt posted, waiting for it. */
    fun next(what: String): ApprovalPrompt =
        posted.poll(WAIT_SECONDS, TimeUnit.SECONDS) ?: fail("no approval prompt for $what within ${WAIT_SECONDS}s")
}

class ShownCodes : PairingCodeListener {
    val codes: MutableList<String> = Collections.synchronizedList(mutableListOf())
    override fun showCode(code: String) {
        codes += code
    }
}

class ModelUnderTest(
    ctx: TestContext,
    val vault: TestVault = TestVault(),
    secure: Boolean = true,
    val dir: File = ctx.newDir(),
    val uvKeys: SoftwareUvKeys? = SoftwareUvKeys(),
) : AutoCloseable {
    val notifications = Notifications()
    val advertiser = RecordingAdvertiser()
    val model = AppModel(dir, vault, TestDevice(secure), MemorySettingsStore(), advertiser, uvKeys).also {
        it.approvals.addObserver(notifications)
    }

    /** Opens the key, which must open. */
    fun session(): KeySession {
        val state = model.open()
        assertTrue(state is OpenState.Open) { "open: $state" }
        return model.session ?: fail("no session after open")
    }

    override fun close() = model.close()
}

fun TestContext.model(
    vault: TestVault = TestVault(),
    secure: Boolean = true,
    dir: File = newDir(),
    uvKeys: SoftwareUvKeys? = SoftwareUvKeys(),
) = closeLater(ModelUnderTest(this, vault, secure, dir, uvKeys))

/** getInfo's `uv` option (0x04 options map, key "uv"); null when absent. */
fun uvOption(m: ModelUnderTest): Any? =
    Ctap.ok(m.model.session!!.key.processCtap(Ctap.command(Ctap.GET_INFO, null), "test"), "getInfo")[4L]
        .asMap("options")["uv"]

fun <T> Outcome<T>.done(what: String): T = when (this) {
    is Outcome.Done -> value
    is Outcome.Error -> fail("$what: ${error::class.simpleName}: $message")
}

/**
 * The prompts answered so far came through the queue, name the computer, and [count] of them
 * were for [site]: [op] itself, or VERIFY_USER for the site (python-fido2 gets a UV token
 * first when the RP requires UV; the operation then runs on that token's presence, CTAP 2.1
 * §6.5.5.7, without a prompt of its own).
 */
fun checkPrompts(user: PhoneUser, op: ApprovalOperation, site: String, count: Int) {
    assertEq(emptyList<String>(), user.problems.toList(), "problems answering from the queue")
    val prompts = user.answered.toList()
    assertTrue(prompts.all { it.requester == "Test laptop" }) { "requesters: ${prompts.map { it.requester }}" }
    val forSite = prompts.filter { it.rpId == site && it.operation in setOf(op, ApprovalOperation.VERIFY_USER) }
    assertTrue(forSite.size >= count) { "expected $count prompts for $site, got ${prompts.map { it.operation to it.rpId }}" }
}

fun AnswerResult.answered(what: String): AnswerResult.Answered =
    this as? AnswerResult.Answered ?: fail("$what: $this")

/**
 * The user at the phone: answers every prompt the notifications show, as the Approve action
 * does after BiometricPrompt succeeded, until [stop]. A registration with UV required is
 * several prompts (python-fido2 first gets a UV token: VERIFY_USER, then the operation).
 */
class PhoneUser(private val m: ModelUnderTest) : AutoCloseable {
    val answered: MutableList<ApprovalPrompt> = Collections.synchronizedList(mutableListOf())
    val problems: MutableList<String> = Collections.synchronizedList(mutableListOf())
    private val worker = thread(name = "phone-user", isDaemon = true) {
        try {
            while (true) {
                val p = m.notifications.take()
                if (m.model.approvals.pending().none { it.id == p.id }) problems += "prompt ${p.id} not in the queue"
                answered += p   // before answering: the browser may see the result at once
                val r = m.model.approvals.approve(p.id, null, Verification.VERIFIED)
                if (r is AnswerResult.Refused) problems += "answer refused: ${r.message}"
            }
        } catch (_: InterruptedException) {
        }
    }

    override fun close() {
        worker.interrupt()
        worker.join(5000)
    }
}

// ---- CTAP through the key, as a transport would ----------------------------------------------

fun uvRetries(m: ModelUnderTest): Long =
    Ctap.ok(m.model.session!!.key.processCtap(Ctap.command(0x06, mapOf(2 to 7)), "test"), "getUVRetries")[5L]
        .asLong("uvRetries")

/** makeCredential on a transport thread; returns the thread's result once [answer] answered its prompt. */
// A discoverable credential without UV on a key with built-in UV is refused with
// PUAT_REQUIRED before any prompt (CTAP 2.1 §6.1.2 step 6, makeCredUvNotRqd absent): rk = uv.
fun registerAnswering(m: ModelUnderTest, uv: Boolean, answer: (ApprovalPrompt) -> Unit): Pair<ApprovalPrompt, Int> {
    var status = -1
    val request = Ctap.makeCredential(
        Ctap.clientDataHash("webauthn.create", "https://example.com"), "example.com", "Example",
        Ctap.randomBytes(16), "alice", "Alice", rk = uv, uv = uv,
    )
    val t = thread(name = "transport") { status = Ctap.status(m.model.session!!.key.processCtap(request, "Work laptop")) }
    val prompt = m.notifications.next("makeCredential")
    answer(prompt)
    t.join(WAIT_SECONDS * 1000)
    assertTrue(!t.isAlive) { "makeCredential still running after the answer" }
    return prompt to status
}

// ---- the cases -------------------------------------------------------------------------------

val cases = listOf(
    TestCase("e2e: camera scan of the bridge's code pairs, listens, and python-fido2 registers and signs in, approved from the queue") {
        Computer(File(tmp, "computer"), wakeUrl = null).use { pc ->
            val m = model()
            val session = m.session()
            val codes = ShownCodes()
            val outcome = session.scanner.handle(pc.pairUrl, ScanSource.CAMERA, codes)
            val paired = outcome as? ScanOutcome.Paired ?: fail("scan of the pairing code: $outcome")
            assertEq("Test laptop", paired.pairing.computerName, "computer name")
            assertEq(emptyList<PushNotRegistered>(), paired.pushNotRegistered, "push: no target yet, nothing to register")
            assertTrue(codes.codes.size == 1 && codes.codes[0].matches(Regex("[0-9]{6}"))) { "confirmation code shown: ${codes.codes}" }

            session.pairings.startListening()
            val user = closeLater(PhoneUser(m))
            browser(tmp, pc.udpPort, "app.example.org").use { browser ->
                assertEq("carol uv=True", browser.readLine("registered: "), "registration verified, with UV")
                checkPrompts(user, ApprovalOperation.REGISTER, "app.example.org", 1)
                browser.readLine("signed in: ")
                checkPrompts(user, ApprovalOperation.SIGN_IN, "app.example.org", 2)
                assertEq(0, browser.exitCode(), "python-fido2 client exit code")
            }
            assertEq(emptyList<ApprovalPrompt>(), m.model.approvals.pending(), "queue after both answers")

            // The pairing list screen: rename, then unpair (the bridge then offers a new code).
            val listed = session.pairings.list().done("pairings")
            assertEq(listOf("Test laptop"), listed.map { it.computerName }, "pairings")
            assertEq(false, listed[0].suspended, "suspended")
            assertEq(true, session.pairings.rename(listed[0].id, "Desk PC").done("rename"), "rename")
            assertEq(listOf("Desk PC"), session.pairings.list().done("pairings").map { it.computerName }, "renamed")
            assertEq(false, session.pairings.resume("00".repeat(16)).done("resume unknown"), "resume of an unknown id")
            assertEq(true, session.pairings.unpair(listed[0].id).done("unpair"), "unpair")
            assertEq(emptyList<String>(), session.pairings.list().done("pairings").map { it.id }, "after unpair")
            assertTrue(pc.bridge.readLine("pair: ").startsWith("pocketkey://pair?")) { "the bridge offers a new code" }
        }
    },

    TestCase("e2e: push wake (the relay's webhook standing in for FCM) runs handlePush, and the registration verifies") {
        WakeReceiver().use { wake ->
            Computer(File(tmp, "computer"), wakeUrl = wake.url).use { pc ->
                val m = model()
                val session = m.session()
                // The token comes first on a phone (FCM hands it out at start): with no
                // pairing yet there is no relay to tell.
                assertEq(emptyList<PushNotRegistered>(), session.push.useWebhook(wake.url).done("push target"), "registration, unpaired")
                val paired = session.scanner.handle(pc.pairUrl, ScanSource.CAMERA, ShownCodes()) as? ScanOutcome.Paired
                    ?: fail("pairing failed")
                assertEq(emptyList<PushNotRegistered>(), paired.pushNotRegistered, "the new computer's relay took the push target")
                assertTrue(!session.pairings.isListening) { "the phone must not be listening: only a push can reach it" }

                // A webhook the computer's relay does not allow: its bad_push_target is a refusal
                // for good, told by the computer's name and not retried; the allowed one is then taken.
                val refused = session.push.useWebhook("http://127.0.0.1:9/wake").done("refused registration").singleOrNull()
                    ?: fail("not one refusal")
                assertEq("Test laptop", refused.name, "who refused")
                val reason = (refused.problem as? PushProblem.Refused)?.reason ?: fail("not refused for good: ${refused.problem}")
                assertTrue("--webhook-allow" in reason) { "the relay's reason: $reason" }
                assertEq(listOf(Push.refusedMessage("Test laptop", reason)), Push.refusals(session.push.notRegistered), "what the user is told")
                assertEq(null, session.push.retryIfNeeded(), "a refusal for good is not retried")
                assertEq(emptyList<PushNotRegistered>(), session.push.useWebhook(wake.url).done("push target"), "the allowed webhook")

                // The "foreground service": every wake-up runs handlePush, one after another.
                val results = LinkedBlockingQueue<PushResult>()
                val service = thread(name = "push-service", isDaemon = true) {
                    try {
                        while (true) results.put(session.push.onPayload(wake.bodies.take()))
                    } catch (_: InterruptedException) {
                    }
                }
                try {
                    val user = closeLater(PhoneUser(m))
                    browser(tmp, pc.udpPort, "push.example.org").use { browser ->
                        assertEq("carol uv=True", browser.readLine("registered: "), "registration verified, with UV")
                        checkPrompts(user, ApprovalOperation.REGISTER, "push.example.org", 1)
                        browser.readLine("signed in: ")
                        checkPrompts(user, ApprovalOperation.SIGN_IN, "push.example.org", 2)
                        assertEq(0, browser.exitCode(), "python-fido2 client exit code")
                    }
                    val first = results.poll(WAIT_SECONDS, TimeUnit.SECONDS) ?: fail("handlePush did not return")
                    assertEq(PushResult.Served("Test laptop", asked = true), first, "push outcome")
                } finally {
                    service.interrupt()
                }
            }
        }
    },

    TestCase("e2e: a forged UV proof: python-fido2's UV-required registration through the bridge is refused (OPERATION_DENIED), no UV retry spent") {
        Computer(File(tmp, "computer"), wakeUrl = null).use { pc ->
            val m = model()
            val session = m.session()
            m.uvKeys!!.signWith = m.uvKeys.otherKey()
            val outcome = session.scanner.handle(pc.pairUrl, ScanSource.CAMERA, ShownCodes())
            outcome as? ScanOutcome.Paired ?: fail("scan of the pairing code: $outcome")
            val before = uvRetries(m)
            session.pairings.startListening()
            val user = closeLater(PhoneUser(m))
            browser(tmp, pc.udpPort, "app.example.org", user = "mallory").use { browser ->
                assertEq("mallory OPERATION_DENIED", browser.readLine("refused: "), "the browser's result")
                assertEq(2, browser.exitCode(), "the browser's exit code")
            }
            assertTrue(user.answered.isNotEmpty()) { "no prompt reached the phone" }
            assertEq(emptyList<String>(), user.problems.toList(), "problems answering")
            assertEq(before, uvRetries(m), "uvRetries after a forged proof")
        }
    },

    TestCase("pairing list: a pairing the relay says was removed shows as suspended; resume serves it again") {
        Computer(File(tmp, "computer"), wakeUrl = null).use { pc ->
            val m = model()
            val session = m.session()
            val paired = session.scanner.handle(pc.pairUrl, ScanSource.CAMERA, ShownCodes()) as? ScanOutcome.Paired
                ?: fail("pairing failed")
            assertEq("Test phone", pc.unpairPhone("Test phone"), "bridge unpaired (the relay told)")
            // The relay's word cannot be proved: the phone keeps the pairing, suspended, once
            // its listener hears it at attach (410 / close 4010).
            session.pairings.startListening()
            val deadline = System.currentTimeMillis() + WAIT_SECONDS * 1000
            while (session.pairings.list().done("pairings").none { it.suspended }) {
                if (System.currentTimeMillis() > deadline) fail("the pairing was never shown as suspended")
                Thread.sleep(50)
            }
            session.pairings.stopListening()
            val listed = session.pairings.list().done("pairings")
            assertEq(listOf(paired.pairing.id), listed.map { it.id }, "the suspended pairing is still listed")
            assertEq(true, session.pairings.resume(listed[0].id).done("resume"), "resume")
            assertEq(listOf(false), session.pairings.list().done("pairings").map { it.suspended }, "suspended after resume")
        }
    },

    TestCase("hybrid: a browser's FIDO:/ code starts a session on our tunnel server; the advert starts, and stops on cancel") {
        val (_, tunnelUrl) = tunnelServer()
        val m = model()
        val session = m.session()
        m.model.settings.tunnelUrl = tunnelUrl
        val outcome = session.scanner.handle(hybridCode(), ScanSource.CAMERA, ShownCodes())
        val started = outcome as? ScanOutcome.HybridStarted ?: fail("scan of a FIDO:/ code: $outcome")
        // The tunnel server gave a routing id: the advert carries it, encrypted (20 bytes).
        assertEq("start", m.advertiser.next(), "first advertiser call")
        assertEq(20, m.advertiser.started.single().size, "service data length")
        started.session.cancel()
        assertEq("stop", m.advertiser.next(), "advertiser call after cancel")
        runCatching { started.session.wait() }
        assertTrue(started.session.isFinished()) { "the session still runs after cancel" }
    },

    TestCase("hybrid e2e: the browser program's QR code, scanned by the model, registers and signs in through pocketkey-relay; the browser verifies the signature") {
        val (code, result) = hybridFromBrowser { m, p -> m.model.approvals.approve(p.id, null, Verification.VERIFIED).answered("hybrid ${p.operation}") }
        assertTrue(result.startsWith("verified rp=hybrid.example credential=")) { "browser: $result" }
        assertEq(0, code, "browser exit code")
    },

    TestCase("hybrid e2e: a denied approval fails the browser's registration (CTAP2_ERR_OPERATION_DENIED)") {
        val (code, result) = hybridFromBrowser { m, p -> m.model.approvals.deny(p.id).answered("deny") }
        assertEq("failed makeCredential status 0x27", result, "browser result")
        assertEq(1, code, "browser exit code")
    },

    TestCase("push: a payload that is not a PocketKey wake-up is ignored; FCM data is read as the same JSON") {
        val session = model().session()
        assertEq(PushResult.Ignored, session.push.onPayload("""{"aps":{"alert":"hi"}}"""), "foreign payload")
        assertEq(PushResult.Ignored, session.push.onPayload("not json"), "damaged payload")
        // A well-formed wake-up for no pairing of this phone: ignored too (no network).
        assertEq(PushResult.Ignored, session.push.onMessage(mapOf("v" to "1", "w" to "00".repeat(16))), "FCM data, unknown wake id")
    },

    TestCase("scan routing: an activation link without a server is a typed failure; pairing links, foreign and damaged codes are refused") {
        val m = model()
        val session = m.session()
        val codes = ShownCodes()
        fun scan(text: String, source: ScanSource) = session.scanner.handle(text, source, codes)

        // The custom scheme's form names no server to activate with: typed, no network.
        val custom = scan("pocketkey://activate?token=abc123", ScanSource.CAMERA) as? ScanOutcome.ActivationFailed
            ?: fail("custom-scheme activation link: ${scan("pocketkey://activate?token=abc123", ScanSource.CAMERA)}")
        assertEq(ActivationProblem.DAMAGED_LINK, custom.error.problem, "custom-scheme activation link")
        assertEq(null, session.organisation.current, "no organisation after a refused link")
        val link = scan("pocketkey://pair?v=2&x=1", ScanSource.LINK) as? ScanOutcome.Rejected ?: fail("pairing link accepted")
        assertTrue(link.error is ScanException.PairingNeedsCamera) { "pairing link: ${link.error}" }
        val foreign = scan("https://example.com/menu", ScanSource.CAMERA) as? ScanOutcome.Rejected ?: fail("foreign code accepted")
        assertTrue(foreign.error is ScanException.NotOurs) { "foreign: ${foreign.error}" }
        val damaged = scan("FIDO:/12", ScanSource.CAMERA) as? ScanOutcome.Rejected ?: fail("damaged hybrid code accepted")
        assertTrue(damaged.error is ScanException.Malformed) { "damaged: ${damaged.error}" }

        // Right form, wrong content: the engine refuses before any network traffic.
        val hybrid = scan("FIDO:/" + "1".repeat(17), ScanSource.CAMERA) as? ScanOutcome.Failed ?: fail("bad hybrid code")
        assertEq("This is not a valid passkey QR code", hybrid.message, "hybrid failure")
        assertEq(0, m.advertiser.started.size, "no advert for a refused code")
        val pairing = scan("pocketkey://pair?v=2", ScanSource.CAMERA) as? ScanOutcome.Failed ?: fail("bad pairing code")
        assertEq("This is not a valid PocketKey pairing code", pairing.message, "pairing failure")
        assertEq(emptyList<String>(), codes.codes, "no confirmation code shown")
        assertEq(0, session.pairings.list().done("pairings").size, "nothing paired")
    },

    TestCase("recovery: a master key that does not open the data (MasterKeyMismatch) leads to the reset flow, not a new key") {
        val dir = newDir()
        val vault = TestVault()
        model(vault, dir = dir).use { first ->
            first.session().keySettings.rename("Old phone key").done("label")
            Unit
        }
        // Restored to a new phone: the data is there, its master key is not.
        vault.key = Ctap.randomBytes(32)
        val m = model(vault, dir = dir)
        val state = m.model.open()
        val reset = state as? OpenState.NeedsReset ?: fail("open with another master key: $state")
        assertEq(PocketKeyException.MasterKeyMismatch().userMessage(), reset.message, "message")
        assertEq(0, vault.destroyed, "nothing erased before the user confirms")
        assertTrue(m.model.session == null) { "a session without a key" }

        val reopened = m.model.resetAndOpen()
        assertTrue(reopened is OpenState.Open) { "after reset: $reopened" }
        assertEq(1, vault.destroyed, "the old master key was deleted")
        val info = m.model.session!!.keySettings.info().done("info")
        assertTrue(info.label != "Old phone key") { "the old data survived the reset" }
        assertEq(0u, info.credentialCount, "passkeys after reset")
    },

    TestCase("recovery: the Keystore failing to hand out the key (KeyProviderFailed) also offers the reset") {
        val vault = TestVault(failure = KeyProviderException.Unavailable("Keystore key invalidated"))
        val m = model(vault)
        val state = m.model.open()
        assertTrue(state is OpenState.NeedsReset) { "open with a failing Keystore: $state" }
        assertTrue(m.model.resetAndOpen() is OpenState.Open) { "reset did not give a usable key" }
    },

    TestCase("no screen lock: 'not available' denies a verification-required prompt without spending UV retries") {
        val m = model(secure = true)
        m.session()
        val before = uvRetries(m)
        val (prompt, status) = registerAnswering(m, uv = true) { p ->
            val r = m.model.approvals.approve(p.id, null, Verification.NOT_AVAILABLE).answered("not available")
            assertEq(ApprovalAnswer.Deny, r.answer, "answer for 'not available'")
            assertEq(NO_VERIFICATION_NOTICE, r.notice, "notice")
        }
        assertTrue(prompt.verificationRequired) { "uv=true must require verification" }
        assertEq(Ctap.ERR_OPERATION_DENIED, status, "CTAP status")
        assertEq(before, uvRetries(m), "uvRetries after 'not available'")
        // The same measurement does see a failed verification (so the check above can fail).
        registerAnswering(m, uv = true) { p -> m.model.approvals.approve(p.id, null, Verification.FAILED).answered("failed") }
        assertEq(before - 1, uvRetries(m), "uvRetries after a failed verification")
    },

    TestCase("no screen lock: the key claims no built-in UV, and presence-only prompts are approved by presence") {
        val m = model(secure = false)
        val session = m.session()
        assertEq(false, session.keySettings.info().done("info").uvAvailable, "uvAvailable")
        val (prompt, status) = registerAnswering(m, uv = false) { p ->
            val r = m.model.approvals.approve(p.id, null, Verification.NOT_AVAILABLE).answered("not available")
            assertEq(ApprovalAnswer.ApprovePresent(null), r.answer, "answer")
        }
        assertEq(false, prompt.verificationRequired, "verification required")
        assertEq(Ctap.OK, status, "CTAP status")
    },

    TestCase("approvals: notifications off denies at once; answering an ended prompt is refused with a sentence") {
        val m = model()
        m.session()
        m.notifications.failWith = ApprovalListenerException.Failed("notifications are turned off")
        val request = Ctap.makeCredential(
            Ctap.clientDataHash("webauthn.create", "https://example.com"), "example.com", null,
            Ctap.randomBytes(16), "bob", "Bob", rk = false, uv = false,
        )
        assertEq(Ctap.ERR_OPERATION_DENIED, Ctap.status(m.model.session!!.key.processCtap(request, "Work laptop")), "status")
        assertEq(emptyList<ApprovalPrompt>(), m.model.approvals.pending(), "queue")
        m.notifications.failWith = null

        val (prompt, _) = registerAnswering(m, uv = false) { p ->
            m.model.approvals.deny(p.id).answered("deny")
        }
        val again = m.model.approvals.approve(prompt.id, null, Verification.VERIFIED)
        assertEq(AnswerResult.Refused("That approval has already ended"), again, "second answer")
        assertTrue(m.notifications.closed.any { it.first == prompt.id && it.second == ApprovalClosed.ANSWERED }) {
            "the notification was not closed: ${m.notifications.closed}"
        }
    },

    TestCase("approvals: the account the user picks signs in; an index outside the choices is refused and the prompt stays") {
        val m = model()
        m.session()
        val approveVerified = { p: ApprovalPrompt -> m.model.approvals.approve(p.id, null, Verification.VERIFIED).answered("register"); Unit }
        registerAnswering(m, uv = true, answer = approveVerified)
        registerAnswering(m, uv = true, answer = approveVerified)
        var response = ByteArray(0)
        val request = Ctap.getAssertion(Ctap.clientDataHash("webauthn.get", "https://example.com"), "example.com", emptyList(), uv = true)
        val t = thread(name = "transport") { response = m.model.session!!.key.processCtap(request, "Work laptop") }
        val prompt = m.notifications.next("getAssertion")
        assertEq(2, prompt.accounts.size, "accounts offered")
        val wrong = m.model.approvals.approve(prompt.id, 5u, Verification.VERIFIED)
        assertEq(AnswerResult.Refused("That account is not one of the choices offered"), wrong, "index 5 of 2")
        assertEq(listOf(prompt.id), m.model.approvals.pending().map { it.id }, "the prompt still waits")
        m.model.approvals.approve(prompt.id, 1u, Verification.VERIFIED).answered("pick the second")
        t.join(WAIT_SECONDS * 1000)
        val user = Ctap.ok(response, "getAssertion")[4L].asMap("user")
        assertEq(prompt.accounts[1].userId, user["id"], "the signed-in account")
    },

    TestCase("uv binding: setup registers the UV key; 'approve with biometrics' signs the prompt's own challenge") {
        val m = model()
        val session = m.session()
        assertEq(null, m.model.uvKeyProblem, "UV key problem")
        assertEq(true, session.keySettings.info().done("info").uvKeyRegistered, "UV key registered")
        assertEq(true, uvOption(m), "getInfo uv")
        val (prompt, status) = registerAnswering(m, uv = true) { p ->
            val r = m.model.approvals.approve(p.id, null, Verification.VERIFIED).answered("approve")
            assertTrue(r.answer is ApprovalAnswer.ApproveVerified) { "answer: ${r.answer}" }
        }
        assertEq(Ctap.OK, status, "CTAP status")
        assertEq(listOf(prompt.uvChallenge.toList()), m.uvKeys!!.signed.map { it.toList() }, "what the UV key signed")
    },

    TestCase("uv binding: a forged proof is refused (OPERATION_DENIED) without spending UV retries") {
        val m = model()
        m.session()
        val before = uvRetries(m)
        m.uvKeys!!.signWith = m.uvKeys.otherKey()
        val (_, status) = registerAnswering(m, uv = true) { p ->
            m.model.approvals.approve(p.id, null, Verification.VERIFIED).answered("approve")
        }
        assertEq(Ctap.ERR_OPERATION_DENIED, status, "CTAP status for a forged proof")
        assertEq(before, uvRetries(m), "uvRetries after a forged proof")
    },

    TestCase("uv binding: a UV key the OS will not use denies a verification-required prompt with a notice, and presence still approves") {
        val m = model()
        m.session()
        val before = uvRetries(m)
        m.uvKeys!!.failSigning = true
        val (_, status) = registerAnswering(m, uv = true) { p ->
            val r = m.model.approvals.approve(p.id, null, Verification.VERIFIED).answered("approve")
            assertEq(ApprovalAnswer.Deny, r.answer, "answer")
            assertEq(UV_KEY_NOTICE, r.notice, "notice")
        }
        assertEq(Ctap.ERR_OPERATION_DENIED, status, "CTAP status")
        assertEq(before, uvRetries(m), "uvRetries")
        val (_, presence) = registerAnswering(m, uv = false) { p ->
            val r = m.model.approvals.approve(p.id, null, Verification.VERIFIED).answered("approve")
            assertEq(ApprovalAnswer.ApprovePresent(null), r.answer, "answer where presence is enough")
        }
        assertEq(Ctap.OK, presence, "CTAP status for presence")
    },

    TestCase("uv binding: without a UV key the key offers no built-in UV; a factory reset registers it again") {
        val none = model(uvKeys = null)
        none.session()
        assertEq(null, uvOption(none), "getInfo uv without a UV key")
        val request = Ctap.makeCredential(
            Ctap.clientDataHash("webauthn.create", "https://example.com"), "example.com", null,
            Ctap.randomBytes(16), "bob", "Bob", rk = true, uv = true,
        )
        assertEq(0x2C, Ctap.status(none.model.session!!.key.processCtap(request, "Work laptop")), "uv=true: INVALID_OPTION")

        val m = model()
        val s = m.session().keySettings
        assertEq(FactoryReset.ERASED, s.factoryReset(Verification.VERIFIED).done("factory reset"), "reset")
        assertEq(true, s.info().done("info").uvKeyRegistered, "UV key after the reset")
        assertEq(true, uvOption(m), "getInfo uv after the reset")
    },

    TestCase("e2e organisation: an invite's link activates as a scan and as an opened link; typed errors; revoke and suspend reach the model at start and on a wake-up") {
        val org = closeLater(OrgServer(File(tmp, "org")))
        fun activation(s: KeySession, link: String, source: ScanSource): ScanOutcome = s.scanner.handle(link, source, ShownCodes())
        fun failed(s: KeySession, link: String, source: ScanSource, problem: ActivationProblem, message: String) {
            val out = activation(s, link, source) as? ScanOutcome.ActivationFailed ?: fail("$problem: ${activation(s, link, source)}")
            assertEq(problem, out.error.problem, "problem")
            assertEq(message, out.error.message, "message for $problem")
            assertTrue(out.error.nextStep.isNotBlank()) { "a next step for $problem" }
        }

        // Alice scans the invite's QR code (the page the link shows on a computer).
        val alice = model()
        val aliceKey = alice.session()
        val aliceLink = org.invite("alice@acme.example")
        val scanned = activation(aliceKey, aliceLink, ScanSource.CAMERA) as? ScanOutcome.Activated
            ?: fail("scan of the activation link: ${activation(aliceKey, aliceLink, ScanSource.CAMERA)}")
        assertEq("Acme", scanned.organisation.name, "organisation")
        assertEq(OrganisationStatus.ACTIVE, scanned.organisation.status, "status")
        assertEq("This key is managed by Acme.", scanned.organisation.message, "shown")
        assertEq(scanned.organisation, aliceKey.organisation.current, "model state")

        // Bob opens his invite's link (the App Link of the mail's button); Alice's used link fails on his phone.
        val bob = model()
        val bobKey = bob.session()
        failed(bobKey, aliceLink, ScanSource.LINK, ActivationProblem.USED, "This activation link was already used")
        val opened = activation(bobKey, org.invite("bob@acme.example"), ScanSource.LINK) as? ScanOutcome.Activated
            ?: fail("opened activation link")
        assertEq("Acme", opened.organisation.name, "organisation from the link")
        failed(aliceKey, org.invite("erin@acme.example"), ScanSource.LINK, ActivationProblem.ALREADY_ACTIVATED,
            "This key already belongs to Acme")

        // Expired, revoked before use, and a server that cannot be reached.
        val carol = model().session()
        val late = org.invite("carol@acme.example")
        org.sql("UPDATE invites SET expires_at = '2000-01-01T00:00:00Z' WHERE used_at IS NULL")
        failed(carol, late, ScanSource.LINK, ActivationProblem.EXPIRED,
            "This activation link has expired: ask your IT department for a new invite")
        val daveLink = org.invite("dave@acme.example")
        org.lifecycle("dave@acme.example", "revoke", "Left the company")
        failed(carol, daveLink, ScanSource.CAMERA, ActivationProblem.REVOKED, "Your organisation revoked this key")
        val closed = java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress()).use { it.localPort }
        failed(carol, "http://127.0.0.1:$closed/activate/" + "ab".repeat(32), ScanSource.LINK, ActivationProblem.NETWORK,
            "The organisation's server cannot be reached: check the connection")
        assertEq(null, carol.organisation.current, "no organisation after the failures")

        // Revoked while Alice's app was closed: the next app start shows it.
        org.lifecycle("alice@acme.example", "revoke", "Phone reported lost")
        alice.close()
        val restarted = closeLater(ModelUnderTest(this, alice.vault, dir = alice.dir))
        assertTrue(restarted.model.start() is OpenState.Open) { "start after the revocation" }
        val revoked = restarted.model.session!!.organisation.current ?: fail("no organisation state after start")
        assertEq(OrganisationStatus.REVOKED, revoked.status, "status at start")
        assertEq(
            "Your organisation revoked this key: Phone reported lost. It no longer signs in to Acme's sites; your own passkeys still work.",
            revoked.message, "shown at start",
        )

        // Suspended while Bob's app runs: a wake-up (its payload carries no data) brings it, and the resume.
        org.lifecycle("bob@acme.example", "suspend", "Security review")
        assertEq(PushResult.Ignored, bobKey.push.onPayload("{}"), "an organisation's wake-up serves no computer")
        assertEq(OrganisationStatus.SUSPENDED, bobKey.organisation.current?.status, "status after the wake-up")
        assertTrue(bobKey.organisation.current!!.message.startsWith("Your organisation suspended this key: Security review.")) {
            bobKey.organisation.current!!.message
        }
        org.lifecycle("bob@acme.example", "resume")
        bobKey.push.onPayload("{}")
        val resumed = bobKey.organisation.lastSync as? OrgSync.Synced ?: fail("sync on wake: ${bobKey.organisation.lastSync}")
        assertEq(OrganisationStatus.ACTIVE, resumed.organisation.status, "status after the resume")
    },

    TestCase("settings: PIN set and change, passkey list and delete, factory reset only after the user verified") {
        val m = model()
        val s = m.session().keySettings
        registerAnswering(m, uv = true) { p -> m.model.approvals.approve(p.id, null, Verification.VERIFIED).answered("approve") }
        val sites = s.passkeys().done("passkeys")
        assertEq(listOf("example.com"), sites.map { it.rpId }, "passkeys")
        assertEq(listOf("alice"), sites[0].passkeys.map { it.userName }, "the registered account")
        assertTrue(s.deletePasskey(sites[0].passkeys[0].credentialId).done("delete")) { "delete found the passkey" }
        assertEq(emptyList<String>(), s.passkeys().done("passkeys").map { it.rpId }, "after delete")
        registerAnswering(m, uv = true) { p -> m.model.approvals.approve(p.id, null, Verification.VERIFIED).answered("approve") }
        s.setPin(null, "123456").done("set PIN")
        val wrong = s.setPin("000000", "654321")
        assertTrue(wrong is Outcome.Error && wrong.error is PocketKeyException.PinWrong) { "wrong current PIN: $wrong" }
        s.setPin("123456", "654321").done("change PIN")
        assertEq(true, s.info().done("info").pinSet, "PIN set")
        assertEq(
            "This erases every passkey on this security key, its PIN and its name. " +
                "Sites and computers will no longer accept it until you register it again.",
            s.resetWarning(), "warning without an organisation",
        )
        // The verification sheet dismissed or locked out: nothing is erased.
        assertEq(FactoryReset.CANCELLED, s.factoryReset(Verification.CANCELLED).done("cancelled reset"), "cancelled")
        assertEq(FactoryReset.VERIFICATION_FAILED, s.factoryReset(Verification.FAILED).done("failed reset"), "failed")
        assertEq(listOf("example.com"), s.passkeys().done("passkeys").map { it.rpId }, "kept without verification")
        assertEq(FactoryReset.ERASED, s.factoryReset(Verification.VERIFIED).done("factory reset"), "verified")
        assertEq(emptyList<String>(), s.passkeys().done("passkeys").map { it.rpId }, "after reset")
        assertEq(false, s.info().done("info").pinSet, "PIN after reset")
    },

    TestCase("e2e organisation: a push target refused for good is told to the user and not retried; one that did not reach the organisation is retried and taken once it is back") {
        val org = closeLater(OrgServer(File(tmp, "org")))
        val m = model()
        val session = m.session()
        assertTrue(session.scanner.handle(org.invite("alice@acme.example"), ScanSource.LINK, ShownCodes()) is ScanOutcome.Activated) { "activation" }
        val wake = "http://127.0.0.1:9/wake"

        // The server offers no webhook provider: bad_push_target, for good.
        val refused = session.push.useWebhook(wake).done("refused registration").singleOrNull() ?: fail("not one refusal")
        assertEq("Acme", refused.name, "who refused")
        val reason = (refused.problem as? PushProblem.Refused)?.reason ?: fail("not refused for good: ${refused.problem}")
        assertEq(listOf(Push.refusedMessage("Acme", reason)), Push.refusals(session.push.notRegistered), "what the user is told")
        assertEq(null, session.push.retryIfNeeded(), "a refusal for good is not retried")

        // Not reached: nothing to tell the user, retried when the app comes to the foreground.
        org.stop()
        assertEq(listOf(PushNotRegistered("Acme", PushProblem.TryLater)), session.push.useWebhook(wake).done("unreachable"), "server stopped")
        assertEq(emptyList<String>(), Push.refusals(session.push.notRegistered), "nothing for the user")
        org.restart("--webhook-allow", wake)
        val retried = session.push.retryIfNeeded() ?: fail("not retried")
        assertEq(emptyList<PushNotRegistered>(), retried.done("retry"), "taken once the server is back")
        assertEq(emptyList<PushNotRegistered>(), session.push.notRegistered, "nothing left to retry")
    },

    TestCase("e2e organisation: a registration on the user's behalf is prompted as the organisation's, answered from the queue, and completes; the reset warning names the organisation") {
        val org = closeLater(OrgServer(File(tmp, "org")))
        val m = model()
        val session = m.session()
        val link = org.invite("alice@acme.example")
        assertTrue(session.scanner.handle(link, ScanSource.LINK, ShownCodes()) is ScanOutcome.Activated) { "activation" }
        val challenge = java.util.Base64.getUrlEncoder().withoutPadding().encodeToString(Ctap.randomBytes(32))
        val options = """{"publicKey":{"challenge":"$challenge","timeout":0,""" +
            """"rp":{"id":"login.microsoft.com","name":"Microsoft"},""" +
            """"user":{"id":"dQ","name":"alice@acme.example","displayName":"Alice"},""" +
            """"pubKeyCredParams":[{"type":"public-key","alg":-7}],""" +
            """"authenticatorSelection":{"residentKey":"required","userVerification":"required"},"attestation":"direct"}}"""
        val (status, created) = org.api(
            "POST", "/keys/${org.keyId("alice@acme.example")}/registrations",
            """{"creation_options":$options,"origin":"https://login.microsoft.com","display_name":"Alice's phone"}""",
        )
        assertEq(202, status, "POST registrations: $created")
        val registration = Regex(""""id":"([^"]+)"""").find(created)?.groupValues?.get(1) ?: fail("no id in $created")

        var synced: Any? = null
        val syncing = thread(name = "org-sync") { synced = session.organisation.sync() }
        val prompt = m.notifications.next("the organisation's registration")
        assertEq(OnBehalf("Acme", "alice@acme.example"), prompt.onBehalf, "marked on behalf")
        assertEq(ApprovalOperation.REGISTER, prompt.operation, "operation")
        val text = PromptText.of(prompt)
        assertEq("Acme asks to register this key with login.microsoft.com for alice@acme.example?", text.title, "title")
        assertEq(OnBehalf("Acme", "alice@acme.example"), text.onBehalf, "the screens' mark")
        m.model.approvals.approve(prompt.id, null, Verification.VERIFIED).answered("approve")
        syncing.join(WAIT_SECONDS * 1000)
        assertTrue(!syncing.isAlive) { "sync still running after the answer" }
        assertTrue(synced is OrgSync.Synced) { "sync: $synced" }
        val (_, reg) = org.api("GET", "/registrations/$registration")
        assertTrue(reg.contains(""""status":"completed"""")) { "registration on the server: $reg" }

        // A computer's own request is not marked.
        val (computer, _) = registerAnswering(m, uv = true) { p -> m.model.approvals.approve(p.id, null, Verification.VERIFIED).answered("approve") }
        assertEq(null, computer.onBehalf, "a computer's request")
        assertEq(null, PromptText.of(computer).onBehalf, "a computer's request on screen")

        assertTrue(session.keySettings.resetWarning().endsWith(
            "The passkeys Acme registered for you go too: ask Acme to register them again.")) { session.keySettings.resetWarning() }
    },
)

fun main(args: Array<String>) {
    exitProcess(runTests(cases, args.toList(), timeoutSeconds = 240))
}
