//! Where the bridge's pairing secret goes and for how long it is offered (issue 17 item 3),
//! and a phone that keeps its running request when the relay says PEER present again: the
//! bridge as a real process, the relay stand-in of `common`, the phone runtime in process.
//!
//! - stdout to a pipe without `--print-url`: the pairing URL is printed nowhere;
//! - `--qr-png` creates the file owner-only, even over an existing readable file;
//! - an unpaired bridge stops offering after `--offer-for` and exits with an error; a paired
//!   one with `--pair-another` goes back to serving its phone.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::bridge::Bridge;
use common::hid::HidClient;
use common::phone::Phone;
use common::StandInRelay;
use pocketkey_core::authenticator::{Authenticator, RequestContext};
use pocketkey_core::engine::{Engine as _, RequestKind};
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::{Role, UrlPolicy};
use pocketkey_net::pairing as runtime;
use pocketkey_testkit::{GetAssertion, MakeCredential};

/// Only a guard against a hung test, never an expectation about speed.
const HANG: Duration = Duration::from_secs(60);

#[test]
fn the_pairing_url_is_not_printed_to_a_pipe_without_print_url() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let mut b = Bridge::spawn(&relay.url, dir.path(), &[]);
    let told = b.stderr_until("showing a pairing code");
    assert!(
        told.iter().any(|l| l.contains("--print-url")),
        "says how to get the code: {told:#?}"
    );
    // Everything the bridge wrote to stdout, up to its end.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let stdout: String = b.stdout.iter().map(|line| line + "\n").collect();
    let stderr: Vec<String> = told.into_iter().chain(b.stderr.try_iter()).collect();
    assert_eq!(stdout, "", "nothing on stdout");
    for line in &stderr {
        assert!(!line.contains("pocketkey://"), "the URL on stderr: {line}");
        assert!(!line.contains("s="), "the secret on stderr: {line}");
    }
}

#[cfg(unix)]
#[test]
fn the_qr_png_is_owner_only_even_over_a_readable_file() {
    use std::os::unix::fs::PermissionsExt;
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("pair.png");
    std::fs::write(&png, b"old").unwrap();
    std::fs::set_permissions(&png, std::fs::Permissions::from_mode(0o644)).unwrap();
    let b = Bridge::spawn(
        &relay.url,
        &dir.path().join("state"),
        &["--qr-png", png.to_str().unwrap()],
    );
    b.stderr_until("pairing QR code written to");
    let mode = std::fs::metadata(&png).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:03o}");
    assert_ne!(std::fs::read(&png).unwrap(), b"old");
    // No temporary file left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}"); // pair.png and state/
}

#[test]
fn an_unpaired_bridge_stops_offering_when_its_window_ends() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let mut b = Bridge::spawn(&relay.url, dir.path(), &["--offer-for", "1"]);
    b.stderr_until("showing a pairing code");
    let said = b.stderr_until("pocketkey-bridge:");
    let status = b.exit();
    assert!(!status.success(), "{status}");
    assert!(
        said.last().unwrap().contains(
            "pocketkey-bridge: no phone paired within 1 second; run again to show a new code"
        ),
        "{said:#?}"
    );
}

/// The phone's engine; makeCredential waits for the test's go (the user still deciding).
struct Engine {
    inner: Arc<Mutex<Authenticator>>,
    /// Told when a makeCredential starts.
    started: Mutex<Sender<()>>,
    go: Mutex<Receiver<()>>,
    /// makeCredential runs.
    made: AtomicUsize,
}

impl pocketkey_core::engine::Engine for Engine {
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        if payload.first() == Some(&0x01) {
            self.made.fetch_add(1, Ordering::SeqCst);
            let _ = self.started.lock().unwrap().send(());
            let _ = self.go.lock().unwrap().recv();
        }
        self.inner.process(kind, payload, cx)
    }
}

