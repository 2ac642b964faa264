//! PIN/UV auth protocols 1 and 2 (CTAP 2.1 §6.5.6, §6.5.7): ECDH key agreement on P-256,
//! AES-256-CBC for PINs and tokens, HMAC-SHA-256 for pinUvAuthParams.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use ciborium::value::Value;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::es256::{check_public_point, EcdhKey, POINT_LEN};
use crate::ctap::cbor::{as_bytes, as_int, int, MapBuilder, MapReader};
use crate::ctap::{CtapError, CtapResult};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinProtocol {
    One = 1,
    Two = 2,
}

impl PinProtocol {
    /// Unsupported protocol numbers are CTAP1_ERR_INVALID_PARAMETER (CTAP 2.1 §6.5.5.1).
    pub fn from_u64(v: u64) -> CtapResult<Self> {
        match v {
            1 => Ok(Self::One),
            2 => Ok(Self::Two),
            _ => Err(CtapError::InvalidParameter),
        }
    }

    /// authenticate(key, message): HMAC-SHA-256, truncated to 16 bytes for protocol 1.
    pub fn authenticate(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(message);
        let tag = mac.finalize().into_bytes();
        match self {
            Self::One => tag[..16].to_vec(),
            Self::Two => tag.to_vec(),
        }
    }

    /// verify(key, message, signature) in constant time; a signature of the wrong length fails.
    pub fn verify(self, key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let expected = self.authenticate(key, message);
        expected.len() == signature.len() && bool::from(expected.ct_eq(signature))
    }
}

/// The authenticator's ephemeral key-agreement key pair. Regenerated at power-up, after a PIN
/// mismatch and whenever a new pinUvAuthToken is issued; used for every agreement in between.
pub struct KeyAgreementKey {
    key: EcdhKey,
}

impl Default for KeyAgreementKey {
    fn default() -> Self {
        Self::generate()
    }
}

impl KeyAgreementKey {
    pub fn generate() -> Self {
        Self {
            key: EcdhKey::generate(),
        }
    }

    /// The public key as a COSE_Key with alg -25 (ECDH-ES+HKDF-256), as getKeyAgreement returns.
    pub fn cose_public_key(&self) -> Value {
        let (x, y) = self.key.public_point()[1..].split_at(32);
        MapBuilder::new()
            .put(int(1), int(2))
            .put(int(3), int(-25))
            .put(int(-1), int(1))
            .put(int(-2), Value::Bytes(x.to_vec()))
            .put(int(-3), Value::Bytes(y.to_vec()))
            .build()
    }

    /// decapsulate(peerCoseKey): the protocol's shared secret with the platform's key.
    pub fn decapsulate(&self, protocol: PinProtocol, peer: &Value) -> CtapResult<SharedSecret> {
        let peer = parse_peer_key(peer)?;
        let z = self
            .key
            .agree(&peer)
            .map_err(|_| CtapError::InvalidParameter)?;
        let z = &z[..];
        let mut hmac_key = Zeroizing::new([0u8; 32]);
        let mut aes_key = Zeroizing::new([0u8; 32]);
        match protocol {
            PinProtocol::One => {
                let k: [u8; 32] = Sha256::digest(z).into();
                hmac_key.copy_from_slice(&k);
                aes_key.copy_from_slice(&k);
            }
            PinProtocol::Two => {
                let hk = Hkdf::<Sha256>::new(Some(&[0u8; 32]), z);
                hk.expand(b"CTAP2 HMAC key", hmac_key.as_mut())
                    .expect("valid length");
                hk.expand(b"CTAP2 AES key", aes_key.as_mut())
                    .expect("valid length");
            }
        }
        Ok(SharedSecret {
            protocol,
            hmac_key,
            aes_key,
        })
    }
}

/// Reads a platform COSE_Key: kty 2 (EC2), crv 1 (P-256), 32-byte x and y on the curve.
fn parse_peer_key(v: &Value) -> CtapResult<[u8; POINT_LEN]> {
    let mut m = MapReader::new(v.clone())?;
    let kty = as_int(m.take(1).ok_or(CtapError::MissingParameter)?)?;
    let crv = as_int(m.take(-1).ok_or(CtapError::MissingParameter)?)?;
    let x = as_bytes(m.take(-2).ok_or(CtapError::MissingParameter)?)?;
    let y = as_bytes(m.take(-3).ok_or(CtapError::MissingParameter)?)?;
    if kty != 2 || crv != 1 || x.len() != 32 || y.len() != 32 {
        return Err(CtapError::InvalidParameter);
    }
    let sec1 = [&[0x04][..], &x, &y].concat();
    check_public_point(&sec1).map_err(|_| CtapError::InvalidParameter)
}

/// The result of key agreement for one protocol. Zeroized on drop; never printed.
pub struct SharedSecret {
    protocol: PinProtocol,
    hmac_key: Zeroizing<[u8; 32]>,
    aes_key: Zeroizing<[u8; 32]>,
}

