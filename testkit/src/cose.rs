//! COSE algorithms and credential public keys as a relying party reads and uses them.

use ciborium::value::Value;
use p256::ecdsa::signature::Verifier;

use crate::cbor::{as_bytes, as_int, get};

/// ES256 (ECDSA P-256 with SHA-256), the COSE algorithm every authenticator supports.
pub const ES256: i64 = -7;
/// EdDSA (Ed25519).
pub const EDDSA: i64 = -8;

/// A credential public key.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Es256(p256::ecdsa::VerifyingKey),
    EdDsa(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// Reads a COSE_Key (RFC 9053 / WebAuthn §6.5.1.1) as it appears in authData.
    pub fn from_cose(v: &Value) -> Self {
        let kty = as_int(get(v, 1).expect("kty"));
        let alg = as_int(get(v, 3).expect("alg"));
        let crv = as_int(get(v, -1).expect("crv"));
        let x = as_bytes(get(v, -2).expect("x"));
        match (kty, alg, crv) {
            (2, -7, 1) => {
                let y = as_bytes(get(v, -3).expect("y"));
                assert_eq!((x.len(), y.len()), (32, 32));
                let sec1 = [&[0x04][..], &x, &y].concat();
                PublicKey::Es256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).expect("point on P-256"),
                )
            }
            (1, -8, 6) => {
                assert!(get(v, -3).is_none(), "OKP keys have no y");
                let x: [u8; 32] = x.try_into().expect("32-byte Ed25519 key");
                PublicKey::EdDsa(
                    ed25519_dalek::VerifyingKey::from_bytes(&x).expect("Ed25519 point"),
                )
            }
            other => panic!("unexpected COSE key (kty, alg, crv) = {other:?}"),
        }
    }

    pub fn alg(&self) -> i64 {
        match self {
            PublicKey::Es256(_) => ES256,
            PublicKey::EdDsa(_) => EDDSA,
        }
    }

    /// ES256 signatures are ASN.1 DER, EdDSA signatures raw 64 bytes (WebAuthn §6.5.5).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Es256(k) => p256::ecdsa::Signature::from_der(signature)
                .map(|s| k.verify(message, &s).is_ok())
                .unwrap_or(false),
            PublicKey::EdDsa(k) => <[u8; 64]>::try_from(signature)
                .map(|s| {
                    k.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&s))
                        .is_ok()
                })
                .unwrap_or(false),
        }
    }
}
