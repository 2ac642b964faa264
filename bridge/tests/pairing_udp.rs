//! The bridge as a real process (UDP CTAPHID + relay link) paired with the phone runtime of the
//! bindings (in this process, the real engine with auto-approval), through a relay stand-in
//! that follows the protocol document: pair from the printed `pair:` line, getInfo from the
//! cache, makeCredential and getAssertion forwarded, no plaintext at the relay, the CTAP
//! timeout error once the phone is gone, the pairing kept across a bridge restart, and a phone
//! that starts over mid-handshake answered at once.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::hid::HidClient;
use common::phone::Phone;
use common::StandInRelay;
use pocketkey_core::authenticator::Authenticator;
use pocketkey_core::engine::{Engine, RequestContext, RequestKind};
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::{Event, Hello, Role, Session, UrlPolicy};
use pocketkey_net::mailbox::MailboxConn;
use pocketkey_net::pairing as runtime;
use pocketkey_testkit::{GetAssertion, MakeCredential};

struct Bridge {
    child: Child,
    addr: SocketAddr,
    first_line: String,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn bridge(relay: &str, dir: &std::path::Path, expect_line: bool) -> Bridge {
    let addr = free_udp();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pocketkey-bridge"))
        .arg("--key-file")
        .args([
            "--udp",
            &addr.to_string(),
            "--relay",
            relay,
            "--name",
            "Test laptop",
        ])
        .args([
            "--print-url",
            "--auto-confirm",
            "--phone-timeout",
            "2",
            "--state-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Without a pair: line to wait for, the first INIT (resent until answered) is the event.
    let mut first_line = String::new();
    if expect_line {
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut first_line).unwrap();
    }
    Bridge {
        child,
        addr,
        first_line,
    }
}

fn make_credential() -> Vec<u8> {
    MakeCredential::new("example.com", "anna")
        .client_data_hash([0x11; 32])
        .user_id([1, 2, 3])
        .rk(true)
        .uv(true)
        .encode()
}

fn get_assertion() -> Vec<u8> {
    GetAssertion::new("example.com")
        .client_data_hash([0x22; 32])
        .encode()
}

struct EngineRef(Arc<Mutex<Authenticator>>);
impl Engine for EngineRef {
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        self.0.process(kind, payload, cx)
    }
}

fn listen(phone: &Phone) -> (Arc<AtomicBool>, thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (engine, store, s) = (
        Arc::new(EngineRef(Arc::clone(&phone.engine))),
        Arc::clone(&phone.pairings),
        Arc::clone(&stop),
    );
    let handle = thread::spawn(move || {
        runtime::listen("Test phone", engine, store, s, Arc::new(|_, _| {})).unwrap();
    });
    (stop, handle)
}

#[test]
fn pair_register_sign_in_and_time_out_through_the_bridge() {
    let relay = StandInRelay::start();
    let bridge_dir = tempfile::tempdir().unwrap();
    let mut b = bridge(&relay.url, bridge_dir.path(), true);
    let url = b
        .first_line
        .strip_prefix("pair: ")
        .expect("a pair: line")
        .trim()
        .to_string();
    assert!(url.starts_with("pocketkey://pair?v=1&"), "{url}");

    // Before pairing the bridge has no getInfo to give.
    let mut hid = HidClient::connect(b.addr);
    assert_eq!(hid.cbor(&[0x04], Duration::from_secs(2)), vec![0x7f]);

    let phone = Phone::new();
    let record = runtime::pair(
        &url,
        UrlPolicy::Strict,
        "Test phone",
        &EngineRef(Arc::clone(&phone.engine)),
        &phone.pairings,
    )
    .unwrap();
    assert_eq!(record.name, "Test laptop");
    // The same QR code cannot pair twice (burned offer, nobody at the rendezvous any more).
    let again = runtime::pair(
        &url,
        UrlPolicy::Strict,
        "Thief",
        &EngineRef(Arc::clone(&phone.engine)),
        &phone.pairings,
    );
    assert!(again.is_err());

    // getInfo is answered from the phone's Hello.
    let expected = [vec![0x00], phone.engine.get_info().unwrap()].concat();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let info = hid.cbor(&[0x04], Duration::from_secs(2));
        if info == expected {
            break;
        }
        assert!(Instant::now() < deadline, "getInfo not cached: {info:02x?}");
        thread::sleep(Duration::from_millis(100));
    }

    let (stop, handle) = listen(&phone);
    let made = hid.cbor(&make_credential(), Duration::from_secs(15));
    assert_eq!(made[0], 0x00, "makeCredential status {:02x}", made[0]);
    let got = hid.cbor(&get_assertion(), Duration::from_secs(15));
    assert_eq!(got[0], 0x00, "getAssertion status {:02x}", got[0]);
    assert!(
        !hid.keepalives.is_empty(),
        "KEEPALIVE while the phone works"
    );

    // Nothing the relay carried shows the relying party or the request in clear.
    for frame in relay.seen() {
        assert!(!frame.windows(11).any(|w| w == b"example.com"));
    }

