//! P-256 private-key operations — ECDSA signing, key generation and ECDH — on `aws-lc-rs`.
//!
//! Only this module names the backend; the rest of the engine sees [`Es256Key`] (signing)
//! and [`EcdhKey`] (key agreement). `p256` stays for encoding and verification.
//!
//! **Why `aws-lc-rs`.** Its P-256 (AWS-LC, assembly on x86-64 and AArch64) signs as fast as
//! `ring`'s and many times faster than `p256` 0.13 (docs/benchmarks.md has the figures of one
//! run). `ring::agreement` takes a private key for one agreement only (`agree_ephemeral`
//! consumes it) and cannot import a scalar, while the key-agreement key of the PIN/UV
//! protocols serves several requests until it is regenerated (CTAP 2.1 §6.5.4,
//! `initialize`/`regenerate`), a Noise ephemeral takes part in two DHs (`ee` and `se`), and a
//! Noise static key is handed in as a scalar; `aws-lc-rs`'s `agreement::PrivateKey` does all
//! three. Its generated signing key signs at once (`ring` returns only a PKCS#8 document,
//! whose import computes the point again), and a bare scalar imports without `p256`. Built
//! without default features, `aws-lc-sys` uses its universal pre-generated bindings and its
//! `cc` build: no CMake, no bindgen, only the C compiler the mobile targets need anyway.
//!
//! **Importing a key costs a multiplication.** An imported scalar has its public point
//! computed (a fixed-base multiplication) and, when a point is stored with it, compared with
//! that point. The engine keeps parsed keys in a [`KeyCache`](super::key_cache::KeyCache) so
//! a credential in use pays this once.
//!
//! **Constant time.** AWS-LC signs with its constant-time P-256 (`p256-nistz` assembly on
//! x86-64 and AArch64, constant-time C elsewhere) and a nonce drawn from fresh randomness with
//! a hash of the key and digest mixed in; its ECDH multiplies in constant time as well.
//!
//! **Zeroization.** Keys live in AWS-LC `EVP_PKEY`s, freed through `OPENSSL_free`, which
//! clears every allocation before releasing it. The scalar `aws-lc-rs` serializes (for
//! [`Es256Key::scalar`], [`EcdhKey::scalar`]) and the shared secret it hands to the key
//! derivation are zeroized buffers, and so are the copies this module keeps. Copies that no
//! library exposes — temporaries on the stack frames inside AWS-LC's arithmetic — are not
//! wiped, as with any crypto library that computes on the stack.

use aws_lc_rs::agreement;
use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING as ALGORITHM};
use zeroize::Zeroizing;

/// Length of a P-256 scalar.
pub const SCALAR_LEN: usize = 32;
/// Length of an uncompressed SEC1 point (0x04 ‖ x ‖ y).
pub const POINT_LEN: usize = 65;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed P-256 key")]
pub struct Es256KeyError;

/// An ECDSA P-256 signing key (ES256). Never printed.
pub struct Es256Key {
    scalar: Zeroizing<[u8; SCALAR_LEN]>,
    point: [u8; POINT_LEN],
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Es256Key(<redacted>)")
    }
}

impl Es256Key {
    fn from_pair(pair: EcdsaKeyPair) -> Result<Self, Es256KeyError> {
        let scalar: EcPrivateKeyBin<'static> = pair
            .private_key()
            .as_be_bytes()
            .map_err(|_| Es256KeyError)?;
        Ok(Self {
            scalar: Zeroizing::new(scalar.as_ref().try_into().map_err(|_| Es256KeyError)?),
            point: pair
                .public_key()
                .as_ref()
                .try_into()
                .map_err(|_| Es256KeyError)?,
            pair,
        })
    }

    /// A fresh key: one fixed-base multiplication, and the pair is ready to sign.
    pub fn generate() -> Self {
        let pair = EcdsaKeyPair::generate(&ALGORITHM)
            .expect("the operating system's random generator works");
        Self::from_pair(pair).expect("a generated P-256 key serializes")
    }

