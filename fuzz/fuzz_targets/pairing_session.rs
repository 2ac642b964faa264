//! A pairing `Session` (phone or bridge side, first contact or a stored pairing) fed end-to-end
//! frames as if from the relay: garbage, frames of a genuine peer, tampered and replayed ones,
//! with clock jumps, timeouts and the session owner's own calls in between.
//!
//! The genuine peer is a stand-in built on the public handshake and crypter
//! (`pairing::handshake::Handshake`, `hybrid::crypter::Crypter`) with the fixed keys of a
//! pairing record, so it can seal any plaintext the fuzzer writes as well as well-formed typed
//! messages. Input format, see `fuzz/README.md`: one setup byte, then steps.
//!
//! Checked on every input: no panic; garbage, a tampered (one byte changed or truncated)
//! genuine frame and a replayed genuine frame are always refused, and refusals raise no event;
//! every event is well-formed and traceable: `Established` only from the peer's genuine Hello
//! (right pairing id, peer key, name, getInfo, `new_pairing` exactly on first contact),
//! `CtapRequest`/`Cancel`/`CtapResponse`/`Pending`/`GetInfo`/`Pong`/`Revoked`/`Closed` only
//! from a genuine frame carrying that very message, ids matching the open request,
//! `TimedOut` only from `handle_timeout`; nothing after the session ended; everything the
//! session sends is at most a relay DATA payload, of a known kind, and opens at the peer as a
//! well-formed message.

#![no_main]

#[path = "support/steps.rs"]
mod steps;

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use p256::{PublicKey, SecretKey};
use pocketkey_core::engine::RequestKind;
use pocketkey_core::hybrid::crypter::Crypter;
use pocketkey_core::pairing::handshake::Handshake;
use pocketkey_core::pairing::messages::{
    CtapRequest, DecodeOutcome, Hello, Message, PendingStatus, RequestId,
};
use pocketkey_core::pairing::relay::MAX_DATA_LEN;
use pocketkey_core::pairing::session::{frame_kind, Event, Session, Timeout};
use pocketkey_core::pairing::url::{PairingSecret, PairingUrl, UrlPolicy};
use pocketkey_core::pairing::{MailboxKeys, PairingId, PairingOffer, Role, SessionState};
use steps::{trace, Input};

const RELAY: &str = "wss://relay.example/pk";
const COMPUTER: &str = "desk";

fn bridge_key() -> SecretKey {
    SecretKey::from_slice(&[0x51; 32]).expect("a valid scalar")
}

fn phone_key() -> SecretKey {
    SecretKey::from_slice(&[0x52; 32]).expect("a valid scalar")
}

fn secret() -> PairingSecret {
    PairingSecret::new(&[0x33; 32]).expect("32 bytes")
}

/// The pairing record's fixed keys, computed once per process (scalar multiplications are the
/// bulk of an input's cost).
struct Fixed {
    bridge: SecretKey,
    phone: SecretKey,
    bridge_public: PublicKey,
    phone_public: PublicKey,
    url: PairingUrl,
    pairing_id: PairingId,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let (bridge, phone) = (bridge_key(), phone_key());
        let url = offer().url().clone();
        let pairing_id = MailboxKeys::pairing(&phone, &bridge.public_key(), Role::Phone).id();
        Fixed {
            bridge_public: bridge.public_key(),
            phone_public: phone.public_key(),
            bridge,
            phone,
            url,
            pairing_id,
        }
    })
}

fn offer() -> PairingOffer {
    PairingOffer::from_parts(
        bridge_key(),
        secret(),
        RELAY,
        COMPUTER,
        UrlPolicy::Strict,
        0,
    )
    .expect("a valid offer")
}

fn hello(role: Role) -> Hello {
    match role {
        Role::Phone => Hello {
            name: "phone".into(),
            get_info: Some(vec![0xa0]),
        },
        Role::Bridge => Hello {
            name: COMPUTER.into(),
            get_info: None,
        },
    }
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(body);
    out
}

/// The genuine other side.
struct Peer {
    role: Role,
    handshake: Option<Handshake>,
    crypter: Option<Crypter>,
    /// Genuine frames for the session under test, not yet delivered.
    pending: VecDeque<Vec<u8>>,
    /// As the peer bridge: the last request id sent. As the peer phone: the last request seen.
    last_id: u32,
    /// What the session under test sent, decoded.
    seen_hello: Option<Hello>,
}

