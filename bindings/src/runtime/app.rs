//! The app's entry point: `SecurityKey.startHybrid`.

use std::sync::Arc;

use super::{start, Advertiser, HybridError, HybridOptions, HybridSession};
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
        start(&qr, self, advertiser, options)
            .map(Arc::new)
            .map_err(|e| match e {
                HybridError::InvalidQrCode { detail } => {
                    PocketKeyError::InvalidHybridCode { detail }
                }
                HybridError::ExpiredQrCode { detail } => {
                    PocketKeyError::ExpiredHybridCode { detail }
                }
                HybridError::QrCodeClockMismatch { detail } => {
                    PocketKeyError::HybridCodeClockMismatch { detail }
                }
                HybridError::InvalidOptions { detail } => {
                    PocketKeyError::InvalidHybridOptions { detail }
                }
                other => PocketKeyError::Internal {
                    detail: other.describe(),
                },
            })
    }
}
