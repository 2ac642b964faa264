//! The phone's hybrid session, sans-IO: tunnel frames in; frames to send and events out.
//!
//! ```text
//! AwaitingHandshake ──browser's 81-byte message──▶ Open ──shutdown──▶ Closed
//!         │  sends: our 81-byte answer, then the encrypted post-handshake message
//!         │  event: Handshaked (stop the advert)
//!         └──────────── any bad frame, here or in Open ──────────────▶ Failed
//! ```
//!
//! Every websocket message of the tunnel is one frame. After the handshake every frame is
//! encrypted by the [`Crypter`]. The phone's first encrypted message is the bare CBOR map
//! `{1: getInfo response, 3: ["ctap"]}`; every later message, both ways, is a type byte
//! ([`MessageType`]) ‖ payload. A CTAP message from the browser is the CTAP command byte ‖ CBOR;
//! the answer goes back as type 1 ‖ status ‖ CBOR. Only the browser sends shutdown.
//!
//! The runtime loop: feed frames to [`Session::receive`], then drain [`Session::poll_frame`]
//! (send each) and [`Session::poll_event`] (act on each); hand each
//! [`SessionEvent::CtapRequest`] to the engine — with [`requester`] in its `RequestContext`, so
//! the approval names "a nearby browser" — and pass its response to [`Session::respond`].
//! An error from `receive` ends the session: close the tunnel.

use std::collections::VecDeque;

use ciborium::value::Value;
use p256::PublicKey;
use thiserror::Error;

use super::advert::EidPlaintext;
use super::crypter::{Crypter, CrypterError};
use super::keys::{self, Psk};
use super::noise::{self, NoiseError};
use super::qr::QrCode;
use crate::approver::Requester;

/// Who asks, as the approval shows it, for every request that came over hybrid.
pub const NEARBY_BROWSER: &str = "a nearby browser";
/// The feature the post-handshake message offers: CTAP messages.
pub const FEATURE_CTAP: &str = "ctap";

/// The requester to put in the engine's `RequestContext` for hybrid requests.
pub fn requester() -> Requester {
    Requester(NEARBY_BROWSER.to_string())
}

/// The type byte of every message after the post-handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// Browser → phone: the transaction is over.
    Shutdown = 0,
    /// A CTAP request (browser → phone) or response (phone → browser).
    Ctap = 1,
    /// Phone → browser: updated linking information (this phone sends none).
    Update = 2,
}

impl MessageType {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Shutdown),
            1 => Some(Self::Ctap),
            2 => Some(Self::Update),
            _ => None,
        }
    }
}

/// A message: type byte ‖ payload.
pub fn encode_message(kind: MessageType, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(kind as u8);
    out.extend_from_slice(payload);
    out
}

/// The phone's first encrypted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostHandshake {
    /// The getInfo response's CBOR (without the status byte).
    pub get_info: Vec<u8>,
    /// What the phone supports over this tunnel (`["ctap"]`).
    pub features: Vec<String>,
}

impl PostHandshake {
    /// Bare CBOR `{1: getInfo, 3: features}`, CTAP2-canonical.
    pub fn encode(&self) -> Vec<u8> {
        crate::ctap::cbor::encode(Value::Map(vec![
            (Value::from(1), Value::Bytes(self.get_info.clone())),
            (
                Value::from(3),
                Value::Array(
                    self.features
                        .iter()
                        .map(|f| Value::Text(f.clone()))
                        .collect(),
                ),
            ),
        ]))
    }

    /// The browser's reading of it (test initiators): `None` if it is not such a map.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let Ok(Value::Map(entries)) = crate::ctap::cbor::decode(bytes) else {
            return None;
        };
        let mut get_info = None;
        let mut features = Vec::new();
        for (k, v) in entries {
            match (k.as_integer().map(i128::from), v) {
                (Some(1), Value::Bytes(b)) => get_info = Some(b),
                (Some(3), Value::Array(items)) => {
                    for item in items {
                        features.push(item.into_text().ok()?);
                    }
                }
                _ => {}
            }
        }
        Some(Self {
            get_info: get_info?,
            features,
        })
    }
}

