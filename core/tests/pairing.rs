//! Pairing end to end in memory: a bridge and a phone, each with its own pairing store, talking
//! through a relay stand-in that checks attach requests the way the relay will
//! (`mailbox::verify_attach`) and carries every frame as a relay DATA frame. The phone answers
//! CTAP requests with the real engine.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p256::SecretKey;
use proptest::prelude::*;
use rand_core::OsRng;

use pocketkey_core::approver::{ApprovalOutcome, ApprovalRequest, Approver, Requester};
use pocketkey_core::authenticator::{Authenticator, Config, RequestContext};
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::engine::RequestKind;
use pocketkey_core::pairing::handshake::HandshakeError;
use pocketkey_core::pairing::mailbox::{
    parse_path, verify_attach, AttachError, MailboxKeys, PATH_PREFIX,
};
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::session::{
    is_handshake_frame, Established, Timeout, CONFIRMATION_TIMEOUT, HANDSHAKE_TIMEOUT,
    KEEPALIVE_INTERVAL, PHONE_SILENCE_TIMEOUT,
};
use pocketkey_core::pairing::store::FILE_NAME;
use pocketkey_core::pairing::{
    ConfirmationCode, Event, Hello, MailboxId, PairingOffer, PairingRecord, PairingStore,
    PairingUrl, PendingStatus, Role, Session, SessionError, SessionState, UrlPolicy,
};
use pocketkey_core::store::Store;
use pocketkey_testkit::{GetAssertion, MakeCredential};

const RELAY: &str = "ws://127.0.0.1:8080";
const COMPUTER: &str = "Anna's laptop";
const PHONE: &str = "Pixel 8";
const NOW: u64 = 1_700_000_000;

// ---- the relay stand-in -----------------------------------------------------------------------

/// Checks an attach the way the relay does (the path, then the ATTACH answering a
/// challenge) and returns the mailbox it opens.
fn attach(keys: &MailboxKeys, role: Role) -> Result<MailboxId, AttachError> {
    let a = keys.attach(role);
    let id = parse_path(&format!("{PATH_PREFIX}{}", a.mailbox))?;
    let nonce = [0x5a; 32];
    verify_attach(id, &nonce, &a.respond(&nonce)).map(|r| {
        assert_eq!(r, role);
        id
    })
}

/// Moves every queued frame of `from` to `to` through a relay DATA frame, recording what the
/// relay saw. Returns the first error of `to`.
fn pump(
    from: &mut Session,
    to: &mut Session,
    seen: &mut Vec<Vec<u8>>,
    now: Instant,
) -> Result<usize, SessionError> {
    let mut moved = 0;
    while let Some(frame) = from.poll_frame() {
        let wire = RelayFrame::Data(frame).encode();
        seen.push(wire.clone());
        let RelayFrame::Data(payload) = RelayFrame::decode(&wire).unwrap() else {
            panic!("not DATA");
        };
        to.receive(&payload, now)?;
        moved += 1;
    }
    Ok(moved)
}

/// Pumps both ways until quiet.
fn settle(
    phone: &mut Session,
    bridge: &mut Session,
    seen: &mut Vec<Vec<u8>>,
    now: Instant,
) -> Result<(), SessionError> {
    loop {
        let a = pump(phone, bridge, seen, now)?;
        let b = pump(bridge, phone, seen, now)?;
        if a + b == 0 {
            return Ok(());
        }
    }
}

fn events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

/// First contact up to the user's question: the code the bridge asks about (checked to be the
/// one the phone shows) once the phone's Hello has arrived.
fn confirmation_asked(phone: &mut Session, bridge: &mut Session) -> ConfirmationCode {
    let shown = match &events(phone)[..] {
        [Event::ShowCode(code)] => *code,
        other => panic!("the phone shows no code: {other:?}"),
    };
    match &events(bridge)[..] {
        [Event::ConfirmationNeeded { phone_name, code }] => {
            assert_eq!(phone_name, PHONE);
            assert_eq!(*code, shown, "both screens show the same code");
            shown
        }
        other => panic!("the bridge asks nothing: {other:?}"),
    }
}

fn established(session: &mut Session) -> Box<Established> {
    let mut found = None;
    for event in events(session) {
        match event {
            Event::Established(e) => found = Some(e),
            other => panic!("unexpected event {other:?}"),
        }
    }
    found.expect("Established")
}

// ---- the phone's engine -----------------------------------------------------------------------

/// Approves everything and records who asked.
#[derive(Clone, Default)]
struct RecordingApprover(Arc<Mutex<Vec<ApprovalRequest>>>);

impl Approver for RecordingApprover {
    fn can_verify_user(&self) -> bool {
        true
    }
    fn uv_binding(&self) -> pocketkey_core::approver::UvBinding {
        pocketkey_core::approver::UvBinding::Software { reason: "a test" }
    }
    fn approve(&mut self, request: &ApprovalRequest, cancel: &CancelToken) -> ApprovalOutcome {
        self.0.lock().unwrap().push(request.clone());
        if cancel.is_cancelled() {
            ApprovalOutcome::Cancelled
        } else {
            ApprovalOutcome::Verified {
                account: Some(0),
                proof: None,
            }
        }
    }
}

fn engine() -> (Authenticator, RecordingApprover) {
    let master = MasterKey::generate();
    let approver = RecordingApprover::default();
    let store = Store::open_in_memory(&master).unwrap();
    let engine = Authenticator::new(
        store,
        &master,
        Box::new(approver.clone()),
        Config::default(),
    )
    .unwrap();
    (engine, approver)
}

