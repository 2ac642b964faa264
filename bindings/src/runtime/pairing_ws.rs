//! A websocket attached to one pairing-relay mailbox (`docs/pairing-protocol.md` §3), shared by
//! the phone runtime and the desktop bridge. `ws://` and `wss://` (rustls on ring with the
//! webpki roots, as the hybrid tunnel).
//!
//! Blocking `tungstenite`, without polling: once attached, a reader thread blocks on the
//! socket (no read timeout) and, for every chunk of bytes, hands them to the websocket (and
//! TLS) state under a short lock, queues the decoded frames and raises the owner's
//! [`Wakeup`]. The owner's loop (phone session, bridge link) waits on that one `Wakeup`,
//! which the owner's other sources (the engine's answer, the browser's next request) raise
//! too, so it reacts to each of them at once and sleeps while nothing happens. Writes happen
//! on the owner's thread under the same lock, straight to the socket. See `docs/latency.md`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

use super::tunnel::tls_config;

/// How long [`MailboxConn::poll`] waits for a frame.
pub const POLL: Duration = Duration::from_millis(20);
/// How long a polite close waits for the relay's close frame.
const CLOSE_WAIT: Duration = Duration::from_millis(300);
/// How long writing to the relay may block (a relay that stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The relay drops a connection's frames beyond 50 a second after a burst of 100
/// (`docs/pairing-protocol.md` §3.2, its defaults), and a dropped transport frame ends the
/// session (counters). Sends keep under that: a burst of requests (credential management
/// enumerating many passkeys, say) waits a little instead of failing. The burst is kept
/// below the relay's to absorb arrival jitter.
const SEND_RATE: f64 = 50.0;
const SEND_BURST: f64 = 90.0;

/// A token bucket for [`MailboxConn::send`]: how long the next frame must wait.
#[derive(Debug)]
struct Pacer {
    tokens: f64,
    at: Instant,
}

impl Pacer {
    fn new() -> Self {
        Self {
            tokens: SEND_BURST,
            at: Instant::now(),
        }
    }

    /// Takes a token for a frame sent at `now`; the wait before sending it (zero within the
    /// burst). Waits add up when a burst goes on (tokens go negative).
    fn reserve(&mut self, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * SEND_RATE;
        self.tokens = (self.tokens + refill).min(SEND_BURST) - 1.0;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / SEND_RATE)
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The latency trace (`docs/latency.md`): with `POCKETKEY_TRACE=1` in the environment, one
/// line `pk-trace <unix microseconds> <hop>` on stderr per hop a request passes. Hop names
/// only: never payload bytes, keys, names or ids. The variable is read at each hop (a test
/// may set it after start-up); without it this costs one environment lookup.
pub fn trace(hop: &str) {
    if std::env::var_os("POCKETKEY_TRACE").is_none_or(|v| v != "1") {
        return;
    }
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    eprintln!("pk-trace {micros} {hop}");
}

/// Wakes a loop that waits for several sources at once (the relay's frames and whatever else
/// its owner feeds it): each source queues its item, then calls [`Wakeup::wake`]; the loop
/// drains every source, then calls [`Wakeup::wait`]. A wake that comes between the drain and
/// the wait is kept, so none is lost.
#[derive(Debug, Default)]
pub struct Wakeup {
    woken: Mutex<bool>,
    changed: Condvar,
}

impl Wakeup {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn wake(&self) {
        *lock(&self.woken) = true;
        self.changed.notify_all();
    }