    /// Imports a scalar and the public point stored with it; fails if they do not match.
    pub fn from_parts(scalar: &[u8], point: &[u8]) -> Result<Self, Es256KeyError> {
        let pair = EcdsaKeyPair::from_private_key_and_public_key(&ALGORITHM, scalar, point)
            .map_err(|_| Es256KeyError)?;
        Self::from_pair(pair)
    }

    /// Imports a bare scalar; its public point is computed on the way (the same cost as
    /// [`from_parts`](Self::from_parts), which computes it to compare).
    pub fn from_scalar(scalar: &[u8]) -> Result<Self, Es256KeyError> {
        let ecdh = agreement::PrivateKey::from_private_key(&agreement::ECDH_P256, scalar)
            .map_err(|_| Es256KeyError)?;
        let point = ecdh.compute_public_key().map_err(|_| Es256KeyError)?;
        Self::from_parts(scalar, point.as_ref())
    }

    pub fn scalar(&self) -> &[u8; SCALAR_LEN] {
        &self.scalar
    }

    /// The uncompressed SEC1 public point (0x04 ‖ x ‖ y).
    pub fn public_point(&self) -> &[u8; POINT_LEN] {
        &self.point
    }

    /// ECDSA over SHA-256 of `message`, DER-encoded (what WebAuthn's ES256 and U2F expect).
    /// The nonce is random (hedged), so two signatures of one message differ.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .expect("the operating system's random generator works")
            .as_ref()
            .to_vec()
    }
}

/// Lets `x509-cert`'s certificate builder sign with the key (attestation certificates).
impl p256::ecdsa::signature::Keypair for Es256Key {
    type VerifyingKey = p256::ecdsa::VerifyingKey;

    fn verifying_key(&self) -> Self::VerifyingKey {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&self.point)
            .expect("the point was checked on import")
    }
}

impl p256::ecdsa::signature::Signer<p256::ecdsa::DerSignature> for Es256Key {
    fn try_sign(
        &self,
        message: &[u8],
    ) -> Result<p256::ecdsa::DerSignature, p256::ecdsa::signature::Error> {
        p256::ecdsa::DerSignature::try_from(self.sign(message).as_slice())
    }
}

impl x509_cert::spki::SignatureAlgorithmIdentifier for Es256Key {
    type Params = x509_cert::der::AnyRef<'static>;
    // ecdsa-with-SHA256 (RFC 5758 §3.2), the algorithm `sign` implements.
    const SIGNATURE_ALGORITHM_IDENTIFIER: x509_cert::spki::AlgorithmIdentifier<Self::Params> =
        <p256::ecdsa::Signature as x509_cert::spki::AssociatedAlgorithmIdentifier>::ALGORITHM_IDENTIFIER;
}

/// Checks an ES256 signature: ECDSA P-256 over SHA-256 of `message`, DER-encoded, under the
/// uncompressed SEC1 point `point`. A malformed point or signature is `false`, never a panic.
pub fn verify(point: &[u8], message: &[u8], der: &[u8]) -> bool {
    use p256::ecdsa::signature::Verifier;
    let Ok(public) = p256::ecdsa::VerifyingKey::from_sec1_bytes(point) else {
        return false;
    };
    let Ok(signature) = p256::ecdsa::Signature::from_der(der) else {
        return false;
    };
    public.verify(message, &signature).is_ok()
}

/// Checks that `point` is an uncompressed SEC1 point on P-256 (0x04 ‖ x ‖ y, not the identity).
pub fn check_public_point(point: &[u8]) -> Result<[u8; POINT_LEN], Es256KeyError> {
    let fixed: [u8; POINT_LEN] = point.try_into().map_err(|_| Es256KeyError)?;
    if fixed[0] != 0x04 {
        return Err(Es256KeyError);
    }
    p256::PublicKey::from_sec1_bytes(&fixed).map_err(|_| Es256KeyError)?;
    Ok(fixed)
}

