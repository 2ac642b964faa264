package com.pocketkey.applogic

/**
 * The phone's UV key: a P-256 key the OS uses only right after verifying the user. Its ES256
 * signature over a prompt's `uvChallenge` is the proof of "approved, verified" that the engine
 * checks against the public key registered at setup (docs/apps.md, "User verification bound
 * to hardware").
 *
 * Android: the app's Keystore key with per-use biometric authentication, signing with the
 * `Signature` that BiometricPrompt's CryptoObject unlocked. Tests: a software P-256 key.
 */
interface UvKeyProvider {
    /**
     * The public key, uncompressed SEC1 (65 bytes: 0x04 ‖ x ‖ y), making the key on first use
     * or after the OS invalidated the old one (a new fingerprint enrolled). Throws when the
     * phone cannot hold such a key (no biometric or screen lock).
     */
    fun publicKey(): ByteArray

    /**
     * ES256 over [challenge], DER-encoded. Works only for the one use the OS just authorized
     * (Android: inside the CryptoObject's success callback); throws otherwise.
     */
    fun sign(challenge: ByteArray): ByteArray
}

/** Shown when the OS verified the user but the UV key would not sign: the request is denied. */
const val UV_KEY_NOTICE =
    "PocketKey's verification key could not be used: open PocketKey to set up verification again"
