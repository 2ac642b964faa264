//! At-most-once requests (docs/pairing-protocol.md §5.2): the bridge as a real process, the
//! phone side of `pocketkey-net` (in this process, the real engine with auto-approval), and
//! a relay stand-in that loses the phone's frames or its socket. A request whose answer was
//! lost reaches the phone again under the same request id and is answered without running
//! the engine a second time.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::bridge::Bridge;
use common::hid::HidClient;
use common::StandInRelay;
use pocketkey_core::approver::AutoApprover;
use pocketkey_core::authenticator::{Authenticator, Config, RequestContext};
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::engine::{Engine, RequestKind};
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::{PairingStore, Role, UrlPolicy};
use pocketkey_core::store::Store;
use pocketkey_net::pairing as runtime;
use pocketkey_testkit::MakeCredential;

/// A bridge and the pairing URL it shows.
fn bridge(relay: &str, dir: &std::path::Path) -> (Bridge, String) {
    let b = Bridge::start(relay, dir, &[]);
    let url = b.pairing_url();
    (b, url)
}

/// The real engine, counting the makeCredential runs and telling the test after each; with a
/// gate, the first run waits for the test to open it (a user taking their time).
struct Counting {
    engine: Mutex<Authenticator>,
    runs: Mutex<usize>,
    ran: Mutex<Sender<()>>,
    started: Mutex<Sender<()>>,
    gate: Mutex<Option<Receiver<()>>>,
}

impl Engine for Counting {
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        if payload.first() == Some(&0x01) {
            let _ = self.started.lock().unwrap().send(());
            if let Some(gate) = self.gate.lock().unwrap().take() {
                let _ = gate.recv();
            }
        }
        let answer = self.engine.process(kind, payload, cx);
        if payload.first() == Some(&0x01) {
            *self.runs.lock().unwrap() += 1;
            let _ = self.ran.lock().unwrap().send(());
        }
        answer
    }
}

/// The phone's socket dies right after the engine made the credential, and nothing the phone
/// sent about the request (Pending, the answer) got through. The bridge sends the request
/// again in the next session; the phone answers it from memory: one credential, and the
/// browser gets it. (Before: the phone made a second credential.)
#[test]
fn a_request_whose_answer_was_lost_runs_once() {
    let relay = StandInRelay::start();
    let bridge_dir = tempfile::tempdir().unwrap();
    let (b, url) = bridge(&relay.url, bridge_dir.path());

    let phone = Phone::new(None);
    let (engine, runs) = (&phone.engine, &phone.runs);
    phone.pair(&url);

    // Each phone connection gets its HS1 and Hello through, nothing after.
    relay.limit_phone_data(Some(2));
    let (stop, listener, _) = phone.listen();
    let browser = make_credential(b.addr);

    // The engine ran; its answer went nowhere. Then the phone's socket dies.
    runs.recv_timeout(Duration::from_secs(20))
        .expect("the request reached the engine");
    relay.limit_phone_data(None);
    relay.close(Role::Phone);

    let answer = browser.join().unwrap();
    assert_eq!(answer.first(), Some(&0x00), "makeCredential {answer:02x?}");
    assert_eq!(*engine.runs.lock().unwrap(), 1, "the engine ran once");
    stop.store(true, Ordering::SeqCst);
    listener.join().unwrap();
}

/// The bridge's socket dies while the phone's user is still being asked. The phone keeps the
/// run going; the request the bridge sends again in the next session waits for that run (or
/// gets its answer) instead of starting a second one. (Before: the run was cancelled and the
/// browser got CTAP2_ERR_USER_ACTION_TIMEOUT.)
#[test]
fn a_request_sent_again_while_it_runs_waits_for_the_run() {
    let relay = StandInRelay::start();
    let bridge_dir = tempfile::tempdir().unwrap();
    let (b, url) = bridge(&relay.url, bridge_dir.path());
    let (open_gate, gate) = mpsc::channel();
    let phone = Phone::new(Some(gate));
    phone.pair(&url);
    let (stop, listener, established) = phone.listen();
    established
        .recv_timeout(Duration::from_secs(10))
        .expect("a session with the bridge");
    let browser = make_credential(b.addr);

    phone
        .started
        .recv_timeout(Duration::from_secs(20))
        .expect("the request reached the engine");
    relay.close(Role::Bridge);
    // The bridge is back and has a new session with the phone (its request right behind).
    established
        .recv_timeout(Duration::from_secs(10))
        .expect("a new session after the bridge reconnected");
    open_gate.send(()).unwrap();

    let answer = browser.join().unwrap();
    assert_eq!(answer.first(), Some(&0x00), "makeCredential {answer:02x?}");
    assert_eq!(*phone.engine.runs.lock().unwrap(), 1, "the engine ran once");
    stop.store(true, Ordering::SeqCst);
    listener.join().unwrap();
}

