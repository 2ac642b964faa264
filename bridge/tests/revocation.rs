//! Revocation only by the peer (docs/pairing-protocol.md §3.4): the bridge as a real process,
//! the phone side of `pocketkey-net` in this process, and the relay stand-in. A relay that
//! says a live pairing's mailbox was deleted (close 4010, then 410) without anyone's DELETE
//! only suspends the pairing on both sides — records and keys kept, resumable — while a
//! `Revoke` the phone sends inside an established session deletes the bridge's record.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{HidClient, StandInRelay};
use pocketkey_core::approver::AutoApprover;
use pocketkey_core::authenticator::{Authenticator, Config};
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::pairing::{PairingRecord, PairingStore, UrlPolicy};
use pocketkey_core::store::Store;
use pocketkey_net::pairing::{self as runtime, ServeEvent};
use pocketkey_testkit::MakeCredential;

const BRIDGE: &str = env!("CARGO_BIN_EXE_pocketkey-bridge");
const WAIT: Duration = Duration::from_secs(30);

struct Bridge {
    child: Child,
    addr: SocketAddr,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(from: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Bridge {
    /// A bridge on `dir` (with `--relay`, so it can show a pairing code).
    fn start(relay: &str, dir: &Path) -> Self {
        let addr = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut child = Command::new(BRIDGE)
            .args(["--udp", &addr.to_string(), "--relay", relay])
            .args([
                "--print-url",
                "--name",
                "Test laptop",
                "--key-file",
                "--auto-confirm",
            ])
            .args(["--phone-timeout", "20", "--state-dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Self {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    /// The next `pair: <url>` line (past the lines `--auto-confirm` prints about a pairing).
    fn pairing_url(&self) -> String {
        loop {
            let line = self.stdout.recv_timeout(WAIT).expect("a pair: line");
            if let Some(url) = line.strip_prefix("pair: ") {
                return url.to_string();
            }
        }
    }

    /// Waits (up to `WAIT`) for the bridge to end by itself.
    fn exit(&mut self) -> ExitStatus {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "the bridge kept running");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

fn bridge_tool(dir: &Path, args: &[&str]) -> Output {
    Command::new(BRIDGE)
        .args(args)
        .args(["--key-file", "--state-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Phone {
    _dir: tempfile::TempDir,
    engine: Arc<Mutex<Authenticator>>,
    pairings: Arc<Mutex<PairingStore>>,
}

impl Phone {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let store = Store::open(&dir.path().join("credentials.db"), &master).unwrap();
        let authenticator =
            Authenticator::new(store, &master, Box::new(AutoApprover), Config::default()).unwrap();
        let pairings = Arc::new(Mutex::new(
            PairingStore::open(&dir.path().join("pairings.db"), &master).unwrap(),
        ));
        Self {
            _dir: dir,
            engine: Arc::new(Mutex::new(authenticator)),
            pairings,
        }
    }

    fn pair(&self, bridge: &Bridge) -> PairingRecord {
        runtime::pair(
            &bridge.pairing_url(),
            UrlPolicy::Strict,
            "Test phone",
            &*self.engine,
            &self.pairings,
        )
        .unwrap()
    }

    /// Serves the pairings (`pocketkey listen`'s runtime) on a thread; the receiver hears
    /// every event.
    fn listen(
        &self,
    ) -> (
        Arc<AtomicBool>,
        thread::JoinHandle<()>,
        Receiver<ServeEvent>,
    ) {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel();
        let tx = Mutex::new(tx);
        let on_event: runtime::OnEvent = Arc::new(move |_, event| {
            let _ = tx.lock().unwrap().send(event);
        });
        let (engine, store, s) = (
            Arc::clone(&self.engine),
            Arc::clone(&self.pairings),
            stop.clone(),
        );
        let handle = thread::spawn(move || {
            runtime::listen("Test phone", engine, store, s, on_event).unwrap();
        });
        (stop, handle, events)
    }

    fn stored(&self, record: &PairingRecord) -> Option<PairingRecord> {
        self.pairings.lock().unwrap().get(&record.id).unwrap()
    }
}

fn wait_for(events: &Receiver<ServeEvent>, wanted: &ServeEvent) {
    let until = Instant::now() + WAIT;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let event = events
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {wanted:?} event"));
        if &event == wanted {
            return;
        }
    }
}

/// The phone's `--list` line on the bridge's side.
fn listed(dir: &Path) -> String {
    let out = bridge_tool(dir, &["--list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// The relay closes both sides with 4010 and answers 410 afterwards, though neither side
/// revoked anything. Both keep their record and keys, marked suspended: the bridge stops with
/// a message naming the phone and what to do, the phone stops serving it and says so. A resume
/// tries again; the relay still says 410, so both are suspended again. (Before: both deleted
/// their keys for ever, and the bridge showed a pairing code as if never paired.)
#[test]
fn the_relays_word_alone_suspends_the_pairing_on_both_sides() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::start(&relay.url, dir.path());
    let phone = Phone::new();
    let record = phone.pair(&bridge);
    let (_stop, listener, events) = phone.listen();
    wait_for(&events, &ServeEvent::Established);

    assert_eq!(relay.claim_revoked(), 1);

    // The phone: the listener ends by itself, having reported the suspension; record and
    // key kept.
    wait_for(&events, &ServeEvent::Suspended);
    listener.join().unwrap();
    let kept = phone.stored(&record).expect("the phone kept the pairing");
    assert!(kept.suspended_at.is_some());
    assert_eq!(kept.our_static.to_bytes(), record.our_static.to_bytes());
    assert!(kept.revoked_at.is_none());

    // The bridge: stops with what happened and what to do; the pairing is listed, suspended.
    assert!(!bridge.exit().success());
    let said = bridge.stderr_text();
    assert!(
        said.contains("the pairing with the phone \"Test phone\" is suspended")
            && said.contains("--resume \"Test phone\"")
            && said.contains("--unpair \"Test phone\""),
        "{said}"
    );
    let line = listed(dir.path());
    assert!(
        line.starts_with("Test phone\t") && line.trim_end().ends_with("\tsuspended"),
        "{line}"
    );

    // Resumed on both sides: each attaches again, the relay says 410 again, suspended again.
    let out = bridge_tool(dir.path(), &["--resume"]);
    assert_eq!(text(&out.stdout).trim(), "resumed: Test phone");
    assert!(!listed(dir.path()).contains("suspended"));
    phone.pairings.lock().unwrap().resume(&record.id).unwrap();
    let mut again = Bridge::start(&relay.url, dir.path());
    assert!(!again.exit().success());
    assert!(again.stderr_text().contains("is suspended"));
    assert!(listed(dir.path()).trim_end().ends_with("\tsuspended"));
    let (_stop, listener, events) = phone.listen();
    wait_for(&events, &ServeEvent::Suspended);
    listener.join().unwrap();
    assert!(phone.stored(&record).unwrap().suspended_at.is_some());
}

/// The phone's user revoked the pairing (in another process, whose DELETE did not reach the
/// relay) while a session with the bridge is open. At the next request the phone says
/// `Revoke` in the session (authenticated by the pairing's keys) before its DELETE: the
/// bridge deletes its record and shows a pairing code, the browser hears at once, and the
/// phone forgets the pairing once the relay confirmed. (Before: the request was dropped, the
/// bridge never heard, and it waited for the phone until the request timed out.)
#[test]
fn a_revoke_in_the_session_deletes_the_pairing() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(&relay.url, dir.path());
    let phone = Phone::new();
    let record = phone.pair(&bridge);
    let (_stop, listener, events) = phone.listen();
    wait_for(&events, &ServeEvent::Established);

    phone
        .pairings
        .lock()
        .unwrap()
        .revoke(&record.id, 1)
        .unwrap();
    let mut hid = HidClient::connect(bridge.addr);
    let request = MakeCredential::new("example.com", "anna")
        .client_data_hash([0x11; 32])
        .user_id([1, 2, 3])
        .encode();
    let answer = hid.cbor(&request, WAIT);
    assert_ne!(answer.first(), Some(&0x00), "a revoked pairing answered");

    // The bridge deleted the pairing: nothing listed, a new pairing code shown.
    assert!(bridge.pairing_url().starts_with("pocketkey://pair?"));
    assert_eq!(listed(dir.path()), "");
    // The phone: the relay confirmed its DELETE; the pairing is gone, not suspended.
    wait_for(&events, &ServeEvent::Revoked);
    listener.join().unwrap();
    assert!(phone.stored(&record).is_none());
}

/// The computer's user unpairs (`pocketkey-bridge --unpair`, while the bridge runs) and the
/// phone listens: the phone is told in a session (`Revoke`) and forgets the pairing rather
/// than suspending it; the running bridge, whose pairing was removed here, shows a pairing
/// code again. (Without the session, the phone hears only the relay's 4010 and suspends.)
#[test]
fn the_bridges_unpair_tells_a_listening_phone_in_a_session() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(&relay.url, dir.path());
    let phone = Phone::new();
    let record = phone.pair(&bridge);
    let (_stop, listener, events) = phone.listen();
    wait_for(&events, &ServeEvent::Established);

    let out = bridge_tool(dir.path(), &["--unpair"]);
    assert_eq!(text(&out.stdout).trim(), "unpaired: Test phone");
    let until = Instant::now() + WAIT;
    let ended = loop {
        let left = until.saturating_duration_since(Instant::now());
        match events.recv_timeout(left).expect("the phone heard of it") {
            event @ (ServeEvent::Revoked | ServeEvent::Suspended) => break event,
            _ => {}
        }
    };
    assert_eq!(ended, ServeEvent::Revoked);
    listener.join().unwrap();
    assert!(
        phone.stored(&record).is_none(),
        "the phone kept the pairing"
    );
    assert!(bridge.pairing_url().starts_with("pocketkey://pair?"));
    assert_eq!(listed(dir.path()), "");
}
