//! The phone's websocket to the tunnel server: blocking `tungstenite` on the session's own
//! thread (no async runtime crosses the FFI), TLS by rustls on the `ring` provider with the
//! Mozilla roots from `webpki-roots` (plus any roots the options add, for a self-hosted server
//! behind a private CA).
//!
//! Reads use a short socket timeout ([`POLL`]) so that the session loop can look at its
//! deadlines, the cancel flag and the engine's answer between reads; tungstenite (and rustls)
//! keep partly read frames across those timeouts.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pocketkey_core::cancel::CancelToken;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};
use url::Url;

use super::error::{HybridError, HybridWait};

/// The websocket subprotocol of caBLE tunnels.
pub const SUBPROTOCOL: &str = "fido.cable";
/// The response header carrying the routing id (3 bytes, hex).
pub const ROUTING_ID_HEADER: &str = "X-caBLE-Routing-ID";
/// How long one read waits before the loop looks around.
pub(crate) const POLL: Duration = Duration::from_millis(20);
/// Largest message accepted from the tunnel. CTAP messages are a few KiB (CTAPHID's limit is
/// 7609 bytes); this leaves room for large blobs and padding.
const MAX_MESSAGE: usize = 256 * 1024;
/// How long a polite close waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// TCP, or TLS over TCP.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// The phone's tunnel URL: `<base>/cable/new/<TUNNEL ID hex>`, `base` being `wss://<domain>`
/// or the override (`ws://` or `wss://`, optionally with a path prefix).
pub(crate) fn new_tunnel_url(base: &str, tunnel_id: &[u8; 16]) -> Result<Url, HybridError> {
    let invalid = |detail: String| HybridError::InvalidOptions { detail };
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
pub(crate) fn tls_config(extra: &[Vec<u8>]) -> Result<Arc<ClientConfig>, HybridError> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if extra.is_empty() {
        if let Some(config) = DEFAULT.get() {
            return Ok(config.clone());
        }
    }
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in extra {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| HybridError::InvalidOptions {
                detail: format!("a trusted certificate is not usable: {e}"),
            })?;
    }
    // The provider is named rather than taken from the process default, which panics when a
    // binary ends up with two providers compiled in.
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| HybridError::Internal {
                detail: format!("TLS setup: {e}"),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let config = Arc::new(config);
    if extra.is_empty() {
        let _ = DEFAULT.set(config.clone());
    }
    Ok(config)
}

/// What one poll of the tunnel gave.
#[derive(Debug)]
pub(crate) enum Incoming {
    Frame(Vec<u8>),
    /// Nothing yet (or a control frame).
    Idle,
    /// The server or the browser closed the tunnel.
    Closed(String),
}

/// An open tunnel.
pub(crate) struct Tunnel {
    ws: WebSocket<Stream>,
}

fn io_timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn unreachable(detail: impl Into<String>) -> HybridError {
    HybridError::TunnelUnreachable {
        detail: detail.into(),
    }
}

fn connect_tcp(url: &Url, deadline: Instant) -> Result<TcpStream, HybridError> {
    let host = url.host_str().unwrap_or_default();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| unreachable(format!("no port for {host}")))?;
    // IPv6 literals come bracketed from the URL.
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (name, port)
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HybridError::TimedOut {
                waiting_for: HybridWait::TunnelServer,
            });
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(unreachable(
        last.unwrap_or_else(|| format!("{host} has no address")),
    ))
}

impl Tunnel {
    /// Connects, upgrades with subprotocol `fido.cable` and returns the tunnel and the routing
    /// id the server chose. Gives up at `timeout`, or soon after `cancel`.
    pub(crate) fn open(
        url: &Url,
        tls: &Arc<ClientConfig>,
        timeout: Duration,
        cancel: &CancelToken,
    ) -> Result<(Self, [u8; 3]), HybridError> {
        let deadline = Instant::now() + timeout;
        let tcp = connect_tcp(url, deadline)?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(POLL))
            .and_then(|()| tcp.set_write_timeout(Some(timeout.max(Duration::from_secs(1)))))
            .map_err(|e| unreachable(format!("socket options: {e}")))?;
        let stream = if url.scheme() == "wss" {
            let host = url.host_str().unwrap_or_default();
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let server_name = ServerName::try_from(name.to_string())
                .map_err(|e| unreachable(format!("{host} is not a TLS server name: {e}")))?;
            let connection = ClientConnection::new(tls.clone(), server_name)
                .map_err(|e| unreachable(format!("TLS: {e}")))?;
            Stream::Tls(Box::new(StreamOwned::new(connection, tcp)))
        } else {
            Stream::Plain(tcp)
        };

