//! Self-contained credential IDs for non-discoverable credentials (and U2F key handles).
//!
//! The authenticator keeps nothing for these: the ID carries the private key, sealed under
//! the master key with the rpIdHash as associated data, so an ID presented for another RP
//! fails to open. Layout: `format (1) ‖ sealed payload`, where the payload is
//! `alg (1) ‖ credProtect (1) ‖ flags (1) ‖ key (32) ‖ credBlob len (1) ‖ credBlob`.
//! Old formats must keep opening after an upgrade: add a new format byte, never reuse one.

use zeroize::Zeroizing;

use crate::crypto::master_key::MasterKey;
use crate::crypto::seal::{Purpose, Sealer, OVERHEAD};
use crate::store::{Algorithm, CredProtect};

const FORMAT_V1: u8 = 0x01;
const FLAG_HMAC_SECRET: u8 = 0x01;
const KEY_LEN: usize = 32;
/// Largest credBlob we accept (advertised as maxCredBlobLength).
pub const MAX_CRED_BLOB_LEN: usize = 32;
/// Longest ID this module makes; well under 255 bytes, because these IDs are also U2F key
/// handles, whose length travels in one byte (FIDO U2F Raw Message Formats §4.3, §5.4).
pub const MAX_ID_LEN: usize = 1 + OVERHEAD + 3 + KEY_LEN + 1 + MAX_CRED_BLOB_LEN;

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

fn aad(rp_id_hash: &[u8; 32]) -> Vec<u8> {
    [&[FORMAT_V1][..], rp_id_hash].concat()
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
        debug_assert!(blob.len() <= MAX_CRED_BLOB_LEN && cred.private_key.len() == KEY_LEN);
        let mut payload = Zeroizing::new(Vec::with_capacity(3 + KEY_LEN + 1 + blob.len()));
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
        let sealed = self.sealer.seal(&payload, &aad(rp_id_hash));
        [&[FORMAT_V1][..], &sealed].concat()
    }

    /// Opens an ID made by [`wrap`](Self::wrap) for the same RP; `None` if it is not ours.
    pub fn unwrap(&self, rp_id_hash: &[u8; 32], id: &[u8]) -> Option<WrappedCredential> {
        let (&format, sealed) = id.split_first()?;
        if format != FORMAT_V1 || id.len() > MAX_ID_LEN {
            return None;
        }
        let payload = self.sealer.open(sealed, &aad(rp_id_hash)).ok()?;
        let algorithm = match *payload.first()? {
            1 => Algorithm::Es256,
            2 => Algorithm::EdDsa,
            _ => return None,
        };
        let cred_protect = CredProtect::from_u8(*payload.get(1)?)?;
        let hmac_secret = payload.get(2)? & FLAG_HMAC_SECRET != 0;
        let private_key = Zeroizing::new(payload.get(3..3 + KEY_LEN)?.to_vec());
        let blob_len = *payload.get(3 + KEY_LEN)? as usize;
        let blob = payload.get(4 + KEY_LEN..4 + KEY_LEN + blob_len)?;
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
        assert_eq!(id.len(), MAX_ID_LEN);
        assert!(id.len() <= 255);
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

    proptest! {
        #[test]
        fn arbitrary_ids_never_open_or_panic(id in proptest::collection::vec(any::<u8>(), 0..300)) {
            let s = CredentialIdSealer::new(&MasterKey::from_bytes([1; 32]), &[0; 32]);
            prop_assert!(s.unwrap(&[2; 32], &id).is_none());
        }
    }
}
