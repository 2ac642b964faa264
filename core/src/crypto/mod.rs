//! Cryptography the engine uses, built only from audited crates (RustCrypto, dalek, `ring`).
//!
//! P-256 private-key operations go through [`es256`] alone, which says which backend does
//! what and what it promises about constant time and zeroization.

pub mod es256;
pub mod key_cache;
pub mod master_key;
pub mod noise;
pub mod record_mac;
pub mod seal;
pub mod sealed_box;
pub mod signing;
