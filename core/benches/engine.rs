//! Engine benchmarks: real CTAP2 requests (CBOR built with `ciborium::Value`, CTAP 2.1 §6.1 and
//! §6.2 integer keys) through `Authenticator::process_cbor` with the `AutoApprover`, measured
//! in the same criterion group as a bare P-256 signature of `ring` (the fastest signer in the
//! dependency tree), so results can be read as ratios to that baseline (docs/benchmarks.md).
//! The phone's side of a hybrid sign-in and of a pairing session set-up are measured here too.
//!
//! Every request is sent once during setup and its status byte checked (0x00), and every
//! measured call checks it again, so no benchmark can silently time an error path.
//!
//! Run: `cargo bench -p pocketkey-core --bench engine` (results: docs/benchmarks.md).
//! Setup of the large stores is lazy: filtering (`-- baseline`) skips it.

use std::hint::black_box;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use ciborium::Value;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use p256::ecdsa::signature::Signer;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use pocketkey_core::approver::AutoApprover;
use pocketkey_core::authenticator::{command, Authenticator, Config, RequestContext};
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::crypto::signing::PrivateKey;
use pocketkey_core::hybrid::advert::{self, EidPlaintext};
use pocketkey_core::hybrid::crypter::Crypter;
use pocketkey_core::hybrid::keys;
use pocketkey_core::hybrid::noise::Initiator;
use pocketkey_core::hybrid::qr::QrCode;
use pocketkey_core::hybrid::session::{encode_message, MessageType};
use pocketkey_core::hybrid::{Session, SessionConfig, SessionEvent};
use pocketkey_core::pairing::handshake::Handshake;
use pocketkey_core::store::{Algorithm, CredProtect, Credential, Store};

// ---------------------------------------------------------------------------------------------
// CTAP2 requests as CBOR
// ---------------------------------------------------------------------------------------------

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn map(entries: Vec<(Value, Value)>) -> Value {
    Value::Map(entries)
}

