//! The bridge's link to the phone: one thread owns the relay connection and the sans-IO
//! pairing session (first contact while no phone is paired, then KK sessions on the pairing
//! mailbox); the CTAPHID transport's worker talks to it through [`ForwardingEngine`].
//!
//! The link thread sleeps on one [`Wakeup`], raised by the relay connection's reader when
//! frames arrive and by a small forwarding thread when the transport sends a request or a
//! cancel, so it reacts to both at once (`docs/latency.md`); otherwise it wakes only for its
//! timers and to look at the stop flag.

//!
//! Modules with one job each: [`forwarding`] (the transport's engine and its channel to the
//! link), [`pairing`] (first contact and the user's confirmation), [`serving`] (the pairing
//! mailbox on `pocketkey_net`'s session driver); this one holds the link's state and its
//! top-level loop.

mod forwarding;
mod pairing;
mod serving;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use pocketkey_core::engine::RequestKind;
use pocketkey_core::pairing::{Hello, PairingRecord, PairingStore, RequestId, Role};
use pocketkey_net::driver::Ended;
use pocketkey_net::mailbox::Wakeup;

use crate::confirm::Confirmer;
use crate::served::ServedChoice;

pub use forwarding::ForwardingEngine;
use forwarding::{cancelled_answer, Reply, ToLink};
use forwarding::{forward_requests, timeout_answer};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect attempts wait a jittered delay from 0.5–1 s, doubling up to the most.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(30);
/// The longest the link sleeps: how soon it sees the stop flag (which cannot wake it; the
/// transport ending does, see [`forward_requests`]).
const STOP_CHECK: Duration = Duration::from_millis(200);

use pocketkey_core::clock::unix_now;
use pocketkey_net::relays::Backoff;

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
    /// A relay URL list (`pocketkey_net::relays`) to serve the pairing through instead of
    /// its own relay URL: the nodes of its relay deployment.
    pub relay_nodes: Option<String>,
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

/// Where the open request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for a session to send it in; `woke`: a wake-up went to the phone for it.
    Waiting { woke: bool },
    /// Sent to the phone in the current session.
    Sent,
    /// Sent, then cancelled by the browser; the phone was told.
    Cancelled,
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
    stage: Stage,
    /// Until the phone attaches and takes it (after that, the session's silence timer).
    deadline: Instant,
}

impl Open {
    fn is_sent(&self) -> bool {
        !matches!(self.stage, Stage::Waiting { .. })
    }

    fn finish(self, answer: Vec<u8>) {
        // The transport's worker gave up waiting (the bridge stops): nobody to answer.
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
        let link = Self {
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
        };
        // The transport answers getInfo from the cache as soon as it runs, which may be before
        // the link thread has chosen the phone: a host probing the key at start would get
        // CTAP1_ERR_OTHER though a phone is paired. So the cache starts with the phone that
        // `run` will serve.
        if !link.config.pair_another {
            if let Some(record) = link.current_record() {
                if record.suspended_at.is_none() {
                    *link.get_info.lock().unwrap_or_else(PoisonError::into_inner) =
                        record.peer_get_info;
                }
            }
        }
        link
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
                    Ok(Ended::Stopped) => Mode::Paired(record),
                    // `Revoke` in an established session: authenticated by the pairing's keys,
                    // so the record goes.
                    Ok(Ended::Revoked) => {
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
                        // Jittered: the phones and computers of a node that died do not all
                        // come back to the other nodes at once.
                        self.idle(Backoff::new(RECONNECT_DELAY, RECONNECT_DELAY).next_delay());
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
        if let Err(e) = self.store.forget(&record.id) {
            eprintln!("cannot delete the pairing: {e}");
        }
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
                        stage: Stage::Waiting { woke: false },
                        deadline: now + self.config.phone_timeout,
                    });
                }
                ToLink::Cancel => {
                    if let Some(open) = self.request.take_if(|o| !o.is_sent()) {
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
            .is_some_and(|o| !o.is_sent() && now >= o.deadline)
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
        for t in [until, self.waiting_deadline()].into_iter().flatten() {
            wait = wait.min(t.saturating_duration_since(now));
        }
        self.wakeup.wait(wait);
    }

    /// The deadline of an open request no session has taken yet.
    fn waiting_deadline(&self) -> Option<Instant> {
        self.request
            .as_ref()
            .filter(|o| !o.is_sent())
            .map(|o| o.deadline)
    }

    fn idle(&mut self, total: Duration) {
        let until = Instant::now() + total;
        while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
            self.take_requests(Instant::now());
            self.wait(Some(until));
        }
    }
}

/// "10 minutes", "1 minute", "90 seconds": for messages about how long something lasts.
pub fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs_f64().round() as u64;
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if secs >= 60 && secs.is_multiple_of(60) {
        plural(secs / 60, "minute")
    } else {
        plural(secs, "second")
    }
}

