//! Self-contained credential IDs for non-discoverable credentials (and U2F key handles).
//!
//! The authenticator keeps nothing for these: the ID carries the private key, sealed under
//! the master key with the rpIdHash as associated data, so an ID presented for another RP
//! fails to open. Layout: `format (1) ‖ sealed payload`, where the payload is
//! `alg (1) ‖ credProtect (1) ‖ flags (1) ‖ key ‖ credBlob len (1) ‖ credBlob`, and the key
//! is 32 bytes in format 1 and 97 bytes (an ES256 scalar ‖ its public point, so that signing
//! needs no point computation) in format 2.
//! Old formats must keep opening after an upgrade: add a new format byte, never reuse one.

use zeroize::Zeroizing;

use crate::crypto::master_key::MasterKey;
use crate::crypto::seal::{Purpose, Sealer, OVERHEAD};
use crate::crypto::signing::ES256_STORED_LEN;
use crate::store::{Algorithm, CredProtect};

const FORMAT_V1: u8 = 0x01;
const FORMAT_V2: u8 = 0x02;
const FLAG_HMAC_SECRET: u8 = 0x01;
const KEY_LEN_V1: usize = 32;
const KEY_LEN_V2: usize = ES256_STORED_LEN;
/// Largest credBlob we accept (advertised as maxCredBlobLength).
pub const MAX_CRED_BLOB_LEN: usize = 32;
/// Longest ID this module makes; under U2F's 255-byte key-handle limit.
pub const MAX_ID_LEN: usize = 1 + OVERHEAD + 3 + KEY_LEN_V2 + 1 + MAX_CRED_BLOB_LEN;

fn key_len(format: u8) -> Option<usize> {
    match format {
        FORMAT_V1 => Some(KEY_LEN_V1),
        FORMAT_V2 => Some(KEY_LEN_V2),
        _ => None,
    }
}

/// What a credential ID holds once opened.
pub struct WrappedCredential {
    pub algorithm: Algorithm,
    pub cred_protect: CredProtect,
    pub hmac_secret: bool,
    pub private_key: Zeroizing<Vec<u8>>,
    pub cred_blob: Option<Zeroizing<Vec<u8>>>,
}

pub struct CredentialIdSealer {
    sealer: Sealer,
}

fn aad(format: u8, rp_id_hash: &[u8; 32]) -> Vec<u8> {
    [&[format][..], rp_id_hash].concat()
}

impl CredentialIdSealer {
    /// `salt` is the store's `wrap_salt`: IDs made before a reset do not open after it.
    pub fn new(master: &MasterKey, salt: &[u8; 32]) -> Self {
        Self {
            sealer: Sealer::with_salt(master, Purpose::CredentialId, salt),
        }
    }

    pub fn wrap(&self, rp_id_hash: &[u8; 32], cred: &WrappedCredential) -> Vec<u8> {
        let blob = cred.cred_blob.as_ref().map(|b| &b[..]).unwrap_or(&[]);
        let format = if cred.private_key.len() == KEY_LEN_V1 {
            FORMAT_V1
        } else {
            FORMAT_V2
        };
        debug_assert!(
            blob.len() <= MAX_CRED_BLOB_LEN && Some(cred.private_key.len()) == key_len(format)
        );
        let mut payload = Zeroizing::new(Vec::with_capacity(3 + KEY_LEN_V2 + 1 + blob.len()));
        payload.push(match cred.algorithm {
            Algorithm::Es256 => 1,
            Algorithm::EdDsa => 2,
        });
        payload.push(cred.cred_protect as u8);
        payload.push(if cred.hmac_secret {
            FLAG_HMAC_SECRET
        } else {
            0
        });
        payload.extend_from_slice(&cred.private_key);
        payload.push(blob.len() as u8);
        payload.extend_from_slice(blob);
        let sealed = self.sealer.seal(&payload, &aad(format, rp_id_hash));
        [&[format][..], &sealed].concat()
    }

