// Smoke test of the Kotlin/JVM toolchain (scripts/toolchains/kotlin.sh): proves that kotlinc
// compiles against Debian's JNA and the coroutines jar shipped with kotlin-compiler, and that
// JNA's native part loads and can call into a C library — what uniffi's generated Kotlin does.
import com.sun.jna.Library
import com.sun.jna.Native
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext

interface LibC : Library {
    fun getpid(): Int
}

fun main() {
    val libc = Native.load("c", LibC::class.java)
    val pid = runBlocking { withContext(Dispatchers.Default) { libc.getpid() } }
    check(pid > 0) { "getpid() through JNA returned $pid" }
    println(
        "kotlin smoke ok: Kotlin ${KotlinVersion.CURRENT}, JNA ${Native.VERSION}, " +
            "pointer size ${Native.POINTER_SIZE}, getpid()=$pid via JNA, java ${System.getProperty("java.version")}"
    )
}
