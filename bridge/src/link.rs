//! The bridge's link to the phone: one thread owns the relay connection and the sans-IO
//! pairing session (first contact while no phone is paired, then KK sessions on the pairing
//! mailbox); the CTAPHID transport's worker talks to it through [`ForwardingEngine`].
//!
//! The link thread sleeps on one [`Wakeup`], raised by the relay connection's reader when
//! frames arrive and by a small forwarding thread when the transport sends a request or a
//! cancel, so it reacts to both at once (`docs/latency.md`); otherwise it wakes only for its
//! timers and to look at the stop flag.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use pocketkey_core::pairing::delivery::REQUEST_LIFETIME;
use pocketkey_core::pairing::offer::OFFER_LIFETIME_SECS;
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::session::{is_handshake_frame, Timeout, CONFIRMATION_TIMEOUT};
use pocketkey_core::pairing::{
    Event, Hello, PairingOffer, PairingRecord, PairingStore, PendingStatus, RequestId, Role,
    Session, SessionState, UrlPolicy,
};
use pocketkey_net::mailbox::{trace, MailboxConn, MailboxError, Wakeup};
use zeroize::Zeroizing;

use crate::confirm::{Answer, Confirmer};
use crate::engine::WaitingForUser;
use crate::served::ServedChoice;
use pocketkey_core::authenticator::command;
use pocketkey_core::ctap::CtapError;
use pocketkey_core::engine::{Engine, RequestContext, RequestKind};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// The longest the link sleeps: how soon it sees the stop flag (which cannot wake it; the
/// transport ending does, see [`forward_requests`]).
const STOP_CHECK: Duration = Duration::from_millis(200);
/// How often a request waiting for the phone looks at the browser's cancel (a flag).
const CANCEL_CHECK: Duration = Duration::from_millis(20);

use pocketkey_core::clock::unix_now;

/// The phone did not answer in time: CTAP2_ERR_USER_ACTION_TIMEOUT, or for U2F
/// SW_CONDITIONS_NOT_SATISFIED.
fn timeout_answer(kind: RequestKind) -> Vec<u8> {
    kind.failure(CtapError::UserActionTimeout)
}

/// Cancelled before the phone had the request: CTAP2_ERR_KEEPALIVE_CANCEL (the status byte
/// whatever the kind, as the bridge has always answered).
fn cancelled_answer() -> Vec<u8> {
    RequestKind::Cbor.failure(CtapError::KeepaliveCancel)
}

/// From the transport worker to the link thread.
pub enum ToLink {
    Request {
        kind: RequestKind,
        payload: Vec<u8>,
        reply: Sender<Reply>,
    },
    Cancel,
}

/// From the link thread back to the waiting request.
pub enum Reply {
    Pending(PendingStatus),
    Done(Vec<u8>),
}

/// The engine the CTAPHID transport runs: getInfo from the cache, everything else to the phone.
pub struct ForwardingEngine {
    pub to_link: Sender<ToLink>,
    pub get_info: Arc<Mutex<Option<Vec<u8>>>>,
    pub waiting: WaitingForUser,
}

