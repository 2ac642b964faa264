// CTAP2 as a platform speaks it: builds authenticatorMakeCredential / GetAssertion /
// GetInfo requests, parses the responses and authenticator data, and checks signatures with
// java.security only (nothing from the library under test is trusted to verify itself).
package com.pocketkey.tests

import java.math.BigInteger
import java.security.AlgorithmParameters
import java.security.KeyFactory
import java.security.MessageDigest
import java.security.PublicKey
import java.security.SecureRandom
import java.security.Signature
import java.security.interfaces.ECPublicKey
import java.security.spec.ECGenParameterSpec
import java.security.spec.ECParameterSpec
import java.security.spec.ECPoint
import java.security.spec.ECPublicKeySpec
import java.util.Base64

object Ctap {
    const val MAKE_CREDENTIAL = 0x01
    const val GET_ASSERTION = 0x02
    const val GET_INFO = 0x04
    const val SELECTION = 0x0B

    const val OK = 0x00
    const val ERR_OPERATION_DENIED = 0x27
    const val ERR_KEEPALIVE_CANCEL = 0x2D
    const val ERR_NO_CREDENTIALS = 0x2E
    const val ERR_USER_ACTION_TIMEOUT = 0x2F

    const val FLAG_UP = 0x01
    const val FLAG_UV = 0x04
    const val FLAG_AT = 0x40
    const val FLAG_ED = 0x80

    private val random = SecureRandom()

    fun randomBytes(n: Int): ByteArray = ByteArray(n).also { random.nextBytes(it) }

    fun sha256(vararg parts: ByteArray): ByteArray =
        MessageDigest.getInstance("SHA-256").run { parts.forEach { update(it) }; digest() }

    /** The hash of a WebAuthn clientDataJSON, as a browser would compute it. */
    fun clientDataHash(type: String, origin: String): ByteArray {
        val challenge = Base64.getUrlEncoder().withoutPadding().encodeToString(randomBytes(32))
        val json = """{"type":"$type","challenge":"$challenge","origin":"$origin","crossOrigin":false}"""
        return sha256(json.toByteArray(Charsets.UTF_8))
    }

    fun command(cmd: Int, params: Map<Int, Any?>?): ByteArray =
        byteArrayOf(cmd.toByte()) + (params?.let { Cbor.encode(it) } ?: ByteArray(0))

    fun makeCredential(
        clientDataHash: ByteArray,
        rpId: String,
        rpName: String?,
        userId: ByteArray,
        userName: String,
        userDisplayName: String,
        rk: Boolean,
        uv: Boolean,
    ): ByteArray {
        val rp = linkedMapOf<String, Any?>("id" to rpId).apply { if (rpName != null) put("name", rpName) }
        val options = linkedMapOf<String, Any?>()
        if (rk) options["rk"] = true
        if (uv) options["uv"] = true
        val params = linkedMapOf<Int, Any?>(
            1 to clientDataHash,
            2 to rp,
            3 to mapOf("id" to userId, "name" to userName, "displayName" to userDisplayName),
            4 to listOf(mapOf("alg" to -7L, "type" to "public-key")),
        )
        if (options.isNotEmpty()) params[7] = options
        return command(MAKE_CREDENTIAL, params)
    }

    fun getAssertion(clientDataHash: ByteArray, rpId: String, allow: List<ByteArray>, uv: Boolean): ByteArray {
        val params = linkedMapOf<Int, Any?>(1 to rpId, 2 to clientDataHash)
        if (allow.isNotEmpty()) params[3] = allow.map { mapOf("id" to it, "type" to "public-key") }
        if (uv) params[5] = mapOf("uv" to true)
        return command(GET_ASSERTION, params)
    }

    /** Splits a response into its status byte and decoded CBOR map (null for a bare status). */
    fun parse(response: ByteArray): Pair<Int, Map<Any?, Any?>?> {
        if (response.isEmpty()) throw AssertionError("empty CTAP response")
        val status = response[0].toInt() and 0xff
        val body = if (response.size > 1) Cbor.decode(response, 1).asMap("response body") else null
        return status to body
    }

    /** The response map of a successful command; anything else fails with the status. */
    fun ok(response: ByteArray, what: String): Map<Any?, Any?> {
        val (status, body) = parse(response)
        if (status != OK) throw AssertionError("$what: CTAP status 0x%02x, expected 0x00".format(status))
        return body ?: throw AssertionError("$what: status 0x00 without a body")
    }

    fun status(response: ByteArray): Int = response.firstOrNull()?.toInt()?.and(0xff)
        ?: throw AssertionError("empty CTAP response")
}

