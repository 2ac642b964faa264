//! Random secrets (API keys, activation tokens), row ids, and the hashes secrets are kept as.

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Hex length of a secret made by [`new_secret`].
pub const SECRET_HEX_LEN: usize = 64;

/// 256 random bits, hex encoded: API keys and activation tokens.
pub fn new_secret() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(hex::encode(bytes.as_ref()))
}

/// 128 random bits, hex encoded: ids of rows (not secret, but not guessable either).
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What a secret is stored and looked up as: SHA-256, hex. Secrets carry 256 random bits,
/// so a plain hash is as strong as a salted slow one and can be looked up by equality.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `s` has the shape of a secret from [`new_secret`] (checked before any lookup).
pub fn looks_like_secret(s: &str) -> bool {
    s.len() == SECRET_HEX_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_distinct_hex_and_hash_differently() {
        let (a, b) = (new_secret(), new_secret());
        assert!(looks_like_secret(&a) && looks_like_secret(&b));
        assert_ne!(*a, *b);
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert_eq!(hash_secret(&a).len(), 64);
        assert!(!looks_like_secret("zz"));
    }
}