impl ForwardingEngine {
    fn forward(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        trace("bridge.request");
        let (reply, answers) = mpsc::channel();
        if self
            .to_link
            .send(ToLink::Request {
                kind,
                payload: payload.to_vec(),
                reply,
            })
            .is_err()
        {
            return timeout_answer(kind);
        }
        let mut cancel_sent = false;
        let answer = loop {
            // Answers arrive at once; the timeout only paces the look at the cancel flag.
            match answers.recv_timeout(CANCEL_CHECK) {
                Ok(Reply::Pending(status)) => self
                    .waiting
                    .set(status == PendingStatus::UserPresenceNeeded),
                Ok(Reply::Done(answer)) => {
                    trace("bridge.reply");
                    break answer;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !cancel_sent && cx.cancel.is_cancelled() {
                        cancel_sent = true;
                        let _ = self.to_link.send(ToLink::Cancel);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break timeout_answer(kind),
            }
        };
        self.waiting.set(false);
        answer
    }
}

impl Engine for ForwardingEngine {
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        if kind == RequestKind::Cbor && payload.first() == Some(&command::GET_INFO) {
            return match &*self.get_info.lock().unwrap_or_else(PoisonError::into_inner) {
                Some(info) => [&[0x00][..], info].concat(),
                // No phone paired yet.
                None => kind.failure(CtapError::Other),
            };
        }
        self.forward(kind, payload, cx)
    }
    fn waiting_for_user(&self) -> bool {
        self.waiting.is_waiting()
    }
}

/// The pairing a bridge serves among its records ([`PairingStore::list`] order: newest
/// first): the one named `name`, else the newest.
pub fn select_phone(records: Vec<PairingRecord>, name: Option<&str>) -> Option<PairingRecord> {
    let mut phones = records.into_iter().filter(|r| r.role == Role::Bridge);
    match name {
        Some(name) => phones.find(|r| r.name == name),
        None => phones.next(),
    }
}

/// What the link needs.
pub struct LinkConfig {
    pub relay_url: Option<String>,
    /// Serve the phone paired under this name; `None`: the newest pairing.
    pub phone: Option<String>,
    /// Show a pairing code first even when phones are paired (to add one).
    pub pair_another: bool,
    pub name: String,
    pub qr_png: Option<PathBuf>,
    /// `--print-url`: the `pair:` line even when stdout is not a terminal.
    pub print_url: bool,
    /// How long pairing codes are shown, across refreshed offers, before the bridge gives up.
    pub offer_for: Duration,
    /// How long a request waits for the phone to attach and answer.
    pub phone_timeout: Duration,
    /// `--auto-confirm`: every question is answered yes without asking (tests).
    pub auto_confirm: bool,
    /// Where the served phone is remembered across restarts.
    pub served: ServedChoice,
}

/// The open request.
struct Open {
    kind: RequestKind,
    payload: Vec<u8>,
    reply: Sender<Reply>,
    /// The same in every session it is sent in: the phone runs it at most once.
    request_id: RequestId,
    /// When the transport handed it over: it is sent again (after a lost session) only
    /// within `REQUEST_LIFETIME` of this, while the phone remembers it.
    received: Instant,
    /// Sent to the phone in this session.
    sent: bool,
    /// The browser cancelled it after it was sent.
    cancelled: bool,
    woke: bool,
    /// Until the phone attaches and takes it (after that, the session's silence timer).
    deadline: Instant,
}

impl Open {
    fn finish(self, answer: Vec<u8>) {
        let _ = self.reply.send(Reply::Done(answer));
    }
}

pub struct Link {
    config: LinkConfig,
    store: PairingStore,
    get_info: Arc<Mutex<Option<Vec<u8>>>>,
    /// The transport's messages, from the forwarding thread (which raises `wakeup`).
    requests: Receiver<ToLink>,
    /// Until `run` starts the forwarding thread: the transport's channel.
    transport: Option<Receiver<ToLink>>,
    wakeup: Arc<Wakeup>,
    stop: Arc<AtomicBool>,
    request: Option<Open>,
    /// The transport cancelled the request the phone has.
    cancel_wanted: bool,
    /// Why the link stopped the bridge, if it did.
    failure: Option<String>,
    /// The user's answers (pair with this phone? serve it?).
    confirmer: Confirmer,
}

enum Mode {
    Pairing,
    Paired(Box<PairingRecord>),
}

/// How one attachment of the pairing mailbox ended without a relay error.
enum Served {
    Stopped,
    /// The phone sent `Revoke` in an established session: authenticated by the pairing's
    /// keys, so the record goes.
    Revoked,
}

/// What the bridge says when it stops for a suspended pairing: what happened and what to do.
pub fn suspended_message(phone: &str) -> String {
    format!(
        "the pairing with the phone {phone:?} is suspended: the relay says the phone removed it, \
         which the relay cannot prove, so its keys are kept. If you removed this computer on \
         the phone, run `pocketkey-bridge --unpair {phone:?}`; otherwise run \
         `pocketkey-bridge --resume {phone:?}` and start the bridge again"
    )
}

fn hello(name: &str) -> Hello {
    Hello {
        name: name.to_string(),
        get_info: None,
    }
}

impl Link {
    pub fn new(
        config: LinkConfig,
        store: PairingStore,
        get_info: Arc<Mutex<Option<Vec<u8>>>>,
        requests: Receiver<ToLink>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let (_, idle) = mpsc::channel();
        let wakeup = Wakeup::new();
        Self {
            confirmer: Confirmer::new(config.auto_confirm, Arc::clone(&wakeup)),
            config,
            store,
            get_info,
            requests: idle,
            transport: Some(requests),
            wakeup,
            stop,
            request: None,
            cancel_wanted: false,
            failure: None,
        }
    }

