//! Registering the phone's UV key: the P-256 key whose signatures over an approval's
//! challenge prove that the phone's OS verified the user (see docs/apps.md, "User
//! verification bound to hardware"). The proofs are checked in `user.rs`.

use crate::crypto::es256;
use crate::store::StoreError;

use super::Authenticator;

#[derive(Debug, thiserror::Error)]
pub enum UvKeyError {
    /// Not an uncompressed SEC1 P-256 point (65 bytes, 0x04 ‖ x ‖ y, on the curve).
    #[error("the user-verification key is not an uncompressed P-256 public key")]
    Malformed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Authenticator {
    /// Stores `public_point` as the UV key, replacing any earlier one (a new biometric
    /// enrollment invalidates the phone's old key, and the app registers a new one). Kept
    /// until replaced or until a reset, which returns the key to its factory state: no UV
    /// configured (CTAP 2.1 §6.6).
    pub fn register_uv_key(&mut self, public_point: &[u8]) -> Result<(), UvKeyError> {
        let point = es256::check_public_point(public_point).map_err(|_| UvKeyError::Malformed)?;
        let mut settings = self.store.load_settings()?;
        settings.uv_public_key = Some(point);
        self.store.save_settings(&settings)?;
        Ok(())
    }

    /// Whether a UV key is registered.
    pub fn uv_key_registered(&self) -> Result<bool, StoreError> {
        Ok(self.store.load_settings()?.uv_public_key.is_some())
    }
}
