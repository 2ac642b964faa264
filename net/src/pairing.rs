//! The phone side of pairing with a computer (`docs/pairing-protocol.md`), around the sans-IO
//! `pocketkey_core::pairing`:
//!
//! - [`pair`]: a scanned `pocketkey://pair?…` URL → attach the rendezvous mailbox, run the
//!   first-contact handshake (XKpsk3), store the record once the bridge's `Hello` arrived;
//! - [`serve_pairing`] / [`listen`]: attach each pairing's mailbox, run a KK session each time
//!   the relay says the bridge is present, hand CTAP requests to the engine (on a worker
//!   thread, so the relay is still read and `Pending` keeps flowing while the user is asked),
//!   with the requester = the stored computer name.
//!
//! Blocking, one thread per mailbox; no async runtime. The serving loop waits on one
//! [`Wakeup`] that the relay's frames and the engine's answer both raise, so it reacts to
//! either at once (`docs/latency.md`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use p256::SecretKey;
use pocketkey_core::approver::Requester;
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::engine::{Engine, RequestContext, RequestKind, Worker};
use pocketkey_core::pairing::delivery::{Delivery, RequestLog};
use pocketkey_core::pairing::mailbox::MailboxKeys;
use pocketkey_core::pairing::relay::{frame_type, PushTarget, RelayErrorCode, RelayFrame, WakeId};
use pocketkey_core::pairing::session::{
    is_handshake_frame, CONFIRMATION_TIMEOUT, HANDSHAKE_TIMEOUT,
};
use pocketkey_core::pairing::{
    ConfirmationCode, CtapRequest, Event, Hello, PairingRecord, PairingStore, PairingUrl,
    PendingStatus, RequestId, Role, Session, SessionState, UrlPolicy,
};
use rand_core::OsRng;

use crate::driver::{flush_now, Driver, Ended, Side, Step};
use crate::mailbox::{trace, MailboxConn, MailboxError, Wakeup};
use crate::org::jobs::printable;
use crate::relays::Backoff;

/// How long connecting to the relay may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between reconnect attempts of a served mailbox: the first (jittered, 0.5–1 s), then
/// doubling up to the most.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(30);
/// The longest a serving loop sleeps: how soon it sees `stop` raised (a flag, which cannot
/// wake it). Frames and the engine's answers wake it at once.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// While the engine works on a request and has not asked the user yet, how often the loop
/// looks whether it has (`Pending` status 2; the engine cannot signal it).
const USER_CHECK: Duration = Duration::from_millis(10);
/// How long after a session's establishment its "last seen" is stored, once no request runs:
/// a store write takes milliseconds (a disk sync), and a woken phone's request comes right
/// behind the establishment (its engine writes too).
const TOUCH_DELAY: Duration = Duration::from_secs(1);
/// How long a connection that ends waits for the ACK of the push registration it sends on its
/// way out.
const REGISTER_ACK_WAIT: Duration = Duration::from_secs(2);

/// Why pairing or serving failed.
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    #[error("not a valid pairing code: {0}")]
    InvalidUrl(String),
    #[error(transparent)]
    Relay(#[from] MailboxError),
    #[error("the computer did not answer in time (is its pairing tool still showing this code?)")]
    TimedOut,
    #[error("pairing failed: {0}")]
    Handshake(String),
    /// The computer's user did not confirm the code (or did not answer in time); nothing was
    /// stored on either side.
    #[error("the computer refused the pairing: it was not confirmed there")]
    NotConfirmed,
    #[error("pairing store: {0}")]
    Store(String),
    /// The relay answered ERROR (docs/pairing-protocol.md §3.2). `code` is the byte it sent
    /// (a [`RelayErrorCode`] when this phone knows it): `bad_push_target` means the same frame
    /// will be refused again, `unavailable` and the others that it may pass later. `message`
    /// is the relay's text, unfiltered; the error's text shows it through [`printable`], so
    /// a relay cannot write control sequences into a terminal or fake a second line.
    #[error("the relay answered ERROR {code}: {}", printable(.message))]
    RelayRefused { code: u8, message: String },
}

impl PairingError {
    /// The relay's ERROR code, when it answered one this phone knows.
    pub fn relay_code(&self) -> Option<RelayErrorCode> {
        match self {
            Self::RelayRefused { code, .. } => RelayErrorCode::from_byte(*code),
            _ => None,
        }
    }
}

pub use pocketkey_core::clock::unix_now;

fn hello(name: &str, engine: &dyn Engine) -> Hello {
    Hello {
        name: name.to_string(),
        // An engine that cannot answer getInfo sends an empty one (the bridge then has none
        // to give the browser).
        get_info: Some(engine.get_info().unwrap_or_default()),
    }
}

/// [`pair_showing_code`] for callers that show no code (tests whose bridge confirms by
/// itself).
pub fn pair(
    url_text: &str,
    policy: UrlPolicy,
    phone_name: &str,
    engine: &dyn Engine,
    store: &Mutex<PairingStore>,
) -> Result<PairingRecord, PairingError> {
    pair_showing_code(url_text, policy, phone_name, engine, store, &mut |_| {})
}

