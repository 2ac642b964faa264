// Real processes for the app-logic end-to-end tests: a pocketkey-relay and a pocketkey-bridge
// on loopback, a webhook receiver standing in for FCM, and the python-fido2 client.
package com.pocketkey.tests.applogic

import com.pocketkey.tests.TestFailure
import com.sun.net.httpserver.HttpServer
import java.io.File
import java.net.DatagramSocket
import java.net.InetAddress
import java.net.InetSocketAddress
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/** Binaries, scripts and the repository, from the environment run-app-logic.sh sets. */
object Env {
    val binDir = File(System.getenv("PK_BIN_DIR") ?: error("PK_BIN_DIR not set (run tests/kotlin/run-app-logic.sh)"))
    val repo = File(System.getenv("PK_REPO") ?: error("PK_REPO not set"))
    val client = File(repo, "tests/python/webauthn_client.py")
}

/** How long a test waits for something another process does before giving up. */
const val WAIT_SECONDS = 60L

/** A child process whose stdout lines are queued as they come (stderr into [log]). */
class Proc(name: String, args: List<String>, val log: File, env: Map<String, String> = emptyMap()) : AutoCloseable {
    private val lines = LinkedBlockingQueue<String>()
    val process: Process = ProcessBuilder(args)
        .redirectError(ProcessBuilder.Redirect.appendTo(log))
        .also { it.environment().putAll(env) }
        .start()

    init {
        Thread({
            process.inputStream.bufferedReader().forEachLine { lines.put(it) }
            lines.put(EOF)
        }, "$name-stdout").apply { isDaemon = true }.start()
    }

    /** The rest of the first line starting with [prefix] (earlier lines are dropped). */
    fun readLine(prefix: String, seconds: Long = WAIT_SECONDS): String {
        while (true) {
            val line = lines.poll(seconds, TimeUnit.SECONDS)
                ?: throw TestFailure("no '$prefix' line within ${seconds}s; stderr: ${log.readText().takeLast(2000)}")
            if (line === EOF) throw TestFailure("process ended before printing '$prefix'; stderr: ${log.readText().takeLast(2000)}")
            if (line.startsWith(prefix)) return line.removePrefix(prefix).trim()
        }
    }

    /** Waits for the process to end and returns its exit code. */
    fun exitCode(seconds: Long = WAIT_SECONDS): Int {
        if (!process.waitFor(seconds, TimeUnit.SECONDS)) throw TestFailure("process still running after ${seconds}s")
        return process.exitValue()
    }

    override fun close() {
        process.destroy()
        if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
    }

    private companion object {
        val EOF = String(charArrayOf('\u0000'))
    }
}

/** Receives the relay's webhook wake-ups (standing in for FCM): each POST body is queued. */
class WakeReceiver : AutoCloseable {
    val bodies = LinkedBlockingQueue<String>()
    private val server = HttpServer.create(InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0).apply {
        createContext("/wake") { exchange ->
            bodies.put(exchange.requestBody.readBytes().decodeToString())
            exchange.sendResponseHeaders(204, -1)
            exchange.close()
        }
        start()
    }
    val url = "http://127.0.0.1:${server.address.port}/wake"

    override fun close() = server.stop(0)
}

fun freeUdpPort(): Int = DatagramSocket(0, InetAddress.getLoopbackAddress()).use { it.localPort }

/** A relay and a bridge "Test laptop" waiting to pair, as tests/python/test_pairing.py starts them. */
class Computer(private val dir: File, wakeUrl: String?) : AutoCloseable {
    val udpPort = freeUdpPort()
    val stateDir = File(dir, "bridge")
    val relay: Proc
    val bridge: Proc
    val relayAddr: String
    val pairUrl: String

    init {
        dir.mkdirs()
        val relayArgs = mutableListOf(File(Env.binDir, "pocketkey-relay").path, "--listen", "127.0.0.1:0")
        if (wakeUrl != null) relayArgs += listOf("--webhook-allow", wakeUrl)
        relay = Proc("relay", relayArgs, File(dir, "relay.log"), mapOf("POCKETKEY_RELAY_STATE" to ":memory:"))
        relayAddr = relay.readLine("listening on ")
        bridge = Proc(
            "bridge",
            listOf(
                File(Env.binDir, "pocketkey-bridge").path, "--key-file", "--udp", "127.0.0.1:$udpPort",
                "--relay", "ws://$relayAddr", "--state-dir", stateDir.path,
                "--name", "Test laptop", "--print-url", "--auto-confirm",
            ),
            File(dir, "bridge.log"),
        )
        pairUrl = bridge.readLine("pair: ")
    }

    /**
     * The computer's user removes the phone while the bridge is stopped (`--unpair`): with the
     * phone not listening, only the relay is told. Returns the bridge's `unpaired:` line.
     */
    fun unpairPhone(name: String): String {
        bridge.close()
        val unpair = Proc(
            "unpair",
            listOf(File(Env.binDir, "pocketkey-bridge").path, "--key-file", "--state-dir", stateDir.path, "--unpair", name),
            File(dir, "unpair.log"),
        )
        return unpair.use { it.readLine("unpaired: ").also { _ -> assertExit(it) } }
    }

    private fun assertExit(p: Proc) {
        val code = p.exitCode()
        if (code != 0) throw TestFailure("pocketkey-bridge --unpair exited with $code")
    }

    override fun close() {
        bridge.close()
        relay.close()
    }
}

