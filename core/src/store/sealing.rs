//! What the store's records are sealed and tagged with: the keys derived from the master key,
//! and the associated data that binds each sealed field to its row and field name.

use super::types::StoreError;
use crate::crypto::master_key::MasterKey;
use crate::crypto::record_mac::RecordMac;
use crate::crypto::seal::{Purpose, Sealer};
use zeroize::Zeroizing;

const AAD_PREFIX: &[u8] = b"pocketkey store v1\0";

/// The keys the store's records are sealed and tagged with, derived from the master key.
pub(super) struct StoreKeys {
    pub(super) sealer: Sealer,
    pub(super) mac: RecordMac,
}

impl StoreKeys {
    pub(super) fn new(master: &MasterKey) -> Self {
        Self {
            sealer: Sealer::new(master, Purpose::Store),
            mac: RecordMac::new(master),
        }
    }

    /// Opens a sealed field; a wrong key or associated data is [`StoreError::Unseal`].
    pub(super) fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.sealer
            .open(sealed, aad)
            .map_err(|_| StoreError::Unseal)
    }
}

/// What a credential's sealed fields are bound to: the row's identity and the attributes
/// fixed when it was made. Variable-length parts are length-prefixed, so the encoding is
/// unambiguous.
pub(super) struct CredentialBinding(Vec<u8>);

impl CredentialBinding {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        id: &[u8],
        rp_id_hash: &[u8; 32],
        user_id: &[u8],
        algorithm: i64,
        cred_protect: i64,
        hmac_secret: bool,
        backup_eligible: bool,
        backup_state: bool,
    ) -> Self {
        let mut b = Vec::with_capacity(AAD_PREFIX.len() + 96 + id.len() + user_id.len());
        b.extend_from_slice(AAD_PREFIX);
        b.extend_from_slice(b"credential\0");
        b.extend_from_slice(&(id.len() as u64).to_be_bytes());
        b.extend_from_slice(id);
        b.extend_from_slice(rp_id_hash);
        b.extend_from_slice(&(user_id.len() as u64).to_be_bytes());
        b.extend_from_slice(user_id);
        b.extend_from_slice(&algorithm.to_be_bytes());
        b.extend_from_slice(&cred_protect.to_be_bytes());
        b.push(
            u8::from(hmac_secret) | u8::from(backup_eligible) << 1 | u8::from(backup_state) << 2,
        );
        Self(b)
    }

    /// The associated data for one sealed field of this credential.
    pub(super) fn aad(&self, field: &str) -> Vec<u8> {
        [&self.0[..], field.as_bytes()].concat()
    }
}

pub(super) fn settings_aad(field: &str) -> Vec<u8> {
    [AAD_PREFIX, b"settings\0", field.as_bytes()].concat()
}