/// Pairs with the computer whose pairing URL was scanned; stores and returns the record.
/// `phone_name` is what the computer will show (1..=64 bytes). `show_code` gets the
/// confirmation code as soon as the handshake is done: the computer asks its user to compare
/// it before it completes the pairing. Blocks up to `HANDSHAKE_TIMEOUT` after the bridge is
/// found at the relay, and then up to `CONFIRMATION_TIMEOUT` + `HANDSHAKE_TIMEOUT` for the
/// computer's confirmation.
pub fn pair_showing_code(
    url_text: &str,
    policy: UrlPolicy,
    phone_name: &str,
    engine: &dyn Engine,
    store: &Mutex<PairingStore>,
    show_code: &mut dyn FnMut(ConfirmationCode),
) -> Result<PairingRecord, PairingError> {
    let url = PairingUrl::parse_with(url_text.trim(), policy)
        .map_err(|e| PairingError::InvalidUrl(e.to_string()))?;
    let keys = MailboxKeys::rendezvous(&url.bridge_key, &url.secret);
    let mut conn = MailboxConn::open(&url.relay_url, &keys.attach(Role::Phone), CONNECT_TIMEOUT)?;
    let mut deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut session: Option<Session> = None;
    let result = loop {
        if Instant::now() >= deadline {
            break Err(PairingError::TimedOut);
        }
        let frame = match conn.poll() {
            Ok(f) => f,
            Err(e) => break Err(e.into()),
        };
        let now = Instant::now();
        match frame {
            Some(RelayFrame::Peer { present: true }) if session.is_none() => {
                let s = Session::phone_first_contact(
                    &url,
                    SecretKey::random(&mut OsRng),
                    hello(phone_name, engine),
                    now,
                )
                .map_err(|e| PairingError::Handshake(e.to_string()))?;
                session = Some(s);
            }
            Some(RelayFrame::Data(payload)) => {
                if let Some(s) = session.as_mut() {
                    if let Err(e) = s.receive(&payload, now) {
                        break Err(PairingError::Handshake(e.to_string()));
                    }
                }
            }
            // The bridge left mid-handshake: it refused our first message (used or altered
            // code) and burned its offer.
            Some(RelayFrame::Peer { present: false }) if session.is_some() => {
                break Err(PairingError::Handshake(
                    "the computer refused the pairing (code already used or altered?)".into(),
                ));
            }
            _ => {}
        }
        let Some(s) = session.as_mut() else { continue };
        if s.poll_timeout().is_some_and(|t| now >= t) {
            s.handle_timeout(now);
        }
        let mut done = None;
        let mut refused = false;
        while let Some(event) = s.poll_event() {
            match event {
                Event::ShowCode(code) => {
                    // The computer's user now compares the code: wait for the answer.
                    deadline = now + CONFIRMATION_TIMEOUT + HANDSHAKE_TIMEOUT;
                    show_code(code);
                }
                Event::Established(e) => {
                    if let Some(new) = e.new_pairing {
                        done = Some(PairingRecord::from_new(new, unix_now()));
                    }
                }
                Event::Refused => refused = true,
                Event::TimedOut(_) => done = None,
                _ => {}
            }
        }
        if refused {
            break Err(PairingError::NotConfirmed);
        }
        if let Some(record) = done {
            let stored = store
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(&record)
                .map_err(|e| PairingError::Store(e.to_string()));
            let _ = s.bye();
            let _ = flush_now(s, &mut conn);
            break stored.map(|()| record);
        }
        if s.is_finished() {
            break Err(PairingError::Handshake(
                "the computer refused the handshake (code already used or altered?)".into(),
            ));
        }
        if let Err(e) = flush_now(s, &mut conn) {
            break Err(e.into());
        }
    };
    conn.close();
    result
}

/// What a served mailbox reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeEvent {
    Attached,
    Established,
    Request {
        kind: RequestKind,
        command: u8,
    },
    Answered {
        status: u8,
    },
    /// The pairing was revoked: by the computer in a session (its `Revoke`, authenticated by
    /// the pairing's keys), or by this phone's user (the relay confirmed the deletion). The
    /// record was forgotten.
    Revoked,
    /// The relay said the pairing's mailbox was deleted (410 / close 4010) and this phone did
    /// not revoke it. The relay cannot prove that the computer did, so the record and its
    /// keys stay; the pairing is marked suspended and not served until the user resumes it
    /// (`SecurityKey::resume_pairing`, `pocketkey resume`) or removes it
    /// (docs/pairing-protocol.md §3.4).
    Suspended,
    Disconnected(String),
}

/// One request running on the engine's worker. It outlives the session it came in (the
/// bridge sends it again in the next one, and that session's request attaches to it).
struct Running {
    request_id: RequestId,
    /// The id of the request in the current session that waits for this run's answer.
    waiting: Option<u32>,
    cancel: CancelToken,
    answer: Receiver<Vec<u8>>,
    status: PendingStatus,
}