/// The relay replays the phone's KK HS1 of the live session. The bridge answers it in a
/// candidate session and keeps the live one until a new Hello (which never comes); the phone
/// ignores that answer; the next request goes through the live session. (Before: the bridge
/// dropped the live session for the replay and the request timed out.)
#[test]
fn a_replayed_handshake_does_not_end_the_live_session() {
    let relay = StandInRelay::start();
    let bridge_dir = tempfile::tempdir().unwrap();
    let (b, url) = bridge(&relay.url, bridge_dir.path());
    let phone = Phone::new(None);
    phone.pair(&url);
    let (stop, listener, established) = phone.listen();
    established
        .recv_timeout(Duration::from_secs(10))
        .expect("a session with the bridge");
    // A first request: once answered, both sides hold the established session.
    let answer = make_credential(b.addr).join().unwrap();
    assert_eq!(answer.first(), Some(&0x00), "makeCredential {answer:02x?}");

    let hs1 = relay
        .sent_by_phone()
        .into_iter()
        .rev()
        .find(|f| f.first() == Some(&0x01))
        .expect("the phone's HS1");
    let routed = relay.seen().len();
    relay.inject(Role::Bridge, &RelayFrame::Data(hs1));
    // The bridge's answer to the replay (a handshake frame) has reached the phone.
    let until = Instant::now() + Duration::from_secs(10);
    while !relay.seen()[routed..]
        .iter()
        .any(|f| f.first() == Some(&0x01))
    {
        assert!(
            Instant::now() < until,
            "the bridge did not answer the replay"
        );
        thread::sleep(Duration::from_millis(10));
    }

    let answer = make_credential(b.addr).join().unwrap();
    assert_eq!(answer.first(), Some(&0x00), "makeCredential {answer:02x?}");
    assert_eq!(*phone.engine.runs.lock().unwrap(), 2);
    assert!(established.try_recv().is_err(), "no new session was needed");
    stop.store(true, Ordering::SeqCst);
    listener.join().unwrap();
}

struct Phone {
    _dir: tempfile::TempDir,
    engine: Arc<Counting>,
    pairings: Arc<Mutex<PairingStore>>,
    runs: Receiver<()>,
    started: Receiver<()>,
}

impl Phone {
    fn new(gate: Option<Receiver<()>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let store = Store::open(&dir.path().join("credentials.db"), &master).unwrap();
        let authenticator =
            Authenticator::new(store, &master, Box::new(AutoApprover), Config::default()).unwrap();
        let pairings = Arc::new(Mutex::new(
            PairingStore::open(&dir.path().join("pairings.db"), &master).unwrap(),
        ));
        let (ran, runs) = mpsc::channel();
        let (start, started) = mpsc::channel();
        let engine = Arc::new(Counting {
            engine: Mutex::new(authenticator),
            runs: Mutex::new(0),
            ran: Mutex::new(ran),
            started: Mutex::new(start),
            gate: Mutex::new(gate),
        });
        Self {
            _dir: dir,
            engine,
            pairings,
            runs,
            started,
        }
    }

    /// Pairs with the code a bridge shows, as "Test phone".
    fn pair(&self, url: &str) {
        runtime::pair(
            url,
            UrlPolicy::Strict,
            "Test phone",
            &*self.engine,
            &self.pairings,
        )
        .unwrap();
    }

    /// Serves the pairing (`pocketkey listen`'s runtime); the receiver hears each session's
    /// establishment.
    fn listen(&self) -> (Arc<AtomicBool>, thread::JoinHandle<()>, Receiver<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, established) = mpsc::channel();
        let tx = Mutex::new(tx);
        let on_event: runtime::OnEvent = Arc::new(move |_, event| {
            if event == runtime::ServeEvent::Established {
                let _ = tx.lock().unwrap().send(());
            }
        });
        let (engine, store, s) = (
            Arc::clone(&self.engine),
            Arc::clone(&self.pairings),
            stop.clone(),
        );
        let handle = thread::spawn(move || {
            runtime::listen("Test phone", engine, store, s, on_event).unwrap();
        });
        (stop, handle, established)
    }
}

/// The browser's makeCredential through the bridge, on its own thread.
fn make_credential(bridge: SocketAddr) -> thread::JoinHandle<Vec<u8>> {
    let mut hid = HidClient::connect(bridge);
    thread::spawn(move || {
        let request = MakeCredential::new("example.com", "anna")
            .client_data_hash([0x11; 32])
            .user_id([1, 2, 3])
            .rk(true)
            .uv(true)
            .encode();
        hid.cbor(&request, Duration::from_secs(30))
    })
}
