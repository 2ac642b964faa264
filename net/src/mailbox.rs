//! A websocket attached to one pairing-relay mailbox (`docs/pairing-protocol.md` §3), shared by
//! the phone side ([`crate::pairing`]) and the desktop bridge: relay frames over the websocket
//! client ([`crate::ws`]: `ws://` or `wss://`, a reader thread and a [`Wakeup`], no polling), sent
//! at a pace the relay accepts.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pocketkey_core::pairing::mailbox::{Attach, SUBPROTOCOL};
use pocketkey_core::pairing::relay::{RelayFrame, MAX_RELAY_FRAME};
use tungstenite::protocol::frame::coding::CloseCode;
use url::Url;

use crate::tls;
pub use crate::ws::Wakeup;
use crate::ws::{End, Open, OpenError, WsConn};

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

/// Why a mailbox connection failed or ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxError {
    #[error("relay unreachable: {0}")]
    Unreachable(String),
    /// HTTP status of a refused attach (410 revoked mailbox, 429/503 relay busy, ...).
    #[error("relay refused the attach with HTTP {0}")]
    Refused(u16),
    /// The relay closed the websocket (code, 4010 = the pairing was revoked, 4003 = the attach
    /// proof was refused).
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

impl From<OpenError> for MailboxError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Refused(status) => Self::Refused(status),
            OpenError::TimedOut | OpenError::Aborted => Self::TimedOut,
            OpenError::Unreachable(detail)
            | OpenError::Protocol(detail)
            | OpenError::Invalid(detail) => Self::Unreachable(detail),
        }
    }
}

impl From<End> for MailboxError {
    fn from(end: End) -> Self {
        match end {
            End::Closed { code, .. } => Self::Closed(code.unwrap_or(1005)),
            End::Dropped => Self::Closed(1006),
            End::Text => Self::Protocol("a text message".into()),
            End::Lost(detail) | End::Protocol(detail) => Self::Unreachable(detail),
        }
    }
}

/// One attached mailbox connection.
#[derive(Debug)]
pub struct MailboxConn {
    conn: WsConn,
    pacer: Pacer,
    /// The relay's first frame after the attach (normally PEER), read to confirm the attach;
    /// handed out first by [`MailboxConn::try_next`].
    first: Option<RelayFrame>,
}

impl MailboxConn {
    /// Attaches to `<relay_url>/pair/v1/<mailbox>`: the websocket upgrade, then the relay's
    /// CHALLENGE answered with ATTACH (docs/pairing-protocol.md §3.1); returns once the relay
    /// has accepted it (its first frame after ATTACH arrived), so that a refused attach (close
    /// 4003, 4010) is an error here. Frames are read with [`MailboxConn::poll`].
    pub fn open(relay_url: &str, attach: &Attach, timeout: Duration) -> Result<Self, MailboxError> {
        Self::open_with(relay_url, attach, timeout, Wakeup::new())
    }

    /// As [`MailboxConn::open`], raising `wakeup` whenever frames arrive or the connection
    /// ends: the owner waits on `wakeup` (which its other sources raise too) and takes the
    /// frames with [`MailboxConn::try_next`].
    ///
    /// `relay_url` may list several URLs (the nodes of one relay, [`crate::relays`]): each is
    /// tried in turn, `timeout` each, until one attaches; a revoked mailbox is revoked on every
    /// node, so that answer ends the round.
    pub fn open_with(
        relay_url: &str,
        attach: &Attach,
        timeout: Duration,
        wakeup: Arc<Wakeup>,
    ) -> Result<Self, MailboxError> {
        let mut last = MailboxError::Unreachable("no relay URL".into());
        for url in crate::relays::candidates(relay_url) {
            match Self::open_one(url, attach, timeout, Arc::clone(&wakeup)) {
                Ok(conn) => return Ok(conn),
                Err(e) if e.is_revoked() => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn open_one(
        relay_url: &str,
        attach: &Attach,
        timeout: Duration,
        wakeup: Arc<Wakeup>,
    ) -> Result<Self, MailboxError> {
        let deadline = Instant::now() + timeout;
        let text = attach.url(relay_url);
        let url =
            Url::parse(&text).map_err(|e| MailboxError::Unreachable(format!("{text}: {e}")))?;
        let tls = tls::client_config(&[]).map_err(|e| MailboxError::Unreachable(e.to_string()))?;
        let (conn, _response) = WsConn::open(
            &url,
            Open {
                subprotocol: SUBPROTOCOL,
                headers: Vec::new(),
                max_message: MAX_RELAY_FRAME,
                tls,
                deadline,
                write_timeout: WRITE_TIMEOUT,
                abort: None,
                wakeup,
                thread_name: "pocketkey-relay-read",
            },
        )?;
        let mut conn = Self {
            conn,
            pacer: Pacer::new(),
            first: None,
        };
        let nonce = match conn.next_before(deadline)? {
            RelayFrame::Challenge(nonce) => nonce,
            other => {
                return Err(MailboxError::Protocol(format!(
                    "expected CHALLENGE, got frame type {:#04x}",
                    other.frame_type()
                )))
            }
        };
        conn.send(&RelayFrame::Attach(attach.respond(&nonce)))?;
        conn.first = Some(conn.next_before(deadline)?);
        // The waits above may have taken a wake-up the owner's other sources raised.
        conn.conn.wakeup().wake();
        Ok(conn)
    }

    /// The next frame, waiting until `deadline` at most.
    fn next_before(&mut self, deadline: Instant) -> Result<RelayFrame, MailboxError> {
        loop {
            if let Some(frame) = self.try_next()? {
                return Ok(frame);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(MailboxError::TimedOut);
            }
            self.conn.wakeup().wait(left.min(POLL));
        }
    }

    /// The next frame that arrived, without waiting. `Ok(None)`: none yet. `Err`: the
    /// connection ended (after every frame that came before the end was taken).
    pub fn try_next(&mut self) -> Result<Option<RelayFrame>, MailboxError> {
        if let Some(frame) = self.first.take() {
            return Ok(Some(frame));
        }
        while let Some(message) = self.conn.try_next()? {
            // Frames we cannot decode are skipped (clients ignore unknown types).
            if let Ok(frame) = RelayFrame::decode(&message) {
                return Ok(Some(frame));
            }
        }
        Ok(None)
    }

    /// The next frame, waiting at most [`POLL`] for one. `Ok(None)`: nothing yet. For loops
    /// with no other source to wait for (with a shared [`Wakeup`], use `try_next`).
    pub fn poll(&mut self) -> Result<Option<RelayFrame>, MailboxError> {
        if let Some(frame) = self.try_next()? {
            return Ok(Some(frame));
        }
        self.conn.wakeup().wait(POLL);
        self.try_next()
    }

    /// Sends one relay frame; beyond a burst of 90 frames, at most 50 a second (see
    /// [`SEND_RATE`]): waits for its turn rather than have the relay drop it.
    pub fn send(&mut self, frame: &RelayFrame) -> Result<(), MailboxError> {
        let wait = self.pacer.reserve(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait);
        }
        self.conn
            .send(frame.encode())
            .map_err(|e| MailboxError::Unreachable(format!("sending: {e}")))
    }

    /// Closes politely (best effort, bounded: waits up to 300 ms for the relay's close frame).
    pub fn close(self) {
        self.conn.close(CloseCode::Normal, CLOSE_WAIT);
        // Dropping the connection shuts the socket down and joins the reader.
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