/// What the session needs from the QR code, the advert and the engine.
pub struct SessionConfig {
    /// The browser's static key (QR key 0).
    pub initiator_static: PublicKey,
    /// The Noise PSK, from the QR secret and the EID the advert carried.
    pub psk: Psk,
    /// The engine's getInfo response CBOR, without the status byte.
    pub get_info: Vec<u8>,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("get_info_len", &self.get_info.len())
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    pub fn from_qr(qr: &QrCode, eid: &EidPlaintext, get_info: Vec<u8>) -> Self {
        Self {
            initiator_static: qr.public_key,
            psk: keys::psk(&qr.secret, &eid.to_bytes()),
            get_info,
        }
    }
}

/// What the runtime must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The browser completed the handshake: stop advertising.
    Handshaked { handshake_hash: [u8; 32] },
    /// A CTAP request (command byte ‖ CBOR) for the engine; answer with [`Session::respond`].
    CtapRequest(Vec<u8>),
    /// The browser ended the session: cancel any pending approval, close the tunnel.
    Shutdown,
}

/// Why the session ended (or, for the caller's own mistakes, why a call was refused).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    #[error("handshake failed: {0}")]
    Handshake(#[from] NoiseError),
    #[error("transport: {0}")]
    Transport(#[from] CrypterError),
    #[error("the browser sent an empty message")]
    EmptyMessage,
    #[error("the browser sent a CTAP request before the previous one was answered")]
    RequestWhileBusy,
    #[error("the browser sent a message of unknown type {0}")]
    UnknownMessageType(u8),
    /// The caller's mistake: the session goes on.
    #[error("respond() without a pending CTAP request")]
    NoPendingRequest,
    /// The caller's mistake: the session had already ended.
    #[error("the session has ended")]
    Closed,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    AwaitingHandshake,
    Open,
    /// The browser shut the session down.
    Closed,
    /// A bad frame ended it.
    Failed,
}

enum State {
    AwaitingHandshake(Box<SessionConfig>),
    Open {
        crypter: Box<Crypter>,
        request_pending: bool,
    },
    Closed,
    Failed,
}

/// One hybrid session (one QR code scan).
pub struct Session {
    state: State,
    frames: VecDeque<Vec<u8>>,
    events: VecDeque<SessionEvent>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state())
            .field("frames", &self.frames.len())
            .field("events", &self.events)
            .finish()
    }
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        Self {
            state: State::AwaitingHandshake(Box::new(config)),
            frames: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> SessionState {
        match &self.state {
            State::AwaitingHandshake(_) => SessionState::AwaitingHandshake,
            State::Open { .. } => SessionState::Open,
            State::Closed => SessionState::Closed,
            State::Failed => SessionState::Failed,
        }
    }

    /// Whether the session has ended (shutdown or failure): close the tunnel.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }

    /// The next frame to send over the tunnel, in order.
    pub fn poll_frame(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }

    /// The next event for the runtime, in order.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Takes one frame from the tunnel. Any error ends the session (state `Failed`), except
    /// [`SessionError::Closed`] for frames after the end.
    pub fn receive(&mut self, frame: &[u8]) -> Result<(), SessionError> {
        let result = match &mut self.state {
            State::Closed | State::Failed => return Err(SessionError::Closed),
            State::AwaitingHandshake(config) => Self::handshake(config, frame)
                .map(|(next, frames, event)| (Some(next), frames, Some(event))),
            State::Open {
                crypter,
                request_pending,
            } => Self::transport(crypter, request_pending, frame)
                .map(|(next, event)| (next, Vec::new(), event)),
        };
        match result {
            Ok((next, frames, event)) => {
                if let Some(next) = next {
                    self.state = next;
                }
                self.frames.extend(frames);
                self.events.extend(event);
                Ok(())
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    fn handshake(
        config: &SessionConfig,
        frame: &[u8],
    ) -> Result<(State, Vec<Vec<u8>>, SessionEvent), SessionError> {
        let (answer, handshake) = noise::respond(&config.initiator_static, &config.psk, frame)?;
        let mut crypter = Crypter::new(&handshake.keys);
        let post = PostHandshake {
            get_info: config.get_info.clone(),
            features: vec![FEATURE_CTAP.to_string()],
        };
        let first = crypter.encrypt(&post.encode())?;
        Ok((
            State::Open {
                crypter: Box::new(crypter),
                request_pending: false,
            },
            vec![answer.to_vec(), first],
            SessionEvent::Handshaked {
                handshake_hash: handshake.handshake_hash,
            },
        ))
    }

    fn transport(
        crypter: &mut Crypter,
        request_pending: &mut bool,
        frame: &[u8],
    ) -> Result<(Option<State>, Option<SessionEvent>), SessionError> {
        let message = crypter.decrypt(frame)?;
        let Some((&kind, payload)) = message.split_first() else {
            return Err(SessionError::EmptyMessage);
        };
        match MessageType::from_byte(kind) {
            Some(MessageType::Shutdown) => Ok((Some(State::Closed), Some(SessionEvent::Shutdown))),
            Some(MessageType::Ctap) => {
                if *request_pending {
                    return Err(SessionError::RequestWhileBusy);
                }
                *request_pending = true;
                Ok((None, Some(SessionEvent::CtapRequest(payload.to_vec()))))
            }
            // Updates carry linking information phone → browser (CTAP 2.2 §11.5, hybrid);
            // one from the browser has nothing for this phone, which links nothing: ignored.
            Some(MessageType::Update) => Ok((None, None)),
            // The post-handshake message offered the "ctap" feature only, so a browser has no
            // other message type to send (later ones belong to features it was not offered):
            // an unknown type is a broken or hostile peer, and the tunnel closes.
            None => Err(SessionError::UnknownMessageType(kind)),
        }
    }

    /// Sends the engine's answer (status ‖ CBOR) to the pending CTAP request.
    pub fn respond(&mut self, response: &[u8]) -> Result<(), SessionError> {
        let State::Open {
            crypter,
            request_pending,
        } = &mut self.state
        else {
            return Err(match self.state {
                State::AwaitingHandshake(_) => SessionError::NoPendingRequest,
                _ => SessionError::Closed,
            });
        };
        if !*request_pending {
            return Err(SessionError::NoPendingRequest);
        }
        match crypter.encrypt(&encode_message(MessageType::Ctap, response)) {
            Ok(frame) => {
                *request_pending = false;
                self.frames.push_back(frame);
                Ok(())
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approver::{ApprovalOutcome, ApprovalRequest, Approver, Operation};
    use crate::authenticator::{Authenticator, Config, RequestContext};
    use crate::cancel::CancelToken;
    use crate::crypto::master_key::MasterKey;
    use crate::hybrid::noise::Initiator;
    use crate::store::Store;
    use p256::SecretKey;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    /// The browser's half, on snow's initiator and our crypter.
    struct Browser {
        key: SecretKey,
        qr: QrCode,
        eid: EidPlaintext,
    }

    impl Browser {
        fn new() -> Self {
            let key = SecretKey::from_slice(&[0x5a; 32]).unwrap();
            let qr = QrCode::new(key.public_key(), [0x33; 16]);
            Self {
                key,
                qr,
                eid: EidPlaintext::new([4; 10], [1, 2, 3], 0),
            }
        }
        fn psk(&self) -> Psk {
            keys::psk(&self.qr.secret, &self.eid.to_bytes())
        }
        fn phone(&self, get_info: Vec<u8>) -> Session {
            Session::new(SessionConfig::from_qr(&self.qr, &self.eid, get_info))
        }
    }

    /// Handshake through a session; returns the browser's crypter and the post-handshake message.
    fn connect(browser: &Browser, phone: &mut Session) -> (Crypter, PostHandshake) {
        let (initiator, msg1) = Initiator::start(&browser.key, &browser.psk()).unwrap();
        phone.receive(&msg1).unwrap();
        let answer = phone.poll_frame().unwrap();
        let handshake = initiator.finish(&answer).unwrap();
        assert_eq!(
            phone.poll_event(),
            Some(SessionEvent::Handshaked {
                handshake_hash: handshake.handshake_hash
            })
        );
        let mut crypter = Crypter::new(&handshake.keys);
        let post =
            PostHandshake::decode(&crypter.decrypt(&phone.poll_frame().unwrap()).unwrap()).unwrap();
        assert_eq!(phone.poll_frame(), None);
        (crypter, post)
    }

    fn send(
        browser: &mut Crypter,
        phone: &mut Session,
        kind: MessageType,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        phone.receive(&browser.encrypt(&encode_message(kind, payload)).unwrap())
    }

    #[test]
    fn requester_is_a_nearby_browser() {
        assert_eq!(requester(), Requester("a nearby browser".into()));
    }

    #[test]
    fn post_handshake_encoding() {
        let post = PostHandshake {
            get_info: vec![0xa0],
            features: vec!["ctap".into()],
        };
        // {1: h'a0', 3: ["ctap"]}
        assert_eq!(
            post.encode(),
            [0xa2, 0x01, 0x41, 0xa0, 0x03, 0x81, 0x64, b'c', b't', b'a', b'p']
        );
        assert_eq!(PostHandshake::decode(&post.encode()), Some(post));
        assert_eq!(PostHandshake::decode(&[0x01]), None);
    }

    #[test]
    fn full_exchange_both_directions() {
        let browser = Browser::new();
        let mut phone = browser.phone(vec![0xa1, 0x01, 0x80]);
        assert_eq!(phone.state(), SessionState::AwaitingHandshake);
        let (mut b, post) = connect(&browser, &mut phone);
        assert_eq!(phone.state(), SessionState::Open);
        assert_eq!(
            post,
            PostHandshake {
                get_info: vec![0xa1, 0x01, 0x80],
                features: vec!["ctap".into()]
            }
        );

        for round in 0..3u8 {
            send(&mut b, &mut phone, MessageType::Ctap, &[0x04, round]).unwrap();
            assert_eq!(
                phone.poll_event(),
                Some(SessionEvent::CtapRequest(vec![0x04, round]))
            );
            assert_eq!(phone.poll_frame(), None);
            phone.respond(&[0x00, 0xa0, round]).unwrap();
            let reply = b.decrypt(&phone.poll_frame().unwrap()).unwrap();
            assert_eq!(reply, vec![0x01, 0x00, 0xa0, round]);
        }
        assert_eq!(phone.respond(&[0]), Err(SessionError::NoPendingRequest));
        assert_eq!(
            phone.state(),
            SessionState::Open,
            "a caller mistake does not end the session"
        );

        send(&mut b, &mut phone, MessageType::Shutdown, &[]).unwrap();
        assert_eq!(phone.poll_event(), Some(SessionEvent::Shutdown));
        assert_eq!(phone.state(), SessionState::Closed);
        assert!(phone.is_finished());
        assert_eq!(phone.poll_frame(), None, "the phone sends no shutdown");
        assert_eq!(
            send(&mut b, &mut phone, MessageType::Ctap, &[4]),
            Err(SessionError::Closed)
        );
        assert_eq!(phone.respond(&[0]), Err(SessionError::Closed));
    }

    #[test]
    fn tampered_handshake_fails_with_a_typed_error() {
        let browser = Browser::new();
        let (_, mut msg1) = Initiator::start(&browser.key, &browser.psk()).unwrap();
        msg1[70] ^= 1;
        let mut phone = browser.phone(vec![0xa0]);
        assert_eq!(
            phone.receive(&msg1),
            Err(SessionError::Handshake(NoiseError::Rejected))
        );
        assert_eq!(phone.state(), SessionState::Failed);
        assert_eq!(phone.poll_frame(), None);
        assert_eq!(phone.poll_event(), None);
        assert_eq!(phone.receive(&msg1), Err(SessionError::Closed));

        let mut phone = browser.phone(vec![0xa0]);
        assert_eq!(
            phone.receive(&[0; 10]),
            Err(SessionError::Handshake(NoiseError::WrongLength(10)))
        );
    }

    #[test]
    fn a_browser_with_another_qr_code_is_rejected() {
        let browser = Browser::new();
        let mut other = Browser::new();
        other.qr.secret = zeroize::Zeroizing::new([0x34; 16]);
        let (_, msg1) = Initiator::start(&other.key, &other.psk()).unwrap();
        let mut phone = browser.phone(vec![0xa0]);
        assert_eq!(
            phone.receive(&msg1),
            Err(SessionError::Handshake(NoiseError::Rejected))
        );
    }

    #[test]
    fn tampered_transport_frame_fails_with_a_typed_error() {
        let browser = Browser::new();
        let mut phone = browser.phone(vec![0xa0]);
        let (mut b, _) = connect(&browser, &mut phone);
        let mut frame = b
            .encrypt(&encode_message(MessageType::Ctap, &[0x04]))
            .unwrap();
        frame[0] ^= 0x40;
        assert_eq!(
            phone.receive(&frame),
            Err(SessionError::Transport(CrypterError::BadTag { counter: 0 }))
        );
        assert_eq!(phone.state(), SessionState::Failed);
        assert_eq!(phone.poll_event(), None);
        assert_eq!(phone.respond(&[0]), Err(SessionError::Closed));
    }

    #[test]
    fn replayed_frame_fails() {
        let browser = Browser::new();
        let mut phone = browser.phone(vec![0xa0]);
        let (mut b, _) = connect(&browser, &mut phone);
        let frame = b
            .encrypt(&encode_message(MessageType::Update, &[]))
            .unwrap();
        phone.receive(&frame).unwrap();
        assert_eq!(
            phone.receive(&frame),
            Err(SessionError::Transport(CrypterError::BadTag { counter: 1 }))
        );
    }

    #[test]
    fn protocol_violations() {
        let browser = Browser::new();
        let mut phone = browser.phone(vec![0xa0]);
        let (mut b, _) = connect(&browser, &mut phone);
        // Updates are ignored.
        send(&mut b, &mut phone, MessageType::Update, &[1, 2]).unwrap();
        assert_eq!(phone.poll_event(), None);
        send(&mut b, &mut phone, MessageType::Ctap, &[0x04]).unwrap();
        assert_eq!(
            send(&mut b, &mut phone, MessageType::Ctap, &[0x04]),
            Err(SessionError::RequestWhileBusy)
        );

        let mut phone = browser.phone(vec![0xa0]);
        let (mut b, _) = connect(&browser, &mut phone);
        assert_eq!(
            phone.receive(&b.encrypt(&[]).unwrap()),
            Err(SessionError::EmptyMessage)
        );
    }

    /// Every type byte CTAP 2.2 does not define ends the session, with or without a payload,
    /// before or after a request.
    #[test]
    fn an_unknown_message_type_ends_the_session() {
        let browser = Browser::new();
        for kind in [3u8, 4, 0x7f, 0x80, 0xff] {
            for payload in [&[][..], &[1, 2, 3]] {
                let mut phone = browser.phone(vec![0xa0]);
                let (mut b, _) = connect(&browser, &mut phone);
                let mut message = vec![kind];
                message.extend_from_slice(payload);
                assert_eq!(
                    phone.receive(&b.encrypt(&message).unwrap()),
                    Err(SessionError::UnknownMessageType(kind))
                );
                assert_eq!(phone.state(), SessionState::Failed);
                assert_eq!(phone.poll_event(), None);
                // Nothing more is read: the runtime closes the tunnel.
                assert_eq!(
                    send(&mut b, &mut phone, MessageType::Ctap, &[0x04]),
                    Err(SessionError::Closed)
                );
            }
        }
    }

    #[test]
    fn respond_before_the_handshake_is_refused() {
        let mut phone = Browser::new().phone(vec![0xa0]);
        assert_eq!(phone.respond(&[0]), Err(SessionError::NoPendingRequest));
        assert_eq!(phone.state(), SessionState::AwaitingHandshake);
    }

    #[test]
    fn shutdown_while_a_request_is_pending() {
        let browser = Browser::new();
        let mut phone = browser.phone(vec![0xa0]);
        let (mut b, _) = connect(&browser, &mut phone);
        send(&mut b, &mut phone, MessageType::Ctap, &[0x04]).unwrap();
        send(&mut b, &mut phone, MessageType::Shutdown, &[]).unwrap();
        assert_eq!(
            phone.poll_event(),
            Some(SessionEvent::CtapRequest(vec![0x04]))
        );
        assert_eq!(phone.poll_event(), Some(SessionEvent::Shutdown));
        assert_eq!(phone.respond(&[0]), Err(SessionError::Closed));
    }

    /// Approves everything and remembers what it was asked.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<ApprovalRequest>>>);

    impl Approver for Recorder {
        fn can_verify_user(&self) -> bool {
            true
        }
        fn uv_binding(&self) -> crate::approver::UvBinding {
            crate::approver::UvBinding::Software { reason: "a test" }
        }
        fn approve(&mut self, request: &ApprovalRequest, _cancel: &CancelToken) -> ApprovalOutcome {
            self.0.lock().unwrap().push(request.clone());
            ApprovalOutcome::Verified {
                account: Some(0),
                proof: None,
            }
        }
    }

    #[test]
    fn requests_reach_the_engine_and_the_approver_sees_a_nearby_browser() {
        let master = MasterKey::generate();
        let recorder = Recorder::default();
        let mut engine = Authenticator::new(
            Store::open_in_memory(&master).unwrap(),
            &master,
            Box::new(recorder.clone()),
            Config::default(),
        )
        .unwrap();
        let cx = RequestContext {
            requester: requester(),
            ..Default::default()
        };
        let info = engine.process_cbor(&[0x04], &cx);
        assert_eq!(info[0], 0x00);

        let browser = Browser::new();
        let mut phone = browser.phone(info[1..].to_vec());
        let (mut b, post) = connect(&browser, &mut phone);
        assert_eq!(post.get_info, info[1..]);

        let make_credential = crate::ctap::cbor::encode(Value::Map(vec![
            (Value::from(1), Value::Bytes(vec![7; 32])),
            (
                Value::from(2),
                Value::Map(vec![(
                    Value::Text("id".into()),
                    Value::Text("example.com".into()),
                )]),
            ),
            (
                Value::from(3),
                Value::Map(vec![
                    (Value::Text("id".into()), Value::Bytes(vec![1, 2, 3])),
                    (Value::Text("name".into()), Value::Text("alice".into())),
                ]),
            ),
            (
                Value::from(4),
                Value::Array(vec![Value::Map(vec![
                    (Value::Text("alg".into()), Value::from(-7)),
                    (Value::Text("type".into()), Value::Text("public-key".into())),
                ])]),
            ),
        ]));
        let mut request = vec![0x01];
        request.extend_from_slice(&make_credential);
        send(&mut b, &mut phone, MessageType::Ctap, &request).unwrap();
        let Some(SessionEvent::CtapRequest(bytes)) = phone.poll_event() else {
            panic!("no request")
        };
        let response = engine.process_cbor(&bytes, &cx);
        phone.respond(&response).unwrap();
        let reply = b.decrypt(&phone.poll_frame().unwrap()).unwrap();
        assert_eq!(reply[0], MessageType::Ctap as u8);
        assert_eq!(reply[1], 0x00, "makeCredential succeeded");

        let asked = recorder.0.lock().unwrap();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].operation, Operation::Register);
        assert_eq!(asked[0].requester.0, NEARBY_BROWSER);
        assert_eq!(asked[0].rp_id.as_deref(), Some("example.com"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn handshake_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut phone = Browser::new().phone(vec![0xa0]);
            prop_assert!(phone.receive(&frame).is_err());
            prop_assert_eq!(phone.state(), SessionState::Failed);
        }

        #[test]
        fn transport_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..120)) {
            let browser = Browser::new();
            let mut phone = browser.phone(vec![0xa0]);
            let _ = connect(&browser, &mut phone);
            prop_assert!(phone.receive(&frame).is_err());
        }

        #[test]
        fn any_authentic_message_is_handled(message in proptest::collection::vec(any::<u8>(), 0..80)) {
            let browser = Browser::new();
            let mut phone = browser.phone(vec![0xa0]);
            let (mut b, _) = connect(&browser, &mut phone);
            let _ = phone.receive(&b.encrypt(&message).unwrap());
        }
    }
}
