//! SQLite implementation of the store. (Being written.)

use std::path::Path;

use super::types::*;
use crate::crypto::master_key::MasterKey;

/// The most discoverable credentials one key will hold.
pub const MAX_DISCOVERABLE_CREDENTIALS: u32 = 250_000;

pub struct Store {
    _conn: rusqlite::Connection,
}

impl Store {
    /// Opens (creating and migrating as needed) the store at `path`.
    pub fn open(_path: &Path, _master: &MasterKey) -> Result<Self, StoreError> { todo!() }
    /// An in-memory store for tests.
    pub fn open_in_memory(_master: &MasterKey) -> Result<Self, StoreError> { todo!() }

    pub fn load_settings(&self) -> Result<Settings, StoreError> { todo!() }
    pub fn save_settings(&mut self, _settings: &Settings) -> Result<(), StoreError> { todo!() }

    /// Increments the global signature counter by one, durably, and returns the new value.
    pub fn next_sign_count(&mut self) -> Result<u32, StoreError> { todo!() }

    /// Stores a credential, replacing any with the same rp_id_hash and user_id (CTAP 2.1 §6.1.2
    /// step 16). Fails with `Full` past [`MAX_DISCOVERABLE_CREDENTIALS`].
    pub fn insert_credential(&mut self, _cred: &Credential) -> Result<(), StoreError> { todo!() }
    /// Credentials of one RP, most recently created first.
    pub fn credentials_for_rp(&self, _rp_id_hash: &[u8; 32]) -> Result<Vec<Credential>, StoreError> { todo!() }
    pub fn credential_by_id(&self, _id: &[u8]) -> Result<Option<Credential>, StoreError> { todo!() }
    /// Returns whether a credential was deleted.
    pub fn delete_credential(&mut self, _id: &[u8]) -> Result<bool, StoreError> { todo!() }
    /// Replaces user name and display name (credMgmt updateUserInformation).
    pub fn update_user(&mut self, _id: &[u8], _name: Option<&str>, _display_name: Option<&str>) -> Result<bool, StoreError> { todo!() }
    /// RPs with discoverable credentials, ordered by RP id.
    pub fn relying_parties(&self) -> Result<Vec<RelyingParty>, StoreError> { todo!() }
    pub fn credential_count(&self) -> Result<u32, StoreError> { todo!() }

    pub fn load_large_blob_array(&self) -> Result<Vec<u8>, StoreError> { todo!() }
    pub fn save_large_blob_array(&mut self, _bytes: &[u8]) -> Result<(), StoreError> { todo!() }

    /// authenticatorReset: deletes every credential, the PIN and settings, and the large-blob
    /// array. The signature counter keeps its value (it must never go backwards).
    pub fn reset(&mut self) -> Result<(), StoreError> { todo!() }
}