fn get_info(engine: &mut Authenticator) -> Vec<u8> {
    let response = engine.process_cbor(&[0x04], &RequestContext::default());
    assert_eq!(response[0], 0x00);
    response[1..].to_vec()
}

/// A registration of a discoverable credential, then a sign-in with it (clientDataHash and
/// user id as the builders make them: nothing here reads them).
fn make_credential() -> Vec<u8> {
    MakeCredential::new("example.com", "anna")
        .rk(true)
        .uv(true)
        .encode()
}

fn get_assertion() -> Vec<u8> {
    GetAssertion::new("example.com").encode()
}

// ---- the two sides ----------------------------------------------------------------------------

struct Sides {
    _dir: tempfile::TempDir,
    bridge_store: PairingStore,
    phone_store: PairingStore,
    engine: Authenticator,
    approvals: RecordingApprover,
}

fn bridge_hello() -> Hello {
    Hello {
        name: COMPUTER.into(),
        get_info: None,
    }
}

fn phone_hello(engine: &mut Authenticator) -> Hello {
    Hello {
        name: PHONE.into(),
        get_info: Some(get_info(engine)),
    }
}

fn sides() -> Sides {
    let dir = tempfile::tempdir().unwrap();
    let bridge_dir = dir.path().join("bridge");
    let phone_dir = dir.path().join("phone");
    std::fs::create_dir(&bridge_dir).unwrap();
    std::fs::create_dir(&phone_dir).unwrap();
    let (engine, approvals) = engine();
    Sides {
        bridge_store: PairingStore::open(
            &bridge_dir.join(FILE_NAME),
            &MasterKey::from_bytes([1; 32]),
        )
        .unwrap(),
        phone_store: PairingStore::open(
            &phone_dir.join(FILE_NAME),
            &MasterKey::from_bytes([2; 32]),
        )
        .unwrap(),
        _dir: dir,
        engine,
        approvals,
    }
}

fn offer() -> PairingOffer {
    PairingOffer::generate(RELAY, COMPUTER, UrlPolicy::Strict, NOW).unwrap()
}

/// First contact from a QR code's text; stores both records. Returns (phone, bridge) records.
fn pair(s: &mut Sides, offer: PairingOffer, now: Instant) -> (PairingRecord, PairingRecord) {
    let qr = offer.url().to_url_string();
    let rendezvous = attach(&offer.mailbox(), Role::Bridge).unwrap();
    let mut bridge = Session::bridge_first_contact(offer, bridge_hello()).unwrap();

    let url = PairingUrl::parse(&qr).unwrap();
    let phone_keys = MailboxKeys::rendezvous(&url.bridge_key, &url.secret);
    assert_eq!(attach(&phone_keys, Role::Phone).unwrap(), rendezvous);
    let hello = phone_hello(&mut s.engine);
    let mut phone =
        Session::phone_first_contact(&url, SecretKey::random(&mut OsRng), hello, now).unwrap();
    let mut seen = Vec::new();
    settle(&mut phone, &mut bridge, &mut seen, now).unwrap();
    assert_eq!(
        seen.iter().map(Vec::len).take(3).collect::<Vec<_>>(),
        [1 + 1 + 81, 1 + 1 + 81, 1 + 1 + 97],
        "DATA ‖ kind ‖ Noise message"
    );
    confirmation_asked(&mut phone, &mut bridge);
    bridge.confirm().unwrap();
    settle(&mut phone, &mut bridge, &mut seen, now).unwrap();

    let on_bridge = established(&mut bridge);
    let on_phone = established(&mut phone);
    assert_eq!(on_bridge.pairing_id, on_phone.pairing_id);
    assert_eq!(on_bridge.handshake_hash, on_phone.handshake_hash);
    assert_eq!(on_bridge.peer_name, PHONE);
    assert_eq!(on_phone.peer_name, COMPUTER);
    assert_eq!(on_bridge.peer_get_info, Some(get_info(&mut s.engine)));

    let bridge_record = PairingRecord::from_new(on_bridge.new_pairing.unwrap(), NOW);
    let phone_record = PairingRecord::from_new(on_phone.new_pairing.unwrap(), NOW);
    assert_eq!(bridge_record.name, PHONE);
    assert_eq!(phone_record.name, COMPUTER);
    assert_eq!(phone_record.relay_url, RELAY);
    assert_eq!(bridge_record.peer_get_info, on_bridge.peer_get_info);
    assert_eq!(phone_record.id, bridge_record.id);
    s.bridge_store.insert(&bridge_record).unwrap();
    s.phone_store.insert(&phone_record).unwrap();

    // Both leave the rendezvous.
    phone.bye().unwrap();
    pump(&mut phone, &mut bridge, &mut seen, now).unwrap();
    assert!(matches!(events(&mut bridge)[..], [Event::Closed]));
    assert!(bridge.is_finished() && phone.is_finished());

    // The pairing mailbox: the same on both sides, the record's id, and not the rendezvous.
    let mailbox = attach(&phone_record.mailbox_keys(), Role::Phone).unwrap();
    assert_eq!(
        attach(&bridge_record.mailbox_keys(), Role::Bridge).unwrap(),
        mailbox
    );
    assert_eq!(mailbox, phone_record.id);
    assert_ne!(mailbox, rendezvous);
    (phone_record, bridge_record)
}

