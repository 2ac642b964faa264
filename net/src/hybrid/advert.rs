//! The BLE advert, which only the app can send: the [`AdvertSender`] trait the app's side
//! implements, and the guard that makes sure every advert started is stopped exactly once, on
//! every exit path.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::error::Error;

/// Implemented by the app: sends the hybrid BLE advert. `service_data` is the 20-byte
/// encrypted advert, to be sent as service data of the 16-bit service UUID 0xFFF9 (FIDO's;
/// older browsers also listen for 0xFDE2), connectable or not, at the fastest interval the
/// platform allows. `start` is called once, as soon as the tunnel server has given the routing
/// id; `stop` once, when the browser's handshake arrives or the session ends any other way.
/// Both are called on the session's own thread; return quickly. (Android only: iOS does not
/// let apps advertise service data.)
pub trait AdvertSender: Send + Sync {
    fn start(&self, service_data: Vec<u8>) -> Result<(), AdvertError>;
    fn stop(&self);
}

/// What an [`AdvertSender`] returns from `start`. The session ends with
/// [`Error::AdvertiserFailed`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    /// Bluetooth is off, advertising is not supported, or permission is missing.
    #[error("the advert could not start: {reason}")]
    Failed { reason: String },
    /// The implementation failed in a way it did not describe (a foreign exception that is not
    /// an advert error).
    #[error("the advertiser failed unexpectedly: {reason}")]
    Unexpected { reason: String },
}

/// A started advert; stops it when told or when dropped, whichever comes first.
pub(crate) struct Advert {
    advertiser: Arc<dyn AdvertSender>,
    running: bool,
}

impl Advert {
    /// Starts advertising. A failing (or panicking) `start` is an error and needs no `stop`.
    pub(crate) fn start(
        advertiser: Arc<dyn AdvertSender>,
        service_data: Vec<u8>,
    ) -> Result<Self, Error> {
        match catch_unwind(AssertUnwindSafe(|| advertiser.start(service_data))) {
            Ok(Ok(())) => Ok(Self {
                advertiser,
                running: true,
            }),
            Ok(Err(e)) => Err(Error::AdvertiserFailed {
                reason: e.to_string(),
            }),
            Err(_) => Err(Error::AdvertiserFailed {
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