        let mut request =
            url.as_str()
                .into_client_request()
                .map_err(|e| HybridError::InvalidOptions {
                    detail: format!("tunnel URL: {e}"),
                })?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let mut attempt = tungstenite::client::client_with_config(request, stream, Some(config));
        let (ws, response) = loop {
            match attempt {
                Ok(done) => break done,
                Err(HandshakeError::Interrupted(mid)) => {
                    if cancel.is_cancelled() {
                        return Err(HybridError::Cancelled);
                    }
                    if Instant::now() >= deadline {
                        return Err(HybridError::TimedOut {
                            waiting_for: HybridWait::TunnelServer,
                        });
                    }
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(handshake_error(e)),
            }
        };
        let routing_id = response
            .headers()
            .get(ROUTING_ID_HEADER)
            .ok_or_else(|| HybridError::TunnelProtocol {
                detail: format!("no {ROUTING_ID_HEADER} header in the server's answer"),
            })
            .and_then(|v| parse_routing_id(v.as_bytes()))?;
        Ok((Self { ws }, routing_id))
    }

    /// Reads at most one message, waiting at most [`POLL`].
    pub(crate) fn poll(&mut self) -> Result<Incoming, HybridError> {
        match self.ws.read() {
            Ok(Message::Binary(bytes)) => Ok(Incoming::Frame(bytes.to_vec())),
            Ok(Message::Text(_)) => Err(HybridError::TunnelProtocol {
                detail: "a text message (the tunnel carries binary messages only)".into(),
            }),
            Ok(Message::Close(frame)) => Ok(Incoming::Closed(match frame {
                Some(f) if f.reason.is_empty() => format!("closed with code {}", u16::from(f.code)),
                Some(f) => format!("closed with code {}: {}", u16::from(f.code), f.reason),
                None => "closed without a code".into(),
            })),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Ok(Incoming::Idle),
            Err(tungstenite::Error::Io(e)) if io_timed_out(&e) => Ok(Incoming::Idle),
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Ok(Incoming::Closed("the connection closed".into()))
            }
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => Ok(Incoming::Closed(
                "the connection dropped without a close frame".into(),
            )),
            Err(tungstenite::Error::Io(e)) => Ok(Incoming::Closed(format!("connection lost: {e}"))),
            Err(e @ (tungstenite::Error::Capacity(_) | tungstenite::Error::Protocol(_))) => {
                Err(HybridError::TunnelProtocol {
                    detail: e.to_string(),
                })
            }
            Err(e) => Err(HybridError::TunnelClosed {
                detail: e.to_string(),
            }),
        }
    }

    /// Sends one binary message.
    pub(crate) fn send(&mut self, frame: Vec<u8>) -> Result<(), HybridError> {
        self.ws
            .send(Message::Binary(frame.into()))
            .map_err(|e| HybridError::TunnelClosed {
                detail: format!("sending: {e}"),
            })
    }

    /// Closes politely (best effort, bounded), then drops the connection.
    pub(crate) fn close(mut self, code: CloseCode) {
        if self
            .ws
            .close(Some(CloseFrame {
                code,
                reason: "".into(),
            }))
            .is_err()
        {
            return;
        }
        let until = Instant::now() + CLOSE_WAIT;
        while Instant::now() < until {
            match self.ws.read() {
                Err(tungstenite::Error::Io(e)) if io_timed_out(&e) => {}
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = self.ws.get_ref().tcp().shutdown(std::net::Shutdown::Both);
    }
}

fn handshake_error(e: tungstenite::Error) -> HybridError {
    match e {
        tungstenite::Error::Http(response) => HybridError::TunnelRefused {
            status: response.status().as_u16(),
        },
        tungstenite::Error::Io(e) if io_timed_out(&e) => HybridError::TimedOut {
            waiting_for: HybridWait::TunnelServer,
        },
        tungstenite::Error::Io(e) => unreachable(e.to_string()),
        tungstenite::Error::Protocol(e) => HybridError::TunnelProtocol {
            detail: e.to_string(),
        },
        tungstenite::Error::Url(e) => HybridError::InvalidOptions {
            detail: e.to_string(),
        },
        other => unreachable(other.to_string()),
    }
}

/// Six hex digits, either case.
pub(crate) fn parse_routing_id(value: &[u8]) -> Result<[u8; 3], HybridError> {
    let bad = || HybridError::TunnelProtocol {
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
