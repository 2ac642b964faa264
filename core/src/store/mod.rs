//! The credential store: discoverable credentials, authenticator settings (PIN, retries,
//! policy), the large-blob array and the signature counter, in SQLite.
//!
//! Every secret (private keys, the PIN hash, credBlob, largeBlobKey) is sealed under the
//! master key before it touches disk (see [`crate::crypto::seal`]); what stays in the clear
//! but decides security carries an integrity tag (`integrity`). One program at a time may
//! open a store file (`lock`).

mod integrity;
pub mod lock;
mod schema;
pub(crate) mod sqlite;
#[cfg(test)]
mod tests;
mod types;

pub use sqlite::{Store, MAX_DISCOVERABLE_CREDENTIALS};
pub use types::*;
