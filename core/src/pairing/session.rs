//! One pairing session, sans-IO, for either role: end-to-end frames in; frames to send,
//! events and timer deadlines out (docs/pairing-protocol.md §4–5).
//!
//! ```text
//! Handshaking ──our part of the handshake done──▶ Open ──peer's Hello──▶ Open (established)
//!      │   (sends our Hello first thing)                 │
//!      └────── bad frame, timeout ──▶ Failed ◀───────────┤
//!                                     Closed ◀─── Bye / Revoke (either side)
//! ```
//!
//! The bridge's first contact holds between the phone's Hello and its own: the phone's Hello
//! raises [`Event::ConfirmationNeeded`] and nothing else happens (no record, no Hello) until
//! the runtime calls [`Session::confirm`] (the user said yes: `Established` with the new
//! pairing, then our Hello) or [`Session::refuse`] (a `Revoke` to the phone, nothing stored);
//! [`CONFIRMATION_TIMEOUT`] without either refuses the same way.
//!
//! Frames are the end-to-end frames of §4: `kind ‖ body`, carried in relay DATA frames
//! ([`super::relay::RelayFrame::Data`]): the runtime wraps what [`Session::poll_frame`] returns
//! and unwraps what it feeds to [`Session::receive`]. After the handshake every body is
//! encrypted by the hybrid [`Crypter`] (AES-256-GCM, per-direction counters, padding).
//!
//! The runtime loop: feed frames to `receive(frame, now)`, then drain `poll_frame` (send each)
//! and `poll_event` (act on each); arm a timer for `poll_timeout()` and call
//! `handle_timeout(now)` when it fires. The session never reads a clock. Any error from
//! `receive` ends the session; [`SessionError::HandshakeWhileOpen`] on the bridge means the
//! phone started over: start a new bridge session and feed it the same frame.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use p256::{PublicKey, SecretKey};
use thiserror::Error;

use super::confirm::ConfirmationCode;
use super::handshake::{Finished, Handshake, HandshakeError, Pattern};
use super::mailbox::{MailboxKeys, PairingId};
use super::messages::{
    CtapRequest, DecodeOutcome, Hello, Message, MessageError, PendingStatus, RequestId,
    MAX_MESSAGE_LEN, MAX_PING_LEN,
};
use super::offer::PairingOffer;
use super::relay::MAX_DATA_LEN;
use super::url::{validate_name, PairingUrl};
use super::Role;
use crate::engine::RequestKind;
use crate::hybrid::crypter::{Crypter, CrypterError};

/// From the start of a handshake to the peer's `Hello`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// First contact: how long the bridge waits for its user to confirm the pairing after the
/// phone's `Hello` (then it refuses). The phone waits this plus [`HANDSHAKE_TIMEOUT`] for the
/// bridge's `Hello` once its own part of the handshake is done, so that it never gives up on
/// a pairing the computer can still confirm.
pub const CONFIRMATION_TIMEOUT: Duration = Duration::from_secs(120);
/// The phone sends `Pending` at least this often while a request is open.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// The bridge gives up on an open request after this long without a word from the phone.
pub const PHONE_SILENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// End-to-end frame kinds, in one place.
pub mod frame_kind {
    /// A Noise handshake message.
    pub const HANDSHAKE: u8 = 0x01;
    /// An encrypted session message.
    pub const TRANSPORT: u8 = 0x02;
}

/// Whether an end-to-end frame is a handshake message (the bridge's runtime uses this to
/// start a new session when the phone starts over).
pub fn is_handshake_frame(frame: &[u8]) -> bool {
    frame.first() == Some(&frame_kind::HANDSHAKE)
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// A pairing made by first contact: what to store (see `records::PairingRecord::from_new`).
pub struct NewPairing {
    pub id: PairingId,
    /// Our role in it.
    pub role: Role,
    pub our_static: SecretKey,
    pub peer_static: PublicKey,
    /// The peer's display name: the URL's computer name on the phone, the phone's `Hello`
    /// name on the bridge.
    pub name: String,
    pub relay_url: String,
    /// Bridge only: the phone's getInfo.
    pub peer_get_info: Option<Vec<u8>>,
}

impl std::fmt::Debug for NewPairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPairing")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("name", &self.name)
            .field("relay_url", &self.relay_url)
            .finish_non_exhaustive()
    }
}