/// The engine as a pairing's worker runs it: the trace marks when the worker takes a request
/// up and when the engine is done with it (`docs/latency.md`).
struct Traced<'a>(&'a dyn Engine);

impl Engine for Traced<'_> {
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        trace("phone.engine.start");
        let answer = self.0.process(kind, payload, cx);
        trace("phone.engine.end");
        answer
    }
}

/// Serves one pairing until `stop` is raised or the pairing is revoked: attaches its mailbox
/// (reattaching after a drop), runs a KK session each time the bridge is present.
pub fn serve_pairing(
    record: PairingRecord,
    phone_name: &str,
    engine: Arc<dyn Engine>,
    store: Arc<Mutex<PairingStore>>,
    stop: Arc<AtomicBool>,
    on_event: &(dyn Fn(&PairingRecord, ServeEvent) + Sync),
) {
    let attach = record.mailbox_keys().attach(Role::Phone);
    let wakeup = Wakeup::new();
    // The last request of this pairing: kept across reconnects (protocol §5.2, at most once).
    let log = Mutex::new(RequestLog::new());
    let mut backoff = Backoff::new(RECONNECT_DELAY, RECONNECT_DELAY_MAX);
    while !stop.load(Ordering::SeqCst) {
        trace("phone.attach");
        let opened = MailboxConn::open_with(
            &record.relay_url,
            &attach,
            CONNECT_TIMEOUT,
            Arc::clone(&wakeup),
        );
        let mut conn = match opened {
            Ok(c) => {
                trace("phone.attached");
                backoff.reset();
                c
            }
            Err(e) if e.is_revoked() => {
                on_event(&record, relay_says_gone(&store, &record));
                return;
            }
            Err(e) => {
                on_event(&record, ServeEvent::Disconnected(e.to_string()));
                sleep_unless(&stop, backoff.next_delay());
                continue;
            }
        };
        on_event(&record, ServeEvent::Attached);
        match serve_connection(
            &mut conn, &wakeup, &record, phone_name, &*engine, &store, &log, &stop, on_event,
        ) {
            Ok(Ended::Revoked) => {
                on_event(&record, ServeEvent::Revoked);
                conn.close();
                return;
            }
            Ok(Ended::Stopped) => {
                conn.close();
                return;
            }
            Err(e) if e.is_revoked() => {
                on_event(&record, relay_says_gone(&store, &record));
                return;
            }
            Err(e) => {
                on_event(&record, ServeEvent::Disconnected(e.to_string()));
                sleep_unless(&stop, backoff.next_delay());
            }
        }
    }
}

/// Each attach of a pairing that has a push target registers it again with a new wake id
/// (docs/pairing-protocol.md §3.3), so that the pushes of two sessions of one pairing carry
/// different ids. Returns the id sent, whose ACK the connection's loop waits for. Called off
/// the request's path ([`TOUCH_DELAY`] after the attach with no request running, or on the
/// way out): it writes the store (a disk sync).
fn register_again(
    store: &Mutex<PairingStore>,
    record: &PairingRecord,
    conn: &mut MailboxConn,
) -> Option<WakeId> {
    let lock = || store.lock().unwrap_or_else(PoisonError::into_inner);
    let target = lock().push_target(&record.id).ok().flatten()?;
    let target = PushTarget {
        wake: WakeId::random(),
        ..target
    };
    lock().push_registering(&record.id, &target).ok()?;
    conn.send(&RelayFrame::PushRegister(target.clone())).ok()?;
    Some(target.wake)
}

/// The relay ACKed the registration of `wake`: the wake id before it is no longer accepted.
fn push_registered(store: &Mutex<PairingStore>, record: &PairingRecord, wake: &WakeId) {
    let _ = store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_registered(&record.id, wake);
}