/// Command byte ‖ CBOR parameters.
fn encode(cmd: u8, params: Value) -> Vec<u8> {
    let mut out = vec![cmd];
    ciborium::into_writer(&params, &mut out).expect("encoding a CBOR value into a Vec cannot fail");
    out
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// authenticatorMakeCredential (CTAP 2.1 §6.1) for ES256. `rk` makes a discoverable
/// credential, which needs `"uv": true` since this authenticator has built-in UV (§6.1.2
/// step 7, makeCredUvNotRqd covers only non-discoverable credentials).
fn make_credential_request(rp_id: &str, user_id: &[u8], rk: bool) -> Vec<u8> {
    let user_name = format!("user-{}", hex(user_id));
    let mut params = vec![
        (int(1), Value::Bytes(random_bytes::<32>().to_vec())),
        (
            int(2),
            map(vec![
                (text("id"), text(rp_id)),
                (text("name"), text("Bench RP")),
            ]),
        ),
        (
            int(3),
            map(vec![
                (text("id"), Value::Bytes(user_id.to_vec())),
                (text("name"), text(&user_name)),
                (text("displayName"), text("Bench User")),
            ]),
        ),
        (
            int(4),
            Value::Array(vec![map(vec![
                (text("alg"), int(-7)),
                (text("type"), text("public-key")),
            ])]),
        ),
    ];
    if rk {
        params.push((
            int(7),
            map(vec![
                (text("rk"), Value::Bool(true)),
                (text("uv"), Value::Bool(true)),
            ]),
        ));
    }
    encode(command::MAKE_CREDENTIAL, map(params))
}

/// authenticatorGetAssertion (CTAP 2.1 §6.2) with default options (up, no uv) and an
/// allowList when `allow` is not empty.
fn get_assertion_request(rp_id: &str, allow: &[Vec<u8>]) -> Vec<u8> {
    let mut params = vec![
        (int(1), text(rp_id)),
        (int(2), Value::Bytes(random_bytes::<32>().to_vec())),
    ];
    if !allow.is_empty() {
        let list = allow
            .iter()
            .map(|id| {
                map(vec![
                    (text("id"), Value::Bytes(id.clone())),
                    (text("type"), text("public-key")),
                ])
            })
            .collect();
        params.push((int(3), Value::Array(list)));
    }
    encode(command::GET_ASSERTION, map(params))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Asserts CTAP2_OK and decodes the response map.
fn ok_response(response: &[u8], what: &str) -> Vec<(Value, Value)> {
    assert!(!response.is_empty(), "{what}: empty response");
    assert_eq!(
        response[0], 0x00,
        "{what}: status {:#04x}, not CTAP2_OK",
        response[0]
    );
    match ciborium::from_reader::<Value, _>(&response[1..]).expect("response is CBOR") {
        Value::Map(m) => m,
        other => panic!("{what}: response is not a map: {other:?}"),
    }
}

fn field(m: &[(Value, Value)], key: i64) -> Option<&Value> {
    m.iter().find(|(k, _)| *k == int(key)).map(|(_, v)| v)
}

/// The credential ID in a makeCredential response's attested credential data
/// (authData: rpIdHash 32 ‖ flags 1 ‖ signCount 4 ‖ AAGUID 16 ‖ idLen 2 ‖ id …).
fn credential_id(response: &[u8]) -> Vec<u8> {
    let m = ok_response(response, "makeCredential");
    let Some(Value::Bytes(auth_data)) = field(&m, 2) else {
        panic!("makeCredential: no authData")
    };
    let len = u16::from_be_bytes([auth_data[53], auth_data[54]]) as usize;
    auth_data[55..55 + len].to_vec()
}

/// The credential ID a getAssertion response signed with (key 1, a descriptor map).
fn asserted_id(response: &[u8]) -> Vec<u8> {
    let m = ok_response(response, "getAssertion");
    let Some(Value::Map(d)) = field(&m, 1) else {
        panic!("getAssertion: no credential")
    };
    match d.iter().find(|(k, _)| *k == text("id")) {
        Some((_, Value::Bytes(id))) => id.clone(),
        _ => panic!("getAssertion: credential descriptor without id"),
    }
}

// ---------------------------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------------------------

struct Engine {
    auth: Authenticator,
    cx: RequestContext,
}

impl Engine {
    fn new(store: Store, master: &MasterKey) -> Self {
        let auth = Authenticator::new(store, master, Box::new(AutoApprover), Config::default())
            .expect("authenticator over a fresh store");
        Self {
            auth,
            cx: RequestContext::default(),
        }
    }

    fn in_memory(master: &MasterKey) -> Self {
        Self::new(
            Store::open_in_memory(master).expect("in-memory store"),
            master,
        )
    }

    /// Sends a request; panics unless the status is CTAP2_OK. Used in setup and in the
    /// measured loops alike (one byte compare).
    fn call(&mut self, request: &[u8]) -> Vec<u8> {
        let response = self.auth.process_cbor(request, &self.cx);
        assert_eq!(
            response.first(),
            Some(&0x00),
            "status {:#04x?}, not CTAP2_OK",
            response.first()
        );
        response
    }

    fn make_credential(&mut self, rp_id: &str, user_id: &[u8], rk: bool) -> Vec<u8> {
        let response = self.call(&make_credential_request(rp_id, user_id, rk));
        credential_id(&response)
    }
}

/// A discoverable credential inserted straight into the store (no engine request), for
/// filling stores quickly. Its key is a real random P-256 scalar; nothing ever signs with it.
fn filler_credential(rp_id: &str, user_id: Vec<u8>) -> Credential {
    Credential {
        id: random_bytes::<32>().to_vec(),
        rp_id: rp_id.to_string(),
        rp_id_hash: Sha256::digest(rp_id.as_bytes()).into(),
        rp_name: Some(format!("RP {rp_id}")),
        user_name: Some(format!("user-{}", hex(&user_id))),
        user_display_name: Some("Filler User".to_string()),
        user_id,
        algorithm: Algorithm::Es256,
        private_key: Zeroizing::new(p256::SecretKey::random(&mut OsRng).to_bytes().to_vec()),
        cred_protect: CredProtect::UserVerificationOptional,
        hmac_secret: false,
        cred_blob: None,
        large_blob_key: None,
        backup_eligible: false,
        backup_state: false,
        created_at: 1_700_000_000,
    }
}

/// Inserts `count` filler credentials, `users_per_rp` per relying party
/// (`filler-<n>.example`), one `Store::insert_credential` (one transaction) each: the store
/// has no batch API. Returns how long it took.
fn fill(store: &mut Store, count: usize, users_per_rp: usize) -> Duration {
    let start = Instant::now();
    for i in 0..count {
        let rp = format!("filler-{}.example", i / users_per_rp);
        let user_id = (i as u64).to_be_bytes().to_vec();
        store
            .insert_credential(&filler_credential(&rp, user_id))
            .expect("insert filler credential");
    }
    start.elapsed()
}

const TARGET_RP: &str = "target.example";

/// An in-memory engine holding `total` discoverable credentials: `total - 1` fillers spread
/// `users_per_rp` per RP, plus one made through makeCredential for TARGET_RP (alone in its RP).
fn engine_among(master: &MasterKey, total: usize, users_per_rp: usize) -> Engine {
    let mut store = Store::open_in_memory(master).expect("in-memory store");
    let took = fill(&mut store, total - 1, users_per_rp);
    eprintln!(
        "setup: {} filler credentials ({} per RP) into an in-memory store by insert_credential: {:.2?}",
        total - 1,
        users_per_rp,
        took
    );
    let mut e = Engine::new(store, master);
    e.make_credential(TARGET_RP, b"target-user", true);
    assert_eq!(e.auth.store().credential_count().unwrap() as usize, total);
    e
}

/// A file-backed store at `path` holding `fillers` filler credentials plus one discoverable
/// credential for TARGET_RP, closed again.
fn build_file_store(path: &Path, master: &MasterKey, fillers: usize, users_per_rp: usize) {
    let mut store = Store::open(path, master).expect("file store");
    let took = fill(&mut store, fillers, users_per_rp);
    eprintln!(
        "setup: {fillers} filler credentials into a file-backed store (WAL, synchronous=FULL) by insert_credential: {took:.2?}"
    );
    let mut e = Engine::new(store, master);
    e.make_credential(TARGET_RP, b"target-user", true);
}

/// Size of the store's write-ahead log.
fn wal_len(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

/// Repeats a committing operation until SQLite has checkpointed the WAL once and writes into
/// the already allocated file (its size stops changing), so a durable benchmark measures one
/// regime: commits that overwrite WAL blocks in place. Until then every commit extends the
/// file, and on ext4 an fsync that extends a file costs several times more (see
/// docs/benchmarks.md). Returns how many operations that took.
fn prime_wal(db: &Path, mut op: impl FnMut()) -> usize {
    let (mut n, mut unchanged, mut last) = (0, 0, wal_len(db));
    while unchanged < 50 {
        op();
        n += 1;
        let len = wal_len(db);
        if len == last && len > 0 {
            unchanged += 1;
        } else {
            (unchanged, last) = (0, len);
        }
        assert!(n < 50_000, "the WAL never stopped growing");
    }
    n
}

/// getAssertion with `"uv": true` and no allowList (a discoverable credential, as a phone
/// with built-in UV signs in).
fn get_assertion_request_uv(rp_id: &str) -> Vec<u8> {
    let params = vec![
        (int(1), text(rp_id)),
        (int(2), Value::Bytes(random_bytes::<32>().to_vec())),
        (int(5), map(vec![(text("uv"), Value::Bool(true))])),
    ];
    encode(command::GET_ASSERTION, map(params))
}

/// `ring`'s ECDSA P-256 signature over 69 bytes: the unit of every ratio.
fn ring_sign<M: criterion::measurement::Measurement>(name: &str, g: &mut Group<'_, M>) {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let message: Vec<u8> = random_bytes::<69>().to_vec();
    g.bench_function(name, |b| {
        b.iter(|| key.sign(&rng, black_box(&message)).unwrap())
    });
}

/// One ECDH with a reusable key: `p256` 0.13's, and the engine's (`EcdhKey`, on `aws-lc-rs`),
/// which the PIN protocols, Noise and the sealed boxes run; and `aws-lc-rs`'s ECDSA signature
/// of the same 69 bytes as the `ring` unit, to compare the two signers in one run.
fn ecdh_and_alternative_signer<M: criterion::measurement::Measurement>(g: &mut Group<'_, M>) {
    use pocketkey_core::crypto::es256::EcdhKey;
    let peer = EcdhKey::generate();
    let ours = p256::SecretKey::random(&mut OsRng);
    let peer_p256 = p256::PublicKey::from_sec1_bytes(peer.public_point()).unwrap();
    g.bench_function("baseline/p256_ecdh", |b| {
        b.iter(|| {
            p256::ecdh::diffie_hellman(ours.to_nonzero_scalar(), black_box(peer_p256.as_affine()))
        })
    });
    let engine_key = EcdhKey::generate();
    g.bench_function("baseline/engine_ecdh", |b| {
        b.iter(|| engine_key.agree(black_box(peer.public_point())).unwrap())
    });
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let message: Vec<u8> = random_bytes::<69>().to_vec();
    g.bench_function("baseline/aws_lc_p256_sign", |b| {
        b.iter(|| key.sign(&rng, black_box(&message)).unwrap())
    });
    g.bench_function("baseline/engine_es256_generate", |b| {
        b.iter(|| PrivateKey::generate(Algorithm::Es256))
    });
}

/// A clock for the rows that time only part of each iteration (`iter_custom`): wall time
/// since the first call, or this thread's CPU time.
type Clock = fn() -> Duration;

fn wall_clock() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// CPU time of the calling thread (user and system), which does not advance while the
/// thread waits for a core: on a shared machine it leaves out the time other programs ran.
fn thread_cpu_clock() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; the clock id is a constant of the platform.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// criterion measurement by [`thread_cpu_clock`].
struct ThreadCpu;

impl criterion::measurement::Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_clock()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_clock() - start
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        static WALL: criterion::measurement::WallTime = criterion::measurement::WallTime;
        criterion::measurement::Measurement::formatter(&WALL)
    }
}

type Group<'a, M> = criterion::BenchmarkGroup<'a, M>;

/// Hybrid (caBLE v2), the phone's side only: scan (parse the QR text), derive the keys and the
/// advert, answer the browser's handshake (Noise KNpsk0 responder), send the post-handshake
/// message, then decrypt one getAssertion (discoverable credential, uv), run it and encrypt
/// the answer. The browser's work (its handshake messages, encrypting the request, decrypting
/// the answers) is done between the timed parts, not timed.
fn hybrid_phone<M: criterion::measurement::Measurement<Value = Duration>>(
    master: &MasterKey,
    g: &mut Group<'_, M>,
    now: Clock,
) {
    {
        let mut engine = Engine::in_memory(master);
        engine.cx.requester = pocketkey_core::hybrid::session::requester();
        engine.make_credential(TARGET_RP, b"hybrid-user", true);
        let request = get_assertion_request_uv(TARGET_RP);
        engine.call(&request);
        let get_info = engine.call(&[command::GET_INFO])[1..].to_vec();
        let browser = p256::SecretKey::random(&mut OsRng);
        let qr_text = QrCode::new(browser.public_key(), random_bytes::<16>()).to_url();
        g.bench_function("hybrid/phone_handshake_and_get_assertion", |b| {
            b.iter_custom(|iters| {
                let mut phone_time = Duration::ZERO;
                for _ in 0..iters {
                    // Phone: scan, keys, advert (untimed: nothing of the browser's).
                    let t = now();
                    let qr = QrCode::parse(&qr_text).expect("our own QR");
                    let eid_key = keys::eid_key(&qr.secret);
                    black_box(keys::tunnel_id(&qr.secret));
                    let eid = EidPlaintext::random([1, 2, 3], 0);
                    let service_data = advert::encrypt(&eid_key, &eid);
                    let mut phone =
                        Session::new(SessionConfig::from_qr(&qr, &eid, get_info.clone()));
                    phone_time += now() - t;
                    // Browser: reads the advert, starts the handshake.
                    let seen = advert::decrypt(&keys::eid_key(&qr.secret), &service_data)
                        .expect("the advert decrypts");
                    let psk = keys::psk(&qr.secret, &seen.to_bytes());
                    let (initiator, msg1) = Initiator::start(&browser, &psk).expect("initiator");
                    // Phone: answers.
                    let t = now();
                    phone
                        .receive(&msg1)
                        .expect("the phone accepts the handshake");
                    let answer = phone.poll_frame().expect("the phone's answer");
                    let post = phone.poll_frame().expect("post-handshake message");
                    phone_time += now() - t;
                    // Browser: finishes, reads the post-handshake message, sends the request.
                    let done = initiator.finish(&answer).expect("the browser accepts");
                    let mut crypter = Crypter::new(&done.keys);
                    crypter.decrypt(&post).expect("decrypts");
                    let frame = crypter
                        .encrypt(&encode_message(MessageType::Ctap, &request))
                        .expect("encrypt");
                    // Phone: the request through the engine, the answer out.
                    let t = now();
                    phone.receive(&frame).expect("the request decrypts");
                    let bytes = loop {
                        match phone.poll_event() {
                            Some(SessionEvent::CtapRequest(bytes)) => break bytes,
                            Some(_) => continue,
                            None => panic!("no CTAP request"),
                        }
                    };
                    let response = engine.call(&bytes);
                    phone.respond(&response).expect("respond");
                    let reply = phone.poll_frame().expect("the answer");
                    phone_time += now() - t;
                    let reply = crypter.decrypt(&reply).expect("decrypts");
                    assert_eq!(&reply[..2], &[MessageType::Ctap as u8, 0x00]);
                }
                phone_time
            })
        });
    }
}

/// A pairing session set-up (Noise KK between stored static keys), each side timed alone: the
/// phone starts (HS1) and reads HS2; the bridge reads HS1 and answers.
fn pairing_kk<M: criterion::measurement::Measurement<Value = Duration>>(
    g: &mut Group<'_, M>,
    now: Clock,
) {
    {
        let phone_static = p256::SecretKey::random(&mut OsRng);
        let bridge_static = p256::SecretKey::random(&mut OsRng);
        let (phone_public, bridge_public) = (phone_static.public_key(), bridge_static.public_key());
        let kk = |phone_side: bool, iters: u64| {
            let mut side = Duration::ZERO;
            for _ in 0..iters {
                let t = now();
                let (mut phone, hs1) =
                    Handshake::phone_session(&phone_static, &bridge_public).expect("HS1");
                let phone_start = now() - t;
                let t = now();
                let mut bridge =
                    Handshake::bridge_session(&bridge_static, &phone_public).expect("bridge");
                let step = bridge.read(&hs1).expect("the bridge accepts HS1");
                let bridge_time = now() - t;
                assert!(step.finished.is_some());
                let t = now();
                let done = phone
                    .read(&step.reply.expect("HS2"))
                    .expect("the phone accepts HS2");
                let phone_end = now() - t;
                assert!(done.finished.is_some());
                side += if phone_side {
                    phone_start + phone_end
                } else {
                    bridge_time
                };
            }
            side
        };
        g.bench_function("pairing/kk_session_phone", |b| {
            b.iter_custom(|iters| kk(true, iters))
        });
        g.bench_function("pairing/kk_session_bridge", |b| {
            b.iter_custom(|iters| kk(false, iters))
        });
    }
}

/// The CPU-bound rows again, timed by this thread's CPU time instead of the wall clock: on a
/// machine shared with other work, wall time includes the time other programs held the core,
/// and more of it the longer an operation runs. Durable rows are not here (an fsync's wait is
/// not CPU time).
fn cpu_benches(c: &mut Criterion<ThreadCpu>) {
    let master = MasterKey::generate();
    let mut g = c.benchmark_group("engine_cpu");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    ring_sign("baseline/ring_p256_sign", &mut g);
    {
        let key = p256::ecdsa::SigningKey::random(&mut OsRng);
        let message: Vec<u8> = random_bytes::<69>().to_vec();
        g.bench_function("baseline/p256_sign", |b| {
            b.iter(|| -> p256::ecdsa::Signature { key.sign(black_box(&message)) })
        });
    }
    ecdh_and_alternative_signer(&mut g);
    {
        let mut e = Engine::in_memory(&master);
        e.make_credential(TARGET_RP, b"user-1", true);
        let req = get_assertion_request(TARGET_RP, &[]);
        e.call(&req);
        g.bench_function("get_assertion/discoverable_1", |b| {
            b.iter(|| e.call(black_box(&req)))
        });
        let id = e.make_credential("allow.example", b"user-1", false);
        let req = get_assertion_request("allow.example", std::slice::from_ref(&id));
        e.call(&req);
        g.bench_function("get_assertion/allow_list_1", |b| {
            b.iter(|| e.call(black_box(&req)))
        });
    }
    {
        let mut e = Engine::in_memory(&master);
        let mut n: u64 = 0;
        let mut next_request = move || {
            n += 1;
            make_credential_request(&format!("rp-{}.example", n % 100), &n.to_be_bytes(), true)
        };
        e.call(&next_request());
        g.bench_function("make_credential/discoverable", |b| {
            b.iter_batched(&mut next_request, |req| e.call(&req), BatchSize::SmallInput)
        });
    }
    hybrid_phone(&master, &mut g, thread_cpu_clock);
    pairing_kk(&mut g, thread_cpu_clock);
    ring_sign("baseline/ring_p256_sign_end", &mut g);
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------------

fn benches(c: &mut Criterion) {
    let master = MasterKey::generate();
    let mut g = c.benchmark_group("engine");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // 1. The bare signature every assertion needs: ECDSA P-256 / SHA-256 over
    //    authenticatorData (37 bytes without extensions) ‖ clientDataHash (32 bytes), by
    //    `ring` (the unit of every ratio) and by `p256` 0.13 (what the engine used before).
    ring_sign("baseline/ring_p256_sign", &mut g);
    {
        let key = p256::ecdsa::SigningKey::random(&mut OsRng);
        let message: Vec<u8> = random_bytes::<69>().to_vec();
        g.bench_function("baseline/p256_sign", |b| {
            b.iter(|| -> p256::ecdsa::Signature { key.sign(black_box(&message)) })
        });
        // ECDH: `ring`'s (a fresh ephemeral key, one agreement: all its API offers) and
        // `p256`'s (one agreement with a reusable key: what the PIN protocols and Noise run).
        let rng = ring::rand::SystemRandom::new();
        let peer = p256::SecretKey::random(&mut OsRng)
            .public_key()
            .to_encoded_point(false);
        g.bench_function("baseline/ring_p256_ecdh", |b| {
            b.iter(|| {
                let ours = ring::agreement::EphemeralPrivateKey::generate(
                    &ring::agreement::ECDH_P256,
                    &rng,
                )
                .unwrap();
                let peer =
                    ring::agreement::UnparsedPublicKey::new(&ring::agreement::ECDH_P256, &peer);
                ring::agreement::agree_ephemeral(ours, &peer, |z| black_box(z[0])).unwrap()
            })
        });
        let ours = p256::SecretKey::random(&mut OsRng);
        let peer = p256::PublicKey::from_sec1_bytes(peer.as_bytes()).unwrap();
        g.bench_function("baseline/p256_ecdh", |b| {
            b.iter(|| {
                p256::ecdh::diffie_hellman(ours.to_nonzero_scalar(), black_box(peer.as_affine()))
            })
        });
        // Not a request: loading a stored ES256 key (scalar ‖ point; ring recomputes the point
        // to check it), which the engine does when a credential is not in its key cache, and
        // the same from a bare scalar (credentials stored before the point was kept).
        let bytes = PrivateKey::generate(Algorithm::Es256).to_bytes();
        g.bench_function("baseline/p256_key_from_bytes", |b| {
            b.iter(|| PrivateKey::from_bytes(Algorithm::Es256, black_box(&bytes)).unwrap())
        });
        g.bench_function("baseline/p256_key_from_bare_scalar", |b| {
            b.iter(|| PrivateKey::from_bytes(Algorithm::Es256, black_box(&bytes[..32])).unwrap())
        });
    }

    // 2. One discoverable credential, no allowList.
    {
        let mut slot: Option<(Engine, Vec<u8>)> = None;
        g.bench_function("get_assertion/discoverable_1", |b| {
            let (e, req) = slot.get_or_insert_with(|| {
                let mut e = Engine::in_memory(&master);
                e.make_credential(TARGET_RP, b"user-1", true);
                let req = get_assertion_request(TARGET_RP, &[]);
                e.call(&req);
                (e, req)
            });
            b.iter(|| e.call(black_box(req)))
        });
    }

    // 3. Non-discoverable credentials (sealed credential IDs) named by an allowList.
    {
        let mut slot: Option<(Engine, Vec<u8>)> = None;
        g.bench_function("get_assertion/allow_list_1", |b| {
            let (e, req) = slot.get_or_insert_with(|| {
                let mut e = Engine::in_memory(&master);
                let id = e.make_credential(TARGET_RP, b"user-1", false);
                let req = get_assertion_request(TARGET_RP, std::slice::from_ref(&id));
                assert_eq!(asserted_id(&e.call(&req)), id);
                (e, req)
            });
            b.iter(|| e.call(black_box(req)))
        });
    }
    {
        // 64 IDs, all made by this key for TARGET_RP; the one made first is put last.
        let mut slot: Option<(Engine, Vec<u8>)> = None;
        g.bench_function("get_assertion/allow_list_64", |b| {
            let (e, req) = slot.get_or_insert_with(|| {
                let mut e = Engine::in_memory(&master);
                let mut ids: Vec<Vec<u8>> = (0..64u32)
                    .map(|i| e.make_credential(TARGET_RP, &i.to_be_bytes(), false))
                    .collect();
                ids.rotate_left(1);
                let req = get_assertion_request(TARGET_RP, &ids);
                let used = asserted_id(&e.call(&req));
                let position = ids
                    .iter()
                    .position(|id| *id == used)
                    .expect("answered with a listed ID");
                eprintln!("allow_list_64: the engine signed with list entry {position} of 64");
                (e, req)
            });
            b.iter(|| e.call(black_box(req)))
        });
    }
    {
        // 64 IDs made by this key, 63 of them for other RPs (their AEAD fails under this
        // rpIdHash); the only one usable here is last.
        let mut slot: Option<(Engine, Vec<u8>)> = None;
        g.bench_function("get_assertion/allow_list_64_last_usable", |b| {
            let (e, req) = slot.get_or_insert_with(|| {
                let mut e = Engine::in_memory(&master);
                let mut ids: Vec<Vec<u8>> = (0..63u32)
                    .map(|i| e.make_credential(&format!("other-{i}.example"), b"user-1", false))
                    .collect();
                let target = e.make_credential(TARGET_RP, b"user-1", false);
                ids.push(target.clone());
                let req = get_assertion_request(TARGET_RP, &ids);
                assert_eq!(asserted_id(&e.call(&req)), target);
                (e, req)
            });
            b.iter(|| e.call(black_box(req)))
        });
    }

    // 5. One RP with one discoverable credential among 10 / 100 000 in the store.
    for (total, users_per_rp) in [(10usize, 1usize), (100_000, 100)] {
        let mut slot: Option<(Engine, Vec<u8>)> = None;
        g.bench_function(format!("get_assertion/discoverable_among_{total}"), |b| {
            let (e, req) = slot.get_or_insert_with(|| {
                let mut e = engine_among(&master, total, users_per_rp);
                let req = get_assertion_request(TARGET_RP, &[]);
                e.call(&req);
                (e, req)
            });
            b.iter(|| e.call(black_box(req)))
        });
    }

    // 4a. Discoverable makeCredential in memory (packed self attestation: key generation,
    //     then a signature with the new key), a new user id every iteration.
    {
        let mut e = Engine::in_memory(&master);
        let mut n: u64 = 0;
        let mut next_request = move || {
            n += 1;
            make_credential_request(&format!("rp-{}.example", n % 100), &n.to_be_bytes(), true)
        };
        e.call(&next_request());
        g.bench_function("make_credential/discoverable", |b| {
            b.iter_batched(&mut next_request, |req| e.call(&req), BatchSize::SmallInput)
        });
    }

    // 7. Hybrid (caBLE v2), the phone's side only; 8. a pairing session set-up, each side.
    hybrid_phone(&master, &mut g, wall_clock);
    pairing_kk(&mut g, wall_clock);

    // The price of one durable write on this disk, measured next to the durable benchmarks
    // (before and after them): overwrite 4 KiB inside an allocated file, then fsync, which is
    // what a SQLite WAL commit does once the WAL file is allocated.
    let fsync_dir = tempfile::tempdir().expect("tempdir");
    let fsync_file = {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(fsync_dir.path().join("fsync.bin"))
            .expect("fsync probe file");
        (&f).write_all(&[0u8; 1 << 16]).expect("write");
        f.sync_all().expect("fsync");
        f
    };
    let fsync_4k =
        |name: &str, g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>| {
            let page = random_bytes::<4096>();
            let mut i = 0u64;
            g.bench_function(name, |b| {
                b.iter(|| {
                    i += 1;
                    let mut f = &fsync_file;
                    f.seek(SeekFrom::Start((i % 16) * 4096)).expect("seek");
                    f.write_all(&page).expect("write");
                    fsync_file.sync_all().expect("fsync");
                })
            });
        };
    fsync_4k("baseline/fsync_4k", &mut g);

    // 2b. As 2, on a file-backed store: the signature counter is committed durably
    //     (WAL, synchronous=FULL) before the response leaves. WAL primed (see prime_wal).
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("store.sqlite");
        let mut slot: Option<(Engine, Vec<u8>)> = None;
        g.bench_function("get_assertion/discoverable_1_durable", |b| {
            let (e, req) = slot.get_or_insert_with(|| {
                let store = Store::open(&db, &master).expect("file store");
                let mut e = Engine::new(store, &master);
                e.make_credential(TARGET_RP, b"user-1", true);
                let req = get_assertion_request(TARGET_RP, &[]);
                let start = Instant::now();
                let n = prime_wal(&db, || {
                    e.call(&req);
                });
                eprintln!(
                    "setup: WAL primed by {n} getAssertions in {:.2?}; WAL {} bytes",
                    start.elapsed(),
                    wal_len(&db)
                );
                (e, req)
            });
            b.iter(|| e.call(black_box(req)))
        });
        eprintln!(
            "get_assertion/discoverable_1_durable: WAL {} bytes after measuring",
            wal_len(&db)
        );
    }

    // 4. Durable discoverable makeCredential: file-backed store, a new user id every iteration
    //    (so every call inserts a row and the store grows), users spread over 100 RPs.
    //    WAL primed (see prime_wal) with makeCredentials of the same kind.
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("store.sqlite");
        let mut slot: Option<Engine> = None;
        let mut n: u64 = 0;
        let mut next_request = move || {
            n += 1;
            make_credential_request(&format!("rp-{}.example", n % 100), &n.to_be_bytes(), true)
        };
        g.bench_function("make_credential/discoverable_durable", |b| {
            let e = slot.get_or_insert_with(|| {
                let store = Store::open(&db, &master).expect("file store");
                let mut e = Engine::new(store, &master);
                let start = Instant::now();
                let primed = prime_wal(&db, || {
                    e.call(&next_request());
                });
                eprintln!(
                    "setup: WAL primed by {primed} makeCredentials in {:.2?}; WAL {} bytes",
                    start.elapsed(),
                    wal_len(&db)
                );
                e
            });
            b.iter_batched(&mut next_request, |req| e.call(&req), BatchSize::SmallInput)
        });
        if let Some(e) = &slot {
            eprintln!(
                "make_credential/discoverable_durable: store grew to {} credentials; WAL {} bytes after measuring",
                e.auth.store().credential_count().unwrap(),
                wal_len(&db)
            );
        }
    }

    // 6. Process start: open a file-backed store holding 10 000 credentials, build the
    //    authenticator, answer the first getAssertion. Closing (a WAL checkpoint) is not timed.
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.sqlite");
        let mut ready = false;
        let req = get_assertion_request(TARGET_RP, &[]);
        g.bench_function("cold_open_first_assertion", |b| {
            if !ready {
                build_file_store(&path, &master, 10_000 - 1, 100);
                ready = true;
            }
            b.iter_batched(
                || (),
                |()| {
                    let store = Store::open(&path, &master).expect("reopen store");
                    let mut e = Engine::new(store, &master);
                    let response = e.call(&req);
                    (e, response)
                },
                BatchSize::PerIteration,
            )
        });
        // The same without the request, to split the above into opening and answering.
        g.bench_function("cold_open/store_and_authenticator_only", |b| {
            if !ready {
                build_file_store(&path, &master, 10_000 - 1, 100);
                ready = true;
            }
            b.iter_batched(
                || (),
                |()| Engine::new(Store::open(&path, &master).expect("reopen store"), &master),
                BatchSize::PerIteration,
            )
        });
    }

    fsync_4k("baseline/fsync_4k_end", &mut g);

    // The baselines again at the end: the machine is shared, so drift between the start and
    // the end of the run shows how far the ratios can be trusted.
    ring_sign("baseline/ring_p256_sign_end", &mut g);
    {
        let key = p256::ecdsa::SigningKey::random(&mut OsRng);
        let message: Vec<u8> = random_bytes::<69>().to_vec();
        g.bench_function("baseline/p256_sign_end", |b| {
            b.iter(|| -> p256::ecdsa::Signature { key.sign(black_box(&message)) })
        });
    }

    g.finish();
}

criterion_group!(engine, benches);
criterion_group! {
    name = engine_cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu_benches
}
criterion_main!(engine, engine_cpu);