impl SharedSecret {
    pub fn protocol(&self) -> PinProtocol {
        self.protocol
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        debug_assert!(plaintext.len().is_multiple_of(16));
        match self.protocol {
            PinProtocol::One => Aes256CbcEnc::new(self.aes_key.as_ref().into(), &[0u8; 16].into())
                .encrypt_padded_vec_mut::<NoPadding>(plaintext),
            PinProtocol::Two => {
                let mut iv = [0u8; 16];
                OsRng.fill_bytes(&mut iv);
                let ct = Aes256CbcEnc::new(self.aes_key.as_ref().into(), &iv.into())
                    .encrypt_padded_vec_mut::<NoPadding>(plaintext);
                [&iv[..], &ct].concat()
            }
        }
    }

    /// Ciphertext that is not a whole number of blocks is CTAP1_ERR_INVALID_PARAMETER.
    pub fn decrypt(&self, ciphertext: &[u8]) -> CtapResult<Zeroizing<Vec<u8>>> {
        let (iv, ct) = match self.protocol {
            PinProtocol::One => ([0u8; 16], ciphertext),
            PinProtocol::Two => {
                if ciphertext.len() < 16 {
                    return Err(CtapError::InvalidParameter);
                }
                let (iv, ct) = ciphertext.split_at(16);
                (iv.try_into().expect("16 bytes"), ct)
            }
        };
        if ct.is_empty() || ct.len() % 16 != 0 {
            return Err(CtapError::InvalidParameter);
        }
        Aes256CbcDec::new(self.aes_key.as_ref().into(), &iv.into())
            .decrypt_padded_vec_mut::<NoPadding>(ct)
            .map(Zeroizing::new)
            .map_err(|_| CtapError::InvalidParameter)
    }

    /// verify(shared secret, message, signature), with the protocol's HMAC key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.protocol
            .verify(self.hmac_key.as_ref(), message, signature)
    }

    pub fn authenticate(&self, message: &[u8]) -> Vec<u8> {
        self.protocol.authenticate(self.hmac_key.as_ref(), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    /// The platform side of key agreement, built independently from the same primitives.
    fn platform_secret(protocol: PinProtocol, auth_key: &Value) -> (Value, [u8; 32], [u8; 32]) {
        let platform = p256::SecretKey::random(&mut OsRng);
        let peer = p256::PublicKey::from_sec1_bytes(&parse_peer_key(auth_key).unwrap()).unwrap();
        let z = p256::ecdh::diffie_hellman(platform.to_nonzero_scalar(), peer.as_affine());
        let (mut h, mut a) = ([0u8; 32], [0u8; 32]);
        match protocol {
            PinProtocol::One => {
                h = Sha256::digest(z.raw_secret_bytes()).into();
                a = h;
            }
            PinProtocol::Two => {
                let hk = Hkdf::<Sha256>::new(Some(&[0u8; 32]), z.raw_secret_bytes());
                hk.expand(b"CTAP2 HMAC key", &mut h).unwrap();
                hk.expand(b"CTAP2 AES key", &mut a).unwrap();
            }
        }
        let p = platform.public_key().to_encoded_point(false);
        let cose = MapBuilder::new()
            .put(int(1), int(2))
            .put(int(3), int(-25))
            .put(int(-1), int(1))
            .put(int(-2), Value::Bytes(p.x().unwrap().to_vec()))
            .put(int(-3), Value::Bytes(p.y().unwrap().to_vec()))
            .build();
        (cose, h, a)
    }

    #[test]
    fn both_protocols_agree_and_round_trip() {
        for protocol in [PinProtocol::One, PinProtocol::Two] {
            let ka = KeyAgreementKey::generate();
            let (platform_cose, hmac_key, _) = platform_secret(protocol, &ka.cose_public_key());
            let shared = ka.decapsulate(protocol, &platform_cose).unwrap();
            let ct = shared.encrypt(&[7u8; 64]);
            assert_eq!(ct.len(), if protocol == PinProtocol::One { 64 } else { 80 });
            assert_eq!(&shared.decrypt(&ct).unwrap()[..], &[7u8; 64]);
            let tag = protocol.authenticate(&hmac_key, b"m");
            assert!(shared.verify(b"m", &tag));
            assert!(!shared.verify(b"n", &tag));
            assert!(!shared.verify(b"m", &tag[..tag.len() - 1]));
        }
    }

    #[test]
    fn rejects_points_off_the_curve_and_bad_shapes() {
        let ka = KeyAgreementKey::generate();
        let bad = MapBuilder::new()
            .put(int(1), int(2))
            .put(int(3), int(-25))
            .put(int(-1), int(1))
            .put(int(-2), Value::Bytes(vec![1; 32]))
            .put(int(-3), Value::Bytes(vec![1; 32]))
            .build();
        assert_eq!(
            ka.decapsulate(PinProtocol::Two, &bad).err(),
            Some(CtapError::InvalidParameter)
        );
        assert_eq!(
            ka.decapsulate(PinProtocol::Two, &Value::Map(vec![])).err(),
            Some(CtapError::MissingParameter)
        );
        let shared = ka
            .decapsulate(PinProtocol::Two, &ka.cose_public_key())
            .unwrap();
        assert_eq!(
            shared.decrypt(&[0; 20]).err(),
            Some(CtapError::InvalidParameter)
        );
        assert_eq!(
            shared.decrypt(&[0; 15]).err(),
            Some(CtapError::InvalidParameter)
        );
    }
}