/// Key confirmation on first contact (protocol §5.2): the bridge says Hello only after it read
/// the phone's (and its runtime stored the pairing), so a phone Hello lost on the way leaves
/// neither side paired, instead of the phone alone.
#[test]
fn first_contact_the_bridge_says_hello_only_after_the_phones() {
    let mut s = sides();
    let now = Instant::now();
    let offer = offer();
    let url = offer.url().clone();
    let mut bridge = Session::bridge_first_contact(offer, bridge_hello()).unwrap();
    let hello = phone_hello(&mut s.engine);
    let mut phone =
        Session::phone_first_contact(&url, SecretKey::random(&mut OsRng), hello, now).unwrap();
    let mut seen = Vec::new();
    // HS1 → HS2.
    pump(&mut phone, &mut bridge, &mut seen, now).unwrap();
    pump(&mut bridge, &mut phone, &mut seen, now).unwrap();
    // HS3 reaches the bridge; the phone's Hello behind it is lost.
    let hs3 = phone.poll_frame().unwrap();
    let _lost_hello = phone.poll_frame().unwrap();
    bridge.receive(&hs3, now).unwrap();
    assert!(
        bridge.poll_frame().is_none(),
        "the bridge sends nothing before the phone's Hello"
    );
    assert!(events(&mut bridge).is_empty());
    assert!(matches!(events(&mut phone)[..], [Event::ShowCode(_)]));
    // Neither side is paired; both give up: the bridge at the handshake timeout, the phone
    // once the computer's user could no longer confirm.
    bridge.handle_timeout(now + HANDSHAKE_TIMEOUT);
    phone.handle_timeout(now + HANDSHAKE_TIMEOUT);
    assert!(!phone.is_finished(), "the phone waits for the confirmation");
    phone.handle_timeout(now + HANDSHAKE_TIMEOUT + CONFIRMATION_TIMEOUT);
    for side in [&mut bridge, &mut phone] {
        assert!(matches!(
            events(side)[..],
            [Event::TimedOut(
                pocketkey_core::pairing::session::Timeout::Handshake
            )]
        ));
    }

    // Delivered, the phone's Hello gives the bridge `Established` (store) and only then its
    // own Hello to send.
    let offer2 = self::offer();
    let url = offer2.url().clone();
    let mut bridge = Session::bridge_first_contact(offer2, bridge_hello()).unwrap();
    let hello = phone_hello(&mut s.engine);
    let mut phone =
        Session::phone_first_contact(&url, SecretKey::random(&mut OsRng), hello, now).unwrap();
    pump(&mut phone, &mut bridge, &mut seen, now).unwrap();
    pump(&mut bridge, &mut phone, &mut seen, now).unwrap();
    bridge.receive(&phone.poll_frame().unwrap(), now).unwrap();
    assert!(bridge.poll_frame().is_none());
    bridge.receive(&phone.poll_frame().unwrap(), now).unwrap();
    confirmation_asked(&mut phone, &mut bridge);
    bridge.confirm().unwrap();
    assert!(established(&mut bridge).new_pairing.is_some());
    pump(&mut bridge, &mut phone, &mut seen, now).unwrap();
    assert!(established(&mut phone).new_pairing.is_some());
}

/// First contact up to the bridge's question, without delivering anything after it.
fn up_to_the_question(s: &mut Sides, now: Instant) -> (Session, Session, ConfirmationCode) {
    let offer = offer();
    let url = offer.url().clone();
    let mut bridge = Session::bridge_first_contact(offer, bridge_hello()).unwrap();
    let hello = phone_hello(&mut s.engine);
    let mut phone =
        Session::phone_first_contact(&url, SecretKey::random(&mut OsRng), hello, now).unwrap();
    settle(&mut phone, &mut bridge, &mut Vec::new(), now).unwrap();
    let code = confirmation_asked(&mut phone, &mut bridge);
    (phone, bridge, code)
}

/// The computer's user confirms the code before anything is stored (protocol §5.3): until
/// `confirm`, the bridge hands out no pairing and sends no Hello, however long it waits
/// (short of the confirmation timeout), and the phone keeps waiting past the handshake timeout.
#[test]
fn first_contact_is_stored_only_once_the_user_confirms() {
    let mut s = sides();
    let now = Instant::now();
    let (mut phone, mut bridge, _) = up_to_the_question(&mut s, now);
    let later = now + HANDSHAKE_TIMEOUT + Duration::from_secs(1);
    bridge.handle_timeout(later);
    phone.handle_timeout(later);
    assert!(bridge.awaits_confirmation());
    assert_eq!(
        bridge.poll_frame(),
        None,
        "no Hello before the user's answer"
    );
    assert!(events(&mut bridge).is_empty() && events(&mut phone).is_empty());
    assert_eq!(bridge.state(), SessionState::Open { established: false });
    assert_eq!(phone.state(), SessionState::Open { established: false });
    // Only the bridge's first contact is confirmed, and only once.
    assert_eq!(phone.confirm(), Err(SessionError::WrongRole));
    bridge.confirm().unwrap();
    assert_eq!(bridge.confirm(), Err(SessionError::NothingToConfirm));
    assert!(established(&mut bridge).new_pairing.is_some());
    pump(&mut bridge, &mut phone, &mut Vec::new(), later).unwrap();
    assert!(established(&mut phone).new_pairing.is_some());
}