/// As the connection ends: waits a little for the ACK of the registration of `wake` (nothing
/// else is read any more). Without it the id before stays accepted until a later ACK.
fn await_registered(
    store: &Mutex<PairingStore>,
    record: &PairingRecord,
    conn: &mut MailboxConn,
    wake: WakeId,
) {
    let until = Instant::now() + REGISTER_ACK_WAIT;
    while Instant::now() < until {
        match conn.poll() {
            Ok(Some(RelayFrame::Ack(frame_type::PUSH_REGISTER))) => {
                return push_registered(store, record, &wake);
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let until = Instant::now() + total;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(50));
    }
}

/// The relay answered 410 or closed with 4010 for `record`'s mailbox. If this phone revoked
/// the pairing (`revoked_at`), that is its own DELETE arriving: the record goes. Otherwise
/// nothing proves the computer revoked it (the relay can say so of any mailbox): suspended.
fn relay_says_gone(store: &Mutex<PairingStore>, record: &PairingRecord) -> ServeEvent {
    let store = store.lock().unwrap_or_else(PoisonError::into_inner);
    match store.get(&record.id) {
        Ok(Some(current)) if current.revoked_at.is_none() => {
            let _ = store.suspend(&record.id, unix_now());
            ServeEvent::Suspended
        }
        _ => {
            let _ = store.forget(&record.id);
            ServeEvent::Revoked
        }
    }
}

fn forget(store: &Mutex<PairingStore>, record: &PairingRecord) {
    let _ = store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .forget(&record.id);
}

/// When this phone's user revoked `record` (maybe in another process, whose DELETE did not
/// reach the relay): says so to the computer in the established session `s`, then sends
/// DELETE on the same connection, so that the relay routes the `Revoke` before it closes the
/// computer's connection with 4010. The computer deletes its record only on this `Revoke`,
/// which the pairing's keys authenticate; on the relay's 410 / 4010 alone it suspends it
/// (protocol §3.4). The relay's close then ends this connection, and the record is forgotten
/// as for any revocation the relay confirmed. True when it did (the session is over).
fn told_revoked_here(
    s: &mut Session,
    conn: &mut MailboxConn,
    store: &Mutex<PairingStore>,
    record: &PairingRecord,
) -> Result<bool, MailboxError> {
    let revoked = matches!(
        store.lock().unwrap_or_else(PoisonError::into_inner).get(&record.id),
        Ok(Some(current)) if current.revoked_at.is_some()
    );
    if revoked && s.revoke().is_ok() {
        flush_now(s, conn)?;
        conn.send(&RelayFrame::Delete)?;
        return Ok(true);
    }
    Ok(false)
}

/// `record` as stored now; `None` once it is revoked or forgotten. A store that cannot be
/// read leaves `record` as it was (a session already runs on its keys).
fn live_record(store: &Mutex<PairingStore>, record: &PairingRecord) -> Option<PairingRecord> {
    match store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&record.id)
    {
        Ok(Some(current)) => current.revoked_at.is_none().then_some(current),
        Ok(None) => None,
        Err(_) => Some(record.clone()),
    }
}

/// One attachment of a pairing's mailbox: [`PhoneSide`] on the [`Driver`], with the engine's
/// worker running beside it.
#[allow(clippy::too_many_arguments)]
fn serve_connection(
    conn: &mut MailboxConn,
    wakeup: &Arc<Wakeup>,
    record: &PairingRecord,
    phone_name: &str,
    engine: &dyn Engine,
    store: &Arc<Mutex<PairingStore>>,
    log: &Mutex<RequestLog>,
    stop: &AtomicBool,
    on_event: &(dyn Fn(&PairingRecord, ServeEvent) + Sync),
) -> Result<Ended, MailboxError> {
    let driver = Driver {
        wakeup,
        stop,
        stop_check: STOP_CHECK,
    };
    let traced = Traced(engine);
    let (result, touch_at) = thread::scope(|scope| {
        // One worker per connection, started with it and waiting for requests (a woken thread
        // gets a CPU sooner than a new one), so that the relay is still read while the engine
        // asks the user; the scope's end waits for its run. A panicking engine answers
        // CTAP1_ERR_OTHER / SW_UNKNOWN and the worker goes on. Failing to start a thread is
        // as fatal here as in `thread::scope`'s own spawn.
        let worker = Worker::spawn_scoped(scope, "pocketkey-pairing-engine", &traced)
            .expect("cannot start the engine's thread");
        let mut side = PhoneSide {
            record,
            phone_name,
            engine,
            store,
            log,
            on_event,
            worker,
            wakeup,
            session: None,
            register_at: Some(Instant::now() + TOUCH_DELAY),
            registering: None,
            running: None,
            touch_at: None,
        };
        let result = driver.run(conn, &mut side);
        // Stopped or revoked: end a pending approval. A lost connection lets the run finish
        // (the worker is waited for) and the log keep its answer for the bridge's repeat.
        if let Some(r) = side.running.take() {
            if result.is_ok() {
                r.cancel.cancel();
            }
        }
        // Dropping `side` drops the worker: it ends after the run in progress.
        (result, side.touch_at)
    });
    if touch_at.is_some() {
        touch(store, record);
    }
    result
}

/// Stores "last seen" for `record`.
fn touch(store: &Mutex<PairingStore>, record: &PairingRecord) {
    // A failed write only loses the time shown for the computer.
    let _ = store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .touch(&record.id, unix_now());
}

/// The phone's event handling on the [`Driver`]: a KK session each time the bridge is
/// present, its requests to the engine's worker, the worker's answers back, and the
/// pairing's push registration and "last seen".
struct PhoneSide<'a> {
    record: &'a PairingRecord,
    phone_name: &'a str,
    engine: &'a dyn Engine,
    store: &'a Mutex<PairingStore>,
    log: &'a Mutex<RequestLog>,
    on_event: &'a (dyn Fn(&PairingRecord, ServeEvent) + Sync),
    worker: Worker<'a>,
    /// Raised by the worker with each answer.
    wakeup: &'a Arc<Wakeup>,
    session: Option<Session>,
    /// When to register the push target again with a new wake id (once per connection, off
    /// the request's path: see `register_again`), and the id waiting for its ACK.
    register_at: Option<Instant>,
    registering: Option<WakeId>,
    running: Option<Running>,
    /// When to store "last seen" (see TOUCH_DELAY); done on the way out at the latest.
    touch_at: Option<Instant>,
}

