package com.pocketkey.app

import android.content.Context
import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import android.security.keystore.StrongBoxUnavailableException
import android.util.AtomicFile
import com.pocketkey.applogic.KeyVault
import com.pocketkey.core.KeyProvider
import com.pocketkey.core.KeyProviderException
import java.io.File
import java.io.FileNotFoundException
import java.io.IOException
import java.security.GeneralSecurityException
import java.security.KeyStore
import java.security.SecureRandom
import javax.crypto.Cipher
import javax.crypto.KeyGenerator
import javax.crypto.SecretKey
import javax.crypto.spec.GCMParameterSpec

/**
 * The engine's 32-byte master key, stored wrapped (AES-256-GCM) by a non-exportable Android
 * Keystore key (StrongBox when the phone has one). File layout: version ‖ 12-byte IV ‖
 * ciphertext ‖ 16-byte tag, in noBackupFilesDir.
 *
 * The wrapping key needs no user authentication: the engine must open at boot or when a
 * computer calls, and every approval asks for the biometric itself (ApprovalActivity).
 * A lost Keystore key is an error, never a silent new master key: the app then offers
 * a reset, whose last step is [destroy] (the app model deletes the data directory).
 */
class KeystoreKeyProvider(context: Context) : KeyProvider, KeyVault {
    private val file = AtomicFile(File(context.noBackupFilesDir, "pocketkey-master.key"))

    override val provider: KeyProvider get() = this

    /** Deletes the wrapped master key and the Keystore key wrapping it. */
    @Synchronized
    override fun destroy() {
        file.delete()
        // If the Keystore cannot delete its entry, the next create() wraps the new master key
        // with that key: nothing of the old master key is left either way.
        runCatching { KeyStore.getInstance(ANDROID_KEYSTORE).apply { load(null) }.deleteEntry(ALIAS) }
    }

    @Synchronized
    override fun masterKey(): ByteArray = try {
        // readFully, not baseFile.exists(): AtomicFile recovers a write interrupted by a crash
        // from its backup, and creating a new master key then would lose every passkey.
        val sealed = try {
            file.readFully()
        } catch (e: FileNotFoundException) {
            null
        }
        if (sealed != null) unwrap(sealed) else create()
    } catch (e: GeneralSecurityException) {
        throw KeyProviderException.Unavailable("Android Keystore: ${e.javaClass.simpleName}")
    } catch (e: IOException) {
        throw KeyProviderException.Unavailable("master key file: ${e.message}")
    }

    private fun create(): ByteArray {
        val master = ByteArray(KEY_LEN).also { SecureRandom().nextBytes(it) }
        val cipher = Cipher.getInstance(TRANSFORMATION)
        cipher.init(Cipher.ENCRYPT_MODE, wrappingKey(create = true))   // Keystore picks the IV
        val sealed = byteArrayOf(VERSION) + cipher.iv + cipher.doFinal(master)
        val out = file.startWrite()
        try {
            out.write(sealed)
            file.finishWrite(out)
        } catch (e: IOException) {
            file.failWrite(out)
            throw e
        }
        return master
    }

    private fun unwrap(sealed: ByteArray): ByteArray {
        if (sealed.size != 1 + IV_LEN + KEY_LEN + TAG_LEN || sealed[0] != VERSION) {
            throw KeyProviderException.Unavailable("the stored master key is damaged")
        }
        val key = wrappingKey(create = false)
            ?: throw KeyProviderException.Unavailable("the Keystore key protecting the master key is gone")
        val cipher = Cipher.getInstance(TRANSFORMATION)
        cipher.init(Cipher.DECRYPT_MODE, key, GCMParameterSpec(TAG_LEN * 8, sealed, 1, IV_LEN))
        return cipher.doFinal(sealed, 1 + IV_LEN, KEY_LEN + TAG_LEN)
    }

    private fun wrappingKey(create: Boolean): SecretKey? {
        val keyStore = KeyStore.getInstance(ANDROID_KEYSTORE).apply { load(null) }
        (keyStore.getKey(ALIAS, null) as? SecretKey)?.let { return it }
        if (!create) return null
        return try {
            generate(strongBox = true)
        } catch (e: StrongBoxUnavailableException) {
            generate(strongBox = false)
        }
    }

    private fun generate(strongBox: Boolean): SecretKey {
        val spec = KeyGenParameterSpec.Builder(ALIAS, KeyProperties.PURPOSE_ENCRYPT or KeyProperties.PURPOSE_DECRYPT)
            .setBlockModes(KeyProperties.BLOCK_MODE_GCM)
            .setEncryptionPaddings(KeyProperties.ENCRYPTION_PADDING_NONE)
            .setKeySize(256)
            .setIsStrongBoxBacked(strongBox)
            .build()
        return KeyGenerator.getInstance(KeyProperties.KEY_ALGORITHM_AES, ANDROID_KEYSTORE)
            .apply { init(spec) }
            .generateKey()
    }

    private companion object {
        const val ANDROID_KEYSTORE = "AndroidKeyStore"
        const val ALIAS = "pocketkey-master-wrap"
        const val TRANSFORMATION = "AES/GCM/NoPadding"
        const val VERSION: Byte = 1
        const val KEY_LEN = 32
        const val IV_LEN = 12
        const val TAG_LEN = 16
    }
}