/// A refusal (or no answer in time) stores nothing on either side, and the phone hears it at
/// once as `Refused`, not as a timeout.
#[test]
fn a_refused_or_unanswered_first_contact_pairs_nobody() {
    let mut s = sides();
    let now = Instant::now();
    let (mut phone, mut bridge, _) = up_to_the_question(&mut s, now);
    bridge.refuse().unwrap();
    assert!(bridge.is_finished());
    assert!(events(&mut bridge).is_empty(), "no pairing to store");
    pump(&mut bridge, &mut phone, &mut Vec::new(), now).unwrap();
    assert!(matches!(events(&mut phone)[..], [Event::Refused]));
    assert!(phone.is_finished());
    assert_eq!(bridge.confirm(), Err(SessionError::Closed));

    let (mut phone, mut bridge, _) = up_to_the_question(&mut s, now);
    bridge.handle_timeout(now + CONFIRMATION_TIMEOUT - Duration::from_secs(1));
    assert!(bridge.awaits_confirmation());
    bridge.handle_timeout(now + CONFIRMATION_TIMEOUT);
    assert!(matches!(
        events(&mut bridge)[..],
        [Event::TimedOut(Timeout::Confirmation)]
    ));
    assert!(bridge.is_finished());
    pump(&mut bridge, &mut phone, &mut Vec::new(), now).unwrap();
    assert!(matches!(events(&mut phone)[..], [Event::Refused]));

    // Before the phone's Hello there is nothing to confirm or refuse.
    let mut fresh = Session::bridge_first_contact(offer(), bridge_hello()).unwrap();
    assert_eq!(fresh.refuse(), Err(SessionError::NothingToConfirm));
    assert_eq!(fresh.confirm(), Err(SessionError::NothingToConfirm));
}

/// Each handshake has its own code (fresh ephemeral keys each time), so a stranger's phone
/// that paired in place of the user's shows the bridge a code the user's phone does not.
#[test]
fn each_handshake_has_its_own_code() {
    let mut s = sides();
    let now = Instant::now();
    let (_, _, one) = up_to_the_question(&mut s, now);
    let (_, _, two) = up_to_the_question(&mut s, now);
    assert_ne!(one, two);
}

/// A later session from the stored records: the phone initiates, the bridge answers.
fn connect(s: &mut Sides, now: Instant) -> (Session, Session, Vec<Vec<u8>>) {
    let phone_record = s.phone_store.list().unwrap().remove(0);
    let bridge_record = s.bridge_store.list().unwrap().remove(0);
    let hello = phone_hello(&mut s.engine);
    let mut phone = phone_record.session(hello, now).unwrap();
    let mut bridge = bridge_record.session(bridge_hello(), now).unwrap();
    let mut seen = Vec::new();
    settle(&mut phone, &mut bridge, &mut seen, now).unwrap();
    assert_eq!(seen[0].len(), 1 + 1 + 81);
    assert_eq!(seen[1].len(), 1 + 1 + 81);
    let on_phone = established(&mut phone);
    let on_bridge = established(&mut bridge);
    assert!(on_phone.new_pairing.is_none() && on_bridge.new_pairing.is_none());
    assert_eq!(on_phone.pairing_id, phone_record.id);
    assert_eq!(on_bridge.pairing_id, bridge_record.id);
    s.bridge_store
        .set_peer_get_info(&bridge_record.id, &on_bridge.peer_get_info.unwrap())
        .unwrap();
    s.bridge_store.touch(&bridge_record.id, NOW + 60).unwrap();
    (phone, bridge, seen)
}

/// The phone's runtime for one request: engine with the pairing's name as requester.
fn serve_one(s: &mut Sides, phone: &mut Session, now: Instant) -> u32 {
    let name = s.phone_store.list().unwrap()[0].name.clone();
    let mut served = None;
    for event in events(phone) {
        let Event::CtapRequest(request) = event else {
            panic!("unexpected {event:?}");
        };
        phone
            .set_status(request.id, PendingStatus::UserPresenceNeeded, now)
            .unwrap();
        let cx = RequestContext {
            requester: Requester(name.clone()),
            ..RequestContext::default()
        };
        let response = match request.kind {
            RequestKind::Cbor => s.engine.process_cbor(&request.payload, &cx),
            RequestKind::Msg => s.engine.process_u2f(&request.payload, &cx),
        };
        phone.respond(request.id, response).unwrap();
        served = Some(request.id);
    }
    served.expect("a request")
}

// ---- tests ------------------------------------------------------------------------------------