impl PhoneSide<'_> {
    /// The relay's frame: its ACKs, the bridge coming and going, a session's frames.
    fn on_frame(&mut self, frame: RelayFrame, now: Instant) {
        match frame {
            RelayFrame::Ack(frame_type::PUSH_REGISTER) => {
                if let Some(wake) = self.registering.take() {
                    push_registered(self.store, self.record, &wake);
                }
            }
            RelayFrame::Peer { present: true } => {
                trace("phone.peer");
                // A run in progress goes on: the bridge sends its request again in the new
                // session, which attaches to it.
                if let Some(r) = self.running.as_mut() {
                    r.waiting = None;
                }
                self.session = self
                    .record
                    .session(hello(self.phone_name, self.engine), now)
                    .ok();
            }
            RelayFrame::Peer { present: false } => {
                if let Some(r) = self.running.as_mut() {
                    r.waiting = None;
                }
                self.session = None;
            }
            RelayFrame::Data(payload) => {
                trace("phone.rx");
                if let Some(s) = self.session.as_mut() {
                    // Frames that are not this session's to read, dropped as a relay could
                    // have: once our session is open, a handshake frame is the bridge
                    // answering someone's replay of our HS1 (it keeps our session, protocol
                    // §4); while our new handshake runs, a transport frame belongs to the
                    // session it replaces (the bridge sent it before reading our HS1). The
                    // bridge sends an unanswered request again in the session that holds.
                    let stray = match s.state() {
                        SessionState::Open { .. } => is_handshake_frame(&payload),
                        SessionState::Handshaking => !is_handshake_frame(&payload),
                        _ => false,
                    };
                    if !stray {
                        // A frame the session rejects ends it or is dropped: its events say so.
                        let _ = s.receive(&payload, now);
                    }
                }
            }
            _ => {}
        }
    }

    /// A request of the session: answered from the log, attached to the run in progress, or
    /// handed to the engine's worker.
    fn on_request(&mut self, request: CtapRequest, now: Instant) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        (self.on_event)(
            self.record,
            ServeEvent::Request {
                kind: request.kind,
                command: request.payload.first().copied().unwrap_or(0),
            },
        );
        // The record as it is now: renamed since the session began (the prompt names the
        // computer as the user calls it now), or revoked (by this phone's user, maybe in
        // another process): then the request is dropped unanswered; the revocation ends the
        // session.
        let Some(current) = live_record(self.store, self.record) else {
            return;
        };
        let request_id = request.request_id;
        let delivery = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .begin(request_id, now);
        match delivery {
            Delivery::Run => {}
            // Sent again: answered without running it again.
            Delivery::Answer(answer) => {
                trace("phone.repeat.answered");
                // Fails only for a request id the session no longer knows: nothing to answer.
                let _ = s.respond(request.id, answer.to_vec());
                return;
            }
            Delivery::Attach => {
                trace("phone.repeat.attached");
                if let Some(r) = self.running.as_mut().filter(|r| r.request_id == request_id) {
                    r.waiting = Some(request.id);
                    // As for `respond`: only an unknown request id fails.
                    let _ = s.set_status(request.id, r.status, now);
                }
                return;
            }
        }
        // A new request: the bridge is done with the previous one.
        if let Some(r) = self.running.take() {
            r.cancel.cancel();
        }
        let cancel = CancelToken::new();
        let (answer, answer_rx) = mpsc::channel();
        let cx = RequestContext {
            cancel: cancel.clone(),
            requester: Requester(current.name),
        };
        let (log, done) = (self.log, Arc::clone(self.wakeup));
        // Every answer goes to the pairing's request log first, so that a repeat of the
        // request gets it even if its session is gone.
        let on_answer = move |reply: Vec<u8>| {
            log.lock().unwrap_or_else(PoisonError::into_inner).finish(
                request_id,
                reply.clone(),
                Instant::now(),
            );
            let _ = answer.send(reply);
            done.wake();
        };
        // The worker lives as long as the connection's loop: it cannot be gone.
        let _ = self
            .worker
            .submit(request.kind, request.payload, cx, on_answer);
        let _ = s.set_status(request.id, PendingStatus::Processing, now);
        self.running = Some(Running {
            request_id,
            waiting: Some(request.id),
            cancel,
            answer: answer_rx,
            status: PendingStatus::Processing,
        });
    }

    /// The engine's answer to the run in progress, or its move to asking the user. True when
    /// an answer goes out in this turn.
    fn poll_engine(&mut self, now: Instant) -> bool {
        let (Some(r), Some(s)) = (self.running.as_mut(), self.session.as_mut()) else {
            return false;
        };
        match r.answer.try_recv() {
            Ok(answer) => {
                (self.on_event)(
                    self.record,
                    ServeEvent::Answered {
                        status: answer.first().copied().unwrap_or(0),
                    },
                );
                let answered = r.waiting.is_some();
                if let Some(id) = r.waiting {
                    // As for `respond` above: only an unknown request id fails.
                    let _ = s.respond(id, answer);
                }
                self.running = None;
                answered
            }
            Err(TryRecvError::Disconnected) => {
                self.running = None;
                false
            }
            Err(TryRecvError::Empty) => {
                if r.status == PendingStatus::Processing && self.engine.waiting_for_user() {
                    r.status = PendingStatus::UserPresenceNeeded;
                    if let Some(id) = r.waiting {
                        let _ = s.set_status(id, r.status, now);
                    }
                }
                false
            }
        }
    }
}

