//! The phone's tunnel to the caBLE tunnel server: the tunnel URL, the TLS configuration (the
//! roots of [`crate::tls`] plus any the options add), and the tunnel itself, a thin layer on
//! the websocket client ([`crate::ws`]) that speaks in [`Error`]s and reads the routing id
//! from the server's upgrade response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pocketkey_core::cancel::CancelToken;
use rustls::ClientConfig;
use tungstenite::protocol::frame::coding::CloseCode;
use url::Url;

use super::error::{Error, Wait};
use crate::tls::{self, TlsError};
use crate::ws::{End, Open, OpenError, Wakeup, WsConn};

/// The websocket subprotocol of caBLE tunnels.
pub const SUBPROTOCOL: &str = "fido.cable";
/// The response header carrying the routing id (3 bytes, hex).
pub const ROUTING_ID_HEADER: &str = "X-caBLE-Routing-ID";
/// Largest message accepted from the tunnel. CTAP messages are a few KiB (CTAPHID's limit is
/// 7609 bytes); this leaves room for large blobs and padding.
const MAX_MESSAGE: usize = 256 * 1024;
/// How long a polite close waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// The phone's tunnel URL: `<base>/cable/new/<TUNNEL ID hex>`, `base` being `wss://<domain>`
/// or the override (`ws://` or `wss://`, optionally with a path prefix).
pub(crate) fn new_tunnel_url(base: &str, tunnel_id: &[u8; 16]) -> Result<Url, Error> {
    let invalid = |detail: String| Error::InvalidOptions { detail };
    let parsed = Url::parse(base).map_err(|e| invalid(format!("tunnel URL {base:?}: {e}")))?;
    if !matches!(parsed.scheme(), "ws" | "wss") {
        return Err(invalid(format!(
            "tunnel URL {base:?}: the scheme must be ws or wss"
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("tunnel URL {base:?} has no host")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(invalid(format!(
            "tunnel URL {base:?}: no query, fragment or user name allowed"
        )));
    }
    let hex: String = tunnel_id.iter().map(|b| format!("{b:02X}")).collect();
    let full = format!("{}/cable/new/{hex}", parsed.as_str().trim_end_matches('/'));
    Url::parse(&full).map_err(|e| invalid(format!("tunnel URL {full:?}: {e}")))
}

/// TLS settings: the webpki roots, plus `extra` DER certificates.
pub(crate) fn tls_config(extra: &[Vec<u8>]) -> Result<Arc<ClientConfig>, Error> {
    tls::client_config(extra).map_err(|e| match e {
        TlsError::BadCertificate(_) => Error::InvalidOptions {
            detail: e.to_string(),
        },
        TlsError::Setup(_) => Error::Internal {
            detail: e.to_string(),
        },
    })
}

/// What the tunnel gave.
#[derive(Debug)]
pub(crate) enum Incoming {
    Frame(Vec<u8>),
    /// The server or the browser closed the tunnel.
    Closed(String),
}

/// An open tunnel.
#[derive(Debug)]
pub(crate) struct Tunnel {
    conn: WsConn,
}

fn unreachable(detail: impl Into<String>) -> Error {
    Error::TunnelUnreachable {
        detail: detail.into(),
    }
}

impl Tunnel {
    /// Connects, upgrades with subprotocol `fido.cable` and returns the tunnel and the routing
    /// id the server chose. Gives up at `timeout`, or soon after `cancel`. Raises `wakeup`
    /// whenever a message arrives or the tunnel ends.
    pub(crate) fn open(
        url: &Url,
        tls: &Arc<ClientConfig>,
        timeout: Duration,
        cancel: &CancelToken,
        wakeup: Arc<Wakeup>,
    ) -> Result<(Self, [u8; 3]), Error> {
        let abort = || cancel.is_cancelled();
        let opened = WsConn::open(
            url,
            Open {
                subprotocol: SUBPROTOCOL,
                headers: Vec::new(),
                max_message: MAX_MESSAGE,
                tls: tls.clone(),
                deadline: Instant::now() + timeout,
                write_timeout: timeout.max(Duration::from_secs(1)),
                abort: Some(&abort),
                wakeup,
                thread_name: "pocketkey-tunnel-read",
            },
        );
        let (conn, response) = opened.map_err(|e| match e {
            OpenError::Unreachable(detail) => unreachable(detail),
            OpenError::Refused(status) => Error::TunnelRefused { status },
            OpenError::Protocol(detail) => Error::TunnelProtocol { detail },
            OpenError::Invalid(detail) => Error::InvalidOptions {
                detail: format!("tunnel URL: {detail}"),
            },
            OpenError::TimedOut => Error::TimedOut {
                waiting_for: Wait::TunnelServer,
            },
            OpenError::Aborted => Error::Cancelled,
        })?;
        let routing_id = response
            .headers()
            .get(ROUTING_ID_HEADER)
            .ok_or_else(|| Error::TunnelProtocol {
                detail: format!("no {ROUTING_ID_HEADER} header in the server's answer"),
            })
            .and_then(|v| parse_routing_id(v.as_bytes()))?;
        Ok((Self { conn }, routing_id))
    }

    /// The next message that arrived, without waiting; `None` if none yet.
    pub(crate) fn try_next(&self) -> Result<Option<Incoming>, Error> {
        let end = match self.conn.try_next() {
            Ok(message) => return Ok(message.map(Incoming::Frame)),
            Err(end) => end,
        };
        let detail = match end {
            End::Closed { code: None, .. } => "closed without a code".into(),
            End::Closed {
                code: Some(code),
                reason,
            } if reason.is_empty() => format!("closed with code {code}"),
            End::Closed {
                code: Some(code),
                reason,
            } => format!("closed with code {code}: {reason}"),
            End::Dropped => "the connection dropped without a close frame".into(),
            End::Lost(detail) => format!("connection lost: {detail}"),
            End::Text => {
                return Err(Error::TunnelProtocol {
                    detail: "a text message (the tunnel carries binary messages only)".into(),
                })
            }
            End::Protocol(detail) => return Err(Error::TunnelProtocol { detail }),
        };
        Ok(Some(Incoming::Closed(detail)))
    }

    /// Sends one binary message.
    pub(crate) fn send(&self, frame: Vec<u8>) -> Result<(), Error> {
        self.conn.send(frame).map_err(|e| Error::TunnelClosed {
            detail: format!("sending: {e}"),
        })
    }

    /// Closes politely (best effort, bounded), then drops the connection.
    pub(crate) fn close(self, code: CloseCode) {
        self.conn.close(code, CLOSE_WAIT);
    }
}

/// Six hex digits, either case.
pub(crate) fn parse_routing_id(value: &[u8]) -> Result<[u8; 3], Error> {
    let bad = || Error::TunnelProtocol {
        detail: format!(
            "{ROUTING_ID_HEADER} is {:?}, not 6 hex digits",
            String::from_utf8_lossy(&value[..value.len().min(32)])
        ),
    };
    let text = std::str::from_utf8(value).map_err(|_| bad())?.trim();
    if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 3];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}
