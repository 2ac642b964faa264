//! A secret sealed to a P-256 public key: ephemeral-static ECDH, HKDF-SHA256, then
//! ChaCha20-Poly1305 (the ECIES construction of SEC 1 §5.1 with an AEAD, built only from
//! RustCrypto parts). The organisation server uses it to hand a phone the batch attestation
//! key; only the holder of the recipient's private key opens it.
//!
//! The HKDF info binds both public points and a caller's context string, so a box made for
//! one recipient or one purpose does not open as another.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::es256::{EcdhKey, POINT_LEN};

const INFO_PREFIX: &[u8] = b"pocketkey sealed box v1\0";
const NONCE_LEN: usize = 12;

/// What travels: the sender's ephemeral point, the nonce and the ciphertext with its tag.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBox {
    pub ephemeral: [u8; POINT_LEN],
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedBox({} bytes)", self.ciphertext.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealedBoxError {
    #[error("the recipient key is not a P-256 point")]
    BadRecipient,
    #[error("the sealed box does not open (wrong key, context or tampered)")]
    Unauthentic,
}

fn cipher(
    shared: &[u8; 32],
    ephemeral: &[u8],
    recipient: &[u8],
    context: &[u8],
) -> ChaCha20Poly1305 {
    let mut info = Vec::with_capacity(INFO_PREFIX.len() + 2 * POINT_LEN + context.len());
    info.extend_from_slice(INFO_PREFIX);
    info.extend_from_slice(ephemeral);
    info.extend_from_slice(recipient);
    info.extend_from_slice(context);
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, shared)
        .expand(&info, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    ChaCha20Poly1305::new(Key::from_slice(key.as_ref()))
}

/// Seals `plaintext` to `recipient` (uncompressed SEC1 point) for `context`.
pub fn seal_to(
    recipient: &[u8],
    plaintext: &[u8],
    context: &[u8],
) -> Result<SealedBox, SealedBoxError> {
    let ephemeral = EcdhKey::generate();
    let shared = ephemeral
        .agree(recipient)
        .map_err(|_| SealedBoxError::BadRecipient)?;
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = cipher(&shared, ephemeral.public_point(), recipient, context)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: context,
            },
        )
        .expect("ChaCha20-Poly1305 encrypts any message this small");
    Ok(SealedBox {
        ephemeral: *ephemeral.public_point(),
        nonce,
        ciphertext,
    })
}

/// Opens a box sealed to `recipient`'s public point for `context`.
pub fn open(
    recipient: &EcdhKey,
    sealed: &SealedBox,
    context: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealedBoxError> {
    let shared = recipient
        .agree(&sealed.ephemeral)
        .map_err(|_| SealedBoxError::Unauthentic)?;
    cipher(
        &shared,
        &sealed.ephemeral,
        recipient.public_point(),
        context,
    )
    .decrypt(
        Nonce::from_slice(&sealed.nonce),
        Payload {
            msg: &sealed.ciphertext,
            aad: context,
        },
    )
    .map(Zeroizing::new)
    .map_err(|_| SealedBoxError::Unauthentic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_the_recipient_key_and_context() {
        let recipient = EcdhKey::generate();
        let sealed = seal_to(recipient.public_point(), b"batch key", b"ctx").unwrap();
        assert_eq!(
            &open(&recipient, &sealed, b"ctx").unwrap()[..],
            b"batch key"
        );
        assert_eq!(
            open(&recipient, &sealed, b"other"),
            Err(SealedBoxError::Unauthentic)
        );
        assert_eq!(
            open(&EcdhKey::generate(), &sealed, b"ctx"),
            Err(SealedBoxError::Unauthentic)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(open(&recipient, &tampered, b"ctx").is_err());
        assert_eq!(
            seal_to(&[4; 65], b"x", b"ctx").unwrap_err(),
            SealedBoxError::BadRecipient
        );
    }
}
