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
