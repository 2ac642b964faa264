//! The phone side of a hybrid (caBLE v2) session fed tunnel messages as if from the browser:
//! garbage, the genuine browser's handshake message and sealed messages, tampered and replayed
//! ones, with the phone's `respond` in between.
//!
//! The genuine browser is a stand-in on the public `hybrid::noise::Initiator` and
//! `hybrid::crypter::Crypter` with a fixed QR code and advert, so it can seal any plaintext the
//! fuzzer writes. Input format, see `fuzz/README.md`: one setup byte, then steps.
//!
//! Checked on every input: no panic; garbage, a tampered (one byte changed or cut short) and a
//! replayed genuine message are always refused, end the session and raise no event;
//! `Handshaked` comes once, only from the genuine handshake message, with the browser's
//! handshake hash; a `CtapRequest` only from a genuine message `0x01 ‖ that request`, one at a
//! time; `Shutdown` only from a genuine `0x00 ‖ …`; nothing after the session ended; every frame
//! the phone sends opens at the browser: the handshake answer, then the post-handshake message
//! `{1: getInfo, 3: ["ctap"]}`, then `0x01 ‖ response` for each `respond`.

#![no_main]

#[path = "support/steps.rs"]
mod steps;

use libfuzzer_sys::fuzz_target;
use p256::SecretKey;
use pocketkey_core::hybrid::advert::EidPlaintext;
use pocketkey_core::hybrid::crypter::Crypter;
use pocketkey_core::hybrid::keys;
use pocketkey_core::hybrid::noise::{Initiator, HANDSHAKE_MESSAGE_LEN};
use pocketkey_core::hybrid::qr::QrCode;
use pocketkey_core::hybrid::session::{encode_message, MessageType, PostHandshake, FEATURE_CTAP};
use pocketkey_core::hybrid::{Session, SessionConfig, SessionEvent};
use steps::{trace, Input};

const GET_INFO: &[u8] = &[
    0xa1, 0x01, 0x81, 0x68, b'F', b'I', b'D', b'O', b'_', b'2', b'_', b'1',
];

/// The genuine browser.
struct Browser {
    /// Its first message, until delivered.
    hello: Option<[u8; HANDSHAKE_MESSAGE_LEN]>,
    initiator: Option<Initiator>,
    crypter: Option<Crypter>,
    handshake_hash: Option<[u8; 32]>,
    /// The phone's post-handshake message arrived.
    post_seen: bool,
    /// Responses the phone was told to send, not yet seen.
    responses: Vec<Vec<u8>>,
}

impl Browser {
    /// Reads what the phone sent; its frames are always genuine and in order.
    fn take_from(&mut self, phone: &mut Session) {
        while let Some(out) = phone.poll_frame() {
            if let Some(initiator) = self.initiator.take() {
                let handshake = initiator
                    .finish(&out)
                    .unwrap_or_else(|e| panic!("the phone's handshake answer: {e}"));
                self.handshake_hash = Some(handshake.handshake_hash);
                self.crypter = Some(Crypter::new(&handshake.keys));
                continue;
            }
            let crypter = self.crypter.as_mut().expect("a frame before the handshake");
            let plaintext = crypter
                .decrypt(&out)
                .unwrap_or_else(|e| panic!("the phone's frame does not open: {e}"));
            if !self.post_seen {
                let post = PostHandshake::decode(&plaintext).expect("the post-handshake message");
                assert_eq!(post.get_info, GET_INFO);
                assert_eq!(post.features, [FEATURE_CTAP]);
                self.post_seen = true;
                continue;
            }
            let (&kind, response) = plaintext.split_first().expect("a typed message");
            assert_eq!(kind, MessageType::Ctap as u8);
            assert!(!self.responses.is_empty(), "a response nobody gave");
            assert_eq!(response, self.responses.remove(0));
        }
    }

    fn seal(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        self.crypter.as_mut()?.encrypt(plaintext).ok()
    }
}