/// The session is established: the peer's `Hello` arrived.
#[derive(Debug)]
pub struct Established {
    pub pairing_id: PairingId,
    pub peer_static: PublicKey,
    pub peer_name: String,
    /// From the phone's `Hello` (bridge side): the getInfo to cache.
    pub peer_get_info: Option<Vec<u8>>,
    pub handshake_hash: [u8; 32],
    /// First contact only: the new pairing to store now.
    pub new_pairing: Option<NewPairing>,
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The handshake (up to the peer's `Hello`) took longer than [`HANDSHAKE_TIMEOUT`] (the
    /// phone's first contact: than the wait for the computer's confirmation).
    Handshake,
    /// Bridge, first contact: nobody confirmed or refused within [`CONFIRMATION_TIMEOUT`];
    /// the phone was told (as by [`Session::refuse`]).
    Confirmation,
    /// Bridge: the phone said nothing for [`PHONE_SILENCE_TIMEOUT`] during a request.
    PhoneSilent { id: u32 },
}

/// What the runtime must act on.
#[derive(Debug)]
pub enum Event {
    /// The peer is authenticated and live; for first contact, store `new_pairing`.
    Established(Box<Established>),
    /// Phone, first contact: our part of the handshake is done; show this code. The computer
    /// asks its user to compare it before it says `Hello`.
    ShowCode(ConfirmationCode),
    /// Bridge, first contact: the phone `phone_name` completed the handshake; ask the user
    /// whether it shows `code`, then call [`Session::confirm`] or [`Session::refuse`].
    ConfirmationNeeded {
        phone_name: String,
        code: ConfirmationCode,
    },
    /// Phone, first contact: the computer refused the pairing (its user did not confirm it,
    /// or did not answer in time). Nothing was stored there. The session is over.
    Refused,
    /// Phone: a CTAP request for the engine; answer with [`Session::respond`].
    CtapRequest(CtapRequest),
    /// Phone: the browser cancelled request `id`; end the approval, still respond.
    Cancel { id: u32 },
    /// Bridge: the answer to request `id`.
    CtapResponse { id: u32, payload: Vec<u8> },
    /// Bridge: the phone is working on request `id` (keep the browser waiting with this
    /// KEEPALIVE status).
    Pending { id: u32, status: PendingStatus },
    /// Bridge: the phone's getInfo changed; replace the cache.
    GetInfo(Vec<u8>),
    /// The peer answered our ping.
    Pong(Vec<u8>),
    /// The peer revoked the pairing: forget the record. The session is over.
    Revoked,
    /// The peer ended the session (the pairing stays). The session is over.
    Closed,
    /// A deadline passed. The session is over.
    TimedOut(Timeout),
}

/// Why the session ended (from `receive`), or why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("transport: {0}")]
    Transport(#[from] CrypterError),
    #[error("message: {0}")]
    Message(#[from] MessageError),
    #[error("a frame that is empty, too large or of an unknown kind")]
    BadFrame,
    #[error("a handshake frame in an open session (bridge: the phone started over)")]
    HandshakeWhileOpen,
    #[error("a transport frame before the handshake finished")]
    TransportBeforeHandshake,
    #[error("the peer's first message is not a valid Hello (type {0:#04x})")]
    HelloExpected(u8),
    #[error("message type {0:#04x} is not expected here")]
    UnexpectedMessage(u8),
    #[error("a CTAP request while the previous one is open")]
    RequestWhileBusy,
    /// The caller's mistake: the session goes on.
    #[error("invalid Hello for this role (name rules; the phone's must carry getInfo)")]
    InvalidHello,
    /// The caller's mistake: the session goes on.
    #[error("not possible before the handshake is done")]
    NotReady,
    /// The caller's mistake: the session goes on.
    #[error("this role does not send that")]
    WrongRole,
    /// The caller's mistake: the session goes on.
    #[error("a request is already open")]
    Busy,
    /// The caller's mistake: the session goes on.
    #[error("no open request with that id")]
    NoSuchRequest,
    /// The caller's mistake: the session goes on.
    #[error("a {0}-byte message is too long")]
    TooLong(usize),
    /// The caller's mistake: the session had already ended.
    #[error("the session has ended")]
    Closed,
    /// The caller's mistake: the session goes on.
    #[error("no pairing is waiting for confirmation")]
    NothingToConfirm,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Handshaking,
    /// Our keys are ready; `established` once the peer's `Hello` arrived.
    Open {
        established: bool,
    },
    /// Bye or Revoke, either side.
    Closed,
    /// A bad frame or a timeout.
    Failed,
}

/// What first contact needs to remember until the pairing is made.
struct FirstContact {
    relay_url: String,
    /// Phone: the URL's name for the record.
    url_name: String,
}

struct Open {
    crypter: Crypter,
    peer_static: PublicKey,
    handshake_hash: [u8; 32],
    established: bool,
    /// Phone: the open request and what it is doing. Bridge: the outstanding request.
    request: Option<(u32, PendingStatus)>,
    /// The last request id seen or sent (ids increase from 1).
    last_id: u32,
    /// Phone: next Pending. Bridge: when the phone is declared silent.
    request_deadline: Option<Instant>,
}

enum State {
    Handshaking(Box<Handshake>),
    Open(Box<Open>),
    Closed,
    Failed,
}

/// One session between a phone and a bridge.
pub struct Session {
    role: Role,
    pattern: Pattern,
    state: State,
    our_static: SecretKey,
    /// Known from the start for a stored pairing; after the handshake for first contact.
    pairing_id: Option<PairingId>,
    hello: Hello,
    first_contact: Option<FirstContact>,
    /// Bridge: our Hello waits for the peer's (first contact; a session that must not
    /// disturb a live one, see [`Session::hold_hello`]).
    hello_after_peer: bool,
    /// Bridge, first contact: the phone's Hello, held until the user confirms.
    awaiting_confirmation: Option<Hello>,
    handshake_deadline: Option<Instant>,
    frames: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("pattern", &self.pattern)
            .field("state", &self.state())
            .field("pairing_id", &self.pairing_id)
            .field("frames", &self.frames.len())
            .field("events", &self.events.len())
            .finish()
    }
}

/// Whether `request` is the open request `id`.
fn is_request(request: Option<(u32, PendingStatus)>, id: u32) -> bool {
    matches!(request, Some((open_id, _)) if open_id == id)
}

fn check_hello(hello: &Hello, role: Role) -> Result<(), SessionError> {
    let ok = validate_name(&hello.name).is_ok()
        && match role {
            Role::Phone => hello.get_info.is_some(),
            Role::Bridge => hello.get_info.is_none(),
        };
    if ok {
        Ok(())
    } else {
        Err(SessionError::InvalidHello)
    }
}

impl Session {
    /// Phone, first contact: from the scanned URL and a new static key for this pairing.
    /// Queues HS1.
    pub fn phone_first_contact(
        url: &PairingUrl,
        our_static: SecretKey,
        hello: Hello,
        now: Instant,
    ) -> Result<Self, SessionError> {
        check_hello(&hello, Role::Phone)?;
        let (handshake, hs1) = Handshake::phone_first_contact(url, &our_static)?;
        let mut session = Self::new(Role::Phone, handshake, our_static, None, hello);
        session.first_contact = Some(FirstContact {
            relay_url: url.relay_url.clone(),
            url_name: url.name.clone(),
        });
        session.handshake_deadline = Some(now + HANDSHAKE_TIMEOUT);
        session.frames.push_back(frame(frame_kind::HANDSHAKE, &hs1));
        Ok(session)
    }

