//! Cryptography the engine uses, built only from audited crates (RustCrypto, dalek).

pub mod master_key;
pub mod noise;
pub mod record_mac;
pub mod seal;
pub mod signing;