/** A COSE_Key of kty EC2 (2), crv P-256 (1). */
class CoseEc2Key(val alg: Long, val x: ByteArray, val y: ByteArray) {
    fun toPublicKey(): ECPublicKey = p256PublicKey(x, y)

    companion object {
        fun parse(cose: Map<Any?, Any?>): CoseEc2Key {
            check(cose[1L] == 2L) { "COSE kty ${cose[1L]}, expected 2 (EC2)" }
            check(cose[-1L] == 1L) { "COSE crv ${cose[-1L]}, expected 1 (P-256)" }
            val x = cose[-2L].asBytes("COSE x")
            val y = cose[-3L].asBytes("COSE y")
            check(x.size == 32 && y.size == 32) { "COSE x/y of ${x.size}/${y.size} bytes, expected 32" }
            return CoseEc2Key(cose[3L].asLong("COSE alg"), x, y)
        }
    }
}

/** An uncompressed P-256 point as a java.security public key (the curve from the provider). */
fun p256PublicKey(x: ByteArray, y: ByteArray): ECPublicKey {
    val params = AlgorithmParameters.getInstance("EC")
    params.init(ECGenParameterSpec("secp256r1"))
    val spec = params.getParameterSpec(ECParameterSpec::class.java)
    val point = ECPoint(BigInteger(1, x), BigInteger(1, y))
    // The provider does not always check the point; do it here so a bad key fails by name.
    val curve = spec.curve
    val p = (curve.field as java.security.spec.ECFieldFp).p
    val lhs = point.affineY.modPow(BigInteger.TWO, p)
    val rhs = point.affineX.pow(3).add(curve.a.multiply(point.affineX)).add(curve.b).mod(p)
    check(lhs == rhs) { "the public key is not a point on P-256" }
    return KeyFactory.getInstance("EC").generatePublic(ECPublicKeySpec(point, spec)) as ECPublicKey
}

/** ECDSA-with-SHA-256 over the concatenation of [parts]; [derSignature] as WebAuthn sends it. */
fun verifyEs256(key: PublicKey, derSignature: ByteArray, vararg parts: ByteArray): Boolean {
    val v = Signature.getInstance("SHA256withECDSA")
    v.initVerify(key)
    parts.forEach { v.update(it) }
    return try {
        v.verify(derSignature)
    } catch (e: java.security.SignatureException) {
        false // not DER
    }
}

/** Authenticator data (WebAuthn §6.1). */
class AuthData(val raw: ByteArray) {
    val rpIdHash: ByteArray = raw.copyOfRange(0, 32)
    val flags: Int
    val signCount: Long
    val aaguid: ByteArray?
    val credentialId: ByteArray?
    val publicKey: CoseEc2Key?
    val extensions: Map<Any?, Any?>?

    init {
        check(raw.size >= 37) { "authData of ${raw.size} bytes" }
        flags = raw[32].toInt() and 0xff
        signCount = ((raw[33].toLong() and 0xff) shl 24) or ((raw[34].toLong() and 0xff) shl 16) or
            ((raw[35].toLong() and 0xff) shl 8) or (raw[36].toLong() and 0xff)
        var pos = 37
        if (flags and Ctap.FLAG_AT != 0) {
            check(raw.size >= pos + 18) { "attested credential data truncated" }
            aaguid = raw.copyOfRange(pos, pos + 16)
            val idLen = ((raw[pos + 16].toInt() and 0xff) shl 8) or (raw[pos + 17].toInt() and 0xff)
            pos += 18
            check(raw.size >= pos + idLen) { "credential id truncated" }
            credentialId = raw.copyOfRange(pos, pos + idLen)
            pos += idLen
            val (cose, end) = Cbor.decodePrefix(raw, pos)
            publicKey = CoseEc2Key.parse(cose.asMap("credentialPublicKey"))
            pos = end
        } else {
            aaguid = null; credentialId = null; publicKey = null
        }
        if (flags and Ctap.FLAG_ED != 0) {
            val (ext, end) = Cbor.decodePrefix(raw, pos)
            extensions = ext.asMap("extensions")
            pos = end
        } else {
            extensions = null
        }
        check(pos == raw.size) { "${raw.size - pos} bytes after the authenticator data" }
    }

    val userPresent get() = flags and Ctap.FLAG_UP != 0
    val userVerified get() = flags and Ctap.FLAG_UV != 0
}

/** The 16 AAGUID bytes in the 8-4-4-4-12 form the bindings' KeyInfo uses. */
fun uuidString(b: ByteArray): String {
    val h = b.hex()
    return "${h.substring(0, 8)}-${h.substring(8, 12)}-${h.substring(12, 16)}-${h.substring(16, 20)}-${h.substring(20)}"
}
