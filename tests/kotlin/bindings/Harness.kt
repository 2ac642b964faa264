// The app side of the tests: a KeyProvider and an ApprovalListener written in Kotlin the way
// an app writes them (prompt queued, answered later from another thread), a key opened in a
// fresh temporary directory, and a tiny test runner (no JUnit on this machine's classpath).
package com.pocketkey.tests

import com.pocketkey.core.ApprovalAnswer
import com.pocketkey.core.ApprovalClosed
import com.pocketkey.core.ApprovalListener
import com.pocketkey.core.ApprovalPrompt
import com.pocketkey.core.KeyProvider
import com.pocketkey.core.SecurityKey
import java.io.File
import java.nio.file.Files
import java.util.Collections
import java.util.concurrent.ExecutionException
import java.util.concurrent.Executors
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import java.util.concurrent.TimeoutException

// ---- assertions ------------------------------------------------------------------------------

class TestFailure(message: String) : AssertionError(message)

fun fail(message: String): Nothing = throw TestFailure(message)

fun assertTrue(cond: Boolean, message: () -> String) {
    if (!cond) fail(message())
}

fun <T> assertEq(expected: T, actual: T, what: String) {
    val same = if (expected is ByteArray && actual is ByteArray) expected.contentEquals(actual) else expected == actual
    if (!same) fail("$what: expected ${show(expected)}, got ${show(actual)}")
}

private fun show(v: Any?): String = if (v is ByteArray) v.hex() else v.toString()

/** Runs [block], which must throw a [T]; returns it for further checks. */
inline fun <reified T : Throwable> assertThrows(what: String, block: () -> Unit): T {
    try {
        block()
    } catch (e: Throwable) {
        if (e is T) return e
        fail("$what: expected ${T::class.qualifiedName}, got ${e::class.qualifiedName}: $e")
    }
    fail("$what: expected ${T::class.qualifiedName}, nothing was thrown")
}

// ---- the platform callbacks ------------------------------------------------------------------

/** The master key "in the keystore": 32 random bytes kept in memory, or a failure. */
class MemoryKeyProvider(
    val key: ByteArray = Ctap.randomBytes(32),
    private val failure: Exception? = null,
) : KeyProvider {
    @Volatile var calls = 0
        private set

    override fun masterKey(): ByteArray {
        calls++
        failure?.let { throw it }
        return key.copyOf()
    }
}

/** [Phone]'s default policy: approve with biometrics, i.e. sign the prompt's challenge. */
val VERIFY: (ApprovalPrompt) -> ApprovalAnswer? = { error("Phone answers VERIFY itself") }

/**
 * The phone: `onApprovalRequested` only queues the prompt (as an app posts a notification);
 * a separate thread takes each one and answers it through `SecurityKey.answer` by id, with
 * whatever [policy] says (null: leave it unanswered; [VERIFY]: [verified]). Its UV key is a
 * software P-256 key (an app's is a Keystore / Secure Enclave key), registered at [attach].
 */
class Phone(
    @Volatile var policy: (ApprovalPrompt) -> ApprovalAnswer? = VERIFY,
    @Volatile var failWith: Exception? = null,
) : ApprovalListener {
    private val uvKey = java.security.KeyPairGenerator.getInstance("EC")
        .apply { initialize(java.security.spec.ECGenParameterSpec("secp256r1")) }
        .generateKeyPair()

    /** The UV key's public key, uncompressed SEC1. */
    fun uvPublicKey(): ByteArray {
        val w = (uvKey.public as java.security.interfaces.ECPublicKey).w
        fun fixed(n: java.math.BigInteger) = n.toByteArray().takeLast(32).toByteArray().let { ByteArray(32 - it.size) + it }
        return byteArrayOf(4) + fixed(w.affineX) + fixed(w.affineY)
    }

    /** "Approve with biometrics": the UV key's signature over [prompt]'s challenge. */
    fun verified(prompt: ApprovalPrompt, account: UInt? = null): ApprovalAnswer =
        ApprovalAnswer.ApproveVerified(account, signUv(prompt.uvChallenge))

    fun signUv(message: ByteArray): ByteArray = java.security.Signature.getInstance("SHA256withECDSA").run {
        initSign(uvKey.private)
        update(message)
        sign()
    }

    val prompts: MutableList<ApprovalPrompt> = Collections.synchronizedList(mutableListOf())
    val closed: MutableList<Pair<ULong, ApprovalClosed>> = Collections.synchronizedList(mutableListOf())
    val listenerThreads: MutableSet<String> = Collections.synchronizedSet(mutableSetOf())
    val answerThreads: MutableSet<String> = Collections.synchronizedSet(mutableSetOf())
    val answerErrors: MutableList<Throwable> = Collections.synchronizedList(mutableListOf())

    private val queue = LinkedBlockingQueue<ApprovalPrompt>()
    @Volatile private var key: SecurityKey? = null
    private val worker = Thread({ answerLoop() }, "phone-answers").apply { isDaemon = true }

    fun attach(key: SecurityKey) {
        this.key = key
        key.registerUvKey(uvPublicKey())
        if (!worker.isAlive) worker.start()
    }

    fun stop() {
        worker.interrupt()
        worker.join(2000)
    }

    override fun onApprovalRequested(request: ApprovalPrompt) {
        listenerThreads += Thread.currentThread().name
        prompts += request
        failWith?.let { throw it }
        queue.put(request)
    }

    override fun onApprovalClosed(id: ULong, reason: ApprovalClosed) {
        closed += id to reason
    }

    private fun answerLoop() {
        while (true) {
            val prompt = try {
                queue.take()
            } catch (_: InterruptedException) {
                return
            }
            val p = policy
            val answer = (if (p === VERIFY) verified(prompt) else p(prompt)) ?: continue
            try {
                Thread.sleep(5) // "seconds later", in miniature: the engine really waits
                answerThreads += Thread.currentThread().name
                (key ?: error("no key attached")).answer(prompt.id, answer)
            } catch (_: InterruptedException) {
                return
            } catch (e: Throwable) {
                answerErrors += e
            }
        }
    }
}

