//! The master key every secret at rest is sealed under, and where it comes from.

use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

/// 32 secret bytes, zeroized on drop, never printed.
///
/// The bytes live on the heap and are written there in place ([`MasterKey::generate`],
/// [`MasterKey::from_slice`]): moving a `MasterKey` moves a pointer, never the key, so no
/// unzeroized copy is left behind in a stack frame.
#[derive(Clone)]
pub struct MasterKey(Box<Zeroizing<[u8; 32]>>);

impl MasterKey {
    /// Length of a master key in bytes.
    pub const LEN: usize = 32;

    fn zeroed() -> Self {
        Self(Box::new(Zeroizing::new([0u8; Self::LEN])))
    }

    /// From an array (tests, fixed vectors). The caller's array is a copy this type cannot
    /// wipe: key material read from storage goes through [`MasterKey::from_slice`].
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut key = Self::zeroed();
        key.0.copy_from_slice(&bytes);
        key
    }

    /// Copies `bytes` straight into the key's heap buffer; `None` unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let mut key = Self::zeroed();
        key.0.copy_from_slice(bytes);
        Some(key)
    }

    pub fn generate() -> Self {
        let mut key = Self::zeroed();
        OsRng.fill_bytes(&mut key.0[..]);
        key
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// A 32-byte subkey for one purpose: HKDF-SHA256 (RFC 5869) with this key as input
    /// keying material, `salt` and `info` naming the purpose. Every key the engine derives
    /// from the master key comes from here, each with its own `info`.
    pub fn derive(&self, salt: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(salt), self.expose());
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(info, key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the master key is unavailable: {0}")]
pub struct KeyProviderError(pub String);

/// Hands the engine its master key: the platform keychain/keystore on a phone, the OS keyring
/// or a 0600 file on a desktop, memory in tests.
pub trait KeyProvider: Send + Sync {
    /// Returns the master key, creating and storing one on first use.
    fn master_key(&self) -> Result<MasterKey, KeyProviderError>;
}

/// Keeps the key in memory only: for tests and throw-away keys.
#[derive(Debug, Clone)]
pub struct MemoryKeyProvider(MasterKey);

impl MemoryKeyProvider {
    pub fn new(key: MasterKey) -> Self {
        Self(key)
    }
    pub fn random() -> Self {
        Self(MasterKey::generate())
    }
}

impl KeyProvider for MemoryKeyProvider {
    fn master_key(&self) -> Result<MasterKey, KeyProviderError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_key_bytes() {
        let key = MasterKey::from_bytes([0xAB; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.to_lowercase().contains("ab, ") && !shown.contains("171"));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn from_slice_takes_exactly_32_bytes() {
        assert_eq!(MasterKey::from_slice(&[5; 32]).unwrap().expose(), &[5; 32]);
        for len in [0, 31, 33, 64] {
            assert!(MasterKey::from_slice(&vec![5; len]).is_none());
        }
    }

    #[test]
    fn derived_keys_depend_on_salt_and_info() {
        let key = MasterKey::from_bytes([1; 32]);
        let a = key.derive(b"", b"a");
        assert_eq!(*a, *key.derive(b"", b"a"));
        assert_ne!(*a, *key.derive(b"", b"b"));
        assert_ne!(*a, *key.derive(b"salt", b"a"));
        assert_ne!(*a, *MasterKey::from_bytes([2; 32]).derive(b"", b"a"));
    }
}