#[test]
fn first_contact_then_sessions_carry_ctap_through_the_engine() {
    let mut s = sides();
    let now = Instant::now();
    let (phone_record, _) = pair(&mut s, offer(), now);

    // The stores survive a reopen (keys sealed at rest).
    assert_eq!(s.phone_store.list().unwrap(), vec![phone_record.clone()]);

    for round in 0..2 {
        let (mut phone, mut bridge, mut seen) = connect(&mut s, now);
        assert_eq!(phone.state(), SessionState::Open { established: true });
        let requests = [make_credential(), get_assertion()];
        for (i, request) in requests.iter().enumerate() {
            let id = bridge
                .send_request(
                    RequestKind::Cbor,
                    request.clone(),
                    Some("firefox".into()),
                    now,
                )
                .unwrap();
            assert_eq!(id, i as u32 + 1);
            assert_eq!(
                bridge.send_request(RequestKind::Cbor, vec![4], None, now),
                Err(SessionError::Busy)
            );
            pump(&mut bridge, &mut phone, &mut seen, now).unwrap();
            assert_eq!(serve_one(&mut s, &mut phone, now), id);
            pump(&mut phone, &mut bridge, &mut seen, now).unwrap();
            let got = events(&mut bridge);
            let [Event::Pending {
                id: p,
                status: PendingStatus::UserPresenceNeeded,
            }, Event::CtapResponse { id: r, payload }] = &got[..]
            else {
                panic!("round {round}: {got:?}");
            };
            assert_eq!((*p, *r), (id, id));
            assert_eq!(payload[0], 0x00, "CTAP2_OK");
        }
        // A U2F APDU (version) goes the same way.
        let id = bridge
            .send_request(
                RequestKind::Msg,
                vec![0x00, 0x03, 0x00, 0x00, 0x00],
                None,
                now,
            )
            .unwrap();
        pump(&mut bridge, &mut phone, &mut seen, now).unwrap();
        serve_one(&mut s, &mut phone, now);
        pump(&mut phone, &mut bridge, &mut seen, now).unwrap();
        let got = events(&mut bridge);
        let Some(Event::CtapResponse { id: r, payload }) = got.last() else {
            panic!("{got:?}");
        };
        assert_eq!(*r, id);
        assert_eq!(payload, b"U2F_V2\x90\x00");

        // The approvals named the computer by the phone's record.
        let approvals = s.approvals.0.lock().unwrap();
        assert!(!approvals.is_empty());
        assert!(approvals
            .iter()
            .all(|a| a.requester == Requester(COMPUTER.into())));
        drop(approvals);

        // What the relay saw holds no plaintext: neither the relying party nor the names.
        for needle in [
            &b"example.com"[..],
            b"anna",
            PHONE.as_bytes(),
            b"U2F_V2",
            b"firefox",
        ] {
            assert!(
                !seen
                    .iter()
                    .any(|f| f.windows(needle.len()).any(|w| w == needle)),
                "{:?} in a relay frame",
                String::from_utf8_lossy(needle)
            );
        }
        // Counters moved on both sides, symmetrically.
        let (phone_read, phone_write) = phone.counters().unwrap();
        let (bridge_read, bridge_write) = bridge.counters().unwrap();
        assert_eq!((phone_read, phone_write), (bridge_write, bridge_read));

        // Ping, then the phone goes back to sleep.
        bridge.ping(vec![round]).unwrap();
        settle(&mut phone, &mut bridge, &mut seen, now).unwrap();
        assert!(matches!(&events(&mut bridge)[..], [Event::Pong(d)] if d == &[round]));
        phone.bye().unwrap();
        pump(&mut phone, &mut bridge, &mut seen, now).unwrap();
        assert!(matches!(events(&mut bridge)[..], [Event::Closed]));
        assert_eq!(bridge.state(), SessionState::Closed);
        assert_eq!(
            bridge.send_request(RequestKind::Cbor, vec![4], None, now),
            Err(SessionError::Closed)
        );
    }
    let bridge_record = s.bridge_store.list().unwrap().remove(0);
    assert_eq!(bridge_record.last_seen, Some(NOW + 60));
    assert!(bridge_record.peer_get_info.is_some());
}

/// A bridge may send more than CTAPHID carries (the relay frame allows 16 KiB): the engine
/// answers a request over its maxMsgSize with CTAP1_ERR_INVALID_LENGTH, unparsed.
#[test]
fn a_request_over_max_msg_size_is_invalid_length() {
    let mut s = sides();
    let now = Instant::now();
    pair(&mut s, offer(), now);
    let (mut phone, mut bridge, mut seen) = connect(&mut s, now);
    let max = Config::default().max_msg_size;
    let mut request = MakeCredential::new("example.com", "anna")
        .user_display_name("d".repeat(max))
        .encode();
    assert!(request.len() > max);
    request.truncate(max + 1);
    let id = bridge
        .send_request(RequestKind::Cbor, request, None, now)
        .unwrap();
    pump(&mut bridge, &mut phone, &mut seen, now).unwrap();
    assert_eq!(serve_one(&mut s, &mut phone, now), id);
    pump(&mut phone, &mut bridge, &mut seen, now).unwrap();
    let got = events(&mut bridge);
    let Some(Event::CtapResponse { id: r, payload }) = got.last() else {
        panic!("{got:?}");
    };
    assert_eq!((*r, payload.as_slice()), (id, &[0x03][..]));
}