#[cfg(test)]
mod tests {
    use pocketkey_core::crypto::master_key::MasterKey;
    use pocketkey_core::pairing::delivery::REQUEST_LIFETIME;

    use super::*;

    fn link(phone_timeout: Duration) -> (Link, Sender<ToLink>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = PairingStore::open_in_memory(&MasterKey::from_bytes([7; 32])).unwrap();
        let (transport, requests) = mpsc::channel();
        let config = LinkConfig {
            relay_url: None,
            relay_nodes: None,
            phone: None,
            pair_another: false,
            name: "PC".into(),
            qr_png: None,
            print_url: false,
            offer_for: Duration::from_secs(1),
            phone_timeout,
            auto_confirm: true,
            served: ServedChoice::in_dir(dir.path()),
        };
        let mut link = Link::new(
            config,
            store,
            Arc::new(Mutex::new(None)),
            requests,
            Arc::new(AtomicBool::new(false)),
        );
        // Read the transport directly: no forwarding thread in these tests.
        link.requests = link.transport.take().unwrap();
        (link, transport, dir)
    }

    fn request(transport: &Sender<ToLink>) -> Receiver<Reply> {
        let (reply, replies) = mpsc::channel();
        transport
            .send(ToLink::Request {
                kind: RequestKind::Cbor,
                payload: vec![0x01],
                reply,
            })
            .unwrap();
        replies
    }

    fn done(replies: &Receiver<Reply>) -> Option<Vec<u8>> {
        match replies.try_recv() {
            Ok(Reply::Done(answer)) => Some(answer),
            Ok(Reply::Pending(status)) => panic!("a status ({status:?}), not an answer"),
            Err(_) => None,
        }
    }

    #[test]
    fn a_new_request_waits_unwoken_and_replaces_the_one_before() {
        let (mut link, transport, _dir) = link(Duration::from_secs(60));
        let first = request(&transport);
        link.take_requests(Instant::now());
        assert_eq!(
            link.request.as_ref().map(|o| o.stage),
            Some(Stage::Waiting { woke: false })
        );
        let _second = request(&transport);
        link.take_requests(Instant::now());
        assert_eq!(done(&first), Some(timeout_answer(RequestKind::Cbor)));
    }

    #[test]
    fn a_cancel_before_sending_answers_at_once_and_after_sending_waits_for_the_session() {
        let (mut link, transport, _dir) = link(Duration::from_secs(60));
        let unsent = request(&transport);
        transport.send(ToLink::Cancel).unwrap();
        link.take_requests(Instant::now());
        assert_eq!(done(&unsent), Some(cancelled_answer()));
        assert!(link.request.is_none());

        let sent = request(&transport);
        link.take_requests(Instant::now());
        link.request.as_mut().unwrap().stage = Stage::Sent;
        transport.send(ToLink::Cancel).unwrap();
        link.take_requests(Instant::now());
        assert!(link.cancel_wanted, "the session tells the phone");
        assert_eq!(done(&sent), None);
    }

    #[test]
    fn a_lost_session_carries_a_sent_request_over_unless_it_was_cancelled() {
        let (mut link, transport, _dir) = link(Duration::from_secs(60));
        let replies = request(&transport);
        link.take_requests(Instant::now());
        let id = link.request.as_ref().unwrap().request_id;
        link.request.as_mut().unwrap().stage = Stage::Sent;
        link.session_lost();
        let open = link.request.as_ref().expect("carried over");
        assert_eq!(
            (open.stage, open.request_id),
            (Stage::Waiting { woke: false }, id)
        );
        assert!(open.deadline <= open.received + REQUEST_LIFETIME);
        assert_eq!(done(&replies), None);

        link.request.as_mut().unwrap().stage = Stage::Cancelled;
        link.session_lost();
        assert!(link.request.is_none());
        assert_eq!(done(&replies), Some(cancelled_answer()));
    }

    #[test]
    fn an_unsent_request_past_its_deadline_times_out() {
        let (mut link, transport, _dir) = link(Duration::ZERO);
        let replies = request(&transport);
        link.take_requests(Instant::now());
        link.take_requests(Instant::now() + Duration::from_millis(1));
        assert_eq!(done(&replies), Some(timeout_answer(RequestKind::Cbor)));
        assert_eq!(link.waiting_deadline(), None);
    }

    #[test]
    fn durations_read_in_minutes_or_seconds() {
        assert_eq!(describe_duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(describe_duration(Duration::from_secs(60)), "1 minute");
        assert_eq!(describe_duration(Duration::from_secs(90)), "90 seconds");
        assert_eq!(describe_duration(Duration::from_secs(1)), "1 second");
    }
}