/// Feeds a message that is not genuine: it must be refused, with no event.
fn refuse(phone: &mut Session, bad: &[u8], what: &str) {
    assert!(phone.receive(bad).is_err(), "{what} accepted");
    assert!(
        phone.is_finished(),
        "{what} refused but the session goes on"
    );
    assert!(phone.poll_event().is_none(), "{what} raised an event");
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let setup = input.byte().unwrap_or(0);

    let key = SecretKey::from_slice(&[0x5a; 32]).expect("a valid scalar");
    let qr = QrCode::new(key.public_key(), [0x33; 16]);
    let eid = EidPlaintext::new([4; 10], [1, 2, 3], 0);
    let psk = keys::psk(&qr.secret, &eid.to_bytes());
    let (initiator, hello) = Initiator::start(&key, &psk).expect("the browser's first message");
    let mut phone = Session::new(SessionConfig::from_qr(&qr, &eid, GET_INFO.to_vec()));
    let mut browser = Browser {
        hello: Some(hello),
        initiator: Some(initiator),
        crypter: None,
        handshake_hash: None,
        post_seen: false,
        responses: Vec::new(),
    };

    let mut handshaked = false;
    let mut request_open = false;
    let mut ended = false;
    let mut last_genuine: Option<Vec<u8>> = None;
    // Each step: what the genuine browser delivered (`None`: not genuine or nothing).
    let mut steps = 0usize;
    let mut check = |phone: &mut Session,
                     browser: &mut Browser,
                     delivered: Option<&[u8]>,
                     request_open: &mut bool| {
        browser.take_from(phone);
        while let Some(event) = phone.poll_event() {
            if trace() {
                eprintln!("event: {event:?}");
            }
            assert!(!ended, "{event:?} after the session ended");
            match event {
                SessionEvent::Handshaked { handshake_hash } => {
                    assert!(!handshaked, "two handshakes");
                    handshaked = true;
                    assert_eq!(delivered, Some(&hello[..]));
                    assert_eq!(Some(handshake_hash), browser.handshake_hash);
                }
                SessionEvent::CtapRequest(request) => {
                    assert!(!*request_open, "two open requests");
                    let genuine = delivered.expect("a CTAP request from garbage");
                    assert_eq!(genuine.first(), Some(&(MessageType::Ctap as u8)));
                    assert_eq!(&genuine[1..], request.as_slice());
                    *request_open = true;
                }
                SessionEvent::Shutdown => {
                    let genuine = delivered.expect("a shutdown from garbage");
                    assert_eq!(genuine.first(), Some(&(MessageType::Shutdown as u8)));
                    assert!(phone.is_finished());
                }
            }
        }
        ended = phone.is_finished();
        steps += 1;
    };

    if setup & 1 == 1 {
        phone.receive(&hello).expect("the genuine handshake");
        browser.hello = None;
        last_genuine = Some(hello.to_vec());
        check(&mut phone, &mut browser, Some(&hello), &mut request_open);
        assert!(browser.post_seen);
    }

    while let Some(control) = input.byte() {
        let mut delivered: Option<Vec<u8>> = None;
        match control % 16 {
            // Garbage.
            0..=2 => {
                let bad = input.long();
                refuse(&mut phone, &bad, "garbage");
            }
            // The genuine handshake message.
            3 => {
                if let Some(hello) = browser.hello.take() {
                    let ended = phone.is_finished();
                    match phone.receive(&hello) {
                        Ok(()) => assert!(!ended),
                        Err(e) => assert!(ended, "the genuine handshake: {e}"),
                    }
                    last_genuine = Some(hello.to_vec());
                    delivered = Some(hello.to_vec());
                }
            }
            // Any plaintext, sealed by the browser.
            4..=6 => {
                let plaintext = input.long();
                if let Some(sealed) = browser.seal(&plaintext) {
                    let _ = phone.receive(&sealed);
                    last_genuine = Some(sealed);
                    delivered = Some(plaintext);
                }
            }
            // A CTAP request, shutdown, update or unknown type, sealed by the browser.
            7..=9 => {
                let kind = match input.byte().unwrap_or(1) % 8 {
                    0 => MessageType::Shutdown as u8,
                    1..=5 => MessageType::Ctap as u8,
                    6 => MessageType::Update as u8,
                    _ => 0x7f,
                };
                let plaintext = [&[kind][..], &input.long()].concat();
                if let Some(sealed) = browser.seal(&plaintext) {
                    let received = phone.receive(&sealed);
                    if kind == 0x7f {
                        assert!(
                            received.is_err() && phone.is_finished(),
                            "an unknown message type kept the session"
                        );
                    }
                    last_genuine = Some(sealed);
                    delivered = Some(plaintext);
                }
            }
            // A genuine message with one byte changed, or cut short.
            10..=11 => {
                let position = usize::from(input.byte().unwrap_or(0));
                let flip = input.byte().unwrap_or(0);
                let genuine = match browser.hello.take() {
                    Some(hello) => Some(hello.to_vec()),
                    None => {
                        let plaintext = encode_message(MessageType::Ctap, &input.long());
                        browser.seal(&plaintext)
                    }
                };
                if let Some(mut bad) = genuine {
                    if flip == 0 {
                        bad.truncate(position % bad.len());
                    } else {
                        let i = position % bad.len();
                        bad[i] ^= flip;
                    }
                    refuse(&mut phone, &bad, "a tampered message");
                }
            }
            // The last genuine message again.
            12 => {
                if let Some(old) = last_genuine.clone() {
                    refuse(&mut phone, &old, "a replayed message");
                }
            }
            // The engine's answer.
            _ => {
                let response = input.long();
                let was_open = request_open;
                match phone.respond(&response) {
                    Ok(()) => {
                        assert!(was_open, "respond() without a request accepted");
                        request_open = false;
                        browser.responses.push(response);
                    }
                    Err(_) => assert!(!was_open || phone.is_finished()),
                }
                assert!(phone.poll_event().is_none());
            }
        }
        check(
            &mut phone,
            &mut browser,
            delivered.as_deref(),
            &mut request_open,
        );
    }
    let _ = steps;
    assert!(
        browser.responses.is_empty(),
        "a response the phone did not send"
    );
});
