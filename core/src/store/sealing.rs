//! What the store's records are sealed and tagged with: the keys derived from the master key,
//! and the associated data that binds each sealed field to its row and field name.

use std::cell::RefCell;

use super::types::StoreError;
use crate::crypto::master_key::MasterKey;
use crate::crypto::record_mac::RecordMac;
use crate::crypto::seal::{Purpose, Sealer};
use zeroize::Zeroizing;

const AAD_PREFIX: &[u8] = b"pocketkey store v1\0";

/// How many opened credential private keys are remembered (as many as the engine's key cache
/// holds parsed keys).
const OPENED_KEYS: usize = 16;

/// The keys the store's records are sealed and tagged with, derived from the master key.
pub(super) struct StoreKeys {
    pub(super) sealer: Sealer,
    pub(super) mac: RecordMac,
    /// Credential private keys opened lately, newest first: (sealed form, associated data,
    /// plaintext). ChaCha20-Poly1305 opens the same sealed bytes under the same associated
    /// data to the same plaintext, so a match needs no second opening; a sealed value that
    /// differs in any byte is opened (and authenticated) in full. Plaintexts are wiped when
    /// evicted, forgotten (a credential deleted or replaced, a reset) or dropped.
    opened_keys: RefCell<Vec<(Vec<u8>, Vec<u8>, Zeroizing<Vec<u8>>)>>,
    /// Openings so far (tests count them).
    #[cfg(test)]
    pub(super) openings: std::cell::Cell<usize>,
}

impl StoreKeys {
    pub(super) fn new(master: &MasterKey) -> Self {
        Self {
            sealer: Sealer::new(master, Purpose::Store),
            mac: RecordMac::new(master),
            opened_keys: RefCell::new(Vec::with_capacity(OPENED_KEYS)),
            #[cfg(test)]
            openings: Default::default(),
        }
    }

    /// Opens a credential's sealed private key, or finds it opened before (see `opened_keys`).
    pub(super) fn open_private_key(
        &self,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let mut opened = self.opened_keys.borrow_mut();
        if let Some(i) = opened
            .iter()
            .position(|(s, a, _)| s[..] == *sealed && a[..] == *aad)
        {
            let entry = opened.remove(i);
            let plain = entry.2.clone();
            opened.insert(0, entry);
            return Ok(plain);
        }
        let plain = self.open(sealed, aad)?;
        opened.truncate(OPENED_KEYS - 1);
        opened.insert(0, (sealed.to_vec(), aad.to_vec(), plain.clone()));
        Ok(plain)
    }

    /// Wipes the remembered private keys (a credential was deleted or replaced, or a reset).
    pub(super) fn forget_opened_keys(&self) {
        self.opened_keys.borrow_mut().clear();
    }

    #[cfg(test)]
    pub(super) fn opened_key_count(&self) -> usize {
        self.opened_keys.borrow().len()
    }

    /// Opens a sealed field; a wrong key or associated data is [`StoreError::Unseal`].
    pub(super) fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        #[cfg(test)]
        self.openings.set(self.openings.get() + 1);
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
