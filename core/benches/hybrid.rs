//! The CPU cost of one hybrid (caBLE v2) sign-in, in the same run as a bare P-256 signature
//! (report ratios, not absolute times: docs/benchmarks.md). Everything runs in process through `pocketkey_core::hybrid`
//! — no sockets — so the figures are the cryptography and the engine, not the network.
//!
//! | benchmark | one iteration |
//! |---|---|
//! | `baseline/p256_sign` | `SigningKey::sign` over 69 bytes (authData ‖ clientDataHash): the unit |
//! | `hybrid/handshake` | browser `Initiator::start` → phone `Session::receive` (Noise responder, post-handshake message encrypted) → browser `finish` and decryption of the post-handshake message |
//! | `hybrid/handshake_and_get_assertion` | the phone's derivations (EID key, tunnel id, advert, PSK), the browser's advert decryption, the handshake above, then one getAssertion (discoverable credential, `uv`) encrypted by the browser, handed by the `Session` to the engine (in-memory store, durable counter write included), answered, and decrypted by the browser |
//! | `phone/respond` | the phone's half of the handshake alone (`noise::respond`), the browser's first message made in setup |
//! | `phone/engine_get_assertion` | the same getAssertion through `process_cbor` alone, no hybrid |
//!
//! Run: `cargo bench -p pocketkey-core --bench hybrid` (results: docs/hybrid.md).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, BatchSize, Criterion};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::SecretKey;
use rand_core::{OsRng, RngCore};

use pocketkey_core::approver::AutoApprover;
use pocketkey_core::authenticator::{Authenticator, Config, RequestContext};
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::hybrid::advert::{self, EidPlaintext};
use pocketkey_core::hybrid::crypter::Crypter;
use pocketkey_core::hybrid::keys;
use pocketkey_core::hybrid::noise::{self, Initiator};
use pocketkey_core::hybrid::qr::QrCode;
use pocketkey_core::hybrid::session::{encode_message, MessageType, PostHandshake};
use pocketkey_core::hybrid::{Session, SessionConfig, SessionEvent};
use pocketkey_core::store::Store;
use pocketkey_testkit::{GetAssertion, MakeCredential};

const RP_ID: &str = "hybrid.example";

fn make_credential() -> Vec<u8> {
    MakeCredential::new(RP_ID, "alice")
        .client_data_hash([1; 32])
        .user_id([7; 16])
        .rk(true)
        .uv(true)
        .encode()
}

fn get_assertion() -> Vec<u8> {
    GetAssertion::new(RP_ID)
        .client_data_hash([2; 32])
        .uv(true)
        .encode()
}

/// The engine as the phone runs it, holding one discoverable credential for [`RP_ID`], and its
/// getInfo CBOR.
fn engine() -> (Authenticator, Vec<u8>) {
    let master = MasterKey::generate();
    let mut engine = Authenticator::new(
        Store::open_in_memory(&master).expect("in-memory store"),
        &master,
        Box::new(AutoApprover),
        Config {
            transports: vec!["hybrid", "usb"],
            ..Config::default()
        },
    )
    .expect("engine");
    let cx = context();
    assert_eq!(engine.process_cbor(&make_credential(), &cx)[0], 0x00);
    assert_eq!(engine.process_cbor(&get_assertion(), &cx)[0], 0x00);
    let info = engine.process_cbor(&[0x04], &cx);
    assert_eq!(info[0], 0x00);
    (engine, info[1..].to_vec())
}

fn context() -> RequestContext {
    RequestContext {
        requester: pocketkey_core::hybrid::session::requester(),
        ..RequestContext::default()
    }
}

/// The browser's QR code material.
struct Browser {
    key: SecretKey,
    qr: QrCode,
}

impl Browser {
    fn new() -> Self {
        let key = SecretKey::random(&mut OsRng);
        let mut secret = [0u8; 16];
        OsRng.fill_bytes(&mut secret);
        let qr = QrCode::new(key.public_key(), secret);
        Self { key, qr }
    }
}

