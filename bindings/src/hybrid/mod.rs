//! The app's side of the FIDO hybrid transport ("use a phone or tablet"):
//! `SecurityKey.startHybrid` and the types it exports. The session itself runs in
//! `pocketkey_net::hybrid`, shared with the command line; this module wraps its types for
//! uniffi and hands it this key as the engine.

mod advertiser;
mod error;
mod session;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use pocketkey_net::hybrid;

pub use advertiser::{Advertiser, AdvertiserError};
pub use error::{HybridError, HybridWait};
pub use session::{HybridOptions, HybridOutcome, HybridSession};

use crate::errors::PocketKeyError;
use crate::security_key::SecurityKey;

#[uniffi::export]
impl SecurityKey {
    /// Signs in (or registers) with a nearby browser from its `FIDO:/` QR code: opens the
    /// tunnel, advertises through `advertiser`, and serves the browser's requests with this
    /// key, prompting through the key's `ApprovalListener` ("a nearby browser" asks). Returns at
    /// once; the session runs on its own thread — `wait()` for its end, `cancel()` to stop it.
    /// `tunnel_url` replaces the tunnel server (`ws://HOST:PORT` for tests, self-hosting).
    /// Throws `InvalidHybridCode` / `InvalidHybridOptions` before any network traffic.
    pub fn start_hybrid(
        self: Arc<Self>,
        qr: String,
        advertiser: Arc<dyn Advertiser>,
        tunnel_url: Option<String>,
    ) -> Result<Arc<HybridSession>, PocketKeyError> {
        self.start_hybrid_with_options(
            qr,
            advertiser,
            HybridOptions {
                tunnel_url,
                ..HybridOptions::default()
            },
        )
    }

    /// `start_hybrid` with every option (timeouts, tunnel server id, trusted certificates).
    pub fn start_hybrid_with_options(
        self: Arc<Self>,
        qr: String,
        advertiser: Arc<dyn Advertiser>,
        options: HybridOptions,
    ) -> Result<Arc<HybridSession>, PocketKeyError> {
        let advertiser = Arc::new(advertiser::ForeignAdvertiser(advertiser));
        hybrid::start(&qr, self, advertiser, options.into())
            .map(|handle| Arc::new(HybridSession::from(handle)))
            .map_err(|e| match e {
                hybrid::Error::InvalidQrCode { detail } => {
                    PocketKeyError::InvalidHybridCode { detail }
                }
                hybrid::Error::ExpiredQrCode { detail } => {
                    PocketKeyError::ExpiredHybridCode { detail }
                }
                hybrid::Error::QrCodeClockMismatch { detail } => {
                    PocketKeyError::HybridCodeClockMismatch { detail }
                }
                hybrid::Error::InvalidOptions { detail } => {
                    PocketKeyError::InvalidHybridOptions { detail }
                }
                other => PocketKeyError::Internal {
                    detail: other.describe(),
                },
            })
    }
}