    /// Opens an ID made by [`wrap`](Self::wrap) for the same RP; `None` if it is not ours.
    pub fn unwrap(&self, rp_id_hash: &[u8; 32], id: &[u8]) -> Option<WrappedCredential> {
        let (&format, sealed) = id.split_first()?;
        let key_len = key_len(format)?;
        if id.len() > MAX_ID_LEN {
            return None;
        }
        let payload = self.sealer.open(sealed, &aad(format, rp_id_hash)).ok()?;
        let algorithm = match *payload.first()? {
            1 => Algorithm::Es256,
            2 => Algorithm::EdDsa,
            _ => return None,
        };
        let cred_protect = CredProtect::from_u8(*payload.get(1)?)?;
        let hmac_secret = payload.get(2)? & FLAG_HMAC_SECRET != 0;
        let private_key = Zeroizing::new(payload.get(3..3 + key_len)?.to_vec());
        let blob_len = *payload.get(3 + key_len)? as usize;
        let blob = payload.get(4 + key_len..4 + key_len + blob_len)?;
        Some(WrappedCredential {
            algorithm,
            cred_protect,
            hmac_secret,
            private_key,
            cred_blob: (!blob.is_empty()).then(|| Zeroizing::new(blob.to_vec())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(blob: Option<Vec<u8>>) -> WrappedCredential {
        WrappedCredential {
            algorithm: Algorithm::EdDsa,
            cred_protect: CredProtect::UserVerificationRequired,
            hmac_secret: true,
            private_key: Zeroizing::new(vec![9; 32]),
            cred_blob: blob.map(Zeroizing::new),
        }
    }

    #[test]
    fn wraps_within_limits_and_binds_the_rp() {
        let s = CredentialIdSealer::new(&MasterKey::from_bytes([1; 32]), &[0; 32]);
        let id = s.wrap(&[2; 32], &sample(Some(vec![5; MAX_CRED_BLOB_LEN])));
        assert_eq!(id.len(), MAX_ID_LEN - (KEY_LEN_V2 - KEY_LEN_V1));
        assert!(MAX_ID_LEN <= 255);
        let back = s.unwrap(&[2; 32], &id).unwrap();
        assert_eq!(back.algorithm, Algorithm::EdDsa);
        assert_eq!(back.cred_protect, CredProtect::UserVerificationRequired);
        assert!(back.hmac_secret);
        assert_eq!(&back.private_key[..], &[9; 32]);
        assert_eq!(
            back.cred_blob.as_deref().map(|b| b.to_vec()),
            Some(vec![5; 32])
        );
        assert!(
            s.unwrap(&[3; 32], &id).is_none(),
            "another RP must not open it"
        );
        let other = CredentialIdSealer::new(&MasterKey::from_bytes([4; 32]), &[0; 32]);
        assert!(
            other.unwrap(&[2; 32], &id).is_none(),
            "another key must not open it"
        );
        let after_reset = CredentialIdSealer::new(&MasterKey::from_bytes([1; 32]), &[1; 32]);
        assert!(
            after_reset.unwrap(&[2; 32], &id).is_none(),
            "a new salt must not open it"
        );
    }

    #[test]
    fn es256_keys_with_their_point_use_format_2_and_format_1_still_opens() {
        let s = CredentialIdSealer::new(&MasterKey::from_bytes([1; 32]), &[0; 32]);
        let stored: Vec<u8> = (0..KEY_LEN_V2 as u8).collect();
        let v2 = WrappedCredential {
            algorithm: Algorithm::Es256,
            private_key: Zeroizing::new(stored.clone()),
            ..sample(Some(vec![5; MAX_CRED_BLOB_LEN]))
        };
        let id = s.wrap(&[2; 32], &v2);
        assert_eq!((id[0], id.len()), (FORMAT_V2, MAX_ID_LEN));
        let back = s.unwrap(&[2; 32], &id).unwrap();
        assert_eq!(&back.private_key[..], &stored[..]);
        assert_eq!(back.cred_blob.as_deref().map(|b| b.len()), Some(32));
        // The format byte is bound: the same sealed payload under the other format fails.
        let mut relabelled = id.clone();
        relabelled[0] = FORMAT_V1;
        assert!(s.unwrap(&[2; 32], &relabelled).is_none());
        // An ID of the first format (32-byte key) opens as it did.
        let v1 = s.wrap(&[2; 32], &sample(None));
        assert_eq!(v1[0], FORMAT_V1);
        assert_eq!(&s.unwrap(&[2; 32], &v1).unwrap().private_key[..], &[9; 32]);
    }

    proptest! {
        #[test]
        fn arbitrary_ids_never_open_or_panic(id in proptest::collection::vec(any::<u8>(), 0..300)) {
            let s = CredentialIdSealer::new(&MasterKey::from_bytes([1; 32]), &[0; 32]);
            prop_assert!(s.unwrap(&[2; 32], &id).is_none());
        }
    }
}