/// A P-256 key-agreement key that may be used for several agreements (`aws-lc-rs`).
pub struct EcdhKey {
    key: agreement::PrivateKey,
    point: [u8; POINT_LEN],
}

impl std::fmt::Debug for EcdhKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EcdhKey(<redacted>)")
    }
}

impl EcdhKey {
    fn with_point(key: agreement::PrivateKey) -> Result<Self, Es256KeyError> {
        let public = key.compute_public_key().map_err(|_| Es256KeyError)?;
        Ok(Self {
            point: public.as_ref().try_into().map_err(|_| Es256KeyError)?,
            key,
        })
    }

    pub fn generate() -> Self {
        let key = agreement::PrivateKey::generate(&agreement::ECDH_P256)
            .expect("the operating system's random generator works");
        Self::with_point(key).expect("a generated P-256 key has an uncompressed public point")
    }

    /// Imports a stored scalar; computes its public point.
    pub fn from_scalar(scalar: &[u8]) -> Result<Self, Es256KeyError> {
        let key = agreement::PrivateKey::from_private_key(&agreement::ECDH_P256, scalar)
            .map_err(|_| Es256KeyError)?;
        Self::with_point(key)
    }

    pub fn scalar(&self) -> Zeroizing<[u8; SCALAR_LEN]> {
        let bytes: EcPrivateKeyBin<'static> = self
            .key
            .as_be_bytes()
            .expect("a P-256 private key serializes");
        Zeroizing::new(
            bytes
                .as_ref()
                .try_into()
                .expect("a P-256 scalar is 32 bytes"),
        )
    }

    /// The uncompressed SEC1 public point (0x04 ‖ x ‖ y).
    pub fn public_point(&self) -> &[u8; POINT_LEN] {
        &self.point
    }

