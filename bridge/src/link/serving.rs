//! Serving the paired phone: each attachment of the pairing mailbox runs on `pocketkey_net`'s
//! session [`Driver`]; [`BridgeSide`] is the bridge's event handling on it — the phone's
//! sessions (and a candidate that may replace a live one), the open request sent, cancelled,
//! answered or carried to the next session, and the phone's getInfo and "last seen" stored.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use pocketkey_core::clock::unix_now;
use pocketkey_core::pairing::delivery::REQUEST_LIFETIME;
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::session::is_handshake_frame;
use pocketkey_core::pairing::{Event, PairingRecord, Role, Session, SessionState};
use pocketkey_net::driver::{Driver, Ended, Side, Step};
use pocketkey_net::mailbox::{trace, MailboxConn, MailboxError};

use super::{cancelled_answer, hello, Link, Open, Reply, Stage, CONNECT_TIMEOUT};
use super::{RECONNECT_DELAY, RECONNECT_DELAY_MAX, STOP_CHECK};
use pocketkey_net::relays::Backoff;

impl Link {
    /// One attachment of the pairing mailbox. Ok: stopped, or the phone revoked the pairing
    /// in the session; Err: reconnect (or the relay says the mailbox is gone).
    pub(super) fn serve(&mut self, record: &PairingRecord) -> Result<Ended, MailboxError> {
        let attach = record.mailbox_keys().attach(Role::Bridge);
        let wakeup = Arc::clone(&self.wakeup);
        let relay_url = self
            .config
            .relay_nodes
            .clone()
            .unwrap_or_else(|| record.relay_url.clone());
        let open =
            || MailboxConn::open_with(&relay_url, &attach, CONNECT_TIMEOUT, Arc::clone(&wakeup));
        let mut conn = open();
        let mut backoff = Backoff::new(RECONNECT_DELAY, RECONNECT_DELAY_MAX);
        let mut conn = loop {
            match conn {
                Ok(c) => break c,
                Err(e) if e.is_revoked() => return Err(e),
                Err(e) => {
                    eprintln!("relay: {e}; retrying");
                    self.idle(backoff.next_delay());
                    if self.stop.load(Ordering::SeqCst) {
                        return Ok(Ended::Stopped);
                    }
                    conn = open();
                }
            }
        };
        let stop = Arc::clone(&self.stop);
        let driver = Driver {
            wakeup: &wakeup,
            stop: &stop,
            stop_check: STOP_CHECK,
        };
        let mut side = BridgeSide {
            link: self,
            record,
            session: None,
            candidate: None,
            phone_present: false,
            to_store: Seen::default(),
            revoked: false,
        };
        let ended = driver.run(&mut conn, &mut side);
        if ended.is_ok() {
            conn.close();
        }
        ended
    }

    /// Caches the phone's getInfo; `Some` (to store) if it changed.
    fn new_get_info(&self, info: Vec<u8>) -> Option<Vec<u8>> {
        let mut cached = self.get_info.lock().unwrap_or_else(PoisonError::into_inner);
        if cached.as_ref() == Some(&info) {
            return None;
        }
        *cached = Some(info.clone());
        Some(info)
    }

    /// Stores the phone's getInfo and the time it was last seen, if there is something new.
    fn store_seen(&mut self, record: &PairingRecord, seen: &mut Seen) {
        if let Some(info) = seen.get_info.take() {
            if let Err(e) = self.store.set_peer_get_info(&record.id, &info) {
                eprintln!("cannot store the phone's getInfo: {e}");
            }
        }
        if std::mem::take(&mut seen.now) {
            // A failed write only loses the time shown for the phone.
            let _ = self.store.touch(&record.id, unix_now());
        }
    }

    /// The session ended with a request sent and not answered: it goes to the next session
    /// (waking the phone again) under the same request id, unless the browser cancelled it.
    /// The phone runs a request at most once per id and answers a repeat from memory or
    /// from the run still going (protocol §5.2), so neither a lost answer nor a request that
    /// crossed the phone's `Bye` makes it run twice. It waits for the phone again up to the
    /// phone timeout, and never beyond `REQUEST_LIFETIME` after it came.
    pub(super) fn session_lost(&mut self) {
        let Some(open) = self.request.take_if(|o| o.is_sent()) else {
            return;
        };
        if open.stage == Stage::Cancelled {
            open.finish(cancelled_answer());
        } else {
            let now = Instant::now();
            let deadline = (now + self.config.phone_timeout).min(open.received + REQUEST_LIFETIME);
            self.request = Some(Open {
                stage: Stage::Waiting { woke: false },
                deadline,
                ..open
            });
        }
    }
}

