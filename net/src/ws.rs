//! The one websocket client (`ws://`, or `wss://` over rustls: [`crate::tls`]), under the pairing
//! mailbox ([`crate::mailbox`]) and the hybrid tunnel ([`crate::hybrid`]). It carries binary
//! messages and reports how the connection ended; what the messages mean is its users' job.
//!
//! Blocking `tungstenite`, without polling: once open, a reader thread blocks on the socket
//! (no read timeout) and, for every chunk of bytes, hands them to the websocket (and TLS)
//! state under a short lock, queues the complete messages and raises the owner's [`Wakeup`].
//! The owner's loop waits on that one `Wakeup`, which its other sources (an engine's answer,
//! a cancel, the browser's next request) raise too, so it reacts to each of them at once and
//! sleeps while nothing happens. Writes happen on the owner's thread under the same lock,
//! straight to the socket. See `docs/latency.md`.
//!
//! The queue between the reader and the owner is bounded ([`MAX_QUEUED_MESSAGES`],
//! [`MAX_QUEUED_BYTES`]). Both users speak request/response protocols whose owners drain the
//! queue as messages come, so a full queue means a peer flooding faster than that: the reader
//! then stops, sends a close frame (1008, policy violation) and ends the connection with
//! [`End::Protocol`], after the messages already queued. Dropping messages instead would break
//! the Noise counters of both protocols (the session would end anyway, less clearly), and
//! blocking the reader would leave pings and the peer's close unread for as long as the owner
//! is slow, with the flood buffered upstream. The mailbox owner reattaches after such an end;
//! a hybrid session ends (its browser misbehaved).

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

/// Messages the reader queues for the owner at most. The relay lets a bridge burst 100 frames
/// (`docs/pairing-protocol.md` §3.2); a browser sends one request at a time.
pub(crate) const MAX_QUEUED_MESSAGES: usize = 256;
/// Bytes the reader queues for the owner at most (256 relay frames of 16 KiB).
pub(crate) const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

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
    /// The bytes of `messages`.
    bytes: usize,
    end: Option<End>,
}

impl Inbox {
    /// Queues `message`; false (and nothing queued) when the queue is full.
    fn push(&mut self, message: Vec<u8>) -> bool {
        if self.messages.len() >= MAX_QUEUED_MESSAGES
            || self.bytes + message.len() > MAX_QUEUED_BYTES
        {
            return false;
        }
        self.bytes += message.len();
        self.messages.push_back(message);
        true
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let message = self.messages.pop_front()?;
        self.bytes -= message.len();
        Some(message)
    }
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
        let mut overflow = false;
        if !messages.is_empty() || end.is_some() {
            let mut inbox = lock(&self.inbox);
            for message in messages {
                if !inbox.push(message) {
                    overflow = true;
                    // What came after the overflow is not delivered: the end says why.
                    end = Some(End::Protocol(format!(
                        "the peer sent more than {MAX_QUEUED_MESSAGES} messages or \
                         {MAX_QUEUED_BYTES} bytes that were not read yet"
                    )));
                    break;
                }
            }
            if inbox.end.is_none() {
                inbox.end = end.clone();
            }
            drop(inbox);
            self.wakeup.wake();
        }
        if overflow {
            // Tells the peer why (best effort; the owner's end of the connection follows).
            let mut ws = lock(&self.ws);
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: "too many unread messages".into(),
            }));
            let _ = ws.flush();
        }
        end.is_none()
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
        match inbox.pop() {
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

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    /// A websocket server on loopback that sends `first` small binary messages, then one more
    /// each time the test asks, and reports the close frame it gets back.
    #[allow(clippy::result_large_err)] // tungstenite's callback type
    fn flooding_server(first: usize) -> (Url, mpsc::Sender<()>, JoinHandle<Option<u16>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("ws://{}/", listener.local_addr().unwrap())).unwrap();
        let (more, more_rx) = mpsc::channel::<()>();
        let server = thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let echo =
                |_: &tungstenite::handshake::server::Request,
                 mut response: tungstenite::handshake::server::Response| {
                    response
                        .headers_mut()
                        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("test"));
                    Ok(response)
                };
            let mut ws = tungstenite::accept_hdr(tcp, echo).unwrap();
            for i in 0..first {
                ws.send(Message::Binary(vec![i as u8; 8].into())).unwrap();
            }
            while more_rx.recv().is_ok() {
                ws.send(Message::Binary(vec![0xee; 8].into())).unwrap();
            }
            loop {
                match ws.read() {
                    Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
        });
        (url, more, server)
    }

    fn open(url: &Url) -> WsConn {
        let (conn, _) = WsConn::open(
            url,
            Open {
                subprotocol: "test",
                headers: Vec::new(),
                max_message: 1024,
                tls: crate::tls::client_config(&[]).unwrap(),
                deadline: Instant::now() + Duration::from_secs(5),
                write_timeout: Duration::from_secs(5),
                abort: None,
                wakeup: Wakeup::new(),
                thread_name: "ws-test-read",
            },
        )
        .unwrap();
        conn
    }

    /// Waits (on the reader's wakeups, at most 10 s) until `done` holds for the inbox.
    fn wait_for(conn: &WsConn, done: impl Fn(&Inbox) -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if done(&lock(&conn.shared.inbox)) {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            conn.wakeup().wait(left);
        }
    }

    #[test]
    fn a_full_queue_ends_the_connection_with_a_clear_error() {
        let (url, more, server) = flooding_server(MAX_QUEUED_MESSAGES);
        let conn = open(&url);
        // A full queue that nobody reads: every message kept, the connection still open.
        assert!(wait_for(&conn, |inbox| inbox.messages.len() == MAX_QUEUED_MESSAGES));
        assert!(lock(&conn.shared.inbox).end.is_none());
        // One more: the reader ends the connection instead of queueing it.
        more.send(()).unwrap();
        assert!(
            wait_for(&conn, |inbox| inbox.end.is_some()),
            "the connection did not end when the queue overflowed"
        );
        drop(more);
        // The server hears why.
        assert_eq!(server.join().unwrap(), Some(1008));
        // The owner gets every queued message, then the end.
        for i in 0..MAX_QUEUED_MESSAGES {
            assert_eq!(conn.try_next(), Ok(Some(vec![i as u8; 8])));
        }
        match conn.try_next() {
            Err(End::Protocol(why)) => assert!(why.contains("not read yet"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_queue_drained_as_messages_come_never_overflows() {
        let (url, more, server) = flooding_server(0);
        let conn = open(&url);
        for _ in 0..3 * MAX_QUEUED_MESSAGES {
            more.send(()).unwrap();
            assert!(wait_for(&conn, |inbox| !inbox.messages.is_empty()));
            assert_eq!(conn.try_next(), Ok(Some(vec![0xee; 8])));
        }
        assert!(lock(&conn.shared.inbox).end.is_none());
        drop(more);
        conn.close(CloseCode::Normal, Duration::from_secs(1));
        assert_eq!(server.join().unwrap(), Some(1000));
    }
}