    /// Blocks until woken (since the last `wait`) or `timeout`; true if woken.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut woken = lock(&self.woken);
        while !*woken {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            woken = self
                .changed
                .wait_timeout(woken, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *woken = false;
        true
    }
}

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

/// The socket as tungstenite (through rustls for `wss://`) sees it. During the opening
/// handshake reads go to the socket (with a timeout); once attached they come from the bytes
/// the reader thread took off the socket, `WouldBlock` when there are none (tungstenite and
/// rustls keep partial frames and records for the next bytes). Writes go to the socket.
struct Pipe {
    tcp: TcpStream,
    inbox: VecDeque<u8>,
    attached: bool,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.attached {
            return self.tcp.read(buf);
        }
        if self.inbox.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.inbox.read(buf)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// TCP, or TLS over TCP.
enum WsStream {
    Plain(Pipe),
    Tls(Box<StreamOwned<ClientConnection, Pipe>>),
}

impl WsStream {
    fn pipe(&mut self) -> &mut Pipe {
        match self {
            Self::Plain(p) => p,
            Self::Tls(s) => &mut s.sock,
        }
    }
}

impl Read for WsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for WsStream {
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

/// What the reader thread hands the owner.
#[derive(Default)]
struct Inbox {
    frames: VecDeque<RelayFrame>,
    /// Why the connection ended, once it did (after the frames before it).
    end: Option<MailboxError>,
}

struct Shared {
    ws: Mutex<WebSocket<WsStream>>,
    inbox: Mutex<Inbox>,
    wakeup: Arc<Wakeup>,
}

impl Shared {
    /// Feeds `bytes` to the websocket, queues every complete frame, wakes the owner. False
    /// once the connection ended.
    fn feed(&self, bytes: &[u8]) -> bool {
        let mut frames = Vec::new();
        let mut end = None;
        {
            let mut ws = lock(&self.ws);
            ws.get_mut().pipe().inbox.extend(bytes);
            loop {
                match ws.read() {
                    // Frames we cannot decode are skipped (clients ignore unknown types).
                    Ok(Message::Binary(data)) => frames.extend(RelayFrame::decode(&data).ok()),
                    Ok(Message::Text(_)) => {
                        end = Some(MailboxError::Protocol("a text message".into()));
                        break;
                    }
                    Ok(Message::Close(frame)) => {
                        // Sends tungstenite's close reply (best effort).
                        let _ = ws.flush();
                        end = Some(MailboxError::Closed(
                            frame.map_or(1005, |f| u16::from(f.code)),
                        ));
                        break;
                    }
                    Ok(_) => {} // ping (answered by tungstenite), pong
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        break
                    }
                    Err(
                        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                    ) => {
                        end = Some(MailboxError::Closed(1006));
                        break;
                    }
                    Err(e) => {
                        end = Some(MailboxError::Unreachable(e.to_string()));
                        break;
                    }
                }
            }
        }
        let ended = end.is_some();
        if !frames.is_empty() || ended {
            let mut inbox = lock(&self.inbox);
            inbox.frames.extend(frames);
            if inbox.end.is_none() {
                inbox.end = end;
            }
            drop(inbox);
            self.wakeup.wake();
        }
        !ended
    }

    fn end(&self, why: MailboxError) {
        let mut inbox = lock(&self.inbox);
        if inbox.end.is_none() {
            inbox.end = Some(why);
        }
        drop(inbox);
        self.wakeup.wake();
    }
}

/// The reader thread: blocks on the socket (no timeout: it sleeps while the relay is quiet),
/// feeds what arrives to the websocket. Ends with the connection, or when the owner shuts
/// the socket down.
fn read_loop(shared: &Shared, mut tcp: TcpStream) {
    // First what tungstenite (and rustls) kept from the opening handshake's last read.
    if !shared.feed(&[]) {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => {
                // Whatever arrived before the end was fed already.
                shared.end(MailboxError::Closed(1006));
                return;
            }
            Ok(n) => {
                if !shared.feed(&buf[..n]) {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                shared.end(MailboxError::Unreachable(format!("reading: {e}")));
                return;
            }
        }
    }
}

/// One attached mailbox connection.
pub struct MailboxConn {
    shared: Arc<Shared>,
    pacer: Pacer,
    /// To shut the socket down, which ends the reader thread.
    tcp: TcpStream,
    reader: Option<JoinHandle<()>>,
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

fn socket_error(e: io::Error) -> MailboxError {
    MailboxError::Unreachable(format!("socket: {e}"))
}

impl MailboxConn {
    /// Attaches to `<relay_url>/pair/v1/<mailbox>` with the attach headers. Frames are read
    /// with [`MailboxConn::poll`].
    pub fn open(relay_url: &str, attach: &Attach, timeout: Duration) -> Result<Self, MailboxError> {
        Self::open_with(relay_url, attach, timeout, Wakeup::new())
    }