    /// The phone to serve: the one named by `--phone`, else the one served last, else the
    /// newest pairing.
    fn current_record(&self) -> Option<PairingRecord> {
        let records = self.store.list().ok()?;
        if self.config.phone.is_none() {
            let phones: Vec<PairingRecord> = records
                .iter()
                .filter(|r| r.role == Role::Bridge)
                .cloned()
                .collect();
            if let Some(last) = self.config.served.find(&phones) {
                return Some(last);
            }
        }
        select_phone(records, self.config.phone.as_deref())
    }

    fn serve_mode(&self, record: PairingRecord) -> Mode {
        // A suspended pairing is not served: the run loop stops the bridge with what to do.
        if record.suspended_at.is_none() {
            self.config.served.remember(&record.id);
            *self.get_info.lock().unwrap_or_else(PoisonError::into_inner) =
                record.peer_get_info.clone();
            eprintln!("serving the phone {:?}", record.name);
        }
        Mode::Paired(Box::new(record))
    }

    /// Stops the bridge with an error.
    fn fail(&mut self, message: String) {
        self.failure = Some(message);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Runs until the bridge stops; `Err` when the link stopped it (no phone paired in time).
    pub fn run(mut self) -> Result<(), String> {
        if let Some(transport) = self.transport.take() {
            let (to_link, requests) = mpsc::channel();
            let wakeup = Arc::clone(&self.wakeup);
            let spawned = thread::Builder::new()
                .name("pocketkey-link-in".into())
                .spawn(move || forward_requests(&transport, &to_link, &wakeup));
            match spawned {
                Ok(_) => self.requests = requests,
                Err(e) => {
                    return Err(format!("cannot start the link: {e}"));
                }
            }
        }
        // `--pair-another`: the phone served so far, until the user chooses the new one.
        let mut served_before = None;
        let mut mode = match self.current_record() {
            Some(r) if !self.config.pair_another => self.serve_mode(r),
            r => {
                served_before = r;
                Mode::Pairing
            }
        };
        while !self.stop.load(Ordering::SeqCst) {
            mode = match mode {
                Mode::Pairing => match self.pair_within(self.config.offer_for) {
                    Some(r) => self.serve_new(r, served_before.take()),
                    None if self.stop.load(Ordering::SeqCst) => Mode::Pairing,
                    // No phone scanned in time: stop offering. A bridge that has a paired
                    // phone (`--pair-another`) goes back to serving it; one that has none ends.
                    None => {
                        let waited = describe_duration(self.config.offer_for);
                        match self.current_record() {
                            Some(record) => {
                                eprintln!("no phone paired within {waited}; no more pairing codes");
                                self.serve_mode(record)
                            }
                            None => {
                                self.fail(format!(
                                    "no phone paired within {waited}; run again to show a new code"
                                ));
                                Mode::Pairing
                            }
                        }
                    }
                },
                Mode::Paired(record) if record.suspended_at.is_some() => {
                    self.fail(suspended_message(&record.name));
                    Mode::Paired(record)
                }
                Mode::Paired(record) => match self.serve(&record) {
                    Ok(Served::Stopped) => Mode::Paired(record),
                    Ok(Served::Revoked) => {
                        eprintln!("the phone {:?} revoked the pairing", record.name);
                        self.forget(&record)
                    }
                    // Our user's `--unpair` (another process) reached the relay.
                    Err(e) if e.is_revoked() && self.revoked_here(&record) => {
                        eprintln!("the pairing with {:?} was removed here", record.name);
                        self.forget(&record)
                    }
                    // Otherwise 410 / 4010 come from the relay, which cannot prove that the
                    // phone revoked anything (docs/pairing-protocol.md §3.4): the keys stay,
                    // the pairing is suspended until the user resumes or removes it.
                    Err(e) if e.is_revoked() => {
                        self.drop_request();
                        *self.get_info.lock().unwrap_or_else(PoisonError::into_inner) = None;
                        if let Err(e) = self.store.suspend(&record.id, unix_now()) {
                            eprintln!("cannot mark the pairing suspended: {e}");
                        }
                        self.fail(suspended_message(&record.name));
                        Mode::Paired(record)
                    }
                    Err(e) => {
                        eprintln!("relay: {e}; reconnecting");
                        self.idle(RECONNECT_DELAY);
                        Mode::Paired(record)
                    }
                },
            };
        }
        if let Some(open) = self.request.take() {
            let kind = open.kind;
            open.finish(timeout_answer(kind));
        }
        self.failure.map_or(Ok(()), Err)
    }

    /// The pairing `record` is gone for good: the browser's open request is answered, the
    /// record deleted, and another paired phone, if any, takes over (else a pairing code).
    fn forget(&mut self, record: &PairingRecord) -> Mode {
        self.drop_request();
        let _ = self.store.forget(&record.id);
        *self.get_info.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.config.phone = None;
        match self.current_record() {
            Some(next) => self.serve_mode(next),
            None => Mode::Pairing,
        }
    }

    /// Whether this computer's user revoked `record` (it is marked revoked, or already
    /// forgotten after the relay confirmed): then a 410 / 4010 is that revocation arriving.
    fn revoked_here(&self, record: &PairingRecord) -> bool {
        match self.store.get(&record.id) {
            Ok(Some(current)) => current.revoked_at.is_some(),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// The phone that was to answer the open request is gone: the browser hears it now, not
    /// at the request's deadline.
    fn drop_request(&mut self) {
        if let Some(open) = self.request.take() {
            let kind = open.kind;
            open.finish(timeout_answer(kind));
        }
    }

    /// A phone was just paired. It is served at once unless another phone was served: then
    /// only if the user says so (a stranger who paired must not take over silently).
    fn serve_new(&mut self, new: PairingRecord, before: Option<PairingRecord>) -> Mode {
        let Some(old) = before else {
            return self.serve_mode(new);
        };
        self.confirmer.ask(
            &format!(
                "Paired with {:?}. This computer serves {:?}.",
                new.name, old.name
            ),
            &format!("Serve {:?} from now on instead?", new.name),
        );
        match self.wait_for_answer(CONFIRMATION_TIMEOUT) {
            Answer::Yes => self.serve_mode(new),
            Answer::No => {
                eprintln!(
                    "still serving {:?}; {:?} stays paired (to serve it, start with --phone {:?})",
                    old.name, new.name, new.name
                );
                self.serve_mode(old)
            }
        }
    }

    /// Waits (taking requests meanwhile) for the answer to the open question; no within
    /// `within`, or when the bridge stops, counts as no.
    fn wait_for_answer(&mut self, within: Duration) -> Answer {
        let until = Instant::now() + within;
        loop {
            if let Some(answer) = self.confirmer.answer() {
                return answer;
            }
            let now = Instant::now();
            if self.stop.load(Ordering::SeqCst) || now >= until {
                self.confirmer.withdraw();
                return Answer::No;
            }
            self.take_requests(now);
            self.wait(Some(until));
        }
    }

    /// Takes requests from the transport and expires the open one; no phone session.
    fn take_requests(&mut self, now: Instant) {
        while let Ok(message) = self.requests.try_recv() {
            match message {
                ToLink::Request {
                    kind,
                    payload,
                    reply,
                } => {
                    self.cancel_wanted = false;
                    if let Some(old) = self.request.take() {
                        let kind = old.kind;
                        old.finish(timeout_answer(kind));
                    }
                    self.request = Some(Open {
                        kind,
                        payload,
                        reply,
                        request_id: RequestId::random(),
                        received: now,
                        sent: false,
                        cancelled: false,
                        woke: false,
                        deadline: now + self.config.phone_timeout,
                    });
                }
                ToLink::Cancel => {
                    if let Some(open) = self.request.take_if(|o| !o.sent) {
                        open.finish(cancelled_answer());
                    } else {
                        self.cancel_wanted = true;
                    }
                }
            }
        }
        if self
            .request
            .as_ref()
            .is_some_and(|o| !o.sent && now >= o.deadline)
        {
            if let Some(open) = self.request.take() {
                eprintln!("the phone did not answer in time");
                let kind = open.kind;
                open.finish(timeout_answer(kind));
            }
        }
    }

    /// Sleeps until woken (a frame, a request), `until`, the open request's deadline or the
    /// next stop check, whichever comes first.
    fn wait(&self, until: Option<Instant>) {
        let now = Instant::now();
        let mut wait = STOP_CHECK;
        let deadline = self
            .request
            .as_ref()
            .filter(|o| !o.sent)
            .map(|o| o.deadline);
        for t in [until, deadline].into_iter().flatten() {
            wait = wait.min(t.saturating_duration_since(now));
        }
        self.wakeup.wait(wait);
    }

    fn idle(&mut self, total: Duration) {
        let until = Instant::now() + total;
        while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
            self.take_requests(Instant::now());
            self.wait(Some(until));
        }
    }

    /// Shows pairing codes, a new one after each failed or expired one, for `window` in all
    /// (issue: a bridge left unpaired must not offer for ever). Some(record) once paired;
    /// None when stopped or out of time.
    fn pair_within(&mut self, window: Duration) -> Option<PairingRecord> {
        let until = Instant::now() + window;
        while !self.stop.load(Ordering::SeqCst) && Instant::now() < until {
            if let Some(record) = self.pair(until) {
                return Some(record);
            }
        }
        None
    }

    /// Shows a new offer and waits for a phone, until the offer expires or `until`.
    /// Some(record) once paired.
    fn pair(&mut self, until: Instant) -> Option<PairingRecord> {
        let Some(relay_url) = self.config.relay_url.clone() else {
            self.fail("no phone is paired: give --relay URL to pair one".into());
            return None;
        };
        let offer = match PairingOffer::generate(
            &relay_url,
            &self.config.name,
            UrlPolicy::Strict,
            unix_now(),
        ) {
            Ok(o) => o,
            Err(e) => {
                self.fail(format!("cannot make a pairing code: {e}"));
                return None;
            }
        };
        let url = Zeroizing::new(offer.url().to_url_string());
        let expires = until.min(Instant::now() + Duration::from_secs(OFFER_LIFETIME_SECS));
        crate::show_pairing_url(
            &url,
            &crate::ShowCode {
                print_url: self.config.print_url,
                png: self.config.qr_png.as_deref(),
            },
            expires.saturating_duration_since(Instant::now()),
        );
        drop(url);
        let attach = offer.mailbox().attach(Role::Bridge);
        let mut session = match Session::bridge_first_contact(offer, hello(&self.config.name)) {
            Ok(s) => s,
            Err(e) => {
                self.fail(format!("cannot start pairing: {e}"));
                return None;
            }
        };
        let mut conn = loop {
            if self.stop.load(Ordering::SeqCst) || Instant::now() >= expires {
                return None;
            }
            match MailboxConn::open_with(
                &relay_url,
                &attach,
                CONNECT_TIMEOUT,
                Arc::clone(&self.wakeup),
            ) {
                Ok(c) => break c,
                Err(e) => {
                    eprintln!("relay: {e}; retrying");
                    self.idle(RECONNECT_DELAY);
                }
            }
        };
        let result = loop {
            let now = Instant::now();
            // A phone that started its handshake in time may finish it (and be confirmed)
            // after the offer's end: the offer was burned on its first message.
            let started = session.poll_timeout().is_some();
            if self.stop.load(Ordering::SeqCst) || (now >= expires && !started) {
                break None;
            }
            self.take_requests(now);
            let frame = match conn.try_next() {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("relay: {e}");
                    break None;
                }
            };
            let got_frame = frame.is_some();
            if let Some(RelayFrame::Data(payload)) = frame {
                if let Err(e) = session.receive(&payload, now) {
                    eprintln!("pairing failed: {e}");
                }
            }
            if session.poll_timeout().is_some_and(|t| now >= t) {
                session.handle_timeout(now);
            }
            let mut record = None;
            // Twice: an answer given at once (`--auto-confirm`) releases `Established`.
            for _ in 0..2 {
                while let Some(event) = session.poll_event() {
                    match event {
                        Event::ConfirmationNeeded { phone_name, code } => self.confirmer.ask(
                            &format!(
                                "Phone {phone_name:?} wants to pair. Code on the phone: {code}"
                            ),
                            "Pair?",
                        ),
                        Event::Established(e) => {
                            if let Some(new) = e.new_pairing {
                                record = Some(PairingRecord::from_new(new, unix_now()));
                            }
                        }
                        Event::TimedOut(Timeout::Confirmation) => {
                            self.confirmer.withdraw();
                            eprintln!(
                                "no answer within {}: pairing refused",
                                describe_duration(CONFIRMATION_TIMEOUT)
                            );
                        }
                        _ => {}
                    }
                }
                if !session.awaits_confirmation() {
                    break;
                }
                match self.confirmer.answer() {
                    Some(Answer::Yes) => {
                        let _ = session.confirm();
                    }
                    Some(Answer::No) => {
                        let _ = session.refuse();
                        eprintln!("pairing refused: nothing stored");
                    }
                    None => break,
                }
            }
            // Stored before the last handshake frames leave: once the phone has them it calls
            // itself paired, so the pairing must exist here first (or not at all).
            if let Some(record) = &record {
                if let Err(e) = self.store.insert(record) {
                    eprintln!("cannot store the pairing: {e}");
                    break None;
                }
            }
            while let Some(frame) = session.poll_frame() {
                let _ = conn.send(&RelayFrame::Data(frame));
            }
            if let Some(record) = record {
                *self.get_info.lock().unwrap_or_else(PoisonError::into_inner) =
                    record.peer_get_info.clone();
                eprintln!("paired with {:?}", record.name);
                let _ = std::io::stdout().flush();
                break Some(record);
            }
            if session.is_finished() {
                // The offer is burned (first HS1 read); show a new one.
                self.confirmer.withdraw();
                break None;
            }
            if !got_frame {
                let until = session.poll_timeout().unwrap_or(expires);
                self.wait(Some(until));
            }
        };
        conn.close();
        result
    }

    /// One attachment of the pairing mailbox. Ok: stopped, or the phone revoked the pairing
    /// in the session; Err: reconnect (or the relay says the mailbox is gone).
    fn serve(&mut self, record: &PairingRecord) -> Result<Served, MailboxError> {
        let attach = record.mailbox_keys().attach(Role::Bridge);
        let wakeup = Arc::clone(&self.wakeup);
        let open = || {
            MailboxConn::open_with(
                &record.relay_url,
                &attach,
                CONNECT_TIMEOUT,
                Arc::clone(&wakeup),
            )
        };
        let mut conn = open();
        let mut conn = loop {
            match conn {
                Ok(c) => break c,
                Err(e) if e.is_revoked() => return Err(e),
                Err(e) => {
                    eprintln!("relay: {e}; retrying");
                    self.idle(RECONNECT_DELAY);
                    if self.stop.load(Ordering::SeqCst) {
                        return Ok(Served::Stopped);
                    }
                    conn = open();
                }
            }
        };
        let mut session: Option<Session> = None;
        // A new handshake while `session` is established: it replaces `session` only once its
        // Hello proves a phone with the pairing's key is behind it (protocol §4), so that a
        // replayed HS1 cannot end a live session.
        let mut candidate: Option<Session> = None;
        let mut phone_present = false;
        // (the phone's getInfo, last seen): for the store, once no request waits.
        let mut to_store: (Option<Vec<u8>>, bool) = (None, false);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                if let Some(s) = session.as_mut() {
                    let _ = s.bye();
                    while let Some(f) = s.poll_frame() {
                        let _ = conn.send(&RelayFrame::Data(f));
                    }
                }
                conn.close();
                self.store_seen(record, &mut to_store);
                return Ok(Served::Stopped);
            }
            let now = Instant::now();
            self.take_requests(now);
            let frame = match conn.try_next() {
                Ok(f) => f,
                Err(e) => {
                    self.session_lost();
                    self.store_seen(record, &mut to_store);
                    return Err(e);
                }
            };
            let got_frame = frame.is_some();
            match frame {
                Some(RelayFrame::Peer { present }) => {
                    if present {
                        trace("bridge.peer");
                    }
                    phone_present = present;
                    if !present {
                        session = None;
                        candidate = None;
                        self.session_lost();
                    }
                }
                Some(RelayFrame::Data(payload)) => {
                    trace("bridge.rx");
                    let handshake = is_handshake_frame(&payload);
                    let live = session.as_ref().is_some_and(Session::is_established);
                    // A transport frame while a candidate waits for its Hello: the candidate's
                    // if it opens there (then it takes over), else the live session's.
                    let mut for_live = true;
                    if let (false, Some(c)) = (handshake, candidate.as_mut()) {
                        if c.receive(&payload, now).is_ok() {
                            for_live = false;
                            if c.is_established() {
                                self.session_lost();
                                session = candidate.take();
                            }
                        } else {
                            candidate = None;
                        }
                    }
                    // A handshake frame once our keys are ready (or the session is over) is
                    // the phone starting over (protocol §4): a new session takes it — at
                    // once, unless the current one is established (then as the candidate).
                    let fresh = handshake
                        && session
                            .as_ref()
                            .is_none_or(|s| s.state() != SessionState::Handshaking);
                    if fresh && live {
                        candidate = record.session(hello(&self.config.name), now).ok();
                        if let Some(c) = candidate.as_mut() {
                            let _ = c.hold_hello();
                            if let Err(e) = c.receive(&payload, now) {
                                eprintln!("session: {e}");
                                candidate = None;
                            }
                        }
                        for_live = false;
                    } else if fresh {
                        candidate = None;
                        if session.is_some() {
                            self.session_lost();
                        }
                        session = record.session(hello(&self.config.name), now).ok();
                    }
                    if let (true, Some(s)) = (for_live, session.as_mut()) {
                        if let Err(e) = s.receive(&payload, now) {
                            eprintln!("session: {e}");
                        }
                    }
                }
                Some(RelayFrame::WakeResult(_)) => trace("bridge.wake_result"),
                _ => {}
            }
            // Wake a sleeping phone for a waiting request.
            if let Some(open) = self.request.as_mut() {
                if !open.sent && !open.woke && !phone_present {
                    open.woke = true;
                    trace("bridge.wake");
                    let _ = conn.send(&RelayFrame::Wake);
                }
            }
            if let Some(c) = candidate.as_mut() {
                if c.poll_timeout().is_some_and(|t| now >= t) {
                    c.handle_timeout(now);
                }
                while let Some(f) = c.poll_frame() {
                    let _ = conn.send(&RelayFrame::Data(f));
                }
                if c.is_finished() {
                    candidate = None;
                }
            }
            let mut request_sent = false;
            if let Some(s) = session.as_mut() {
                // As soon as the session's keys are ready: a woken phone finds the request
                // right behind the bridge's HS2 and Hello instead of one round trip later
                // (docs/pairing-protocol.md §5.3). Only the phone that sent HS1 can read it;
                // if that phone never confirms, the request goes to the next session.
                let keys_ready = matches!(s.state(), SessionState::Open { .. });
                if let (Some(open), true) = (self.request.as_mut(), keys_ready) {
                    if !open.sent {
                        let (id, kind) = (open.request_id, open.kind);
                        match s.send_request_as(id, kind, open.payload.clone(), None, now) {
                            Ok(_) => {
                                open.sent = true;
                                request_sent = true;
                            }
                            Err(e) => eprintln!("cannot send the request: {e}"),
                        }
                    }
                }
                if s.poll_timeout().is_some_and(|t| now >= t) {
                    s.handle_timeout(now);
                }
                let mut revoked = false;
                while let Some(event) = s.poll_event() {
                    match event {
                        Event::Established(e) => {
                            trace("bridge.established");
                            if let Some(info) = e.peer_get_info {
                                to_store.0 = self.new_get_info(info);
                            }
                            to_store.1 = true;
                        }
                        Event::GetInfo(info) => to_store.0 = self.new_get_info(info),
                        Event::Pending { status, .. } => {
                            if let Some(open) = self.request.as_ref() {
                                let _ = open.reply.send(Reply::Pending(status));
                            }
                        }
                        Event::CtapResponse { payload, .. } => {
                            trace("bridge.response");
                            if let Some(open) = self.request.take() {
                                open.finish(payload);
                            }
                        }
                        Event::TimedOut(_) => {
                            eprintln!("the phone went silent");
                            self.session_lost();
                        }
                        Event::Revoked => revoked = true,
                        _ => {}
                    }
                }
                if std::mem::take(&mut self.cancel_wanted) {
                    if let Some(open) = self.request.as_mut().filter(|o| o.sent) {
                        open.cancelled = true;
                        let _ = s.cancel();
                    }
                }
                if request_sent {
                    trace("bridge.send"); // before the write: the phone may read it before we return
                }
                while let Some(f) = s.poll_frame() {
                    let _ = conn.send(&RelayFrame::Data(f));
                }
                if revoked {
                    conn.close();
                    return Ok(Served::Revoked);
                }
                if s.is_finished() {
                    session = None;
                    self.session_lost();
                }
            }
            // Store writes take milliseconds: not while a request waits (a woken phone's
            // request leaves right behind the session's establishment).
            if self.request.is_none() {
                self.store_seen(record, &mut to_store);
            }
            if !got_frame {
                self.wait(session.as_ref().and_then(Session::poll_timeout));
            }
        }
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
    fn store_seen(&mut self, record: &PairingRecord, to_store: &mut (Option<Vec<u8>>, bool)) {
        if let Some(info) = to_store.0.take() {
            let _ = self.store.set_peer_get_info(&record.id, &info);
        }
        if std::mem::take(&mut to_store.1) {
            let _ = self.store.touch(&record.id, unix_now());
        }
    }