    /// Bridge, first contact: consumes the offer (one QR code, one handshake). Waits for HS1;
    /// the handshake clock starts with it.
    pub fn bridge_first_contact(offer: PairingOffer, hello: Hello) -> Result<Self, SessionError> {
        check_hello(&hello, Role::Bridge)?;
        let (our_static, url) = offer.into_parts();
        let handshake = Handshake::bridge_first_contact(&our_static, &url)?;
        let mut session = Self::new(Role::Bridge, handshake, our_static, None, hello);
        session.first_contact = Some(FirstContact {
            relay_url: url.relay_url,
            url_name: url.name,
        });
        session.hello_after_peer = true;
        Ok(session)
    }

    /// Phone, a stored pairing. Queues HS1.
    pub fn phone(
        our_static: SecretKey,
        peer_static: &PublicKey,
        hello: Hello,
        now: Instant,
    ) -> Result<Self, SessionError> {
        check_hello(&hello, Role::Phone)?;
        let (handshake, hs1) = Handshake::phone_session(&our_static, peer_static)?;
        let id = MailboxKeys::pairing(&our_static, peer_static, Role::Phone).id();
        let mut session = Self::new(Role::Phone, handshake, our_static, Some(id), hello);
        session.handshake_deadline = Some(now + HANDSHAKE_TIMEOUT);
        session.frames.push_back(frame(frame_kind::HANDSHAKE, &hs1));
        Ok(session)
    }

    /// Bridge, a stored pairing. Waits for the phone's HS1.
    pub fn bridge(
        our_static: SecretKey,
        peer_static: &PublicKey,
        hello: Hello,
    ) -> Result<Self, SessionError> {
        check_hello(&hello, Role::Bridge)?;
        let handshake = Handshake::bridge_session(&our_static, peer_static)?;
        let id = MailboxKeys::pairing(&our_static, peer_static, Role::Bridge).id();
        Ok(Self::new(
            Role::Bridge,
            handshake,
            our_static,
            Some(id),
            hello,
        ))
    }

