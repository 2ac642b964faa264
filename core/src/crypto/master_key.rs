//! The master key every secret at rest is sealed under, and where it comes from.

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// 32 secret bytes, zeroized on drop, never printed.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
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
}
