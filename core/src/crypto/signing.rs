//! Credential key pairs: ES256 (P-256 ECDSA) and EdDSA (Ed25519), their COSE public keys and
//! signatures in the encodings WebAuthn expects (ASN.1 DER for ES256, raw 64 bytes for EdDSA).

use coset::iana;
use coset::{CborSerializable, CoseKeyBuilder};
use ecdsa::hazmat::SignPrimitive;
use ed25519_dalek::Signer;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::store::Algorithm;

/// A credential's private key. Never printed.
///
/// ES256 keeps only the secret scalar: a `p256::ecdsa::SigningKey` also derives the public key
/// (a scalar multiplication as costly as a signature) when built, which an assertion — load,
/// sign, drop — does not need.
pub enum PrivateKey {
    Es256(p256::SecretKey),
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
            Algorithm::Es256 => Self::Es256(p256::SecretKey::random(&mut OsRng)),
            Algorithm::EdDsa => Self::EdDsa(ed25519_dalek::SigningKey::generate(&mut OsRng)),
        }
    }

    /// Rebuilds a key from [`PrivateKey::to_bytes`] output.
    pub fn from_bytes(alg: Algorithm, bytes: &[u8]) -> Result<Self, KeyError> {
        match alg {
            Algorithm::Es256 => p256::SecretKey::from_slice(bytes)
                .map(Self::Es256)
                .map_err(|_| KeyError),
            Algorithm::EdDsa => {
                let seed: &[u8; 32] = bytes.try_into().map_err(|_| KeyError)?;
                Ok(Self::EdDsa(ed25519_dalek::SigningKey::from_bytes(seed)))
            }
        }
    }

    /// The 32 secret bytes (P-256 scalar or Ed25519 seed).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        match self {
            Self::Es256(k) => Zeroizing::new(k.to_bytes().to_vec()),
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
                let point = k.public_key().to_encoded_point(false);
                let x = point.x().expect("uncompressed point has x").to_vec();
                let y = point.y().expect("uncompressed point has y").to_vec();
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
            Self::Es256(k) => Some(k.public_key().to_encoded_point(false).as_bytes().to_vec()),
            Self::EdDsa(_) => None,
        }
    }

    /// Signs `message` (ES256: SHA-256 then ECDSA, DER-encoded; EdDSA: PureEdDSA, 64 bytes).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Es256(k) => {
                // ECDSA over SHA-256 with RFC 6979 nonces: what `SigningKey::sign` computes,
                // without deriving the public key first.
                let digest = Sha256::digest(message);
                let scalar = Zeroizing::new(k.to_nonzero_scalar());
                let (sig, _) = scalar
                    .try_sign_prehashed_rfc6979::<Sha256>(&digest, &[])
                    .expect("a non-zero scalar over a 32-byte digest always signs");
                sig.to_der().as_bytes().to_vec()
            }
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
    fn es256_signatures_are_those_of_the_p256_signing_key() {
        use p256::ecdsa::signature::Signer;
        for message in [&b""[..], b"msg", &[0xa5; 1000]] {
            let k = PrivateKey::generate(Algorithm::Es256);
            let reference = p256::ecdsa::SigningKey::from_slice(&k.to_bytes()).unwrap();
            let expected: p256::ecdsa::Signature = reference.sign(message);
            assert_eq!(k.sign(message), expected.to_der().as_bytes());
        }
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
    }
}