impl Side<MailboxConn> for PhoneSide<'_> {
    type Outcome = Ended;

    fn sessions(&mut self) -> Vec<&mut Session> {
        self.session.iter_mut().collect()
    }

    fn before_read(&mut self, now: Instant) {
        // A run older than the request's lifetime is not waited for by anyone any more.
        let expired = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .expire(now);
        if let Some(r) = self
            .running
            .as_ref()
            .filter(|r| Some(r.request_id) == expired)
        {
            r.cancel.cancel();
        }
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
        let Some(s) = self.session.as_mut() else {
            return Ok(Step::Continue);
        };
        if s.poll_timeout().is_some_and(|t| now >= t) {
            s.handle_timeout(now);
        }
        while let Some(event) = self.session.as_mut().and_then(Session::poll_event) {
            match event {
                Event::Established(_) => {
                    trace("phone.established");
                    if self.told_revoked_here(conn)? {
                        continue;
                    }
                    self.touch_at = Some(now + TOUCH_DELAY);
                    (self.on_event)(self.record, ServeEvent::Established);
                }
                Event::CtapRequest(request) => {
                    trace("phone.request");
                    if self.told_revoked_here(conn)? {
                        continue;
                    }
                    self.on_request(request, now);
                }
                Event::Cancel { id } => {
                    if let Some(r) = self.running.as_ref().filter(|r| r.waiting == Some(id)) {
                        r.cancel.cancel();
                    }
                }
                Event::Revoked => {
                    forget(self.store, self.record);
                    self.touch_at = None;
                    return Ok(Step::End(Ended::Revoked));
                }
                _ => {}
            }
        }
        if self.poll_engine(now) {
            trace("phone.send"); // before the write: the bridge may read it first
        }
        Ok(Step::Continue)
    }

    fn send_failed(&mut self, error: MailboxError) -> Result<(), MailboxError> {
        Err(error)
    }

    fn after_flush(
        &mut self,
        _now: Instant,
        conn: &mut MailboxConn,
    ) -> Result<Step<Ended>, MailboxError> {
        if self.session.as_ref().is_some_and(Session::is_finished) {
            if let Some(r) = self.running.as_mut() {
                r.waiting = None;
            }
            self.session = None;
        }
        if self.running.is_none() && self.touch_at.is_some_and(|t| Instant::now() >= t) {
            self.touch_at = None;
            touch(self.store, self.record);
        }
        if self.running.is_none() && self.register_at.is_some_and(|t| Instant::now() >= t) {
            self.register_at = None;
            self.registering = register_again(self.store, self.record, conn);
        }
        Ok(Step::Continue)
    }

    fn deadline(&self, now: Instant) -> Option<Instant> {
        match &self.running {
            // The engine cannot signal that it asks the user: look soon.
            Some(r) if r.status == PendingStatus::Processing => Some(now + USER_CHECK),
            Some(_) => None,
            None => [self.touch_at, self.register_at]
                .into_iter()
                .flatten()
                .min(),
        }
    }

    fn stopping(&mut self) {
        if let Some(s) = self.session.as_mut() {
            // Fails only when the session is over already: nothing to say goodbye to.
            let _ = s.bye();
        }
    }

    fn stopped(&mut self, conn: &mut MailboxConn) -> Ended {
        if self.register_at.take().is_some() {
            self.registering = register_again(self.store, self.record, conn);
        }
        if let Some(wake) = self.registering.take() {
            await_registered(self.store, self.record, conn, wake);
        }
        Ended::Stopped
    }
}

impl PhoneSide<'_> {
    /// [`told_revoked_here`] for the current session.
    fn told_revoked_here(&mut self, conn: &mut MailboxConn) -> Result<bool, MailboxError> {
        match self.session.as_mut() {
            Some(s) => told_revoked_here(s, conn, self.store, self.record),
            None => Ok(false),
        }
    }
}

/// What [`listen`] reports each pairing's events to.
pub type OnEvent = Arc<dyn Fn(&PairingRecord, ServeEvent) + Send + Sync>;