/// Pairs a phone with the bridge from its `pair:` line and waits for the bridge's getInfo.
fn pair(b: &mut Bridge, phone: &Phone) -> HidClient {
    let url = b.pairing_url();
    let engine = Engine {
        inner: Arc::clone(&phone.engine),
        started: Mutex::new(mpsc::channel().0),
        go: Mutex::new(mpsc::channel().1),
        made: AtomicUsize::new(0),
    };
    runtime::pair(
        &url,
        UrlPolicy::Strict,
        "Test phone",
        &engine,
        &phone.pairings,
    )
    .unwrap();
    let mut hid = HidClient::connect(b.addr);
    let deadline = Instant::now() + HANG;
    while hid.cbor(&[0x04], Duration::from_secs(2))[0] != 0x00 {
        assert!(Instant::now() < deadline, "getInfo never cached");
        thread::sleep(Duration::from_millis(50));
    }
    hid
}

#[test]
fn pair_another_goes_back_to_its_phone_when_the_window_ends() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let phone = Phone::new();
    {
        let mut b = Bridge::spawn(&relay.url, dir.path(), &["--print-url"]);
        pair(&mut b, &phone);
    }
    let mut b = Bridge::spawn(
        &relay.url,
        dir.path(),
        &["--pair-another", "--offer-for", "1"],
    );
    b.stderr_until("showing a pairing code");
    b.stderr_until("no phone paired within 1 second; no more pairing codes");
    b.stderr_until("serving the phone \"Test phone\"");
    assert!(b.child.try_wait().unwrap().is_none(), "still serving");
    let mut hid = HidClient::connect(b.addr);
    let expected = [vec![0x00], phone.engine.get_info().unwrap()].concat();
    assert_eq!(hid.cbor(&[0x04], Duration::from_secs(5)), expected);
}

/// PEER present arrives (a relay's duplicate, or one it made up) while the phone's user is
/// deciding on a request: the phone keeps the request and its session, answers it, and only
/// then starts over; the browser gets the one answer, the engine ran it once.
#[test]
fn peer_present_during_a_request_does_not_cancel_it() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let phone = Phone::new();
    let mut b = Bridge::spawn(&relay.url, dir.path(), &["--print-url"]);
    let mut hid = pair(&mut b, &phone);

    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let engine = Arc::new(Engine {
        inner: Arc::clone(&phone.engine),
        started: Mutex::new(started_tx),
        go: Mutex::new(go_rx),
        made: AtomicUsize::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let listening = {
        let (engine, store, stop) = (
            Arc::clone(&engine) as Arc<dyn pocketkey_core::engine::Engine>,
            Arc::clone(&phone.pairings),
            Arc::clone(&stop),
        );
        thread::spawn(move || {
            runtime::listen("Test phone", engine, store, stop, Arc::new(|_, _| {})).unwrap();
        })
    };
    let request = MakeCredential::new("example.com", "anna")
        .client_data_hash([0x11; 32])
        .user_id([1, 2, 3])
        .rk(true)
        .uv(true)
        .encode();
    let browser = thread::spawn(move || {
        let made = hid.cbor(&request, Duration::from_secs(40));
        (hid, made)
    });
    started
        .recv_timeout(HANG)
        .expect("the phone runs the request");
    relay.inject(Role::Phone, &RelayFrame::Peer { present: true });
    go.send(()).unwrap();
    let (mut hid, made) = browser.join().unwrap();
    assert_eq!(made[0], 0x00, "makeCredential status {:02x}", made[0]);
    assert_eq!(engine.made.load(Ordering::SeqCst), 1);
    // The phone started over after answering: the next request is served too.
    let assertion = GetAssertion::new("example.com")
        .client_data_hash([0x22; 32])
        .encode();
    let got = hid.cbor(&assertion, Duration::from_secs(20));
    assert_eq!(got[0], 0x00, "getAssertion status {:02x}", got[0]);
    stop.store(true, Ordering::SeqCst);
    listening.join().unwrap();
}