    /// The x-coordinate of `scalar · peer`: ECDH's shared secret (SEC 1 §3.3.1). Fails for a
    /// point that is not on the curve.
    pub fn agree(&self, peer_sec1: &[u8]) -> Result<Zeroizing<[u8; 32]>, Es256KeyError> {
        let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, peer_sec1);
        agreement::agree(&self.key, peer, Es256KeyError, |z| {
            Ok(Zeroizing::new(z.try_into().map_err(|_| Es256KeyError)?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    #[test]
    fn verify_refuses_malformed_input_without_panicking() {
        let key = Es256Key::generate();
        let sig = key.sign(b"m");
        assert!(verify(key.public_point(), b"m", &sig));
        assert!(!verify(&[4; 65], b"m", &sig), "not on the curve");
        assert!(!verify(&key.public_point()[..64], b"m", &sig));
        assert!(!verify(key.public_point(), b"m", &sig[..sig.len() - 1]));
        assert!(!verify(key.public_point(), b"m", &[]));
        assert!(check_public_point(key.public_point()).is_ok());
        assert!(check_public_point(&[4; 65]).is_err());
        assert!(
            check_public_point(&key.public_point()[..33]).is_err(),
            "compressed form"
        );
    }

    #[test]
    fn generated_keys_sign_verifiably_with_the_point_p256_computes() {
        let key = Es256Key::generate();
        let p256_point = p256::SecretKey::from_slice(key.scalar())
            .unwrap()
            .public_key()
            .to_encoded_point(false);
        assert_eq!(key.public_point()[..], *p256_point.as_bytes());
        let sig = key.sign(b"msg");
        assert!(verify(key.public_point(), b"msg", &sig));
        assert!(!verify(key.public_point(), b"other", &sig));
        // Random nonces: a second signature differs and verifies too.
        let again = key.sign(b"msg");
        assert_ne!(sig, again);
        assert!(verify(key.public_point(), b"msg", &again));
    }

    #[test]
    fn imports_check_the_point_against_the_scalar() {
        let a = Es256Key::generate();
        let b = Es256Key::generate();
        let same = Es256Key::from_parts(a.scalar(), a.public_point()).unwrap();
        assert!(verify(a.public_point(), b"m", &same.sign(b"m")));
        assert!(Es256Key::from_parts(a.scalar(), b.public_point()).is_err());
        let bare = Es256Key::from_scalar(a.scalar()).unwrap();
        assert_eq!(bare.public_point(), a.public_point());
        assert!(Es256Key::from_scalar(&[0; 32]).is_err());
        assert!(
            Es256Key::from_scalar(&[0xff; 32]).is_err(),
            "above the group order"
        );
        assert!(Es256Key::from_parts(&a.scalar()[..31], a.public_point()).is_err());
    }

    /// A known-answer vector for verification: RFC 6979 §A.2.5, P-256 with SHA-256, message
    /// "sample". The public point computed from the scalar must be the RFC's, and the RFC's
    /// (deterministic) signature must verify under it; our own signatures are random, so they
    /// are checked by verification, not by comparing bytes.
    #[test]
    fn rfc6979_vector_point_and_verification() {
        let hex = |s: &str| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        };
        let x = hex("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721");
        let ux = hex("60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6");
        let uy = hex("7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299");
        let r = hex("EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716");
        let s = hex("F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8");
        let key = Es256Key::from_scalar(&x).unwrap();
        assert_eq!(key.public_point()[..], [&[4][..], &ux, &uy].concat()[..]);
        let sig = p256::ecdsa::Signature::from_scalars(
            <[u8; 32]>::try_from(&r[..]).unwrap(),
            <[u8; 32]>::try_from(&s[..]).unwrap(),
        )
        .unwrap();
        assert!(verify(
            key.public_point(),
            b"sample",
            sig.to_der().as_bytes()
        ));
        assert!(verify(key.public_point(), b"sample", &key.sign(b"sample")));
    }

    #[test]
    fn der_signatures_through_the_signer_trait_verify() {
        use p256::ecdsa::signature::{Keypair, Signer};
        let key = Es256Key::generate();
        let sig: p256::ecdsa::DerSignature = Signer::sign(&key, b"tbs");
        key.verifying_key().verify(b"tbs", &sig).unwrap();
    }

    #[test]
    fn ecdh_agrees_both_ways_and_reuses_its_key() {
        let a = EcdhKey::generate();
        let b = EcdhKey::generate();
        let ab = a.agree(b.public_point()).unwrap();
        assert_eq!(ab, b.agree(a.public_point()).unwrap());
        assert_eq!(ab, a.agree(b.public_point()).unwrap(), "usable again");
        let c = EcdhKey::from_scalar(&a.scalar()[..]).unwrap();
        assert_eq!(c.public_point(), a.public_point());
        assert!(a.agree(&[4; 65]).is_err(), "not on the curve");
    }

    /// The backend's agreement against `p256`'s, an independent implementation, both ways
    /// round: same scalar, same peer, same x-coordinate.
    #[test]
    fn ecdh_equals_p256s_for_the_same_scalar() {
        let ours = EcdhKey::generate();
        let peer = p256::SecretKey::random(&mut rand_core::OsRng);
        let peer_point = peer.public_key().to_encoded_point(false);
        let mine = ours.agree(peer_point.as_bytes()).unwrap();
        let ours_p256 = p256::PublicKey::from_sec1_bytes(ours.public_point()).unwrap();
        let theirs = p256::ecdh::diffie_hellman(peer.to_nonzero_scalar(), ours_p256.as_affine());
        assert_eq!(&mine[..], &theirs.raw_secret_bytes()[..]);
        assert_eq!(
            ours.public_point()[..],
            *p256::SecretKey::from_slice(&ours.scalar()[..])
                .unwrap()
                .public_key()
                .to_encoded_point(false)
                .as_bytes()
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let k = Es256Key::generate();
        let text = format!("{k:?} {:?}", EcdhKey::generate());
        assert!(!text.contains(&format!("{:?}", &k.scalar()[..4])));
        assert!(text.contains("redacted"));
    }
}