#[test]
fn the_phone_keeps_the_bridge_waiting_and_the_bridge_cancels() {
    let mut s = sides();
    let t0 = Instant::now();
    pair(&mut s, offer(), t0);
    let (mut phone, mut bridge, mut seen) = connect(&mut s, t0);
    assert_eq!(phone.poll_timeout(), None);

    let id = bridge
        .send_request(RequestKind::Cbor, make_credential(), None, t0)
        .unwrap();
    assert_eq!(bridge.poll_timeout(), Some(t0 + PHONE_SILENCE_TIMEOUT));
    pump(&mut bridge, &mut phone, &mut seen, t0).unwrap();
    assert!(matches!(&events(&mut phone)[..], [Event::CtapRequest(r)] if r.id == id));

    // Keepalives every KEEPALIVE_INTERVAL, with the latest status; each resets the bridge's
    // silence deadline.
    let mut now = t0;
    for status in [PendingStatus::Processing, PendingStatus::UserPresenceNeeded] {
        if status == PendingStatus::UserPresenceNeeded {
            phone.set_status(id, status, now).unwrap();
        }
        now += KEEPALIVE_INTERVAL;
        assert_eq!(phone.poll_timeout(), Some(now));
        phone.handle_timeout(now);
        pump(&mut phone, &mut bridge, &mut seen, now).unwrap();
        let got = events(&mut bridge);
        assert!(got.iter().all(
            |e| matches!(e, Event::Pending { id: i, status: st } if *i == id && *st == status)
        ));
        assert!(!got.is_empty());
        assert_eq!(bridge.poll_timeout(), Some(now + PHONE_SILENCE_TIMEOUT));
    }

    // The browser cancels: the phone hears it and still answers.
    bridge.cancel().unwrap();
    pump(&mut bridge, &mut phone, &mut seen, now).unwrap();
    assert!(matches!(&events(&mut phone)[..], [Event::Cancel { id: i }] if *i == id));
    phone.respond(id, vec![0x2d]).unwrap();
    assert_eq!(phone.poll_timeout(), None);
    pump(&mut phone, &mut bridge, &mut seen, now).unwrap();
    assert!(
        matches!(&events(&mut bridge)[..], [Event::CtapResponse { id: i, payload }] if *i == id && payload == &[0x2d])
    );
    assert_eq!(bridge.poll_timeout(), None);
    assert_eq!(bridge.cancel(), Err(SessionError::NoSuchRequest));
    assert_eq!(phone.respond(id, vec![0]), Err(SessionError::NoSuchRequest));
    // A cancel that crossed the response is ignored by the phone.
    let id2 = bridge
        .send_request(RequestKind::Cbor, vec![0x04], None, now)
        .unwrap();
    pump(&mut bridge, &mut phone, &mut seen, now).unwrap();
    events(&mut phone);
    phone.respond(id2, vec![0]).unwrap();
    bridge.cancel().unwrap();
    settle(&mut phone, &mut bridge, &mut seen, now).unwrap();
    assert!(events(&mut phone).is_empty());
    assert!(matches!(&events(&mut bridge)[..], [Event::CtapResponse { id, .. }] if *id == id2));

    // A phone that goes silent: the bridge gives up after PHONE_SILENCE_TIMEOUT.
    let id3 = bridge
        .send_request(RequestKind::Cbor, vec![0x04], None, now)
        .unwrap();
    pump(&mut bridge, &mut phone, &mut seen, now).unwrap();
    bridge.handle_timeout(now + PHONE_SILENCE_TIMEOUT - Duration::from_millis(1));
    assert!(events(&mut bridge).is_empty());
    bridge.handle_timeout(now + PHONE_SILENCE_TIMEOUT);
    assert!(matches!(
        &events(&mut bridge)[..],
        [Event::TimedOut(Timeout::PhoneSilent { id })] if *id == id3
    ));
    assert_eq!(bridge.state(), SessionState::Failed);
}

#[test]
fn handshakes_time_out() {
    let mut s = sides();
    let t0 = Instant::now();
    pair(&mut s, offer(), t0);
    let record = s.phone_store.list().unwrap().remove(0);
    let mut phone = record.session(phone_hello(&mut s.engine), t0).unwrap();
    assert_eq!(phone.poll_timeout(), Some(t0 + HANDSHAKE_TIMEOUT));
    phone.handle_timeout(t0 + HANDSHAKE_TIMEOUT);
    assert!(matches!(
        &events(&mut phone)[..],
        [Event::TimedOut(Timeout::Handshake)]
    ));
    assert!(phone.is_finished());

    // The bridge's clock starts with the phone's first message, not with the QR code.
    let bridge = Session::bridge_first_contact(offer(), bridge_hello()).unwrap();
    assert_eq!(bridge.poll_timeout(), None);
}

#[test]
fn a_reused_pairing_qr_is_refused() {
    let mut s = sides();
    let now = Instant::now();
    let first = offer();
    let qr = first.url().to_url_string();
    pair(&mut s, first, now); // the offer is consumed: the bridge cannot answer it again

    // The bridge now shows a new QR code. A second scan of the old one names a rendezvous
    // nobody waits at, and even if a relay delivered it to the new offer it fails.
    let second = offer();
    let old = PairingUrl::parse(&qr).unwrap();
    assert_ne!(
        MailboxKeys::rendezvous(&old.bridge_key, &old.secret).id(),
        second.mailbox().id()
    );
    let hello = phone_hello(&mut s.engine);
    let mut late_phone =
        Session::phone_first_contact(&old, SecretKey::random(&mut OsRng), hello, now).unwrap();
    let mut bridge = Session::bridge_first_contact(second, bridge_hello()).unwrap();
    assert_eq!(
        pump(&mut late_phone, &mut bridge, &mut Vec::new(), now),
        Err(SessionError::Handshake(HandshakeError::Rejected))
    );
    assert_eq!(bridge.state(), SessionState::Failed);
    assert_eq!(s.bridge_store.list().unwrap().len(), 1);
}

#[test]
fn a_tampered_pairing_qr_fails_the_handshake() {
    let mut s = sides();
    let now = Instant::now();

    // Another computer name (the relay and the rendezvous are unchanged): HS1 fails.
    let o = offer();
    let qr = o.url().to_url_string().replace("Anna", "Eve");
    let tampered = PairingUrl::parse(&qr).unwrap();
    assert_eq!(
        MailboxKeys::rendezvous(&tampered.bridge_key, &tampered.secret).id(),
        o.mailbox().id()
    );
    let hello = phone_hello(&mut s.engine);
    let mut phone =
        Session::phone_first_contact(&tampered, SecretKey::random(&mut OsRng), hello, now).unwrap();
    let mut bridge = Session::bridge_first_contact(o, bridge_hello()).unwrap();
    assert_eq!(
        pump(&mut phone, &mut bridge, &mut Vec::new(), now),
        Err(SessionError::Handshake(HandshakeError::Rejected))
    );

    // Another secret (delivered anyway, as a hostile relay could): the bridge refuses HS3, the
    // phone never gets the bridge's Hello, stores nothing, and times out.
    let o = offer();
    let mut url = o.url().clone();
    let mut secret = url.secret.expose().to_vec();
    secret[0] ^= 1;
    url.secret = pocketkey_core::pairing::PairingSecret::new(&secret).unwrap();
    let hello = phone_hello(&mut s.engine);
    let mut phone =
        Session::phone_first_contact(&url, SecretKey::random(&mut OsRng), hello, now).unwrap();
    let mut bridge = Session::bridge_first_contact(o, bridge_hello()).unwrap();
    let mut seen = Vec::new();
    pump(&mut phone, &mut bridge, &mut seen, now).unwrap(); // HS1
    pump(&mut bridge, &mut phone, &mut seen, now).unwrap(); // HS2
    assert_eq!(
        pump(&mut phone, &mut bridge, &mut seen, now),
        Err(SessionError::Handshake(HandshakeError::Rejected))
    );
    assert_eq!(bridge.poll_frame(), None);
    assert!(events(&mut bridge).is_empty());
    assert_eq!(phone.state(), SessionState::Open { established: false });
    assert!(matches!(events(&mut phone)[..], [Event::ShowCode(_)]));
    phone.handle_timeout(now + HANDSHAKE_TIMEOUT + CONFIRMATION_TIMEOUT);
    assert!(matches!(
        &events(&mut phone)[..],
        [Event::TimedOut(Timeout::Handshake)]
    ));
    assert!(s.phone_store.list().unwrap().is_empty());
    assert!(s.bridge_store.list().unwrap().is_empty());
}

