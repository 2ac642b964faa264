//! Authenticated encryption of secrets at rest and in credential IDs (ChaCha20-Poly1305).
//!
//! Each purpose gets its own subkey derived from the master key with HKDF-SHA256, so a sealed
//! PIN hash can never be opened as a private key and vice versa. Sealed blobs are
//! `version (1) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`; the version byte is bound into the AAD.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::master_key::MasterKey;

pub const SEAL_VERSION: u8 = 1;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed blob adds to its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// What a sealed blob is for; each purpose has its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Secrets in the credential store (private keys, PIN hash, credBlob…).
    Store,
    /// Self-contained credential IDs of non-discoverable credentials.
    CredentialId,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::Store => b"pocketkey seal v1: store",
            Purpose::CredentialId => b"pocketkey seal v1: credential id",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed data is malformed")]
    Malformed,
    #[error("sealed data was made by an unknown format version")]
    UnknownVersion,
    #[error("sealed data failed authentication (wrong key or tampered)")]
    Unauthentic,
}

/// Seals and opens blobs for one purpose.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    pub fn new(master: &MasterKey, purpose: Purpose) -> Self {
        Self::with_salt(master, purpose, &[])
    }

    /// A sealer whose key also depends on `salt` (a different salt opens nothing of another).
    pub fn with_salt(master: &MasterKey, purpose: Purpose, salt: &[u8]) -> Self {
        let key = master.derive(salt, purpose.info());
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key.as_ref())),
        }
    }

    /// Encrypts `plaintext`, binding `aad` (not stored) into the tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let full_aad = [&[SEAL_VERSION][..], aad].concat();
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &full_aad,
                },
            )
            .expect("ChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a blob made by [`Sealer::seal`] with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < OVERHEAD {
            return Err(SealError::Malformed);
        }
        if sealed[0] != SEAL_VERSION {
            return Err(SealError::UnknownVersion);
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        let full_aad = [&[SEAL_VERSION][..], aad].concat();
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &full_aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Unauthentic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(p: Purpose) -> Sealer {
        Sealer::new(&MasterKey::from_bytes([7; 32]), p)
    }

    #[test]
    fn round_trip_with_matching_aad() {
        let s = sealer(Purpose::Store);
        let blob = s.seal(b"secret", b"ctx");
        assert_eq!(blob.len(), 6 + OVERHEAD);
        assert_eq!(&s.open(&blob, b"ctx").unwrap()[..], b"secret");
    }

    #[test]
    fn wrong_aad_purpose_or_tamper_is_rejected() {
        let s = sealer(Purpose::Store);
        let blob = s.seal(b"secret", b"ctx");
        assert_eq!(s.open(&blob, b"other").unwrap_err(), SealError::Unauthentic);
        assert_eq!(
            sealer(Purpose::CredentialId)
                .open(&blob, b"ctx")
                .unwrap_err(),
            SealError::Unauthentic
        );
        let mut bad = blob.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(s.open(&bad, b"ctx").unwrap_err(), SealError::Unauthentic);
        bad = blob.clone();
        bad[0] = 9;
        assert_eq!(s.open(&bad, b"ctx").unwrap_err(), SealError::UnknownVersion);
        assert_eq!(
            s.open(&blob[..10], b"ctx").unwrap_err(),
            SealError::Malformed
        );
    }
}