    // The phone goes away: the browser gets CTAP2_ERR_USER_ACTION_TIMEOUT, not a hang.
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
    let started = Instant::now();
    assert_eq!(
        hid.cbor(&get_assertion(), Duration::from_secs(10)),
        vec![0x2f]
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // getInfo still from the cache.
    assert_eq!(hid.cbor(&[0x04], Duration::from_secs(2)), expected);

    // A restarted bridge keeps the pairing (no pair: line) and serves the phone again.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    drop(b);
    let b = bridge(&relay.url, bridge_dir.path(), false);
    let (stop, handle) = listen(&phone);
    let mut hid = HidClient::connect(b.addr);
    assert_eq!(hid.cbor(&[0x04], Duration::from_secs(2)), expected);
    let got = hid.cbor(&get_assertion(), Duration::from_secs(15));
    assert_eq!(got[0], 0x00, "getAssertion after restart {:02x}", got[0]);
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
}

#[test]
fn qr_png_is_written_next_to_the_pair_line() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("pair.png");
    let addr = free_udp();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pocketkey-bridge"))
        .arg("--key-file")
        .args([
            "--udp",
            &addr.to_string(),
            "--relay",
            &relay.url,
            "--name",
            "Test laptop",
        ])
        .args(["--print-url", "--auto-confirm"])
        .arg("--qr-png")
        .arg(&png_path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("pair: pocketkey://pair?v=1&"), "{line}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let decoded = loop {
        if let Ok(file) = std::fs::File::open(&png_path) {
            if let Ok(mut reader) = png::Decoder::new(file).read_info() {
                let mut buf = vec![0; reader.output_buffer_size()];
                if let Ok(info) = reader.next_frame(&mut buf) {
                    break (info, buf);
                }
            }
        }
        assert!(Instant::now() < deadline, "no PNG written");
        thread::sleep(Duration::from_millis(50));
    };
    let (info, pixels) = decoded;
    assert_eq!(info.width, info.height);
    assert_eq!(info.width % 8, 0);
    // A QR code of version ≥ 1 (21 modules) plus the quiet zone, black and white only.
    assert!(info.width / 8 >= 21 + 8);
    assert!(pixels.iter().all(|p| *p == 0 || *p == 255));
    assert!(pixels.contains(&0) && pixels.contains(&255));
    let _ = child.kill();
    let _ = child.wait();
}

/// A phone that starts over before it confirmed a session (its app killed after HS1, say)
/// sends a new HS1: the bridge answers it at once with a new session and sends the waiting
/// request again (protocol §4, §5.3), instead of failing it until the handshake timeout.
#[test]
fn a_phone_starting_over_mid_handshake_is_answered_at_once() {
    let relay = StandInRelay::start();
    let bridge_dir = tempfile::tempdir().unwrap();
    let b = bridge(&relay.url, bridge_dir.path(), true);
    let url = b.first_line.strip_prefix("pair: ").unwrap().trim();
    let phone = Phone::new();
    let engine = EngineRef(Arc::clone(&phone.engine));
    let record = runtime::pair(
        url,
        UrlPolicy::Strict,
        "Test phone",
        &engine,
        &phone.pairings,
    )
    .unwrap();
    let mut hid = HidClient::connect(b.addr);
    let deadline = Instant::now() + Duration::from_secs(5);
    while hid.cbor(&[0x04], Duration::from_secs(2))[0] != 0x00 {
        assert!(Instant::now() < deadline, "getInfo never cached");
        thread::sleep(Duration::from_millis(100));
    }
    let browser = thread::spawn(move || hid.cbor(&get_assertion(), Duration::from_secs(30)));

    // The phone by hand: attach, HS1, and whatever the bridge answers until `until` says stop.
    let mut conn = MailboxConn::open(
        &record.relay_url,
        &record.mailbox_keys().attach(Role::Phone),
        Duration::from_secs(5),
    )
    .unwrap();
    let hello = || Hello {
        name: "Test phone".into(),
        get_info: Some(engine.get_info().unwrap()),
    };
    let send = |s: &mut Session, conn: &mut MailboxConn| {
        while let Some(f) = s.poll_frame() {
            conn.send(&RelayFrame::Data(f)).unwrap();
        }
    };
    let request_within = |s: &mut Session, conn: &mut MailboxConn, wait: Duration| {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if let Some(RelayFrame::Data(f)) = conn.poll().unwrap() {
                s.receive(&f, Instant::now()).unwrap();
                while let Some(event) = s.poll_event() {
                    if let Event::CtapRequest(r) = event {
                        return Some(r);
                    }
                }
            }
        }
        None
    };

    // First try: HS1 out; the bridge's HS2, Hello and the request come back; the phone
    // vanishes before sending its Hello.
    let mut first = record.session(hello(), Instant::now()).unwrap();
    send(&mut first, &mut conn);
    assert!(
        request_within(&mut first, &mut conn, Duration::from_secs(5)).is_some(),
        "the request came right behind the bridge's handshake answer"
    );
    drop(first);

    // Started over: a new HS1 gets a new session and the request at once.
    let mut again = record.session(hello(), Instant::now()).unwrap();
    send(&mut again, &mut conn);
    let request = request_within(&mut again, &mut conn, Duration::from_secs(3))
        .expect("the bridge answered the new handshake at once");
    let answer = engine.process(request.kind, &request.payload, &Default::default());
    again.respond(request.id, answer.clone()).unwrap();
    send(&mut again, &mut conn);
    // The engine's answer (no credential for the site yet: 0x2E) reaches the browser.
    assert_eq!(browser.join().unwrap(), answer);
    assert_eq!(answer, vec![0x2e]);
}