/// What to store about the phone once no request waits.
#[derive(Debug, Default)]
struct Seen {
    /// Its getInfo, when it changed.
    get_info: Option<Vec<u8>>,
    /// A session was established: store "last seen".
    now: bool,
}

/// The bridge's event handling on the [`Driver`], for one attachment.
struct BridgeSide<'a> {
    link: &'a mut Link,
    record: &'a PairingRecord,
    session: Option<Session>,
    /// A new handshake while `session` is established: it replaces `session` only once its
    /// Hello proves a phone with the pairing's key is behind it (protocol §4), so that a
    /// replayed HS1 cannot end a live session.
    candidate: Option<Session>,
    phone_present: bool,
    to_store: Seen,
    /// The phone sent `Revoke` in the established session.
    revoked: bool,
}

impl BridgeSide<'_> {
    fn on_frame(&mut self, frame: RelayFrame, now: Instant) {
        match frame {
            RelayFrame::Peer { present } => {
                if present {
                    trace("bridge.peer");
                }
                self.phone_present = present;
                if !present {
                    self.session = None;
                    self.candidate = None;
                    self.link.session_lost();
                }
            }
            RelayFrame::Data(payload) => self.on_data(&payload, now),
            RelayFrame::WakeResult(_) => trace("bridge.wake_result"),
            _ => {}
        }
    }

    fn on_data(&mut self, payload: &[u8], now: Instant) {
        trace("bridge.rx");
        let handshake = is_handshake_frame(payload);
        let live = self.session.as_ref().is_some_and(Session::is_established);
        // A transport frame while a candidate waits for its Hello: the candidate's if it opens
        // there (then it takes over), else the live session's.
        let mut for_live = true;
        if let (false, Some(c)) = (handshake, self.candidate.as_mut()) {
            if c.receive(payload, now).is_ok() {
                for_live = false;
                if c.is_established() {
                    self.link.session_lost();
                    self.session = self.candidate.take();
                }
            } else {
                self.candidate = None;
            }
        }
        // A handshake frame once our keys are ready (or the session is over) is the phone
        // starting over (protocol §4): a new session takes it — at once, unless the current
        // one is established (then as the candidate).
        let fresh = handshake
            && self
                .session
                .as_ref()
                .is_none_or(|s| s.state() != SessionState::Handshaking);
        if fresh && live {
            self.candidate = self.record.session(hello(&self.link.config.name), now).ok();
            if let Some(c) = self.candidate.as_mut() {
                // A fresh session holds its Hello from the start: this cannot fail.
                let _ = c.hold_hello();
                if let Err(e) = c.receive(payload, now) {
                    eprintln!("session: {e}");
                    self.candidate = None;
                }
            }
            for_live = false;
        } else if fresh {
            self.candidate = None;
            if self.session.is_some() {
                self.link.session_lost();
            }
            self.session = self.record.session(hello(&self.link.config.name), now).ok();
        }
        if let (true, Some(s)) = (for_live, self.session.as_mut()) {
            if let Err(e) = s.receive(payload, now) {
                eprintln!("session: {e}");
            }
        }
    }

    /// The session's turn: the open request sent as soon as the keys are ready, its timers,
    /// its events, the browser's cancel. True when a request went out in this turn.
    fn session_turn(&mut self, now: Instant) -> bool {
        let Some(s) = self.session.as_mut() else {
            return false;
        };
        let mut request_sent = false;
        // As soon as the session's keys are ready: a woken phone finds the request right
        // behind the bridge's HS2 and Hello instead of one round trip later
        // (docs/pairing-protocol.md §5.3). Only the phone that sent HS1 can read it; if that
        // phone never confirms, the request goes to the next session.
        let keys_ready = matches!(s.state(), SessionState::Open { .. });
        if let (Some(open), true) = (self.link.request.as_mut(), keys_ready) {
            if !open.is_sent() {
                let (id, kind) = (open.request_id, open.kind);
                match s.send_request_as(id, kind, open.payload.clone(), None, now) {
                    Ok(_) => {
                        open.stage = Stage::Sent;
                        request_sent = true;
                    }
                    Err(e) => eprintln!("cannot send the request: {e}"),
                }
            }
        }
        if s.poll_timeout().is_some_and(|t| now >= t) {
            s.handle_timeout(now);
        }
        while let Some(event) = self.session.as_mut().and_then(Session::poll_event) {
            match event {
                Event::Established(e) => {
                    trace("bridge.established");
                    if let Some(info) = e.peer_get_info {
                        self.to_store.get_info = self.link.new_get_info(info);
                    }
                    self.to_store.now = true;
                }
                Event::GetInfo(info) => self.to_store.get_info = self.link.new_get_info(info),
                Event::Pending { status, .. } => {
                    if let Some(open) = self.link.request.as_ref() {
                        // A transport worker that gave up gets the answer dropped as well.
                        let _ = open.reply.send(Reply::Pending(status));
                    }
                }
                Event::CtapResponse { payload, .. } => {
                    trace("bridge.response");
                    if let Some(open) = self.link.request.take() {
                        open.finish(payload);
                    }
                }
                Event::TimedOut(_) => {
                    eprintln!("the phone went silent");
                    self.link.session_lost();
                }
                Event::Revoked => self.revoked = true,
                _ => {}
            }
        }
        if std::mem::take(&mut self.link.cancel_wanted) {
            if let (Some(open), Some(s)) = (
                self.link.request.as_mut().filter(|o| o.is_sent()),
                self.session.as_mut(),
            ) {
                open.stage = Stage::Cancelled;
                // Fails only when the session has no request in flight: nothing to cancel.
                let _ = s.cancel();
            }
        }
        request_sent
    }
}