/** A key opened in its own temporary directory, with its provider and phone. */
class KeyUnderTest(
    val dir: File,
    val provider: MemoryKeyProvider = MemoryKeyProvider(),
    val phone: Phone = Phone(),
    timeoutMs: ULong? = null,
) : AutoCloseable {
    val key: SecurityKey = SecurityKey.open(dir.path, provider, phone, timeoutMs)

    init {
        phone.attach(key)
    }

    var requester = "Work laptop"

    fun ctap(request: ByteArray): ByteArray = key.processCtap(request, requester)

    override fun close() {
        phone.stop()
        key.close()
    }
}

// ---- runner ----------------------------------------------------------------------------------

class TestContext(val name: String) : AutoCloseable {
    val tmp: File = Files.createTempDirectory("pocketkey-kotlin-").toFile()
    private val cleanups = mutableListOf<AutoCloseable>()
    private var n = 0

    /** A fresh data directory (not yet created: open creates it). */
    fun newDir(): File = File(tmp, "key${n++}")

    fun openKey(
        provider: MemoryKeyProvider = MemoryKeyProvider(),
        phone: Phone = Phone(),
        timeoutMs: ULong? = null,
    ): KeyUnderTest = KeyUnderTest(newDir(), provider, phone, timeoutMs).also { cleanups += it }

    fun <T : AutoCloseable> closeLater(c: T): T = c.also { cleanups += it }

    override fun close() {
        cleanups.asReversed().forEach { runCatching { it.close() } }
        tmp.deleteRecursively()
    }
}

class TestCase(val name: String, val body: TestContext.() -> Unit)

/** Runs each case on a worker with a time limit; prints one line per case and the totals. */
fun runTests(cases: List<TestCase>, filter: List<String>, timeoutSeconds: Long = 90): Int {
    val selected = if (filter.isEmpty()) cases else cases.filter { c -> filter.any { c.name.contains(it) } }
    var passed = 0
    val failed = mutableListOf<String>()
    val pool = Executors.newCachedThreadPool { r -> Thread(r, "test-case").apply { isDaemon = true } }
    for (case in selected) {
        val t0 = System.nanoTime()
        val future = pool.submit<Unit> { TestContext(case.name).use { case.body(it) } }
        val error: Throwable? = try {
            future.get(timeoutSeconds, TimeUnit.SECONDS); null
        } catch (e: ExecutionException) {
            e.cause ?: e
        } catch (e: TimeoutException) {
            future.cancel(true)
            TestFailure("timed out after ${timeoutSeconds}s")
        }
        val ms = (System.nanoTime() - t0) / 1_000_000
        if (error == null) {
            passed++
            println("ok    ${case.name} (${ms} ms)")
        } else {
            failed += case.name
            println("FAIL  ${case.name} (${ms} ms): $error")
            if (error !is TestFailure) error.printStackTrace(System.out)
            else error.stackTrace.firstOrNull { it.className.startsWith("com.pocketkey.tests.BindingsTest") }
                ?.let { println("      at $it") }
        }
    }
    pool.shutdownNow()
    if (failed.isNotEmpty()) println("failed: ${failed.joinToString(", ")}")
    println("kotlin: $passed passed, ${failed.size} failed")
    return if (failed.isEmpty() && selected.isNotEmpty()) 0 else 1
}