impl Peer {
    /// Reads what the session under test sent; its frames are always genuine and in order.
    fn take_from(&mut self, session: &mut Session) {
        while let Some(out) = session.poll_frame() {
            assert!(out.len() <= MAX_DATA_LEN, "a {}-byte frame", out.len());
            let (&kind, body) = out.split_first().expect("no empty frame is sent");
            match kind {
                frame_kind::HANDSHAKE => {
                    assert!(
                        self.crypter.is_none(),
                        "a handshake frame after the handshake"
                    );
                    let handshake = self.handshake.as_mut().expect("a handshake in progress");
                    let step = handshake
                        .read(body)
                        .unwrap_or_else(|e| panic!("our genuine handshake frame refused: {e}"));
                    if let Some(reply) = step.reply {
                        self.pending.push_back(frame(frame_kind::HANDSHAKE, &reply));
                    }
                    if let Some(finished) = step.finished {
                        self.crypter = Some(Crypter::new(&finished.keys));
                        self.handshake = None;
                    }
                }
                frame_kind::TRANSPORT => {
                    let crypter = self
                        .crypter
                        .as_mut()
                        .expect("a transport frame before our keys");
                    let plaintext = crypter
                        .decrypt(body)
                        .unwrap_or_else(|e| panic!("the session's frame does not open: {e}"));
                    let message = match Message::decode(&plaintext) {
                        Ok(DecodeOutcome::Message(message)) => message,
                        other => panic!("the session sent {other:?}"),
                    };
                    match message {
                        Message::Hello(hello) => {
                            assert!(self.seen_hello.is_none(), "two Hellos");
                            assert_eq!(hello, self::hello(self.role.other()));
                            self.seen_hello = Some(hello);
                        }
                        Message::CtapRequest(request) => {
                            assert_eq!(self.role, Role::Phone);
                            assert!(request.id > self.last_id, "request ids increase");
                            self.last_id = request.id;
                        }
                        _ => {}
                    }
                }
                other => panic!("a frame of kind {other:#04x}"),
            }
        }
    }

    /// Seals a plaintext, if the handshake is done.
    fn seal(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let body = self.crypter.as_mut()?.encrypt(plaintext).ok()?;
        Some(frame(frame_kind::TRANSPORT, &body))
    }

    /// A well-formed message chosen by `selector`, some of them wrong for the moment or role.
    fn typed(&mut self, selector: u8, input: &mut Input) -> Message {
        let payload = input.short();
        let status = if selector & 0x80 == 0 {
            PendingStatus::Processing
        } else {
            PendingStatus::UserPresenceNeeded
        };
        match (selector & 0x0f) % 12 {
            0 => Message::Hello(hello(self.role)),
            1 => {
                self.last_id = self.last_id.wrapping_add(1);
                Message::CtapRequest(CtapRequest {
                    id: self.last_id,
                    request_id: RequestId([selector; 16]),
                    kind: if selector & 0x80 == 0 {
                        RequestKind::Cbor
                    } else {
                        RequestKind::Msg
                    },
                    payload,
                    requester: (selector & 0x40 != 0).then(|| "firefox".to_string()),
                })
            }
            2 => Message::CtapResponse {
                id: self.last_id,
                payload,
            },
            3 => Message::Pending {
                id: self.last_id,
                status,
            },
            4 => Message::Cancel { id: self.last_id },
            5 => Message::GetInfo(payload),
            6 => Message::Ping(payload.into_iter().take(32).collect()),
            7 => Message::Pong(payload.into_iter().take(32).collect()),
            8 => Message::Revoke,
            9 => Message::Bye,
            10 => Message::Hello(hello(self.role.other())),
            _ => Message::CtapRequest(CtapRequest {
                id: self.last_id,
                request_id: RequestId([selector; 16]),
                kind: RequestKind::Cbor,
                payload,
                requester: None,
            }),
        }
    }
}

/// What the harness knows the session under test has seen and done.
struct Watch {
    role: Role,
    first_contact: bool,
    pairing_id: PairingId,
    peer_static: PublicKey,
    established: bool,
    /// Phone: the request the session surfaced and we have not answered.
    phone_open: Option<u32>,
    /// Bridge: the request we sent and have no answer to.
    bridge_open: Option<u32>,
    /// The session had ended at the end of an earlier step.
    ended: bool,
}

