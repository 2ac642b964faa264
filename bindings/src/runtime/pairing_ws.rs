//! A websocket attached to one pairing-relay mailbox (`docs/pairing-protocol.md` §3): blocking
//! `tungstenite` with a short read timeout so the owner's loop can look at its deadlines
//! between reads. Shared by the phone runtime and the desktop bridge. `ws://` and `wss://`
//! (rustls on ring with the webpki roots, as the hybrid tunnel).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use pocketkey_core::pairing::mailbox::{Attach, SUBPROTOCOL};
use pocketkey_core::pairing::relay::{RelayFrame, MAX_RELAY_FRAME};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};
use url::Url;

use super::tunnel::{tls_config, Stream};

/// How long one read waits before the loop looks around.
pub const POLL: Duration = Duration::from_millis(20);

/// Why a mailbox connection failed or ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxError {
    #[error("relay unreachable: {0}")]
    Unreachable(String),
    /// HTTP status of a refused attach (403 bad tokens, 410 revoked mailbox, ...).
    #[error("relay refused the attach with HTTP {0}")]
    Refused(u16),
    /// The relay closed the websocket (code, 4010 = the pairing was revoked).
    #[error("relay closed the connection (code {0})")]
    Closed(u16),
    #[error("relay protocol error: {0}")]
    Protocol(String),
    #[error("timed out connecting to the relay")]
    TimedOut,
}

impl MailboxError {
    /// Whether the relay says this mailbox was deleted (410 Gone / close 4010).
    pub fn is_revoked(&self) -> bool {
        matches!(self, Self::Refused(410) | Self::Closed(4010))
    }
}

/// One attached mailbox connection.
pub struct MailboxConn {
    ws: WebSocket<Stream>,
}

impl std::fmt::Debug for MailboxConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxConn").finish_non_exhaustive()
    }
}

fn connect_tcp(url: &Url, deadline: Instant) -> Result<TcpStream, MailboxError> {
    let host = url.host_str().unwrap_or_default();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| MailboxError::Unreachable(format!("no port for {host}")))?;
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (name, port)
        .to_socket_addrs()
        .map_err(|e| MailboxError::Unreachable(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = format!("{host} has no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(MailboxError::TimedOut);
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(MailboxError::Unreachable(last))
}

impl MailboxConn {
    /// Attaches to `<relay_url>/pair/v1/<mailbox>` with the attach headers.
    pub fn open(relay_url: &str, attach: &Attach, timeout: Duration) -> Result<Self, MailboxError> {
        let deadline = Instant::now() + timeout;
        let text = attach.url(relay_url);
        let url =
            Url::parse(&text).map_err(|e| MailboxError::Unreachable(format!("{text}: {e}")))?;
        let tcp = connect_tcp(&url, deadline)?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(POLL))
            .and_then(|()| tcp.set_write_timeout(Some(Duration::from_secs(5))))
            .map_err(|e| MailboxError::Unreachable(format!("socket options: {e}")))?;
        let stream = if url.scheme() == "wss" {
            let host = url.host_str().unwrap_or_default();
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let server_name = ServerName::try_from(name.to_string())
                .map_err(|e| MailboxError::Unreachable(format!("{host}: {e}")))?;
            let tls = tls_config(&[]).map_err(|e| MailboxError::Unreachable(e.describe()))?;
            let connection = ClientConnection::new(tls, server_name)
                .map_err(|e| MailboxError::Unreachable(format!("TLS: {e}")))?;
            Stream::Tls(Box::new(StreamOwned::new(connection, tcp)))
        } else {
            Stream::Plain(tcp)
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| MailboxError::Unreachable(e.to_string()))?;
        let headers = request.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        for (name, value) in attach.headers() {
            let value = HeaderValue::from_str(&value)
                .map_err(|e| MailboxError::Protocol(format!("header {name}: {e}")))?;
            headers.insert(name, value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_RELAY_FRAME))
            .max_frame_size(Some(MAX_RELAY_FRAME));
        let mut attempt = tungstenite::client::client_with_config(request, stream, Some(config));
        let (ws, _response) = loop {
            match attempt {
                Ok(done) => break done,
                Err(HandshakeError::Interrupted(mid)) => {
                    if Instant::now() >= deadline {
                        return Err(MailboxError::TimedOut);
                    }
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                    return Err(MailboxError::Refused(response.status().as_u16()))
                }
                Err(HandshakeError::Failure(e)) => {
                    return Err(MailboxError::Unreachable(e.to_string()))
                }
            }
        };
        Ok(Self { ws })
    }

    /// Reads at most one frame, waiting at most [`POLL`]. `Ok(None)`: nothing yet. Frames the
    /// relay sends that we cannot decode are skipped (clients ignore unknown types).
    pub fn poll(&mut self) -> Result<Option<RelayFrame>, MailboxError> {
        match self.ws.read() {
            Ok(Message::Binary(bytes)) => Ok(RelayFrame::decode(&bytes).ok()),
            Ok(Message::Text(_)) => Err(MailboxError::Protocol("a text message".into())),
            Ok(Message::Close(frame)) => Err(MailboxError::Closed(
                frame.map_or(1005, |f| u16::from(f.code)),
            )),
            Ok(_) => Ok(None),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Err(MailboxError::Closed(1006))
            }
            Err(e) => Err(MailboxError::Unreachable(e.to_string())),
        }
    }

    /// Sends one relay frame.
    pub fn send(&mut self, frame: &RelayFrame) -> Result<(), MailboxError> {
        self.ws
            .send(Message::Binary(frame.encode().into()))
            .map_err(|e| MailboxError::Unreachable(format!("sending: {e}")))
    }

    /// Closes politely (best effort, bounded).
    pub fn close(mut self) {
        let _ = self.ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            match self.ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }
}
