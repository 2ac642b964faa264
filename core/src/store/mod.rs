//! The credential store: discoverable credentials, authenticator settings (PIN, retries,
//! policy), the large-blob array and the signature counter, in SQLite.
//!
//! Durability: the database runs in WAL mode with `synchronous=FULL`, so every committed
//! transaction (each public mutating call is one) is on stable storage when the call returns.
//!
//! Every secret (private keys, the PIN hash, credBlob, largeBlobKey) is sealed under the
//! master key before it touches disk ([`crate::crypto::seal`], purpose `Store`), under
//! associated data that names the field and binds the row (`sealing`): for a credential, its
//! id, rp_id_hash, user_id and the attributes fixed at creation (algorithm, credProtect,
//! hmac-secret, BE/BS); for the PIN hash, the settings row. A sealed value copied into another
//! row or field, or a row whose security-relevant attributes were edited on disk, fails to
//! open ([`StoreError::Unseal`]).
//!
//! What is kept in the clear but decides security (the settings row: retries, alwaysUv,
//! minimum PIN length, enterprise attestation…; the signature counter) carries an integrity
//! tag under the master key, checked when read (`integrity`, and its limit: a whole older
//! copy of the file is not detected). Bytes that already verified are recognised without a
//! new HMAC (`RecordMac`), and the settings row is read again only after a write or another
//! connection's commit (`settings::SettingsCache`). A credential's sealed private key read
//! again is not opened again (`sealing::StoreKeys::open_private_key`). One program at a time
//! may open a store file (`lock`).
//!
//! Modules: `open` (connection, pragmas, schema check and migrations, reset), `schema` (the
//! tables and their migrations), `settings`, `counter`, `credentials`, `large_blob` (the
//! store's operations, one table each), `org_identity` (the organisation it was activated
//! with), `rows` (row ↔ struct), `sealing`, `integrity`, `write_tx` (the per-request write
//! transaction on cached statements), `private_file`.

mod counter;
mod credentials;
mod integrity;
mod large_blob;
pub mod lock;
mod open;
mod org_identity;
pub(crate) mod private_file;
mod rows;
mod schema;
mod sealing;
mod settings;
#[cfg(test)]
mod tests;
mod types;
mod write_tx;

pub use open::{Store, MAX_DISCOVERABLE_CREDENTIALS};
pub use org_identity::{OrgAttestation, OrgIdentity, OrgPolicy, OrgStatus};
pub use types::*;