impl Watch {
    /// Drains events and checks each against what this step delivered.
    fn events(&mut self, session: &mut Session, delivered: &[Message], timed: bool) {
        let had = |wanted: &dyn Fn(&Message) -> bool| delivered.iter().any(wanted);
        while let Some(event) = session.poll_event() {
            if trace() {
                eprintln!("event: {event:?}");
            }
            assert!(!self.ended, "{event:?} after the session ended");
            match event {
                Event::Established(est) => {
                    assert!(!self.established, "established twice");
                    self.established = true;
                    let peer_hello = hello(self.role.other());
                    assert!(had(&|m| *m == Message::Hello(peer_hello.clone())));
                    assert_eq!(est.pairing_id, self.pairing_id);
                    assert_eq!(est.peer_static, self.peer_static);
                    assert_eq!(est.peer_name, peer_hello.name);
                    assert_eq!(est.peer_get_info, peer_hello.get_info);
                    assert_eq!(est.new_pairing.is_some(), self.first_contact);
                    if let Some(new) = est.new_pairing {
                        assert_eq!(new.id, self.pairing_id);
                        assert_eq!(new.role, self.role);
                        assert_eq!(new.peer_static, self.peer_static);
                        assert_eq!(new.relay_url, RELAY);
                        let name = match self.role {
                            Role::Phone => COMPUTER.to_string(),
                            Role::Bridge => peer_hello.name.clone(),
                        };
                        assert_eq!(new.name, name);
                    }
                    assert_eq!(session.pairing_id(), Some(self.pairing_id));
                }
                Event::CtapRequest(request) => {
                    assert_eq!(self.role, Role::Phone);
                    assert!(self.established);
                    assert!(self.phone_open.is_none(), "two open requests");
                    assert!(
                        had(&|m| *m == Message::CtapRequest(request.clone())),
                        "a CTAP request no genuine frame carried: {request:?}"
                    );
                    self.phone_open = Some(request.id);
                }
                Event::Cancel { id } => {
                    assert_eq!(self.role, Role::Phone);
                    assert_eq!(self.phone_open, Some(id));
                    assert!(had(&|m| *m == Message::Cancel { id }));
                }
                Event::CtapResponse { id, payload } => {
                    assert_eq!(self.role, Role::Bridge);
                    assert_eq!(self.bridge_open, Some(id));
                    assert!(
                        had(&|m| *m
                            == Message::CtapResponse {
                                id,
                                payload: payload.clone()
                            }),
                        "a CTAP response no genuine frame carried"
                    );
                    self.bridge_open = None;
                }
                Event::Pending { id, status } => {
                    assert_eq!(self.role, Role::Bridge);
                    assert_eq!(self.bridge_open, Some(id));
                    assert!(had(&|m| *m == Message::Pending { id, status }));
                }
                Event::GetInfo(info) => {
                    assert_eq!(self.role, Role::Bridge);
                    assert!(had(&|m| *m == Message::GetInfo(info.clone())));
                }
                Event::Pong(data) => {
                    assert!(data.len() <= 32);
                    assert!(had(&|m| *m == Message::Pong(data.clone())));
                }
                Event::ShowCode(_) => {
                    assert_eq!(self.role, Role::Phone);
                    assert!(self.first_contact && !self.established);
                }
                // The owner (this harness) confirms every first contact it is asked about;
                // `Established` follows in this same drain.
                Event::ConfirmationNeeded { phone_name, .. } => {
                    assert_eq!(self.role, Role::Bridge);
                    assert!(self.first_contact && !self.established);
                    assert!(had(
                        &|m| matches!(m, Message::Hello(h) if h.name == phone_name)
                    ));
                    session.confirm().expect("a pending confirmation");
                }
                Event::Refused => {
                    assert_eq!(self.role, Role::Phone);
                    assert!(self.first_contact && !self.established);
                    assert!(had(&|m| *m == Message::Revoke));
                    assert!(session.is_finished());
                }
                Event::Revoked => {
                    assert!(had(&|m| *m == Message::Revoke));
                    assert!(session.is_finished());
                }
                Event::Closed => {
                    assert!(had(&|m| *m == Message::Bye));
                    assert!(session.is_finished());
                }
                Event::TimedOut(timeout) => {
                    assert!(timed, "a timeout without handle_timeout");
                    assert!(session.is_finished());
                    match timeout {
                        Timeout::Handshake => assert!(!self.established),
                        Timeout::Confirmation => {
                            assert_eq!(self.role, Role::Bridge);
                            assert!(self.first_contact && !self.established);
                        }
                        Timeout::PhoneSilent { id } => {
                            assert_eq!(self.role, Role::Bridge);
                            assert_eq!(self.bridge_open, Some(id));
                        }
                    }
                }
            }
        }
        if !session.is_established() && !session.is_finished() {
            assert!(!self.established);
        }
        self.ended = session.is_finished();
    }
}