    /// As [`MailboxConn::open`], raising `wakeup` whenever frames arrive or the connection
    /// ends: the owner waits on `wakeup` (which its other sources raise too) and takes the
    /// frames with [`MailboxConn::try_next`].
    pub fn open_with(
        relay_url: &str,
        attach: &Attach,
        timeout: Duration,
        wakeup: Arc<Wakeup>,
    ) -> Result<Self, MailboxError> {
        let deadline = Instant::now() + timeout;
        let text = attach.url(relay_url);
        let url =
            Url::parse(&text).map_err(|e| MailboxError::Unreachable(format!("{text}: {e}")))?;
        let tcp = connect_tcp(&url, deadline)?;
        let _ = tcp.set_nodelay(true);
        // The opening handshake's reads wait at most the time left.
        let left = deadline.saturating_duration_since(Instant::now());
        tcp.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .and_then(|()| tcp.set_write_timeout(Some(WRITE_TIMEOUT)))
            .map_err(socket_error)?;
        let pipe = Pipe {
            tcp: tcp.try_clone().map_err(socket_error)?,
            inbox: VecDeque::new(),
            attached: false,
        };
        let stream = if url.scheme() == "wss" {
            let host = url.host_str().unwrap_or_default();
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let server_name = ServerName::try_from(name.to_string())
                .map_err(|e| MailboxError::Unreachable(format!("{host}: {e}")))?;
            let tls = tls_config(&[]).map_err(|e| MailboxError::Unreachable(e.describe()))?;
            let connection = ClientConnection::new(tls, server_name)
                .map_err(|e| MailboxError::Unreachable(format!("TLS: {e}")))?;
            WsStream::Tls(Box::new(StreamOwned::new(connection, pipe)))
        } else {
            WsStream::Plain(pipe)
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
        let (mut ws, _response) = loop {
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
        // Attached: from now on the reader thread does the socket's reads, blocking.
        ws.get_mut().pipe().attached = true;
        tcp.set_read_timeout(None).map_err(socket_error)?;
        let shared = Arc::new(Shared {
            ws: Mutex::new(ws),
            inbox: Mutex::new(Inbox::default()),
            wakeup,
        });
        let reader_tcp = tcp.try_clone().map_err(socket_error)?;
        let reader_shared = Arc::clone(&shared);
        let reader = thread::Builder::new()
            .name("pocketkey-relay-read".into())
            .spawn(move || {
                let shared = reader_shared;
                if catch_unwind(AssertUnwindSafe(|| read_loop(&shared, reader_tcp))).is_err() {
                    shared.end(MailboxError::Protocol("the reader failed".into()));
                }
            })
            .map_err(|e| MailboxError::Unreachable(format!("cannot start the reader: {e}")))?;
        Ok(Self {
            shared,
            pacer: Pacer::new(),
            tcp,
            reader: Some(reader),
        })
    }

    /// The next frame that arrived, without waiting. `Ok(None)`: none yet. `Err`: the
    /// connection ended (after every frame that came before the end was taken).
    pub fn try_next(&mut self) -> Result<Option<RelayFrame>, MailboxError> {
        let mut inbox = lock(&self.shared.inbox);
        match inbox.frames.pop_front() {
            Some(frame) => Ok(Some(frame)),
            None => inbox.end.clone().map_or(Ok(None), Err),
        }
    }

    /// The next frame, waiting at most [`POLL`] for one. `Ok(None)`: nothing yet. For loops
    /// with no other source to wait for (with a shared [`Wakeup`], use `try_next`).
    pub fn poll(&mut self) -> Result<Option<RelayFrame>, MailboxError> {
        if let Some(frame) = self.try_next()? {
            return Ok(Some(frame));
        }
        self.shared.wakeup.wait(POLL);
        self.try_next()
    }

    /// Sends one relay frame; beyond a burst of 90 frames, at most 50 a second (see
    /// [`SEND_RATE`]): waits for its turn rather than have the relay drop it.
    pub fn send(&mut self, frame: &RelayFrame) -> Result<(), MailboxError> {
        let wait = self.pacer.reserve(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait);
        }
        lock(&self.shared.ws)
            .send(Message::Binary(frame.encode().into()))
            .map_err(|e| MailboxError::Unreachable(format!("sending: {e}")))
    }

    /// Closes politely (best effort, bounded: waits up to 300 ms for the relay's close frame).
    pub fn close(self) {
        {
            let mut ws = lock(&self.shared.ws);
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }));
            let _ = ws.flush();
        }
        let until = Instant::now() + CLOSE_WAIT;
        while lock(&self.shared.inbox).end.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.shared.wakeup.wait(left);
        }
        // Drop shuts the socket down and joins the reader.
    }
}

impl Drop for MailboxConn {
    fn drop(&mut self) {
        // Wakes the reader's blocking read (it returns 0 or an error) so that it ends.
        let _ = self.tcp.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_lets_a_burst_through_then_keeps_to_the_relays_rate() {
        let mut pacer = Pacer::new();
        let t0 = pacer.at;
        for _ in 0..90 {
            assert_eq!(pacer.reserve(t0), Duration::ZERO);
        }
        // The 91st frame at once waits one interval, the 92nd two.
        let step = 1.0 / SEND_RATE;
        assert!((pacer.reserve(t0).as_secs_f64() - step).abs() < 1e-9);
        assert!((pacer.reserve(t0).as_secs_f64() - 2.0 * step).abs() < 1e-9);
        // Sending at the rate from then on: each frame waits the debt, no more.
        let later = t0 + Duration::from_secs_f64(2.0 * step);
        assert!((pacer.reserve(later).as_secs_f64() - step).abs() < 1e-9);
        // After a quiet second the burst is back.
        let quiet = later + Duration::from_secs(3);
        for _ in 0..90 {
            assert_eq!(pacer.reserve(quiet), Duration::ZERO);
        }
        assert!(!pacer.reserve(quiet).is_zero());
    }
}