/// Both sides of the handshake; returns the browser's crypter and the phone's session.
fn handshake(browser: &Browser, eid: &EidPlaintext, get_info: &[u8]) -> (Crypter, Session) {
    let mut phone = Session::new(SessionConfig::from_qr(&browser.qr, eid, get_info.to_vec()));
    let psk = keys::psk(&browser.qr.secret, &eid.to_bytes());
    let (initiator, msg1) = Initiator::start(&browser.key, &psk).expect("initiator");
    phone
        .receive(&msg1)
        .expect("the phone accepts the handshake");
    let answer = phone.poll_frame().expect("the phone's answer");
    let done = initiator
        .finish(&answer)
        .expect("the browser accepts the answer");
    let mut crypter = Crypter::new(&done.keys);
    let post = crypter
        .decrypt(&phone.poll_frame().expect("post-handshake message"))
        .expect("decrypts");
    assert!(PostHandshake::decode(&post).is_some());
    assert!(matches!(
        phone.poll_event(),
        Some(SessionEvent::Handshaked { .. })
    ));
    (crypter, phone)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("hybrid");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    let signing = SigningKey::random(&mut OsRng);
    let message = [0x5au8; 69];
    group.bench_function("baseline/p256_sign", |b| {
        b.iter(|| {
            let signature: Signature = signing.sign(black_box(&message));
            black_box(signature)
        })
    });

    let browser = Browser::new();
    let (mut engine, get_info) = engine();
    let eid = EidPlaintext::random([1, 2, 3], 0);

    group.bench_function("handshake", |b| {
        b.iter(|| black_box(handshake(&browser, &eid, &get_info)))
    });

    let request = get_assertion();
    let cx = context();
    group.bench_function("handshake_and_get_assertion", |b| {
        b.iter(|| {
            // The phone: keys from the QR secret, the advert with the routing id.
            let eid_key = keys::eid_key(&browser.qr.secret);
            black_box(keys::tunnel_id(&browser.qr.secret));
            let eid = EidPlaintext::random([1, 2, 3], 0);
            let service_data = advert::encrypt(&eid_key, &eid);
            // The browser reads the advert.
            let seen = advert::decrypt(&keys::eid_key(&browser.qr.secret), &service_data)
                .expect("the advert decrypts");
            let (mut crypter, mut phone) = handshake(&browser, &seen, &get_info);
            let frame = crypter
                .encrypt(&encode_message(MessageType::Ctap, &request))
                .expect("encrypt");
            phone.receive(&frame).expect("the request decrypts");
            let Some(SessionEvent::CtapRequest(bytes)) = phone.poll_event() else {
                panic!("no CTAP request")
            };
            let response = engine.process_cbor(&bytes, &cx);
            phone.respond(&response).expect("respond");
            let reply = crypter
                .decrypt(&phone.poll_frame().expect("the answer"))
                .expect("decrypts");
            assert_eq!(&reply[..2], &[MessageType::Ctap as u8, 0x00]);
            black_box(reply)
        })
    });

    let psk = keys::psk(&browser.qr.secret, &eid.to_bytes());
    group.bench_function("phone/respond", |b| {
        b.iter_batched(
            || Initiator::start(&browser.key, &psk).expect("initiator").1,
            |msg1| black_box(noise::respond(&browser.qr.public_key, &psk, &msg1).expect("respond")),
            BatchSize::SmallInput,
        )
    });

    group.bench_function("phone/engine_get_assertion", |b| {
        b.iter(|| {
            let response = engine.process_cbor(black_box(&request), &cx);
            assert_eq!(response[0], 0x00);
            black_box(response)
        })
    });

    group.bench_function("baseline/p256_sign_end", |b| {
        b.iter(|| {
            let signature: Signature = signing.sign(black_box(&message));
            black_box(signature)
        })
    });
    group.finish();
}

criterion_group!(hybrid, bench);

/// Instruction counting (criterion's wall-clock figures are noisy on a shared machine):
/// `HYBRID_BENCH_COUNT=<op>:<n>` runs the same setup, then `op` `n` times, and exits. Under
/// `valgrind --tool=callgrind`, (total(op, 2n) − total(op, n)) / n is the per-operation count
/// (setup cancels out), nearly the same from run to run. Ops: `sign`, `handshake`, `full`, `respond`, `engine`, `none`.
fn count(spec: &str) {
    let (op, n) = spec.split_once(':').unwrap_or((spec, "1"));
    let n: u32 = n.parse().expect("HYBRID_BENCH_COUNT=<op>:<n>");
    let signing = SigningKey::random(&mut OsRng);
    let message = [0x5au8; 69];
    let browser = Browser::new();
    let (mut engine, get_info) = engine();
    let eid = EidPlaintext::random([1, 2, 3], 0);
    let psk = keys::psk(&browser.qr.secret, &eid.to_bytes());
    let request = get_assertion();
    let cx = context();
    // The browser's first message for `respond` (the responder keeps no state: one will do).
    let first = Initiator::start(&browser.key, &psk).expect("initiator").1;
    for _ in 0..n {
        match op {
            "sign" => {
                let signature: Signature = signing.sign(black_box(&message));
                black_box(signature);
            }
            "handshake" => {
                black_box(handshake(&browser, &eid, &get_info));
            }
            "full" => {
                let eid_key = keys::eid_key(&browser.qr.secret);
                black_box(keys::tunnel_id(&browser.qr.secret));
                let eid = EidPlaintext::random([1, 2, 3], 0);
                let service_data = advert::encrypt(&eid_key, &eid);
                let seen = advert::decrypt(&keys::eid_key(&browser.qr.secret), &service_data)
                    .expect("the advert decrypts");
                let (mut crypter, mut phone) = handshake(&browser, &seen, &get_info);
                let frame = crypter
                    .encrypt(&encode_message(MessageType::Ctap, &request))
                    .expect("encrypt");
                phone.receive(&frame).expect("the request decrypts");
                let Some(SessionEvent::CtapRequest(bytes)) = phone.poll_event() else {
                    panic!("no CTAP request")
                };
                let response = engine.process_cbor(&bytes, &cx);
                phone.respond(&response).expect("respond");
                let reply = crypter
                    .decrypt(&phone.poll_frame().expect("the answer"))
                    .expect("decrypts");
                assert_eq!(&reply[..2], &[MessageType::Ctap as u8, 0x00]);
            }
            "respond" => {
                black_box(noise::respond(&browser.qr.public_key, &psk, &first).expect("respond"));
            }
            "engine" => {
                assert_eq!(engine.process_cbor(black_box(&request), &cx)[0], 0x00);
            }
            "none" => {}
            other => panic!("unknown op {other}"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("HYBRID_BENCH_COUNT") {
        count(&spec);
        return;
    }
    hybrid();
    Criterion::default().configure_from_args().final_summary();
}
