//! The runtime's one websocket client (`ws://`, or `wss://` over rustls), under the pairing
//! mailbox ([`super::pairing_ws`]) and the hybrid tunnel ([`super::tunnel`]). It carries binary
//! messages and reports how the connection ended; what the messages mean is its users' job.
//!
//! Blocking `tungstenite`, without polling: once open, a reader thread blocks on the socket
//! (no read timeout) and, for every chunk of bytes, hands them to the websocket (and TLS)
//! state under a short lock, queues the complete messages and raises the owner's [`Wakeup`].
//! The owner's loop waits on that one `Wakeup`, which its other sources (an engine's answer,
//! a cancel, the browser's next request) raise too, so it reacts to each of them at once and
//! sleeps while nothing happens. Writes happen on the owner's thread under the same lock,
//! straight to the socket. See `docs/latency.md`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Response;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};
use url::Url;

/// While opening with an [`Open::abort`] check, how often a read waiting for the server stops
/// to look at it.
const ABORT_CHECK: Duration = Duration::from_millis(20);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wakes a loop that waits for several sources at once (a connection's messages and whatever
/// else its owner feeds it): each source queues its item, then calls [`Wakeup::wake`]; the
/// loop drains every source, then calls [`Wakeup::wait`]. A wake that comes between the drain
/// and the wait is kept, so none is lost.
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

/// Why opening failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// DNS, TCP, TLS or the socket failed before the server answered.
    Unreachable(String),
    /// The server answered with this HTTP status instead of upgrading.
    Refused(u16),
    /// The server broke the websocket handshake.
    Protocol(String),
    /// The URL or a header cannot make a request.
    Invalid(String),
    TimedOut,
    /// [`Open::abort`] said so.
    Aborted,
}

/// How an open connection ended (after the messages that came before the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The server's close frame: its code (`None` without one) and reason.
    Closed { code: Option<u16>, reason: String },
    /// The connection ended without a close frame.
    Dropped,
    /// A socket, TLS or other failure (its description).
    Lost(String),
    /// A text message, where only binary ones are expected.
    Text,
    /// The server broke the websocket protocol (a bad or oversized frame).
    Protocol(String),
}

/// How to open a connection.
pub(crate) struct Open<'a> {
    /// Sent as `Sec-WebSocket-Protocol`.
    pub(crate) subprotocol: &'static str,
    /// Further request headers.
    pub(crate) headers: Vec<(&'static str, HeaderValue)>,
    /// Largest message (and frame) accepted.
    pub(crate) max_message: usize,
    /// For `wss://`.
    pub(crate) tls: Arc<ClientConfig>,
    /// Opening (TCP, TLS, upgrade) gives up then.
    pub(crate) deadline: Instant,
    /// How long one write may block (a server that stopped reading).
    pub(crate) write_timeout: Duration,
    /// Checked while waiting for the server during the opening; true gives up.
    pub(crate) abort: Option<&'a dyn Fn() -> bool>,
    /// Raised whenever messages arrive or the connection ends.
    pub(crate) wakeup: Arc<Wakeup>,
    /// The reader thread's name.
    pub(crate) thread_name: &'static str,
}

