//! The BLE advert, which only the app can send: the [`Advertiser`] foreign trait, and its
//! adapter to the runtime's [`AdvertSender`].

use std::sync::Arc;

use pocketkey_net::hybrid::{AdvertError, AdvertSender};

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

/// The app's [`Advertiser`] as the runtime's [`AdvertSender`].
pub(crate) struct ForeignAdvertiser(pub(crate) Arc<dyn Advertiser>);

impl AdvertSender for ForeignAdvertiser {
    fn start(&self, service_data: Vec<u8>) -> Result<(), AdvertError> {
        self.0.start(service_data).map_err(|e| match e {
            AdvertiserError::Failed { reason } => AdvertError::Failed { reason },
            AdvertiserError::Unexpected { reason } => AdvertError::Unexpected { reason },
        })
    }

    fn stop(&self) {
        self.0.stop();
    }
}