#[test]
fn a_revoked_pairing_cannot_open_a_session() {
    let mut s = sides();
    let now = Instant::now();
    let (old_phone, old_bridge) = pair(&mut s, offer(), now);

    // The phone revokes while connected: the bridge hears it and forgets the pairing.
    let (mut phone, mut bridge, mut seen) = connect(&mut s, now);
    s.phone_store.revoke(&old_phone.id, NOW + 1).unwrap();
    phone.revoke().unwrap();
    pump(&mut phone, &mut bridge, &mut seen, now).unwrap();
    assert!(matches!(events(&mut bridge)[..], [Event::Revoked]));
    assert!(bridge.is_finished() && phone.is_finished());
    assert!(s.bridge_store.forget(&old_bridge.id).unwrap());
    assert!(s.phone_store.list().unwrap().is_empty());
    assert_eq!(s.phone_store.pending_revocations().unwrap().len(), 1);
    // (The relay acknowledged DELETE.)
    assert!(s.phone_store.forget(&old_phone.id).unwrap());

    // The computer pairs again (another phone, or the same one anew).
    let (_, new_bridge) = pair(&mut s, offer(), now);

    // The revoked phone key cannot open the new pairing's session, nor attach to its mailbox.
    let hello = phone_hello(&mut s.engine);
    let mut revoked = old_phone.session(hello, now).unwrap();
    let mut bridge = new_bridge.session(bridge_hello(), now).unwrap();
    assert_eq!(
        pump(&mut revoked, &mut bridge, &mut Vec::new(), now),
        Err(SessionError::Handshake(HandshakeError::Rejected))
    );
    let stolen = old_phone.mailbox_keys().attach(Role::Phone);
    let nonce = [0x5a; 32];
    assert_eq!(
        verify_attach(new_bridge.id, &nonce, &stolen.respond(&nonce)),
        Err(AttachError::Forbidden)
    );

    // Likewise a bridge whose pairing the phone revoked cannot answer the phone's new pairing.
    let phone_record = s.phone_store.list().unwrap().remove(0);
    let hello = phone_hello(&mut s.engine);
    let mut phone = phone_record.session(hello, now).unwrap();
    let mut stale_bridge = old_bridge.session(bridge_hello(), now).unwrap();
    assert_eq!(
        pump(&mut phone, &mut stale_bridge, &mut Vec::new(), now),
        Err(SessionError::Handshake(HandshakeError::Rejected))
    );
}

#[test]
fn tampered_replayed_or_reordered_frames_end_the_session() {
    let mut s = sides();
    let now = Instant::now();
    pair(&mut s, offer(), now);

    type Attack = fn(Vec<Vec<u8>>) -> Vec<Vec<u8>>;
    let attacks: [(&str, Attack); 5] = [
        ("bit flip", |mut f| {
            let last = f[0].len() - 1;
            f[0][last] ^= 1;
            f
        }),
        ("truncated", |mut f| {
            f[0].truncate(10);
            f
        }),
        ("replayed", |f| vec![f[0].clone(), f[0].clone()]),
        ("reordered", |f| vec![f[1].clone(), f[0].clone()]),
        ("kind changed", |mut f| {
            f[0][0] = 0x09;
            f
        }),
    ];
    for (what, attack) in attacks {
        for toward_phone in [true, false] {
            let (mut phone, mut bridge, _) = connect(&mut s, now);
            // Two frames from the sender: a ping and a request (bridge) or GetInfo (phone).
            let (sender, receiver) = if toward_phone {
                bridge.ping(vec![1]).unwrap();
                bridge
                    .send_request(RequestKind::Cbor, vec![0x04], None, now)
                    .unwrap();
                (&mut bridge, &mut phone)
            } else {
                phone.ping(vec![1]).unwrap();
                phone.update_get_info(vec![0xa0]).unwrap();
                (&mut phone, &mut bridge)
            };
            let frames: Vec<Vec<u8>> = std::iter::from_fn(|| sender.poll_frame()).collect();
            let mut result = Ok(());
            for frame in attack(frames) {
                result = receiver.receive(&frame, now);
                if result.is_err() {
                    break;
                }
            }
            assert!(result.is_err(), "{what} toward the phone: {toward_phone}");
            assert_eq!(receiver.state(), SessionState::Failed, "{what}");
            assert_eq!(receiver.receive(&[2, 0], now), Err(SessionError::Closed));
        }
    }
}

