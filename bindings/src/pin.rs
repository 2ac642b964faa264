//! Turning the engine's verdict on an app-side PIN change into words for the user.

use pocketkey_core::authenticator::Authenticator;
use pocketkey_core::ctap::CtapError;

use crate::errors::PocketKeyError;

/// Longest PIN, in bytes of UTF-8 (CTAP 2.1 §6.5.5.5: 63, the padded block holds 64).
pub const MAX_PIN_BYTES: u32 = 63;

/// Maps what `set_pin_on_device`/`change_pin_on_device` refused. The engine decides; for a
/// policy violation this only works out which rule `new_pin` broke, to name it.
pub(crate) fn error(e: CtapError, engine: &Authenticator, new_pin: &str) -> PocketKeyError {
    let settings = match engine.store().load_settings() {
        Ok(s) => s,
        Err(e) => return PocketKeyError::storage(e),
    };
    match e {
        CtapError::PinPolicyViolation => {
            if new_pin.contains('\0') {
                PocketKeyError::PinInvalidCharacter
            } else if new_pin.len() > MAX_PIN_BYTES as usize {
                PocketKeyError::PinTooLong {
                    max_bytes: MAX_PIN_BYTES,
                }
            } else if new_pin.chars().count() < usize::from(settings.min_pin_length) {
                PocketKeyError::PinTooShort {
                    min_length: settings.min_pin_length.into(),
                }
            } else {
                PocketKeyError::PinUnchanged
            }
        }
        CtapError::NotAllowed => PocketKeyError::PinAlreadySet,
        CtapError::PinNotSet => PocketKeyError::PinNotSet,
        CtapError::PinInvalid => PocketKeyError::PinWrong {
            retries_left: settings.pin_retries.into(),
        },
        CtapError::PinAuthBlocked => PocketKeyError::PinTemporarilyBlocked,
        CtapError::PinBlocked => PocketKeyError::PinBlocked,
        CtapError::Other => PocketKeyError::StorageFailed {
            detail: "the PIN could not be saved".into(),
        },
        other => PocketKeyError::Internal {
            detail: format!("unexpected engine status: {other}"),
        },
    }
}
