//! The phone side of the FIDO hybrid transport (caBLE v2, "use a phone or tablet") around the
//! sans-IO `pocketkey_core::hybrid`, shared by the apps (through the FFI facade) and the
//! command line.
//!
//! ```text
//! start(qr text, engine, advertiser, options)      QR parsed and options checked here (typed
//!   │                                              errors, before any network)
//!   └─ thread "pocketkey-hybrid":
//!        engine getInfo                            → post-handshake message
//!        ws(s)://…/cable/new/<TUNNEL ID>           subprotocol fido.cable, ≤ connect timeout
//!        X-caBLE-Routing-ID → EID → 20-byte advert → AdvertSender.start
//!        browser's handshake message               → AdvertSender.stop; ≤ browser timeout
//!        CTAP requests → engine (worker thread)    requester "a nearby browser"; the tunnel is
//!                                                    still read meanwhile, so a shutdown or a
//!                                                    drop cancels the approval
//!        shutdown from the browser                 → Ok(Outcome); tunnel closed
//! ```
//!
//! Every failure is an [`Error`]; every exit path stops the advert (if it started),
//! cancels a pending approval and closes the tunnel. No async runtime: blocking `tungstenite`
//! with a reader thread per websocket (`ws`); the session's thread sleeps until the tunnel,
//! the engine or `cancel` wakes it, or its next deadline.
//!
//! Apps call `SecurityKey.startHybrid(qr, advertiser, tunnelUrl)` (the FFI facade wraps
//! [`start`]); Rust callers (the command line) call [`start`] with any
//! [`Engine`](pocketkey_core::engine::Engine).

mod advert;
mod error;
mod session;
mod tunnel;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use pocketkey_core::engine::Engine;
use pocketkey_core::hybrid::domains;
use pocketkey_core::hybrid::keys;
use pocketkey_core::hybrid::qr::{QrCode, QrError};

pub use advert::{AdvertError, AdvertSender};
pub use error::{Error, Wait};
pub use session::{Outcome, SessionHandle};
pub use tunnel::{ROUTING_ID_HEADER, SUBPROTOCOL};

/// Tunable parts of a hybrid session. `Default` is what a phone should use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Replaces `wss://<domain of the advert's tunnel server id>` (tests, self-hosting):
    /// `ws://HOST:PORT` or `wss://HOST[:PORT][/prefix]`; the phone connects to
    /// `<tunnel_url>/cable/new/<TUNNEL ID>`. The browser still finds the tunnel server from
    /// `domain_id`.
    pub tunnel_url: Option<String>,
    /// The tunnel server id written into the advert: 0 `cable.ua5v.com` (every browser knows
    /// it), 1 `cable.auth.com`, 256.. hashed names (a self-hosted server must be reachable
    /// under the name its id hashes to).
    pub domain_id: u16,
    /// Reaching the tunnel server (TCP, TLS, websocket upgrade).
    pub connect_timeout_ms: u64,
    /// From the start of the advert to the browser's handshake.
    pub browser_timeout_ms: u64,
    /// Between browser messages after the handshake (not counting the time the user takes to
    /// approve, which the approval timeout bounds).
    pub message_timeout_ms: u64,
    /// DER certificates to trust besides the Mozilla roots, for a self-hosted tunnel server
    /// behind a private certificate authority.
    pub trusted_certificates: Vec<Vec<u8>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tunnel_url: None,
            domain_id: 0,
            connect_timeout_ms: 10_000,
            browser_timeout_ms: 120_000,
            message_timeout_ms: 60_000,
            trusted_certificates: Vec::new(),
        }
    }
}

/// Parses the scanned text (surrounding whitespace ignored) as a hybrid QR code and checks
/// that it is recent by the phone's clock.
pub fn parse_qr(text: &str) -> Result<QrCode, Error> {
    parse_qr_at(text, pocketkey_core::clock::unix_now())
}

/// [`parse_qr`] at `now` (Unix seconds).
pub fn parse_qr_at(text: &str, now: u64) -> Result<QrCode, Error> {
    let qr = QrCode::parse(text.trim()).map_err(|e| Error::InvalidQrCode {
        detail: e.to_string(),
    })?;
    qr.check_fresh(now).map_err(|e| match e {
        QrError::FromTheFuture { .. } => Error::QrCodeClockMismatch {
            detail: e.to_string(),
        },
        _ => Error::ExpiredQrCode {
            detail: e.to_string(),
        },
    })?;
    Ok(qr)
}

/// Starts a hybrid session for a scanned `FIDO:/` code, on its own thread. Fails at once, with
/// no network traffic, for a malformed code or unusable options; everything later is reported
/// by [`SessionHandle::wait`].
pub fn start(
    qr_text: &str,
    engine: Arc<dyn Engine>,
    advertiser: Arc<dyn AdvertSender>,
    options: Options,
) -> Result<SessionHandle, Error> {
    let qr = parse_qr(qr_text)?;
    domains::check_browser_knows(options.domain_id, qr.known_domains).map_err(|e| {
        Error::InvalidOptions {
            detail: e.to_string(),
        }
    })?;
    let base = match &options.tunnel_url {
        Some(url) => url.trim().to_string(),
        None => format!(
            "wss://{}",
            domains::decode(options.domain_id).map_err(|e| Error::InvalidOptions {
                detail: e.to_string()
            })?
        ),
    };
    let url = tunnel::new_tunnel_url(&base, &keys::tunnel_id(&qr.secret))?;
    let tls = tunnel::tls_config(&options.trusted_certificates)?;
    let ms = Duration::from_millis;
    session::spawn(session::Job {
        qr,
        url,
        domain_id: options.domain_id,
        tls,
        engine,
        advertiser,
        connect_timeout: ms(options.connect_timeout_ms),
        browser_timeout: ms(options.browser_timeout_ms),
        message_timeout: ms(options.message_timeout_ms),
    })
}