/// The socket as tungstenite (through rustls for `wss://`) sees it. During the opening
/// handshake reads go to the socket (with a timeout); once open they come from the bytes the
/// reader thread took off the socket, `WouldBlock` when there are none (tungstenite and rustls
/// keep partial frames and records for the next bytes). Writes go to the socket.
struct Pipe {
    tcp: TcpStream,
    inbox: VecDeque<u8>,
    open: bool,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.open {
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
enum Stream {
    Plain(Pipe),
    Tls(Box<StreamOwned<ClientConnection, Pipe>>),
}

impl Stream {
    fn pipe(&mut self) -> &mut Pipe {
        match self {
            Self::Plain(p) => p,
            Self::Tls(s) => &mut s.sock,
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

/// What the reader thread hands the owner.
#[derive(Default)]
struct Inbox {
    messages: VecDeque<Vec<u8>>,
    end: Option<End>,
}

struct Shared {
    ws: Mutex<WebSocket<Stream>>,
    inbox: Mutex<Inbox>,
    wakeup: Arc<Wakeup>,
}

impl Shared {
    /// Feeds `bytes` to the websocket, queues every complete message, wakes the owner. False
    /// once the connection ended.
    fn feed(&self, bytes: &[u8]) -> bool {
        let mut messages = Vec::new();
        let mut end = None;
        {
            let mut ws = lock(&self.ws);
            ws.get_mut().pipe().inbox.extend(bytes);
            while end.is_none() {
                match ws.read() {
                    Ok(Message::Binary(data)) => messages.push(data.to_vec()),
                    Ok(Message::Text(_)) => end = Some(End::Text),
                    Ok(Message::Close(frame)) => {
                        // Sends tungstenite's close reply (best effort).
                        let _ = ws.flush();
                        end = Some(match frame {
                            Some(f) => End::Closed {
                                code: Some(u16::from(f.code)),
                                reason: f.reason.to_string(),
                            },
                            None => End::Closed {
                                code: None,
                                reason: String::new(),
                            },
                        });
                    }
                    Ok(_) => {} // ping (answered by tungstenite), pong
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        break
                    }
                    Err(
                        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                    ) => end = Some(End::Dropped),
                    Err(
                        e @ (tungstenite::Error::Capacity(_) | tungstenite::Error::Protocol(_)),
                    ) => {
                        end = Some(End::Protocol(e.to_string()));
                    }
                    Err(e) => end = Some(End::Lost(e.to_string())),
                }
            }
        }
        let ended = end.is_some();
        if !messages.is_empty() || ended {
            let mut inbox = lock(&self.inbox);
            inbox.messages.extend(messages);
            if inbox.end.is_none() {
                inbox.end = end;
            }
            drop(inbox);
            self.wakeup.wake();
        }
        !ended
    }

    fn end(&self, why: End) {
        let mut inbox = lock(&self.inbox);
        if inbox.end.is_none() {
            inbox.end = Some(why);
        }
        drop(inbox);
        self.wakeup.wake();
    }
}

/// The reader thread: blocks on the socket (no timeout: it sleeps while the server is quiet),
/// feeds what arrives to the websocket. Ends with the connection, or when the owner shuts the
/// socket down.
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
                shared.end(End::Dropped);
                return;
            }
            Ok(n) => {
                if !shared.feed(&buf[..n]) {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                shared.end(End::Lost(format!("reading: {e}")));
                return;
            }
        }
    }
}

fn connect_tcp(url: &Url, deadline: Instant) -> Result<TcpStream, OpenError> {
    let host = url.host_str().unwrap_or_default();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| OpenError::Unreachable(format!("no port for {host}")))?;
    // IPv6 literals come bracketed from the URL.
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (name, port)
        .to_socket_addrs()
        .map_err(|e| OpenError::Unreachable(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = format!("{host} has no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OpenError::TimedOut);
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(OpenError::Unreachable(last))
}

fn socket_error(e: io::Error) -> OpenError {
    OpenError::Unreachable(format!("socket: {e}"))
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn handshake_error(e: tungstenite::Error) -> OpenError {
    match e {
        tungstenite::Error::Http(response) => OpenError::Refused(response.status().as_u16()),
        tungstenite::Error::Io(e) if timed_out(&e) => OpenError::TimedOut,
        tungstenite::Error::Io(e) => OpenError::Unreachable(e.to_string()),
        tungstenite::Error::Protocol(e) => OpenError::Protocol(e.to_string()),
        tungstenite::Error::Url(e) => OpenError::Invalid(e.to_string()),
        other => OpenError::Unreachable(other.to_string()),
    }
}

/// One open websocket.
pub(crate) struct WsConn {
    shared: Arc<Shared>,
    /// To shut the socket down, which ends the reader thread.
    tcp: TcpStream,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConn").finish_non_exhaustive()
    }
}

impl WsConn {
    /// Connects (every address `url`'s host resolves to, in turn), upgrades, starts the reader
    /// thread. Returns the connection and the server's upgrade response (its headers).
    pub(crate) fn open(url: &Url, open: Open<'_>) -> Result<(Self, Response), OpenError> {
        let Open {
            subprotocol,
            headers,
            max_message,
            tls,
            deadline,
            write_timeout,
            abort,
            wakeup,
            thread_name,
        } = open;
        let tcp = connect_tcp(url, deadline)?;
        let _ = tcp.set_nodelay(true);
        // Handshake reads wait for the time left, or a short while between abort checks.
        let left = deadline.saturating_duration_since(Instant::now());
        let slice = if abort.is_some() {
            left.min(ABORT_CHECK)
        } else {
            left
        };
        tcp.set_read_timeout(Some(slice.max(Duration::from_millis(1))))
            .and_then(|()| tcp.set_write_timeout(Some(write_timeout)))
            .map_err(socket_error)?;
        let pipe = Pipe {
            tcp: tcp.try_clone().map_err(socket_error)?,
            inbox: VecDeque::new(),
            open: false,
        };
        let stream = if url.scheme() == "wss" {
            let host = url.host_str().unwrap_or_default();
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let server_name = ServerName::try_from(name.to_string()).map_err(|e| {
                OpenError::Unreachable(format!("{host} is not a TLS server name: {e}"))
            })?;
            let connection = ClientConnection::new(tls, server_name)
                .map_err(|e| OpenError::Unreachable(format!("TLS: {e}")))?;
            Stream::Tls(Box::new(StreamOwned::new(connection, pipe)))
        } else {
            Stream::Plain(pipe)
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| OpenError::Invalid(e.to_string()))?;
        let request_headers = request.headers_mut();
        request_headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(subprotocol),
        );
        for (name, value) in headers {
            request_headers.insert(name, value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let mut attempt = tungstenite::client::client_with_config(request, stream, Some(config));
        let (mut ws, response) = loop {
            match attempt {
                Ok(done) => break done,
                Err(HandshakeError::Interrupted(mid)) => {
                    if abort.is_some_and(|abort| abort()) {
                        return Err(OpenError::Aborted);
                    }
                    if Instant::now() >= deadline {
                        return Err(OpenError::TimedOut);
                    }
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(handshake_error(e)),
            }
        };
        // Open: from now on the reader thread does the socket's reads, blocking.
        ws.get_mut().pipe().open = true;
        tcp.set_read_timeout(None).map_err(socket_error)?;
        let shared = Arc::new(Shared {
            ws: Mutex::new(ws),
            inbox: Mutex::new(Inbox::default()),
            wakeup,
        });
        let reader_tcp = tcp.try_clone().map_err(socket_error)?;
        let reader_shared = Arc::clone(&shared);
        let reader = thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                let shared = reader_shared;
                if catch_unwind(AssertUnwindSafe(|| read_loop(&shared, reader_tcp))).is_err() {
                    shared.end(End::Lost("the reader failed".into()));
                }
            })
            .map_err(|e| OpenError::Unreachable(format!("cannot start the reader: {e}")))?;
        let conn = Self {
            shared,
            tcp,
            reader: Some(reader),
        };
        Ok((conn, response))
    }

    /// The `Wakeup` the reader raises.
    pub(crate) fn wakeup(&self) -> &Arc<Wakeup> {
        &self.shared.wakeup
    }

    /// The next message that arrived, without waiting. `Ok(None)`: none yet. `Err`: the
    /// connection ended (after every message that came before the end was taken).
    pub(crate) fn try_next(&self) -> Result<Option<Vec<u8>>, End> {
        let mut inbox = lock(&self.shared.inbox);
        match inbox.messages.pop_front() {
            Some(message) => Ok(Some(message)),
            None => inbox.end.clone().map_or(Ok(None), Err),
        }
    }

    /// Sends one binary message (blocking at most the write timeout).
    pub(crate) fn send(&self, message: Vec<u8>) -> Result<(), tungstenite::Error> {
        lock(&self.shared.ws).send(Message::Binary(message.into()))
    }

    /// Closes politely (best effort): sends a close frame, then waits up to `wait` for the
    /// server's. Dropping the connection then shuts it down.
    pub(crate) fn close(&self, code: CloseCode, wait: Duration) {
        {
            let mut ws = lock(&self.shared.ws);
            if ws
                .close(Some(CloseFrame {
                    code,
                    reason: "".into(),
                }))
                .is_err()
            {
                return;
            }
            let _ = ws.flush();
        }
        let until = Instant::now() + wait;
        while lock(&self.shared.inbox).end.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.shared.wakeup.wait(left);
        }
    }
}

impl Drop for WsConn {
    fn drop(&mut self) {
        // Wakes the reader's blocking read (it returns 0 or an error) so that it ends.
        let _ = self.tcp.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
