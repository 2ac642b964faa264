//! Credential key pairs: ES256 (P-256 ECDSA) and EdDSA (Ed25519), their COSE public keys and
//! signatures in the encodings WebAuthn expects (ASN.1 DER for ES256, raw 64 bytes for EdDSA).
//!
//! ES256 runs on [`Es256Key`] (`ring`; see [`super::es256`] for backends, constant time and
//! zeroization). Its stored form ([`PrivateKey::to_bytes`], what the store keeps for a
//! discoverable credential) is the scalar followed by the public point, so that loading it does
//! not recompute the point with a slower library. A bare 32-byte scalar still loads, at that
//! cost: credentials stored before, and every credential ID ([`PrivateKey::secret_bytes`]),
//! whose length getInfo's allowList limits depend on; the engine's key cache pays it once.

use coset::iana;
use coset::{CborSerializable, CoseKeyBuilder};
use ed25519_dalek::Signer;
use zeroize::Zeroizing;

use super::es256::{Es256Key, POINT_LEN, SCALAR_LEN};
use crate::store::Algorithm;

/// Length of an ES256 key's stored form: scalar ‖ uncompressed public point.
pub const ES256_STORED_LEN: usize = SCALAR_LEN + POINT_LEN;

/// A credential's private key. Never printed.
pub enum PrivateKey {
    Es256(Es256Key),
    EdDsa(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.algorithm())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed private key bytes")]
pub struct KeyError;

impl PrivateKey {
    pub fn generate(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Es256 => Self::Es256(Es256Key::generate()),
            Algorithm::EdDsa => {
                Self::EdDsa(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
            }
        }
    }

    /// Rebuilds a key from [`PrivateKey::to_bytes`] output. ES256 also takes a bare 32-byte
    /// scalar (the stored form before the public point was kept), at the cost of computing
    /// its point.
    pub fn from_bytes(alg: Algorithm, bytes: &[u8]) -> Result<Self, KeyError> {
        match alg {
            Algorithm::Es256 => match bytes.len() {
                ES256_STORED_LEN => {
                    let (scalar, point) = bytes.split_at(SCALAR_LEN);
                    Es256Key::from_parts(scalar, point)
                }
                _ => Es256Key::from_scalar(bytes),
            }
            .map(Self::Es256)
            .map_err(|_| KeyError),
            Algorithm::EdDsa => {
                let seed: &[u8; 32] = bytes.try_into().map_err(|_| KeyError)?;
                Ok(Self::EdDsa(ed25519_dalek::SigningKey::from_bytes(seed)))
            }
        }
    }

    /// The stored form: ES256 scalar ‖ public point ([`ES256_STORED_LEN`] bytes), Ed25519
    /// seed (32 bytes). The first 32 bytes are the secret either way.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        match self {
            Self::Es256(k) => Zeroizing::new([&k.scalar()[..], &k.public_point()[..]].concat()),
            Self::EdDsa(k) => Zeroizing::new(k.to_bytes().to_vec()),
        }
    }

    /// The 32 secret bytes alone (P-256 scalar or Ed25519 seed): what a credential ID carries,
    /// whose size the allowList limits of getInfo are computed from.
    pub fn secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        match self {
            Self::Es256(k) => Zeroizing::new(k.scalar().to_vec()),
            Self::EdDsa(k) => Zeroizing::new(k.to_bytes().to_vec()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Es256(_) => Algorithm::Es256,
            Self::EdDsa(_) => Algorithm::EdDsa,
        }
    }

    /// The COSE_Key encoding of the public key (CTAP2-canonical key order 1, 3, -1, -2, -3).
    pub fn cose_public_key(&self) -> Vec<u8> {
        let key = match self {
            Self::Es256(k) => {
                let (x, y) = k.public_point()[1..].split_at(32);
                let (x, y) = (x.to_vec(), y.to_vec());
                CoseKeyBuilder::new_ec2_pub_key(iana::EllipticCurve::P_256, x, y)
                    .algorithm(iana::Algorithm::ES256)
                    .build()
            }
            Self::EdDsa(k) => CoseKeyBuilder::new_okp_key()
                .param(
                    iana::OkpKeyParameter::Crv as i64,
                    (iana::EllipticCurve::Ed25519 as i64).into(),
                )
                .param(
                    iana::OkpKeyParameter::X as i64,
                    k.verifying_key().to_bytes().to_vec().into(),
                )
                .algorithm(iana::Algorithm::EdDSA)
                .build(),
        };
        key.to_vec().expect("COSE key serialization cannot fail")
    }

    /// Uncompressed SEC1 public key (0x04 ‖ x ‖ y) for U2F; `None` for Ed25519.
    pub fn p256_public_sec1(&self) -> Option<Vec<u8>> {
        match self {
            Self::Es256(k) => Some(k.public_point().to_vec()),
            Self::EdDsa(_) => None,
        }
    }

    /// Signs `message` (ES256: SHA-256 then ECDSA with a random nonce, DER-encoded; EdDSA:
    /// PureEdDSA, 64 bytes).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Es256(k) => k.sign(message),
            Self::EdDsa(k) => k.sign(message).to_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn es256_round_trip_and_verify() {
        let k = PrivateKey::generate(Algorithm::Es256);
        let k2 = PrivateKey::from_bytes(Algorithm::Es256, &k.to_bytes()).unwrap();
        let sig = k2.sign(b"msg");
        let sec1 = k.p256_public_sec1().unwrap();
        let public = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
        let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
        public.verify(b"msg", &sig).unwrap();
        assert!(public.verify(b"other", &sig).is_err());
    }

    #[test]
    fn es256_loads_from_a_bare_scalar_and_from_the_stored_form() {
        let k = PrivateKey::generate(Algorithm::Es256);
        let stored = k.to_bytes();
        assert_eq!(stored.len(), ES256_STORED_LEN);
        let bare = PrivateKey::from_bytes(Algorithm::Es256, &stored[..32]).unwrap();
        assert_eq!(
            bare.to_bytes(),
            stored,
            "the point is recomputed from the scalar"
        );
        assert_eq!(bare.cose_public_key(), k.cose_public_key());
        // A stored point that is not the scalar's is refused, not trusted.
        let mut wrong = stored.clone();
        wrong[32..].copy_from_slice(&PrivateKey::generate(Algorithm::Es256).to_bytes()[32..]);
        assert!(PrivateKey::from_bytes(Algorithm::Es256, &wrong).is_err());
        assert!(PrivateKey::from_bytes(Algorithm::Es256, &stored[..96]).is_err());
    }

    #[test]
    fn cose_keys_are_canonical() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa] {
            let cose = PrivateKey::generate(alg).cose_public_key();
            let v = crate::ctap::cbor::decode(&cose).unwrap();
            assert_eq!(crate::ctap::cbor::encode(v), cose, "{alg:?}");
        }
    }

    #[test]
    fn eddsa_rejects_wrong_length() {
        assert!(PrivateKey::from_bytes(Algorithm::EdDsa, &[1; 31]).is_err());
        assert!(PrivateKey::from_bytes(Algorithm::Es256, &[0; 32]).is_err());
        assert!(PrivateKey::from_bytes(Algorithm::Es256, &[1; 31]).is_err());
    }
}