/** python-fido2 registering and signing in through the bridge ([webauthn_client.py]). */
fun browser(dir: File, port: Int, rpId: String, user: String = "carol"): Proc =
    Proc(
        "browser",
        listOf("python3", Env.client.path, "--udp", "127.0.0.1:$port", "--rp", rpId, "--user", user, "--sign-in"),
        File(dir, "browser-$user.log"),
    )

/**
 * An organisation (`pocketkey-org init`, an API key) and its `serve` on loopback, its public
 * URL its own address so the mailed links reach it, mails written to an outbox, as
 * tests/python/test_org_activation.py starts it.
 */
class OrgServer(private val dir: File, serveArgs: List<String> = emptyList()) : AutoCloseable {
    private val bin = File(Env.binDir, "pocketkey-org").path
    private val state = File(dir, "state")
    private val outbox = File(dir, "outbox")
    private val apiKey: String
    private val port: Int
    private var serve: Proc
    val url: String

    init {
        dir.mkdirs()
        run("init", "--state-dir", state.path, "--name", "Acme")
        apiKey = run("api-key", "create", "--state-dir", state.path, "--name", "test").substringAfter("api-key: ").trim()
        port = java.net.ServerSocket(0, 1, InetAddress.getLoopbackAddress()).use { it.localPort }
        serve = serve(serveArgs)
        url = serve.readLine("listening: ")
    }

    private fun serve(args: List<String>) = Proc(
        "org",
        listOf(bin, "serve", "--state-dir", state.path, "--listen", "127.0.0.1:$port",
            "--public-url", "http://127.0.0.1:$port", "--outbox", outbox.path) + args,
        File(dir, "serve.log"),
    )

    /** Stops the server (the organisation cannot be reached until [restart]). */
    fun stop() = serve.close()

    /** `serve` again, on the same port, with [args]; returns once it listens. */
    fun restart(vararg args: String) {
        serve.close()
        serve = serve(args.toList())
        serve.readLine("listening: ")
    }

    private fun run(vararg args: String): String {
        val p = ProcessBuilder(listOf(bin) + args).redirectError(ProcessBuilder.Redirect.appendTo(File(dir, "cli.log"))).start()
        val out = p.inputStream.bufferedReader().readText()
        if (!p.waitFor(WAIT_SECONDS, TimeUnit.SECONDS) || p.exitValue() != 0) throw TestFailure("pocketkey-org ${args[0]} failed: $out")
        return out
    }

    /** An API call; returns the status and the body. */
    fun api(method: String, path: String, body: String? = null): Pair<Int, String> {
        val c = java.net.URI("$url/api/v1$path").toURL().openConnection() as java.net.HttpURLConnection
        c.requestMethod = method
        c.setRequestProperty("Authorization", "Bearer $apiKey")
        if (body != null) {
            c.doOutput = true
            c.setRequestProperty("Content-Type", "application/json")
            c.outputStream.use { it.write(body.toByteArray()) }
        }
        val status = c.responseCode
        val text = (if (status < 400) c.inputStream else c.errorStream)?.use { it.readBytes().decodeToString() } ?: ""
        return status to text
    }

    /**
     * Invites [email] through the REST API and returns the Activate link, read from the
     * mail's text part as a person would see it.
     */
    fun invite(email: String): String {
        val before = mails().keys
        val (status, body) = api("POST", "/invites", """{"email":"$email","display_name":"Employee"}""")
        if (status != 201) throw TestFailure("POST /invites: $status $body")
        val mail = mails().filterKeys { it !in before }.values.singleOrNull() ?: throw TestFailure("no new mail in $outbox")
        val text = quotedPrintable(mail.substringAfter("Content-Type: text/plain").substringAfter("\r\n\r\n").substringBefore("\r\n--"))
        return text.split(Regex("\\s+")).singleOrNull { it.startsWith("$url/activate/") }
            ?: throw TestFailure("no Activate link in the mail: $text")
    }

    /** The inventory id of [email]'s key. */
    fun keyId(email: String): String {
        val (_, body) = api("GET", "/keys")
        val entry = Regex("""\{"id":"([0-9a-f]+)","email":"${Regex.escape(email)}"""").find(body)
            ?: throw TestFailure("no key for $email in $body")
        return entry.groupValues[1]
    }

    /** `POST /keys/{id}/ACTION` for [email]'s key, which must answer 200. */
    fun lifecycle(email: String, action: String, reason: String? = null) {
        val body = reason?.let { """{"reason":"$it"}""" }
        val (status, answer) = api("POST", "/keys/${keyId(email)}/$action", body)
        if (status != 200) throw TestFailure("$action: $status $answer")
    }

    /** Runs an SQL statement on the organisation's SQLite database (python3's sqlite3). */
    fun sql(statement: String) {
        val p = ProcessBuilder("python3", "-c", "import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); d.execute(sys.argv[2]); d.commit()",
            File(state, "org.db").path, statement).redirectErrorStream(true).start()
        val out = p.inputStream.bufferedReader().readText()
        if (!p.waitFor(WAIT_SECONDS, TimeUnit.SECONDS) || p.exitValue() != 0) throw TestFailure("sql: $out")
    }

    private fun mails(): Map<String, String> =
        (outbox.listFiles { f -> f.name.endsWith(".eml") } ?: emptyArray()).associate { it.name to it.readText() }

    override fun close() = serve.close()
}

/** RFC 2045 §6.7 quoted-printable: soft line breaks joined, `=XX` decoded (ASCII text). */
fun quotedPrintable(s: String): String =
    s.replace(Regex("=\r?\n"), "").replace(Regex("=([0-9A-F]{2})")) { it.groupValues[1].toInt(16).toChar().toString() }