#[test]
fn a_phone_starting_over_replaces_the_bridge_session() {
    let mut s = sides();
    let now = Instant::now();
    pair(&mut s, offer(), now);
    let (_, mut bridge, _) = connect(&mut s, now);

    // The phone reconnects (new process, new connection) and starts a new handshake.
    let record = s.phone_store.list().unwrap().remove(0);
    let mut phone = record.session(phone_hello(&mut s.engine), now).unwrap();
    let hs1 = phone.poll_frame().unwrap();
    assert!(is_handshake_frame(&hs1));
    assert_eq!(
        bridge.receive(&hs1, now),
        Err(SessionError::HandshakeWhileOpen)
    );
    // The bridge's runtime starts a new session with the same frame.
    let bridge_record = s.bridge_store.list().unwrap().remove(0);
    let mut bridge = bridge_record.session(bridge_hello(), now).unwrap();
    bridge.receive(&hs1, now).unwrap();
    settle(&mut phone, &mut bridge, &mut Vec::new(), now).unwrap();
    assert!(phone.is_established() && bridge.is_established());
}

#[test]
fn a_get_info_update_the_session_refuses_changes_nothing() {
    let mut s = sides();
    let now = Instant::now();
    pair(&mut s, offer(), now);
    let record = s.phone_store.list().unwrap().remove(0);
    let hello = phone_hello(&mut s.engine);
    let original = hello.get_info.clone().unwrap();
    let mut phone = record.session(hello, now).unwrap();
    // Before the handshake the update is refused, and the Hello keeps the getInfo it had.
    assert!(phone.update_get_info(vec![0xa0]).is_err());
    let bridge_record = s.bridge_store.list().unwrap().remove(0);
    let mut bridge = bridge_record.session(bridge_hello(), now).unwrap();
    settle(&mut phone, &mut bridge, &mut Vec::new(), now).unwrap();
    let on_bridge = established(&mut bridge);
    assert_eq!(on_bridge.peer_get_info, Some(original));
}

#[test]
fn the_bridge_may_send_its_request_right_after_its_handshake_message() {
    // Latency: the bridge answers HS1 with HS2, Hello and the waiting request in one go.
    let mut s = sides();
    let now = Instant::now();
    pair(&mut s, offer(), now);
    let phone_record = s.phone_store.list().unwrap().remove(0);
    let bridge_record = s.bridge_store.list().unwrap().remove(0);
    let mut phone = phone_record
        .session(phone_hello(&mut s.engine), now)
        .unwrap();
    let mut bridge = bridge_record.session(bridge_hello(), now).unwrap();
    assert_eq!(
        bridge.send_request(RequestKind::Cbor, vec![0x04], None, now),
        Err(SessionError::NotReady)
    );
    let mut seen = Vec::new();
    pump(&mut phone, &mut bridge, &mut seen, now).unwrap();
    let id = bridge
        .send_request(RequestKind::Cbor, vec![0x04], None, now)
        .unwrap();
    assert!(!bridge.is_established());
    assert_eq!(pump(&mut bridge, &mut phone, &mut seen, now).unwrap(), 3);
    let got = events(&mut phone);
    assert!(matches!(&got[..], [Event::Established(_), Event::CtapRequest(r)] if r.id == id));
}

// ---- arbitrary input --------------------------------------------------------------------------

/// Sessions in every receiving state: bridge waiting for HS1 (first contact and KK), phone
/// waiting for HS2 (both), and both ends of an established session.
fn sessions_in_every_state() -> Vec<Session> {
    let now = Instant::now();
    let (mut engine, _) = engine();
    let hello = phone_hello(&mut engine);
    let o = offer();
    let url = o.url().clone();
    let mut out = vec![
        Session::bridge_first_contact(o, bridge_hello()).unwrap(),
        Session::phone_first_contact(
            &url,
            SecretKey::from_slice(&[5; 32]).unwrap(),
            hello.clone(),
            now,
        )
        .unwrap(),
    ];
    let bridge_key = SecretKey::from_slice(&[6; 32]).unwrap();
    let phone_key = SecretKey::from_slice(&[7; 32]).unwrap();
    let mut phone = Session::phone(
        phone_key.clone(),
        &bridge_key.public_key(),
        hello.clone(),
        now,
    )
    .unwrap();
    let mut bridge =
        Session::bridge(bridge_key.clone(), &phone_key.public_key(), bridge_hello()).unwrap();
    out.push(Session::bridge(bridge_key, &phone_key.public_key(), bridge_hello()).unwrap());
    out.push(Session::phone(phone_key, &bridge_key_public(), hello, now).unwrap());
    settle(&mut phone, &mut bridge, &mut Vec::new(), now).unwrap();
    out.push(phone);
    out.push(bridge);
    out
}

fn bridge_key_public() -> p256::PublicKey {
    SecretKey::from_slice(&[6; 32]).unwrap().public_key()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn arbitrary_frames_never_panic(
        kind in prop_oneof![Just(1u8), Just(2u8), any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..200),
        len in prop_oneof![Just(81usize), Just(97usize), 0usize..200],
    ) {
        let mut frame = vec![kind];
        frame.extend(body.iter().cycle().take(len));
        for mut session in sessions_in_every_state() {
            let _ = session.receive(&frame, Instant::now());
            let _ = session.receive(&frame, Instant::now());
            session.handle_timeout(Instant::now() + Duration::from_secs(60));
            while session.poll_event().is_some() {}
        }
    }
}