const CLOCK: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_millis(100),
    Duration::from_millis(1_000),
    Duration::from_millis(2_000),
    Duration::from_millis(2_500),
    Duration::from_millis(9_000),
    Duration::from_millis(11_000),
    Duration::from_millis(21_000),
];

/// Feeds a frame that is not genuine: it must be refused, with no event.
fn refuse(session: &mut Session, bad: &[u8], now: Instant, what: &str) {
    let result = session.receive(bad, now);
    assert!(result.is_err(), "{what} accepted");
    assert!(
        session.is_finished(),
        "{what} refused but the session goes on"
    );
    assert!(session.poll_event().is_none(), "{what} raised an event");
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let setup = input.byte().unwrap_or(0);
    let role = if setup & 1 == 0 {
        Role::Phone
    } else {
        Role::Bridge
    };
    let first_contact = setup & 0x08 != 0;
    let auto = (setup >> 1) & 3;

    let start = Instant::now();
    let mut now = start;
    let keys = fixed();
    let (bridge, phone, url) = (&keys.bridge, &keys.phone, &keys.url);
    let (session, handshake, hs1) = match (role, first_contact) {
        (Role::Phone, false) => (
            Session::phone(phone.clone(), &keys.bridge_public, hello(role), now),
            Handshake::bridge_session(bridge, &keys.phone_public),
            None,
        ),
        (Role::Phone, true) => (
            Session::phone_first_contact(url, phone.clone(), hello(role), now),
            Handshake::bridge_first_contact(bridge, url),
            None,
        ),
        (Role::Bridge, false) => {
            let (handshake, hs1) =
                Handshake::phone_session(phone, &keys.bridge_public).expect("HS1");
            (
                Session::bridge(bridge.clone(), &keys.phone_public, hello(role)),
                Ok(handshake),
                Some(hs1),
            )
        }
        (Role::Bridge, true) => {
            let (handshake, hs1) = Handshake::phone_first_contact(url, phone).expect("HS1");
            (
                Session::bridge_first_contact(offer(), hello(role)),
                Ok(handshake),
                Some(hs1),
            )
        }
    };
    let mut session = session.expect("the session under test");
    let mut peer = Peer {
        role: role.other(),
        handshake: Some(handshake.expect("the peer's handshake")),
        crypter: None,
        pending: VecDeque::new(),
        last_id: 0,
        seen_hello: None,
    };
    let mut watch = Watch {
        role,
        first_contact,
        pairing_id: keys.pairing_id,
        peer_static: match role {
            Role::Phone => keys.bridge_public,
            Role::Bridge => keys.phone_public,
        },
        established: false,
        phone_open: None,
        bridge_open: None,
        ended: false,
    };
    if let Some(hs1) = hs1 {
        peer.pending.push_back(frame(frame_kind::HANDSHAKE, &hs1));
    }
    // The phone session's HS1, read by the peer bridge: its HS2 is pending.
    peer.take_from(&mut session);

    // The genuine handshake (and Hellos) first, if the setup byte says so.
    let mut last_genuine: Option<Vec<u8>> = None;
    if auto >= 1 {
        while let Some(genuine) = peer.pending.pop_front() {
            session
                .receive(&genuine, now)
                .unwrap_or_else(|e| panic!("the genuine handshake failed: {e}"));
            last_genuine = Some(genuine);
            peer.take_from(&mut session);
        }
        assert_eq!(session.state(), SessionState::Open { established: false });
        // A first-contact bridge says Hello only after the phone's (protocol §5.2).
        let hello_held = role == Role::Bridge && first_contact;
        assert_eq!(peer.seen_hello.is_some(), !hello_held);
        watch.events(&mut session, &[], false);
        if auto >= 2 {
            let hello = Message::Hello(hello(role.other()));
            let sealed = peer.seal(&hello.encode()).expect("keys");
            session.receive(&sealed, now).expect("the genuine Hello");
            last_genuine = Some(sealed);
            peer.take_from(&mut session);
            watch.events(&mut session, &[hello], false);
            peer.take_from(&mut session); // a first-contact bridge's Hello, once confirmed
            assert!(watch.established);
            assert!(peer.seen_hello.is_some());
        }
    }

    while let Some(control) = input.byte() {
        now += CLOCK[usize::from(control & 7)];
        let mut timed = false;
        if session
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            session.handle_timeout(now);
            // A keepalive the phone sent; the timeout's events, before this step's frame.
            peer.take_from(&mut session);
            watch.events(&mut session, &[], true);
        }
        let mut delivered = Vec::new();
        match control >> 3 {
            // Garbage.
            0..=3 => {
                let bad = input.long();
                refuse(&mut session, &bad, now, "garbage");
            }
            // The next genuine handshake frame, as is.
            4 => {
                if let Some(genuine) = peer.pending.pop_front() {
                    let _ = session.receive(&genuine, now);
                    last_genuine = Some(genuine);
                }
            }
            // Any plaintext, sealed by the peer.
            5..=8 => {
                let plaintext = input.long();
                if let Some(sealed) = peer.seal(&plaintext) {
                    if let Ok(DecodeOutcome::Message(message)) = Message::decode(&plaintext) {
                        delivered.push(message);
                    }
                    let _ = session.receive(&sealed, now);
                    last_genuine = Some(sealed);
                }
            }
            // A well-formed message, sealed by the peer.
            9..=14 => {
                let selector = input.byte().unwrap_or(0);
                let message = peer.typed(selector, &mut input);
                if let Some(sealed) = peer.seal(&message.encode()) {
                    delivered.push(message);
                    let _ = session.receive(&sealed, now);
                    last_genuine = Some(sealed);
                }
            }
            // A genuine frame with one byte changed, or cut short.
            15..=17 => {
                let selector = input.byte().unwrap_or(0);
                let position = usize::from(input.byte().unwrap_or(0));
                let flip = input.byte().unwrap_or(0);
                let genuine = match peer.pending.pop_front() {
                    Some(genuine) => Some(genuine),
                    None => {
                        let message = peer.typed(selector, &mut input);
                        peer.seal(&message.encode())
                    }
                };
                if let Some(mut bad) = genuine {
                    if flip == 0 {
                        bad.truncate(position % bad.len());
                    } else {
                        let i = position % bad.len();
                        bad[i] ^= flip;
                    }
                    refuse(&mut session, &bad, now, "a tampered frame");
                }
            }
            // The last genuine frame again.
            18..=19 => {
                if let Some(old) = last_genuine.clone() {
                    refuse(&mut session, &old, now, "a replayed frame");
                }
            }
            // The owner's calls.
            20..=27 => {
                let selector = input.byte().unwrap_or(0);
                let payload = input.short();
                match (role, (selector & 0x0f) % 6) {
                    (Role::Phone, 0) => {
                        let id = watch.phone_open.unwrap_or(u32::from(selector));
                        if session.respond(id, payload).is_ok() {
                            watch.phone_open = None;
                        }
                    }
                    (Role::Phone, 1) => {
                        let id = watch.phone_open.unwrap_or(u32::from(selector));
                        let status = if selector & 0x80 == 0 {
                            PendingStatus::Processing
                        } else {
                            PendingStatus::UserPresenceNeeded
                        };
                        let _ = session.set_status(id, status, now);
                    }
                    (Role::Phone, 2) => {
                        let _ = session.update_get_info(payload);
                    }
                    (Role::Bridge, 0) => {
                        let kind = if selector & 0x80 == 0 {
                            RequestKind::Cbor
                        } else {
                            RequestKind::Msg
                        };
                        let requester = (selector & 0x40 != 0).then(|| "firefox".to_string());
                        if let Ok(id) = session.send_request(kind, payload, requester, now) {
                            assert!(watch.bridge_open.is_none());
                            watch.bridge_open = Some(id);
                        }
                    }
                    (Role::Bridge, 1 | 2) => {
                        let _ = session.cancel();
                    }
                    (_, 3) => {
                        let _ = session.ping(payload);
                    }
                    (_, 4) => {
                        let _ = session.bye();
                    }
                    _ => {
                        let _ = session.revoke();
                    }
                }
                assert!(
                    session.poll_event().is_none(),
                    "an owner's call raised an event"
                );
            }
            // handle_timeout whenever.
            _ => {
                session.handle_timeout(now);
                timed = true;
            }
        }
        peer.take_from(&mut session);
        watch.events(&mut session, &delivered, timed);
        peer.take_from(&mut session); // what a confirmation released
    }
});
