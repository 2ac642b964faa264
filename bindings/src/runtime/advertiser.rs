//! The BLE advert, which only the app can send: the [`Advertiser`] foreign trait, and the guard
//! that makes sure every advert started is stopped exactly once, on every exit path.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::error::HybridError;

/// Implemented by the app: sends the hybrid BLE advert. `service_data` is the 20-byte
/// encrypted advert, to be sent as service data of the 16-bit service UUID 0xFFF9 (FIDO's;
/// older browsers also listen for 0xFDE2), connectable or not, at the fastest interval the
/// platform allows. `start` is called once, as soon as the tunnel server has given the routing
/// id; `stop` once, when the browser's handshake arrives or the session ends any other way.
/// Both are called on the session's own thread; return quickly. (Android only: iOS does not
/// let apps advertise service data.)
#[uniffi::export(with_foreign)]
pub trait Advertiser: Send + Sync {
    fn start(&self, service_data: Vec<u8>) -> Result<(), AdvertiserError>;
    fn stop(&self);
}

/// What an `Advertiser` throws from `start`. The session ends with `AdvertiserFailed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum AdvertiserError {
    /// Bluetooth is off, advertising is not supported, or permission is missing.
    #[error("the advert could not start: {reason}")]
    Failed { reason: String },
    /// The foreign implementation threw something other than an AdvertiserError.
    #[error("the advertiser failed unexpectedly: {reason}")]
    Unexpected { reason: String },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for AdvertiserError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        AdvertiserError::Unexpected { reason: e.reason }
    }
}

/// A started advert; stops it when told or when dropped, whichever comes first.
pub(crate) struct Advert {
    advertiser: Arc<dyn Advertiser>,
    running: bool,
}

impl Advert {
    /// Starts advertising. A failing (or panicking) `start` is an error and needs no `stop`.
    pub(crate) fn start(
        advertiser: Arc<dyn Advertiser>,
        service_data: Vec<u8>,
    ) -> Result<Self, HybridError> {
        match catch_unwind(AssertUnwindSafe(|| advertiser.start(service_data))) {
            Ok(Ok(())) => Ok(Self {
                advertiser,
                running: true,
            }),
            Ok(Err(e)) => Err(HybridError::AdvertiserFailed {
                reason: e.to_string(),
            }),
            Err(_) => Err(HybridError::AdvertiserFailed {
                reason: "the advertiser panicked".into(),
            }),
        }
    }

    /// Stops it, once. A foreign exception in `stop` (which uniffi turns into a panic) is
    /// contained: the session goes on.
    pub(crate) fn stop(&mut self) {
        if std::mem::take(&mut self.running) {
            let _ = catch_unwind(AssertUnwindSafe(|| self.advertiser.stop()));
        }
    }
}

impl Drop for Advert {
    fn drop(&mut self) {
        self.stop();
    }
}