/// Serves every stored phone-side pairing that is not suspended, one thread each, until
/// `stop`.
pub fn listen(
    phone_name: &str,
    engine: Arc<dyn Engine>,
    store: Arc<Mutex<PairingStore>>,
    stop: Arc<AtomicBool>,
    on_event: OnEvent,
) -> Result<usize, PairingError> {
    listen_via(None, phone_name, engine, store, stop, on_event)
}

/// As [`listen`], attaching through `relays` (a relay URL list, [`crate::relays`]) instead
/// of each pairing's own relay URL when given: the nodes of the pairing's relay deployment.
/// The stored records are not changed.
pub fn listen_via(
    relays: Option<&str>,
    phone_name: &str,
    engine: Arc<dyn Engine>,
    store: Arc<Mutex<PairingStore>>,
    stop: Arc<AtomicBool>,
    on_event: OnEvent,
) -> Result<usize, PairingError> {
    let records: Vec<PairingRecord> = store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .list()
        .map_err(|e| PairingError::Store(e.to_string()))?
        .into_iter()
        .filter(|r| r.role == Role::Phone && r.suspended_at.is_none())
        .map(|r| match relays {
            Some(relays) => PairingRecord {
                relay_url: relays.to_string(),
                ..r
            },
            None => r,
        })
        .collect();
    let count = records.len();
    let handles: Vec<_> = records
        .into_iter()
        .map(|record| {
            let (name, engine, store, stop, on_event) = (
                phone_name.to_string(),
                Arc::clone(&engine),
                Arc::clone(&store),
                Arc::clone(&stop),
                Arc::clone(&on_event),
            );
            thread::spawn(move || serve_pairing(record, &name, engine, store, stop, &*on_event))
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok(count)
}

/// How long the user's unpair waits for the attached computer to complete a session, so that
/// it can be told in person, before it only deletes the mailbox.
const REVOKE_SESSION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the relay has to acknowledge DELETE.
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);
/// The name in the `Hello` of a session that only says `Revoke` (a computer shows the name it
/// stored at pairing, not this one).
const REVOKING_NAME: &str = "PocketKey";

/// The phone's user removes `record`: [`revoke_in_session`] with the phone's `Hello` (its
/// getInfo from `engine`).
pub fn revoke_with_computer(
    record: &PairingRecord,
    engine: &dyn Engine,
) -> Result<bool, MailboxError> {
    revoke_in_session(record, hello(REVOKING_NAME, engine))
}

/// The computer's user removes `record` (`pocketkey-bridge --unpair`): [`revoke_in_session`]
/// with the bridge's `Hello`.
pub fn revoke_with_phone(record: &PairingRecord) -> Result<bool, MailboxError> {
    let hello = Hello {
        name: REVOKING_NAME.into(),
        get_info: None,
    };
    revoke_in_session(record, hello)
}

/// Our user removes `record`: if the peer is attached, a KK session tells it (`Revoke`,
/// authenticated by the pairing's keys: the peer deletes its record; on the relay's word alone
/// it would only suspend it, protocol §3.4); then DELETE on the same connection, so that the
/// relay routes the `Revoke` before it closes the peer's connection. The phone starts the
/// session when it sees the computer present; the computer answers a listening phone's HS1
/// (a phone attaches only while it listens or is woken, and starts a session when the
/// computer arrives). `Ok` once the relay acknowledged DELETE or says the mailbox is gone
/// already; `Ok(true)` if the peer was told in a session.
fn revoke_in_session(record: &PairingRecord, hello: Hello) -> Result<bool, MailboxError> {
    let attach = record.mailbox_keys().attach(record.role);
    let mut conn = match MailboxConn::open(&record.relay_url, &attach, CONNECT_TIMEOUT) {
        Ok(c) => c,
        Err(e) if e.is_revoked() => return Ok(false),
        Err(e) => return Err(e),
    };
    let gone = |e: MailboxError| if e.is_revoked() { Ok(false) } else { Err(e) };
    let until = Instant::now() + REVOKE_SESSION_TIMEOUT;
    let mut session: Option<Session> = None;
    let mut told = false;
    while Instant::now() < until {
        let now = Instant::now();
        match conn.poll() {
            Ok(Some(RelayFrame::Peer { present: true }))
                if session.is_none() && record.role == Role::Phone =>
            {
                session = record.session(hello.clone(), now).ok();
            }
            // Nobody to tell: the peer learns it from the relay (and suspends).
            Ok(Some(RelayFrame::Peer { present: false })) => break,
            Ok(Some(RelayFrame::Data(payload))) => {
                if session.is_none() && record.role == Role::Bridge && is_handshake_frame(&payload)
                {
                    session = record.session(hello.clone(), now).ok();
                }
                if let Some(s) = session.as_mut() {
                    let _ = s.receive(&payload, now);
                }
            }
            Ok(_) => {}
            Err(e) => return gone(e),
        }
        let Some(s) = session.as_mut() else { continue };
        if s.poll_timeout().is_some_and(|t| now >= t) {
            s.handle_timeout(now);
        }
        while let Some(event) = s.poll_event() {
            told |= matches!(event, Event::Established(_));
        }
        if told && s.revoke().is_err() {
            told = false;
        }
        if let Err(e) = flush_now(s, &mut conn) {
            return gone(e);
        }
        if told || s.is_finished() {
            break;
        }
    }
    if let Err(e) = conn.send(&RelayFrame::Delete) {
        return gone(e);
    }
    let until = Instant::now() + DELETE_TIMEOUT;
    while Instant::now() < until {
        match conn.poll() {
            Ok(Some(RelayFrame::Ack(frame_type::DELETE))) => {
                conn.close();
                return Ok(told);
            }
            Ok(_) => {}
            Err(e) if e.is_revoked() => return Ok(told),
            Err(e) => return Err(e),
        }
    }
    Err(MailboxError::TimedOut)
}

/// Registers `target` as the pairing's push target at the relay (PUSH_REGISTER, waits for
/// the ACK), so that a bridge's WAKE reaches the phone while it is not attached. The
/// registration carries a new wake id (whatever `target.wake` holds), kept in the store with
/// the target: the phone knows its pushes by it, and registers the target again with a new
/// id at each attach of the pairing.
pub fn register_push(
    store: &Mutex<PairingStore>,
    record: &PairingRecord,
    target: PushTarget,
) -> Result<(), PairingError> {
    let target = PushTarget {
        wake: WakeId::random(),
        ..target
    };
    let attach = record.mailbox_keys().attach(Role::Phone);
    let mut conn = MailboxConn::open(&record.relay_url, &attach, CONNECT_TIMEOUT)?;
    store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_registering(&record.id, &target)
        .map_err(|e| PairingError::Store(e.to_string()))?;
    conn.send(&RelayFrame::PushRegister(target.clone()))?;
    let until = Instant::now() + CONNECT_TIMEOUT;
    let result = loop {
        if Instant::now() >= until {
            break Err(PairingError::TimedOut);
        }
        match conn.poll() {
            Ok(Some(RelayFrame::Ack(frame_type::PUSH_REGISTER))) => {
                push_registered(store, record, &target.wake);
                break Ok(());
            }
            Ok(Some(RelayFrame::Error { code, message })) => {
                break Err(PairingError::RelayRefused { code, message })
            }
            Ok(_) => {}
            Err(e) => break Err(e.into()),
        }
    };
    conn.close();
    result
}

/// Woken by a push for this pairing: attaches, serves the bridge's requests, and detaches
/// once nothing happened for `idle` (no request open) or `stop` is raised. Returns whether
/// the bridge sent a request (a wake without one counts against the pairing's empty-wake
/// budget: [`crate::wake::woken_pairing`]).
pub fn serve_woken(
    record: PairingRecord,
    phone_name: &str,
    engine: Arc<dyn Engine>,
    store: Arc<Mutex<PairingStore>>,
    stop: Arc<AtomicBool>,
    idle: Duration,
    on_event: &(dyn Fn(&PairingRecord, ServeEvent) + Sync),
) -> bool {
    trace("phone.woken");
    let local = Arc::new(AtomicBool::new(false));
    let requested = AtomicBool::new(false);
    // (last activity, a request is open)
    let activity = Mutex::new((Instant::now(), false));
    thread::scope(|scope| {
        scope.spawn(|| {
            while !local.load(Ordering::SeqCst) {
                let (last, busy) = *activity.lock().unwrap_or_else(PoisonError::into_inner);
                if stop.load(Ordering::SeqCst) || (!busy && last.elapsed() >= idle) {
                    local.store(true, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        let track = |r: &PairingRecord, event: ServeEvent| {
            {
                let mut a = activity.lock().unwrap_or_else(PoisonError::into_inner);
                match &event {
                    ServeEvent::Request { .. } => {
                        requested.store(true, Ordering::SeqCst);
                        *a = (Instant::now(), true);
                    }
                    ServeEvent::Answered { .. } => *a = (Instant::now(), false),
                    ServeEvent::Established => a.0 = Instant::now(),
                    ServeEvent::Revoked => local.store(true, Ordering::SeqCst),
                    _ => {}
                }
            }
            on_event(r, event);
        };
        serve_pairing(
            record,
            phone_name,
            engine,
            store,
            Arc::clone(&local),
            &track,
        );
        local.store(true, Ordering::SeqCst);
    });
    trace("phone.detached");
    requested.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relays_refusal_cannot_write_control_sequences_into_its_error_text() {
        let refused = PairingError::RelayRefused {
            code: RelayErrorCode::BadPushTarget as u8,
            message: "no\u{1b}[2J\nok: paired\u{202e}".into(),
        };
        let shown = refused.to_string();
        assert_eq!(shown, "the relay answered ERROR 5: no?[2J?ok: paired?");
        assert_eq!(refused.relay_code(), Some(RelayErrorCode::BadPushTarget));
    }
}