    /// The session ended with a request sent and not answered: it goes to the next session
    /// (waking the phone again) under the same request id, unless the browser cancelled it.
    /// The phone runs a request at most once per id and answers a repeat from memory or
    /// from the run still going (protocol §5.2), so neither a lost answer nor a request that
    /// crossed the phone's `Bye` makes it run twice. It waits for the phone again up to the
    /// phone timeout, and never beyond `REQUEST_LIFETIME` after it came.
    fn session_lost(&mut self) {
        let Some(open) = self.request.take_if(|o| o.sent) else {
            return;
        };
        if open.cancelled {
            open.finish(cancelled_answer());
        } else {
            let now = Instant::now();
            let deadline = (now + self.config.phone_timeout).min(open.received + REQUEST_LIFETIME);
            self.request = Some(Open {
                sent: false,
                woke: false,
                deadline,
                ..open
            });
        }
    }
}

/// The forwarding thread: hands the transport's messages to the link and wakes it; once the
/// transport is gone (the bridge stops), wakes it a last time so that it sees the stop flag.
fn forward_requests(transport: &Receiver<ToLink>, to_link: &Sender<ToLink>, wakeup: &Wakeup) {
    loop {
        match transport.recv() {
            Ok(message) => {
                if to_link.send(message).is_err() {
                    return;
                }
                wakeup.wake();
            }
            Err(_) => {
                wakeup.wake();
                return;
            }
        }
    }
}

/// "10 minutes", "1 minute", "90 seconds": for messages about how long something lasts.
pub fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs_f64().round() as u64;
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if secs >= 60 && secs % 60 == 0 {
        plural(secs / 60, "minute")
    } else {
        plural(secs, "second")
    }
}
