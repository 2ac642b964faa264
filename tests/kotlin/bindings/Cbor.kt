// A minimal CBOR (RFC 8949) encoder and decoder: just what CTAP2 requests and responses need.
//
// Encoding takes plain Kotlin values and writes CTAP2 canonical CBOR (CTAP 2.1 §8):
// definite lengths, shortest heads, map keys sorted by their encoded bytes, shorter first.
//   Int/Long -> major 0/1, ByteArray -> 2, String -> 3, List -> 4, Map -> 5,
//   Boolean -> simple 20/21, null -> simple 22.
// Decoding returns Long, ByteArray, String, List<Any?>, Map<Any?, Any?> (insertion order kept),
// Boolean or null; anything else (tags, floats, indefinite lengths) is an error, which is
// fine for an authenticator that must answer in canonical CBOR anyway.
package com.pocketkey.tests

import java.io.ByteArrayOutputStream

class CborException(message: String) : Exception(message)

object Cbor {
    fun encode(value: Any?): ByteArray = ByteArrayOutputStream().also { write(it, value) }.toByteArray()

    private fun head(out: ByteArrayOutputStream, major: Int, value: Long) {
        val m = major shl 5
        when {
            value < 0 -> throw CborException("negative length/argument $value")
            value < 24 -> out.write(m or value.toInt())
            value < 0x100 -> { out.write(m or 24); out.write(value.toInt()) }
            value < 0x10000 -> { out.write(m or 25); be(out, value, 2) }
            value < 0x100000000L -> { out.write(m or 26); be(out, value, 4) }
            else -> { out.write(m or 27); be(out, value, 8) }
        }
    }

    private fun be(out: ByteArrayOutputStream, value: Long, bytes: Int) {
        for (i in bytes - 1 downTo 0) out.write(((value ushr (8 * i)) and 0xff).toInt())
    }

    private fun write(out: ByteArrayOutputStream, value: Any?) {
        when (value) {
            null -> out.write(0xf6)
            is Boolean -> out.write(if (value) 0xf5 else 0xf4)
            is Int -> write(out, value.toLong())
            is Long -> if (value >= 0) head(out, 0, value) else head(out, 1, -1 - value)
            is ByteArray -> { head(out, 2, value.size.toLong()); out.write(value) }
            is String -> value.toByteArray(Charsets.UTF_8).let { head(out, 3, it.size.toLong()); out.write(it) }
            is List<*> -> { head(out, 4, value.size.toLong()); value.forEach { write(out, it) } }
            is Map<*, *> -> {
                val entries = value.entries.map { encode(it.key) to it.value }.sortedWith { a, b -> canonical(a.first, b.first) }
                for (i in 1 until entries.size) {
                    if (canonical(entries[i - 1].first, entries[i].first) == 0) throw CborException("duplicate map key")
                }
                head(out, 5, entries.size.toLong())
                for ((k, v) in entries) { out.write(k); write(out, v) }
            }
            else -> throw CborException("cannot encode ${value::class.simpleName}")
        }
    }

    /** CTAP2 canonical key order: shorter encoding first, then bytewise. */
    fun canonical(a: ByteArray, b: ByteArray): Int {
        if (a.size != b.size) return a.size - b.size
        for (i in a.indices) {
            val d = (a[i].toInt() and 0xff) - (b[i].toInt() and 0xff)
            if (d != 0) return d
        }
        return 0
    }

    /** Decodes one complete item; trailing bytes are an error. */
    fun decode(bytes: ByteArray, offset: Int = 0): Any? {
        val r = Reader(bytes, offset)
        val v = r.item(0)
        if (r.pos != bytes.size) throw CborException("${bytes.size - r.pos} trailing bytes")
        return v
    }

    /** Decodes one item starting at [offset] and returns it with the offset just after it. */
    fun decodePrefix(bytes: ByteArray, offset: Int): Pair<Any?, Int> {
        val r = Reader(bytes, offset)
        return r.item(0) to r.pos
    }

    private class Reader(val b: ByteArray, var pos: Int) {
        fun byte(): Int {
            if (pos >= b.size) throw CborException("truncated at $pos")
            return b[pos++].toInt() and 0xff
        }

        fun argument(info: Int): Long = when {
            info < 24 -> info.toLong()
            info in 24..27 -> {
                val n = 1 shl (info - 24)
                var v = 0L
                repeat(n) { v = (v shl 8) or byte().toLong() }
                if (n == 8 && v < 0) throw CborException("argument beyond 2^63")
                v
            }
            else -> throw CborException("unsupported additional info $info (indefinite length?)")
        }

        fun take(n: Long): ByteArray {
            if (n > b.size - pos) throw CborException("truncated string at $pos")
            return b.copyOfRange(pos, pos + n.toInt()).also { pos += n.toInt() }
        }

        fun item(depth: Int): Any? {
            if (depth > 16) throw CborException("nested too deeply")
            val ib = byte()
            val major = ib shr 5
            val info = ib and 0x1f
            if (major == 7) {
                return when (info) {
                    20 -> false
                    21 -> true
                    22 -> null
                    else -> throw CborException("unsupported simple/float 0x${ib.toString(16)}")
                }
            }
            val arg = argument(info)
            return when (major) {
                0 -> arg
                1 -> -1 - arg
                2 -> take(arg)
                3 -> String(take(arg), Charsets.UTF_8)
                4 -> List(checkCount(arg)) { item(depth + 1) }
                5 -> LinkedHashMap<Any?, Any?>().also { m ->
                    repeat(checkCount(arg)) {
                        val k = item(depth + 1)
                        if (k is ByteArray || k is List<*> || k is Map<*, *>) throw CborException("unsupported key type")
                        if (m.containsKey(k)) throw CborException("duplicate key $k")
                        m[k] = item(depth + 1)
                    }
                }
                else -> throw CborException("unsupported major type $major (tag?)")
            }
        }

        fun checkCount(n: Long): Int {
            if (n > b.size - pos) throw CborException("count $n larger than the input")
            return n.toInt()
        }
    }
}

// Typed access to decoded values, failing with a readable message.
fun Any?.asMap(what: String): Map<Any?, Any?> {
    @Suppress("UNCHECKED_CAST")
    return this as? Map<Any?, Any?> ?: throw AssertionError("$what: expected a CBOR map, got ${describe(this)}")
}

fun Any?.asBytes(what: String): ByteArray = this as? ByteArray ?: throw AssertionError("$what: expected bytes, got ${describe(this)}")
fun Any?.asText(what: String): String = this as? String ?: throw AssertionError("$what: expected text, got ${describe(this)}")
fun Any?.asLong(what: String): Long = this as? Long ?: throw AssertionError("$what: expected an integer, got ${describe(this)}")
fun Any?.asList(what: String): List<Any?> = this as? List<Any?> ?: throw AssertionError("$what: expected an array, got ${describe(this)}")

fun describe(v: Any?): String = when (v) {
    null -> "null"
    is ByteArray -> "bytes(${v.size})"
    else -> "${v::class.simpleName} $v"
}

fun ByteArray.hex(): String = joinToString("") { "%02x".format(it) }