impl Side<MailboxConn> for BridgeSide<'_> {
    type Outcome = Ended;

    fn sessions(&mut self) -> Vec<&mut Session> {
        // The candidate's frames first, as they were produced first in the turn.
        self.candidate
            .iter_mut()
            .chain(self.session.iter_mut())
            .collect()
    }

    fn before_read(&mut self, now: Instant) {
        self.link.take_requests(now);
    }

    fn lost(&mut self, _error: &MailboxError) {
        self.link.session_lost();
        self.link.store_seen(self.record, &mut self.to_store);
    }

    fn turn(
        &mut self,
        frame: Option<RelayFrame>,
        now: Instant,
        conn: &mut MailboxConn,
    ) -> Result<Step<Ended>, MailboxError> {
        if let Some(frame) = frame {
            self.on_frame(frame, now);
        }
        // Wake a sleeping phone for a waiting request.
        if let Some(open) = self.link.request.as_mut() {
            if open.stage == (Stage::Waiting { woke: false }) && !self.phone_present {
                open.stage = Stage::Waiting { woke: true };
                trace("bridge.wake");
                // A relay that cannot take it fails the next read: the loop reconnects.
                let _ = conn.send(&RelayFrame::Wake);
            }
        }
        if let Some(c) = self.candidate.as_mut() {
            if c.poll_timeout().is_some_and(|t| now >= t) {
                c.handle_timeout(now);
            }
        }
        if self.session_turn(now) {
            trace("bridge.send"); // before the write: the phone may read it before we return
        }
        Ok(Step::Continue)
    }

    fn send_failed(&mut self, _error: MailboxError) -> Result<(), MailboxError> {
        // A relay that cannot take a frame fails the next read as well: the loop reconnects
        // there, after the session's bookkeeping.
        Ok(())
    }

    fn after_flush(
        &mut self,
        _now: Instant,
        _conn: &mut MailboxConn,
    ) -> Result<Step<Ended>, MailboxError> {
        if self.candidate.as_ref().is_some_and(Session::is_finished) {
            self.candidate = None;
        }
        if self.revoked {
            return Ok(Step::End(Ended::Revoked));
        }
        if self.session.as_ref().is_some_and(Session::is_finished) {
            self.session = None;
            self.link.session_lost();
        }
        // Store writes take milliseconds: not while a request waits (a woken phone's request
        // leaves right behind the session's establishment).
        if self.link.request.is_none() {
            self.link.store_seen(self.record, &mut self.to_store);
        }
        Ok(Step::Continue)
    }

    fn deadline(&self, _now: Instant) -> Option<Instant> {
        self.link.waiting_deadline()
    }

    fn stopping(&mut self) {
        if let Some(s) = self.session.as_mut() {
            // Fails only when the session is over already: nothing to say goodbye to.
            let _ = s.bye();
        }
    }

    fn stopped(&mut self, _conn: &mut MailboxConn) -> Ended {
        self.link.store_seen(self.record, &mut self.to_store);
        Ended::Stopped
    }
}
