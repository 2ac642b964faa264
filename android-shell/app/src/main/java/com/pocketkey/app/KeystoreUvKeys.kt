package com.pocketkey.app

import android.os.Build
import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import com.pocketkey.applogic.UvKeyProvider
import java.security.KeyPairGenerator
import java.security.KeyStore
import java.security.PrivateKey
import java.security.Signature
import java.security.interfaces.ECPublicKey
import java.security.spec.ECGenParameterSpec

/**
 * The UV key (docs/apps.md, "User verification bound to hardware"): a non-exportable P-256
 * Keystore key that signs only after BiometricPrompt verified the user for that one signature
 * (per-use authentication: timeout 0), and that a newly enrolled biometric invalidates.
 *
 * Flow: [signatureForPrompt] gives ApprovalActivity an initialized [Signature] to wrap in
 * BiometricPrompt's CryptoObject; its success callback hands the unlocked one back through
 * [unlocked], and the app model's [sign] uses it once. Outside that callback [sign] throws,
 * so no code path signs without the OS having verified the user.
 *
 * Not compiled on this machine (no Android SDK); the app-logic tests use a software key.
 */
class KeystoreUvKeys : UvKeyProvider {
    @Volatile private var unlocked: Signature? = null

    override fun publicKey(): ByteArray {
        val keyStore = keyStore()
        // A key the OS invalidated (new fingerprint) is replaced; the model registers the new one.
        if (keyStore.containsAlias(ALIAS) && runCatching { signatureForPrompt() }.isFailure) {
            keyStore.deleteEntry(ALIAS)
        }
        if (!keyStore.containsAlias(ALIAS)) generate()
        val point = (keyStore().getCertificate(ALIAS).publicKey as ECPublicKey).w
        return byteArrayOf(4) + fixed32(point.affineX.toByteArray()) + fixed32(point.affineY.toByteArray())
    }

    /** A Signature ready for BiometricPrompt.CryptoObject; throws if the key was invalidated. */
    fun signatureForPrompt(): Signature = Signature.getInstance("SHA256withECDSA").apply {
        initSign(keyStore().getKey(ALIAS, null) as PrivateKey)
    }

    /** From BiometricPrompt's onAuthenticationSucceeded: the CryptoObject's Signature. */
    fun unlocked(signature: Signature) {
        unlocked = signature
    }

    /** After the answer: an unlocked Signature the model did not use (the prompt had ended) goes. */
    fun forget() {
        unlocked = null
    }

    override fun sign(challenge: ByteArray): ByteArray {
        val signature = unlocked ?: throw IllegalStateException("the OS has not verified the user for this signature")
        unlocked = null
        signature.update(challenge)
        return signature.sign()
    }

    private fun generate() {
        val spec = KeyGenParameterSpec.Builder(ALIAS, KeyProperties.PURPOSE_SIGN)
            .setAlgorithmParameterSpec(ECGenParameterSpec("secp256r1"))
            .setDigests(KeyProperties.DIGEST_SHA256)
            .setUserAuthenticationRequired(true)
            .setInvalidatedByBiometricEnrollment(true)
            .apply {
                if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.R) {
                    // Timeout 0: every signature needs its own verification.
                    setUserAuthenticationParameters(0, KeyProperties.AUTH_BIOMETRIC_STRONG)
                } else {
                    @Suppress("DEPRECATION")
                    setUserAuthenticationValidityDurationSeconds(-1)
                }
            }
            .build()
        KeyPairGenerator.getInstance(KeyProperties.KEY_ALGORITHM_EC, ANDROID_KEYSTORE).apply {
            initialize(spec)
            generateKeyPair()
        }
    }

    private fun keyStore() = KeyStore.getInstance(ANDROID_KEYSTORE).apply { load(null) }

    private fun fixed32(b: ByteArray): ByteArray = b.takeLast(32).toByteArray().let { ByteArray(32 - it.size) + it }

    private companion object {
        const val ANDROID_KEYSTORE = "AndroidKeyStore"
        const val ALIAS = "pocketkey-uv"
    }
}
