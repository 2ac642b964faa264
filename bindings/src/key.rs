//! The master key, handed over by the platform's keychain (iOS) or keystore (Android).

use pocketkey_core::crypto::master_key::MasterKey;
use zeroize::Zeroizing;

use crate::errors::{KeyProviderError, PocketKeyError};

/// Implemented by the app: returns the 32-byte master key every secret at rest is sealed
/// under, creating and storing a random one in the keychain/keystore on the first call.
/// Called once per `SecurityKey.open`.
#[uniffi::export(with_foreign)]
pub trait KeyProvider: Send + Sync {
    fn master_key(&self) -> Result<Vec<u8>, KeyProviderError>;
}

/// Asks the provider and checks what comes back. The bytes are wiped once copied.
pub(crate) fn fetch_master_key(provider: &dyn KeyProvider) -> Result<MasterKey, PocketKeyError> {
    let bytes =
        Zeroizing::new(
            provider
                .master_key()
                .map_err(|e| PocketKeyError::KeyProviderFailed {
                    reason: e.to_string(),
                })?,
        );
    // Straight into the key's own buffer: no stack copy of the bytes is left behind.
    MasterKey::from_slice(&bytes).ok_or_else(|| PocketKeyError::MasterKeyWrongLength {
        length: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<Vec<u8>, KeyProviderError>);
    impl KeyProvider for Fixed {
        fn master_key(&self) -> Result<Vec<u8>, KeyProviderError> {
            self.0.clone()
        }
    }

    #[test]
    fn thirty_two_bytes_make_a_key() {
        let key = fetch_master_key(&Fixed(Ok(vec![7; 32]))).unwrap();
        assert_eq!(key.expose(), &[7; 32]);
    }

    #[test]
    fn wrong_lengths_are_typed_errors_without_the_bytes() {
        for len in [0usize, 16, 31, 33, 64] {
            let err = fetch_master_key(&Fixed(Ok(vec![0xAB; len]))).err().unwrap();
            assert_eq!(
                err,
                PocketKeyError::MasterKeyWrongLength { length: len as u32 }
            );
            assert!(!format!("{err:?}{err}").to_lowercase().contains("ab"));
        }
    }

    #[test]
    fn provider_failures_are_typed_errors() {
        let failing = Fixed(Err(KeyProviderError::Unavailable {
            reason: "locked".into(),
        }));
        match fetch_master_key(&failing) {
            Err(PocketKeyError::KeyProviderFailed { reason }) => assert!(reason.contains("locked")),
            other => panic!("{other:?}"),
        }
        let unexpected: KeyProviderError = uniffi::UnexpectedUniFFICallbackError {
            reason: "boom".into(),
        }
        .into();
        assert_eq!(
            unexpected,
            KeyProviderError::Unexpected {
                reason: "boom".into()
            }
        );
    }
}
