//! The BLE advert: an encrypted 16-byte EID ("ephemeral identifier") plus a truncated MAC.
//!
//! EID plaintext: `0x00` ‖ 10-byte random nonce ‖ 3-byte routing id (from the tunnel server) ‖
//! tunnel server domain id (u16 little-endian). Advert: AES-256 (key = EID key bytes 0..32) of
//! that single block ‖ the first 4 bytes of HMAC-SHA256 (key = EID key bytes 32..64) over the
//! ciphertext: 20 bytes of service data (UUID 0xFFF9, or 0xFDE2).
//!
//! The phone encrypts; the browser decrypts (every advert it sees, with the key of the QR code
//! it showed). Both directions are here: the decrypting one serves tests and test initiators.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use thiserror::Error;

use super::keys::EidKey;

/// Length of the encrypted advert (service data).
pub const ADVERT_LEN: usize = 20;
/// Length of the EID plaintext (one AES block).
pub const EID_LEN: usize = 16;
/// Bytes of HMAC-SHA256 kept in the advert.
pub const TAG_LEN: usize = 4;
/// The 16-bit service UUID of hybrid adverts (FIDO's).
pub const SERVICE_UUID: u16 = 0xFFF9;
/// The older service UUID (Google's), still recognised by browsers.
pub const SERVICE_UUID_LEGACY: u16 = 0xFDE2;

/// Why 20 bytes are not an advert for this key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdvertError {
    #[error("an advert is {ADVERT_LEN} bytes, got {0}")]
    WrongLength(usize),
    #[error("the advert's MAC does not match this key")]
    BadTag,
    #[error("the EID's reserved first byte is {0:#04x}, not 0")]
    ReservedByte(u8),
}

/// The decoded EID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EidPlaintext {
    /// Fresh randomness per advert.
    pub nonce: [u8; 10],
    /// Chosen by the tunnel server (`X-caBLE-Routing-ID`); the browser uses it to connect.
    pub routing_id: [u8; 3],
    /// Which tunnel server (see [`super::domains`]).
    pub domain_id: u16,
}

impl EidPlaintext {
    pub fn new(nonce: [u8; 10], routing_id: [u8; 3], domain_id: u16) -> Self {
        Self {
            nonce,
            routing_id,
            domain_id,
        }
    }

    /// A fresh EID with a random nonce from the operating system.
    pub fn random(routing_id: [u8; 3], domain_id: u16) -> Self {
        let mut nonce = [0u8; 10];
        OsRng.fill_bytes(&mut nonce);
        Self::new(nonce, routing_id, domain_id)
    }

    pub fn to_bytes(&self) -> [u8; EID_LEN] {
        let mut out = [0u8; EID_LEN];
        out[1..11].copy_from_slice(&self.nonce);
        out[11..14].copy_from_slice(&self.routing_id);
        out[14..16].copy_from_slice(&self.domain_id.to_le_bytes());
        out
    }

    /// Parses a plaintext block; the first byte is reserved and must be zero.
    pub fn from_bytes(bytes: &[u8; EID_LEN]) -> Result<Self, AdvertError> {
        if bytes[0] != 0 {
            return Err(AdvertError::ReservedByte(bytes[0]));
        }
        Ok(Self {
            nonce: bytes[1..11].try_into().expect("10 bytes"),
            routing_id: bytes[11..14].try_into().expect("3 bytes"),
            domain_id: u16::from_le_bytes([bytes[14], bytes[15]]),
        })
    }
}

fn mac(key: &EidKey, ciphertext: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key.hmac_key()).expect("HMAC takes any key length");
    mac.update(ciphertext);
    mac
}

/// Encrypts an EID into the 20-byte advert.
pub fn encrypt(key: &EidKey, eid: &EidPlaintext) -> [u8; ADVERT_LEN] {
    let cipher = Aes256::new(GenericArray::from_slice(key.aes_key()));
    let mut block = GenericArray::from(eid.to_bytes());
    cipher.encrypt_block(&mut block);
    let tag = mac(key, &block).finalize().into_bytes();
    let mut out = [0u8; ADVERT_LEN];
    out[..EID_LEN].copy_from_slice(&block);
    out[EID_LEN..].copy_from_slice(&tag[..TAG_LEN]);
    out
}

/// Verifies (in constant time) and decrypts an advert.
pub fn decrypt(key: &EidKey, advert: &[u8]) -> Result<EidPlaintext, AdvertError> {
    if advert.len() != ADVERT_LEN {
        return Err(AdvertError::WrongLength(advert.len()));
    }
    let (ciphertext, tag) = advert.split_at(EID_LEN);
    mac(key, ciphertext)
        .verify_truncated_left(tag)
        .map_err(|_| AdvertError::BadTag)?;
    let cipher = Aes256::new(GenericArray::from_slice(key.aes_key()));
    let mut block = *GenericArray::from_slice(ciphertext);
    cipher.decrypt_block(&mut block);
    EidPlaintext::from_bytes(&block.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hybrid::keys::eid_key;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let key = eid_key(&[3; 16]);
        let eid = EidPlaintext::new([1; 10], [0xaa, 0xbb, 0xcc], 266);
        let advert = encrypt(&key, &eid);
        assert_eq!(decrypt(&key, &advert), Ok(eid));
        assert_eq!(eid.to_bytes()[0], 0);
        assert_eq!(&eid.to_bytes()[14..], &[0x0a, 0x01]);
    }

    #[test]
    fn random_nonces_differ() {
        let a = EidPlaintext::random([0; 3], 0);
        let b = EidPlaintext::random([0; 3], 0);
        assert_ne!(a.nonce, b.nonce);
    }

    #[test]
    fn wrong_key_length_or_bits_are_rejected() {
        let key = eid_key(&[3; 16]);
        let advert = encrypt(&key, &EidPlaintext::new([1; 10], [2; 3], 0));
        assert_eq!(
            decrypt(&eid_key(&[4; 16]), &advert),
            Err(AdvertError::BadTag)
        );
        assert_eq!(
            decrypt(&key, &advert[..19]),
            Err(AdvertError::WrongLength(19))
        );
        for i in 0..ADVERT_LEN {
            let mut bad = advert;
            bad[i] ^= 0x01;
            assert_eq!(
                decrypt(&key, &bad),
                Err(AdvertError::BadTag),
                "bit flip in byte {i}"
            );
        }
    }

    #[test]
    fn reserved_byte_must_be_zero() {
        let mut block = [0u8; 16];
        block[0] = 1;
        assert_eq!(
            EidPlaintext::from_bytes(&block),
            Err(AdvertError::ReservedByte(1))
        );
    }

    proptest! {
        #[test]
        fn decrypt_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decrypt(&eid_key(&[5; 16]), &bytes);
        }
    }
}