    fn new(
        role: Role,
        handshake: Handshake,
        our_static: SecretKey,
        pairing_id: Option<PairingId>,
        hello: Hello,
    ) -> Self {
        Self {
            role,
            pattern: handshake.pattern(),
            state: State::Handshaking(Box::new(handshake)),
            our_static,
            pairing_id,
            hello,
            first_contact: None,
            hello_after_peer: false,
            awaiting_confirmation: None,
            handshake_deadline: None,
            frames: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The pairing this session belongs to (first contact: known once the handshake is done).
    pub fn pairing_id(&self) -> Option<PairingId> {
        self.pairing_id
    }

    pub fn state(&self) -> SessionState {
        match &self.state {
            State::Handshaking(_) => SessionState::Handshaking,
            State::Open(open) => SessionState::Open {
                established: open.established,
            },
            State::Closed => SessionState::Closed,
            State::Failed => SessionState::Failed,
        }
    }

    /// Whether the peer's `Hello` has arrived.
    pub fn is_established(&self) -> bool {
        matches!(&self.state, State::Open(open) if open.established)
    }

    /// Whether the session is over (closed or failed): detach or start anew.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }

    /// The transport counters (read, write), once open: for diagnostics and tests.
    pub fn counters(&self) -> Option<(Option<u32>, Option<u32>)> {
        match &self.state {
            State::Open(open) => Some(open.crypter.counters()),
            _ => None,
        }
    }

    /// The next end-to-end frame to send (in a relay DATA frame), in order.
    pub fn poll_frame(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let request = match &self.state {
            State::Open(open) => open.request_deadline,
            State::Handshaking(_) => None,
            State::Closed | State::Failed => return None,
        };
        let handshake = if self.is_established() {
            None
        } else {
            self.handshake_deadline
        };
        match (handshake, request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Acts on the deadlines that passed by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_finished() {
            return;
        }
        if !self.is_established() && self.handshake_deadline.is_some_and(|d| now >= d) {
            let timeout = if self.awaiting_confirmation.take().is_some() {
                // Tell the phone at once rather than leave it waiting for its own deadline.
                let _ = self.send(&Message::Revoke);
                Timeout::Confirmation
            } else {
                Timeout::Handshake
            };
            self.state = State::Failed;
            self.events.push_back(Event::TimedOut(timeout));
            return;
        }
        let State::Open(open) = &mut self.state else {
            return;
        };
        let (Some(deadline), Some((id, status))) = (open.request_deadline, open.request) else {
            return;
        };
        if now < deadline {
            return;
        }
        match self.role {
            Role::Phone => {
                open.request_deadline = Some(now + KEEPALIVE_INTERVAL);
                let _ = self.send(&Message::Pending { id, status });
            }
            Role::Bridge => {
                self.state = State::Failed;
                self.events
                    .push_back(Event::TimedOut(Timeout::PhoneSilent { id }));
            }
        }
    }

    /// Takes one end-to-end frame from the peer. Any error ends the session (state
    /// `Failed`), except [`SessionError::Closed`] for frames after the end.
    pub fn receive(&mut self, frame: &[u8], now: Instant) -> Result<(), SessionError> {
        if self.is_finished() {
            return Err(SessionError::Closed);
        }
        let result = self.receive_inner(frame, now);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn receive_inner(&mut self, frame: &[u8], now: Instant) -> Result<(), SessionError> {
        if frame.len() > MAX_DATA_LEN {
            return Err(SessionError::BadFrame);
        }
        let Some((&kind, body)) = frame.split_first() else {
            return Err(SessionError::BadFrame);
        };
        match (kind, &mut self.state) {
            (frame_kind::HANDSHAKE, State::Handshaking(handshake)) => {
                if self.handshake_deadline.is_none() {
                    self.handshake_deadline = Some(now + HANDSHAKE_TIMEOUT);
                }
                let step = handshake.read(body)?;
                if let Some(reply) = step.reply {
                    self.frames
                        .push_back(self::frame(frame_kind::HANDSHAKE, &reply));
                }
                if let Some(finished) = step.finished {
                    self.open(finished, now)?;
                }
                Ok(())
            }
            (frame_kind::HANDSHAKE, State::Open(_)) => Err(SessionError::HandshakeWhileOpen),
            (frame_kind::TRANSPORT, State::Handshaking(_)) => {
                Err(SessionError::TransportBeforeHandshake)
            }
            (frame_kind::TRANSPORT, State::Open(open)) => {
                let plaintext = open.crypter.decrypt(body)?;
                if self.role == Role::Bridge && open.request.is_some() {
                    open.request_deadline = Some(now + PHONE_SILENCE_TIMEOUT);
                }
                match Message::decode(&plaintext)? {
                    DecodeOutcome::Unknown(_) => Ok(()),
                    DecodeOutcome::Message(message) => self.handle(message, now),
                }
            }
            _ => Err(SessionError::BadFrame),
        }
    }

    /// Our side of the handshake is done: open the transport and send our Hello.
    fn open(&mut self, finished: Finished, now: Instant) -> Result<(), SessionError> {
        if self.pairing_id.is_none() {
            self.pairing_id =
                Some(MailboxKeys::pairing(&self.our_static, &finished.peer_static, self.role).id());
        }
        self.state = State::Open(Box::new(Open {
            crypter: Crypter::new(&finished.keys),
            peer_static: finished.peer_static,
            handshake_hash: finished.handshake_hash,
            established: false,
            request: None,
            last_id: 0,
            request_deadline: None,
        }));
        // Key confirmation, first contact: the phone stores the pairing on the bridge's Hello,
        // the bridge on the phone's. So the bridge says Hello only once it has read the
        // phone's (which comes right behind HS3) and its runtime has stored the pairing
        // (it stores on `Established` before it sends the queued frames): a Hello lost on
        // the way can leave the bridge alone paired, never the phone (protocol §5.2). A held
        // Hello (`hold_hello`) waits the same way.
        if self.hello_after_peer {
            return Ok(());
        }
        if self.role == Role::Phone && self.first_contact.is_some() {
            // From here on the bridge's Hello waits for its user to confirm (protocol §5.3).
            self.handshake_deadline = Some(now + CONFIRMATION_TIMEOUT + HANDSHAKE_TIMEOUT);
            let code = ConfirmationCode::derive(&finished.handshake_hash);
            self.events.push_back(Event::ShowCode(code));
        }
        let hello = Message::Hello(self.hello.clone());
        self.send(&hello)
    }

    fn handle(&mut self, message: Message, now: Instant) -> Result<(), SessionError> {
        let kind = message.message_type();
        let State::Open(open) = &mut self.state else {
            return Err(SessionError::NotReady);
        };
        if !open.established {
            if self.awaiting_confirmation.is_some() {
                // The phone has said all it says before our Hello; it may only give up.
                return match message {
                    Message::Bye => {
                        self.awaiting_confirmation = None;
                        self.state = State::Closed;
                        self.events.push_back(Event::Closed);
                        Ok(())
                    }
                    _ => Err(SessionError::UnexpectedMessage(kind)),
                };
            }
            // First contact: a Revoke in place of the bridge's Hello is its refusal.
            if self.role == Role::Phone
                && self.first_contact.is_some()
                && matches!(message, Message::Revoke)
            {
                self.state = State::Closed;
                self.events.push_back(Event::Refused);
                return Ok(());
            }
            let Message::Hello(hello) = message else {
                return Err(SessionError::HelloExpected(kind));
            };
            // The peer's role is the other one: a phone's Hello carries getInfo.
            check_hello(&hello, self.role.other())
                .map_err(|_| SessionError::HelloExpected(kind))?;
            if self.role == Role::Bridge && self.first_contact.is_some() {
                // Nothing is stored and no Hello leaves before the user confirms that the
                // phone shows the same code (protocol §5.3).
                let code = ConfirmationCode::derive(&open.handshake_hash);
                self.handshake_deadline = Some(now + CONFIRMATION_TIMEOUT);
                self.events.push_back(Event::ConfirmationNeeded {
                    phone_name: hello.name.clone(),
                    code,
                });
                self.awaiting_confirmation = Some(hello);
                return Ok(());
            }
            return self.establish(hello);
        }
        self.handle_established(message, now)
    }

    /// The peer's Hello is accepted: the session is established (and, first contact, the
    /// new pairing is handed out); our Hello leaves now if it waited for the peer's.
    fn establish(&mut self, hello: Hello) -> Result<(), SessionError> {
        let State::Open(open) = &mut self.state else {
            return Err(SessionError::NotReady);
        };
        open.established = true;
        let hello_due = std::mem::take(&mut self.hello_after_peer);
        let new_pairing = self.first_contact.take().map(|fc| NewPairing {
            id: self.pairing_id.expect("set when the handshake finished"),
            role: self.role,
            our_static: self.our_static.clone(),
            peer_static: open.peer_static,
            name: match self.role {
                Role::Phone => fc.url_name,
                Role::Bridge => hello.name.clone(),
            },
            relay_url: fc.relay_url,
            peer_get_info: hello.get_info.clone(),
        });
        self.events
            .push_back(Event::Established(Box::new(Established {
                pairing_id: self.pairing_id.expect("set when the handshake finished"),
                peer_static: open.peer_static,
                peer_name: hello.name,
                peer_get_info: hello.get_info,
                handshake_hash: open.handshake_hash,
                new_pairing,
            })));
        if hello_due {
            let hello = Message::Hello(self.hello.clone());
            self.send(&hello)?;
        }
        Ok(())
    }

    fn handle_established(&mut self, message: Message, now: Instant) -> Result<(), SessionError> {
        let kind = message.message_type();
        let State::Open(open) = &mut self.state else {
            return Err(SessionError::NotReady);
        };
        match (self.role, message) {
            (Role::Phone, Message::CtapRequest(request)) => {
                if open.request.is_some() {
                    return Err(SessionError::RequestWhileBusy);
                }
                if request.id <= open.last_id {
                    return Err(SessionError::UnexpectedMessage(kind));
                }
                open.last_id = request.id;
                open.request = Some((request.id, PendingStatus::Processing));
                open.request_deadline = Some(now + KEEPALIVE_INTERVAL);
                self.events.push_back(Event::CtapRequest(request));
            }
            (Role::Phone, Message::Cancel { id }) => {
                // A cancel that crossed our response is not an error.
                if is_request(open.request, id) {
                    self.events.push_back(Event::Cancel { id });
                }
            }
            (Role::Bridge, Message::CtapResponse { id, payload }) => {
                if !is_request(open.request, id) {
                    return Err(SessionError::UnexpectedMessage(kind));
                }
                open.request = None;
                open.request_deadline = None;
                self.events.push_back(Event::CtapResponse { id, payload });
            }
            (Role::Bridge, Message::Pending { id, status }) => {
                if !is_request(open.request, id) {
                    return Err(SessionError::UnexpectedMessage(kind));
                }
                open.request = Some((id, status));
                self.events.push_back(Event::Pending { id, status });
            }
            (Role::Bridge, Message::GetInfo(info)) => self.events.push_back(Event::GetInfo(info)),
            (_, Message::Ping(data)) => self.send(&Message::Pong(data))?,
            (_, Message::Pong(data)) => self.events.push_back(Event::Pong(data)),
            (_, Message::Revoke) => {
                self.state = State::Closed;
                self.events.push_back(Event::Revoked);
            }
            (_, Message::Bye) => {
                self.state = State::Closed;
                self.events.push_back(Event::Closed);
            }
            _ => return Err(SessionError::UnexpectedMessage(kind)),
        }
        Ok(())
    }

    /// Encrypts and queues one message. Length is the caller's mistake; a used-up counter ends
    /// the session.
    fn send(&mut self, message: &Message) -> Result<(), SessionError> {
        let State::Open(open) = &mut self.state else {
            return Err(if self.is_finished() {
                SessionError::Closed
            } else {
                SessionError::NotReady
            });
        };
        let plaintext = message.encode();
        if plaintext.len() > MAX_MESSAGE_LEN {
            return Err(SessionError::TooLong(plaintext.len()));
        }
        match open.crypter.encrypt(&plaintext) {
            Ok(body) => {
                self.frames.push_back(frame(frame_kind::TRANSPORT, &body));
                Ok(())
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e.into())
            }
        }
    }

    fn open_mut(&mut self) -> Result<&mut Open, SessionError> {
        match &mut self.state {
            State::Open(open) => Ok(open),
            State::Handshaking(_) => Err(SessionError::NotReady),
            State::Closed | State::Failed => Err(SessionError::Closed),
        }
    }

    fn require(&self, role: Role) -> Result<(), SessionError> {
        if self.role == role {
            Ok(())
        } else {
            Err(SessionError::WrongRole)
        }
    }

    /// Bridge, before the phone's HS1: send our Hello only after the phone's. For a new
    /// session that stands by while another is live (protocol §4): until the phone's Hello
    /// proves it is the phone, it sends nothing but its handshake answer, which a phone with
    /// an open session ignores.
    pub fn hold_hello(&mut self) -> Result<(), SessionError> {
        self.require(Role::Bridge)?;
        if !matches!(self.state, State::Handshaking(_)) {
            return Err(SessionError::NotReady);
        }
        self.hello_after_peer = true;
        Ok(())
    }

    /// Bridge, first contact, after [`Event::ConfirmationNeeded`]: the user confirmed that
    /// the phone shows the same code. Raises `Established` with the new pairing and queues
    /// our Hello: the runtime stores the pairing on that event, before it sends the frame.
    pub fn confirm(&mut self) -> Result<(), SessionError> {
        self.require(Role::Bridge)?;
        if self.is_finished() {
            return Err(SessionError::Closed);
        }
        let hello = self
            .awaiting_confirmation
            .take()
            .ok_or(SessionError::NothingToConfirm)?;
        let result = self.establish(hello);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// Bridge, first contact, after [`Event::ConfirmationNeeded`]: the user refused (or did
    /// not answer). Queues a `Revoke` for the phone (which reports [`Event::Refused`]) and
    /// ends the session; nothing is handed out to store.
    pub fn refuse(&mut self) -> Result<(), SessionError> {
        self.require(Role::Bridge)?;
        if self.is_finished() {
            return Err(SessionError::Closed);
        }
        self.awaiting_confirmation
            .take()
            .ok_or(SessionError::NothingToConfirm)?;
        self.first_contact = None;
        let sent = self.send(&Message::Revoke);
        self.state = State::Closed;
        sent
    }

    /// Bridge, first contact: whether the phone's Hello waits for [`Session::confirm`].
    pub fn awaits_confirmation(&self) -> bool {
        self.awaiting_confirmation.is_some()
    }

    /// Bridge: sends a new CTAP request (allowed as soon as our keys are ready, before the
    /// phone's Hello) under a new random [`RequestId`]; returns its id in this session. One at
    /// a time.
    pub fn send_request(
        &mut self,
        kind: RequestKind,
        payload: Vec<u8>,
        requester: Option<String>,
        now: Instant,
    ) -> Result<u32, SessionError> {
        self.send_request_as(RequestId::random(), kind, payload, requester, now)
    }

    /// Bridge: sends a CTAP request under `request_id`: the same id every time the same
    /// browser request is sent (again, in a later session), so that the phone runs it at
    /// most once (protocol §5.2). Returns its id in this session.
    pub fn send_request_as(
        &mut self,
        request_id: RequestId,
        kind: RequestKind,
        payload: Vec<u8>,
        requester: Option<String>,
        now: Instant,
    ) -> Result<u32, SessionError> {
        self.require(Role::Bridge)?;
        if requester
            .as_deref()
            .is_some_and(|r| validate_name(r).is_err())
        {
            return Err(SessionError::InvalidHello);
        }
        let open = self.open_mut()?;
        if open.request.is_some() {
            return Err(SessionError::Busy);
        }
        let id = open.last_id.checked_add(1).ok_or(SessionError::Busy)?;
        let message = Message::CtapRequest(CtapRequest {
            id,
            request_id,
            kind,
            payload,
            requester,
        });
        self.send(&message)?;
        let open = self.open_mut()?;
        open.last_id = id;
        open.request = Some((id, PendingStatus::Processing));
        open.request_deadline = Some(now + PHONE_SILENCE_TIMEOUT);
        Ok(id)
    }

    /// Bridge: the browser cancelled; tells the phone. The response still comes.
    pub fn cancel(&mut self) -> Result<(), SessionError> {
        self.require(Role::Bridge)?;
        let (id, _) = self
            .open_mut()?
            .request
            .ok_or(SessionError::NoSuchRequest)?;
        self.send(&Message::Cancel { id })
    }

    /// Phone: what the open request is doing (sends `Pending` now and every
    /// [`KEEPALIVE_INTERVAL`] from now on).
    pub fn set_status(
        &mut self,
        id: u32,
        status: PendingStatus,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.require(Role::Phone)?;
        let open = self.open_mut()?;
        if !is_request(open.request, id) {
            return Err(SessionError::NoSuchRequest);
        }
        open.request = Some((id, status));
        open.request_deadline = Some(now + KEEPALIVE_INTERVAL);
        self.send(&Message::Pending { id, status })
    }

    /// Phone: the engine's answer to request `id`.
    pub fn respond(&mut self, id: u32, payload: Vec<u8>) -> Result<(), SessionError> {
        self.require(Role::Phone)?;
        let open = self.open_mut()?;
        if !is_request(open.request, id) {
            return Err(SessionError::NoSuchRequest);
        }
        self.send(&Message::CtapResponse { id, payload })?;
        let open = self.open_mut()?;
        open.request = None;
        open.request_deadline = None;
        Ok(())
    }

    /// Phone: the getInfo changed (PIN set, options).
    pub fn update_get_info(&mut self, get_info: Vec<u8>) -> Result<(), SessionError> {
        self.require(Role::Phone)?;
        // Sent first, kept after: a call the session refuses (not established yet) changes
        // nothing, so the Hello it sends later is the one it was made with.
        self.send(&Message::GetInfo(get_info.clone()))?;
        self.hello.get_info = Some(get_info);
        Ok(())
    }

    /// Either side: a ping (≤ 32 bytes), answered by [`Event::Pong`].
    pub fn ping(&mut self, data: Vec<u8>) -> Result<(), SessionError> {
        if data.len() > MAX_PING_LEN {
            return Err(SessionError::TooLong(data.len()));
        }
        self.send(&Message::Ping(data))
    }

    /// Either side: ends the session (the pairing stays).
    pub fn bye(&mut self) -> Result<(), SessionError> {
        self.send(&Message::Bye)?;
        self.state = State::Closed;
        Ok(())
    }

    /// Either side: tells the peer this pairing is revoked and ends the session. (The caller
    /// also revokes its record and sends DELETE to the relay.)
    pub fn revoke(&mut self) -> Result<(), SessionError> {
        self.send(&Message::Revoke)?;
        self.state = State::Closed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone_hello() -> Hello {
        Hello {
            name: "phone".into(),
            get_info: Some(vec![0xa0]),
        }
    }

    fn bridge_hello() -> Hello {
        Hello {
            name: "desk".into(),
            get_info: None,
        }
    }

    /// A phone and a bridge with both handshakes done and all frames still queued at the
    /// bridge's side (its Hello) and the phone's (its Hello).
    fn handshaken() -> (Session, Session, Instant) {
        let now = Instant::now();
        let b = SecretKey::from_slice(&[0x51; 32]).unwrap();
        let p = SecretKey::from_slice(&[0x52; 32]).unwrap();
        let mut phone = Session::phone(p.clone(), &b.public_key(), phone_hello(), now).unwrap();
        let mut bridge = Session::bridge(b, &p.public_key(), bridge_hello()).unwrap();
        bridge.receive(&phone.poll_frame().unwrap(), now).unwrap();
        phone.receive(&bridge.poll_frame().unwrap(), now).unwrap();
        (phone, bridge, now)
    }

    fn raw(session: &mut Session, plaintext: &[u8]) -> Vec<u8> {
        let State::Open(open) = &mut session.state else {
            panic!("not open");
        };
        frame(
            frame_kind::TRANSPORT,
            &open.crypter.encrypt(plaintext).unwrap(),
        )
    }

    fn deliver_hellos(phone: &mut Session, bridge: &mut Session, now: Instant) {
        bridge.receive(&phone.poll_frame().unwrap(), now).unwrap();
        phone.receive(&bridge.poll_frame().unwrap(), now).unwrap();
        assert!(phone.is_established() && bridge.is_established());
        while phone.poll_event().is_some() {}
        while bridge.poll_event().is_some() {}
    }

    /// A bridge session and a stand-in phone (snow handshake + crypter) that can send any
    /// plaintext as its first message.
    fn bridge_and_raw_phone() -> (Session, Crypter, Instant) {
        use crate::pairing::handshake::Handshake;
        let now = Instant::now();
        let b = SecretKey::from_slice(&[0x51; 32]).unwrap();
        let p = SecretKey::from_slice(&[0x52; 32]).unwrap();
        let mut bridge = Session::bridge(b.clone(), &p.public_key(), bridge_hello()).unwrap();
        let (mut handshake, hs1) = Handshake::phone_session(&p, &b.public_key()).unwrap();
        bridge
            .receive(&frame(frame_kind::HANDSHAKE, &hs1), now)
            .unwrap();
        let hs2 = bridge.poll_frame().unwrap();
        let finished = handshake.read(&hs2[1..]).unwrap().finished.unwrap();
        (bridge, Crypter::new(&finished.keys), now)
    }

    #[test]
    fn the_first_message_must_be_a_hello_of_the_right_kind() {
        let (mut bridge, mut phone, now) = bridge_and_raw_phone();
        let ping = phone.encrypt(&Message::Ping(vec![]).encode()).unwrap();
        assert_eq!(
            bridge.receive(&frame(frame_kind::TRANSPORT, &ping), now),
            Err(SessionError::HelloExpected(0x20))
        );
        assert_eq!(bridge.state(), SessionState::Failed);

        // A "phone" Hello without getInfo is not a phone's Hello.
        let (mut bridge, mut phone, now) = bridge_and_raw_phone();
        let bad = phone
            .encrypt(&Message::Hello(bridge_hello()).encode())
            .unwrap();
        assert_eq!(
            bridge.receive(&frame(frame_kind::TRANSPORT, &bad), now),
            Err(SessionError::HelloExpected(0x01))
        );

        // An unknown type before the Hello is skipped; the Hello then establishes.
        let (mut bridge, mut phone, now) = bridge_and_raw_phone();
        for plaintext in [vec![0x7e], Message::Hello(phone_hello()).encode()] {
            let f = phone.encrypt(&plaintext).unwrap();
            bridge
                .receive(&frame(frame_kind::TRANSPORT, &f), now)
                .unwrap();
        }
        assert!(bridge.is_established());
    }

    #[test]
    fn unknown_types_are_skipped_and_misdirected_messages_are_errors() {
        let (mut phone, mut bridge, now) = handshaken();
        deliver_hellos(&mut phone, &mut bridge, now);
        let unknown = raw(&mut phone, &[0x7e, 0xa0]);
        bridge.receive(&unknown, now).unwrap();
        assert!(bridge.poll_event().is_none());
        assert!(bridge.is_established());

        // A request from the phone, a response nobody asked for, a second Hello.
        for message in [
            Message::CtapRequest(CtapRequest {
                id: 1,
                request_id: RequestId([1; 16]),
                kind: RequestKind::Cbor,
                payload: vec![4],
                requester: None,
            }),
            Message::CtapResponse {
                id: 1,
                payload: vec![0],
            },
            Message::Hello(phone_hello()),
        ] {
            let (mut phone, mut bridge, now) = handshaken();
            deliver_hellos(&mut phone, &mut bridge, now);
            let frame = raw(&mut phone, &message.encode());
            assert_eq!(
                bridge.receive(&frame, now),
                Err(SessionError::UnexpectedMessage(message.message_type()))
            );
        }

        // Request ids must increase; a second request while one is open is refused.
        let (mut phone, mut bridge, now) = handshaken();
        deliver_hellos(&mut phone, &mut bridge, now);
        let request = |id| {
            Message::CtapRequest(CtapRequest {
                id,
                request_id: RequestId([1; 16]),
                kind: RequestKind::Cbor,
                payload: vec![4],
                requester: None,
            })
            .encode()
        };
        let first = raw(&mut bridge, &request(1));
        phone.receive(&first, now).unwrap();
        let second = raw(&mut bridge, &request(2));
        assert_eq!(
            phone.receive(&second, now),
            Err(SessionError::RequestWhileBusy)
        );
        let (mut phone, mut bridge, now) = handshaken();
        deliver_hellos(&mut phone, &mut bridge, now);
        let zero = raw(&mut bridge, &request(0));
        assert_eq!(
            phone.receive(&zero, now),
            Err(SessionError::UnexpectedMessage(0x10))
        );
    }

    #[test]
    fn caller_mistakes_do_not_end_the_session() {
        let (mut phone, mut bridge, now) = handshaken();
        deliver_hellos(&mut phone, &mut bridge, now);
        assert_eq!(
            phone.send_request(RequestKind::Cbor, vec![], None, now),
            Err(SessionError::WrongRole)
        );
        assert_eq!(bridge.respond(1, vec![]), Err(SessionError::WrongRole));
        assert_eq!(bridge.update_get_info(vec![]), Err(SessionError::WrongRole));
        assert_eq!(phone.ping(vec![0; 33]), Err(SessionError::TooLong(33)));
        assert_eq!(
            bridge.send_request(RequestKind::Cbor, vec![0; MAX_MESSAGE_LEN], None, now),
            Err(SessionError::TooLong(MAX_MESSAGE_LEN + 28))
        );
        assert_eq!(
            bridge.send_request(RequestKind::Cbor, vec![4], Some("bad\nname".into()), now),
            Err(SessionError::InvalidHello)
        );
        assert_eq!(
            phone.set_status(9, PendingStatus::Processing, now),
            Err(SessionError::NoSuchRequest)
        );
        assert!(phone.is_established() && bridge.is_established());
        // The largest request that fits does go through.
        let max = MAX_MESSAGE_LEN - 28;
        let id = bridge
            .send_request(RequestKind::Cbor, vec![0; max], None, now)
            .unwrap();
        let frame = bridge.poll_frame().unwrap();
        assert!(frame.len() < crate::pairing::relay::MAX_DATA_LEN);
        phone.receive(&frame, now).unwrap();
        assert!(matches!(phone.poll_event(), Some(Event::CtapRequest(r)) if r.id == id));
    }

    #[test]
    fn a_held_hello_waits_for_the_phones() {
        let now = Instant::now();
        let b = SecretKey::from_slice(&[0x51; 32]).unwrap();
        let p = SecretKey::from_slice(&[0x52; 32]).unwrap();
        let mut phone = Session::phone(p.clone(), &b.public_key(), phone_hello(), now).unwrap();
        let mut bridge = Session::bridge(b, &p.public_key(), bridge_hello()).unwrap();
        assert_eq!(phone.hold_hello(), Err(SessionError::WrongRole));
        bridge.hold_hello().unwrap();
        bridge.receive(&phone.poll_frame().unwrap(), now).unwrap();
        let hs2 = bridge.poll_frame().unwrap();
        assert!(is_handshake_frame(&hs2));
        assert!(bridge.poll_frame().is_none(), "HS2 only");
        assert_eq!(bridge.hold_hello(), Err(SessionError::NotReady));
        phone.receive(&hs2, now).unwrap();
        bridge.receive(&phone.poll_frame().unwrap(), now).unwrap();
        assert!(bridge.is_established());
        phone.receive(&bridge.poll_frame().unwrap(), now).unwrap();
        assert!(phone.is_established());
    }

    #[test]
    fn invalid_hellos_are_refused_up_front() {
        let now = Instant::now();
        let k = SecretKey::from_slice(&[0x53; 32]).unwrap();
        let peer = SecretKey::from_slice(&[0x54; 32]).unwrap().public_key();
        let no_info = Hello {
            name: "phone".into(),
            get_info: None,
        };
        assert_eq!(
            Session::phone(k.clone(), &peer, no_info, now).unwrap_err(),
            SessionError::InvalidHello
        );
        assert_eq!(
            Session::bridge(k.clone(), &peer, phone_hello()).unwrap_err(),
            SessionError::InvalidHello
        );
        let blank = Hello {
            name: " ".into(),
            get_info: None,
        };
        assert_eq!(
            Session::bridge(k, &peer, blank).unwrap_err(),
            SessionError::InvalidHello
        );
    }
}
