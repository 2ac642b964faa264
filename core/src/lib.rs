//! PocketKey's FIDO2 authenticator engine.
//!
//! The engine has no I/O of its own beyond its SQLite store: transports hand it request bytes
//! and send back the bytes it returns; the user is asked through an [`approver::Approver`];
//! its master key comes from a [`crypto::master_key::KeyProvider`].

pub mod approver;
pub mod attestation;
pub mod authenticator;
pub mod cancel;
pub mod clock;
pub mod credential_id;
pub mod crypto;
pub mod ctap;
pub mod engine;
pub mod hid;
pub mod hybrid;
pub mod org_protocol;
pub mod pairing;
pub mod pin;
pub mod store;
