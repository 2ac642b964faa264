//! Pending revocations are retried (docs/pairing-protocol.md §3.4), with real processes on
//! loopback: a `pocketkey-bridge` computer, the relay (in process, stopped and started again on
//! the same port), and the phone as `pocketkey pair | unpair | pairings | listen` or as the
//! app's `SecurityKey`. The phone unpairs while the relay is down; once the relay is back, the
//! retry deletes the mailbox and the bridge, told by the relay, forgets the phone and shows a
//! new pairing code. A pairing revoked meanwhile is never used for a session.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use pocketkey_ffi::{
    ApprovalClosed, ApprovalListener, ApprovalListenerError, ApprovalPrompt, KeyProvider,
    KeyProviderError, SecurityKey,
};

const POCKETKEY: &str = env!("CARGO_BIN_EXE_pocketkey");
const WAIT: Duration = Duration::from_secs(30);

/// The relay in this process; `stop` frees its port for the next `start` on the same address.
struct Relay {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Relay {
    fn start(addr: SocketAddr) -> Self {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                let relay =
                    pocketkey_relay::serve(listener, pocketkey_relay::Config::default()).unwrap();
                addr_tx.send(relay.local_addr()).unwrap();
                let _ = stop_rx.await;
                relay.shutdown().await;
            });
        });
        Self {
            addr: addr_rx.recv_timeout(WAIT).expect("relay started"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stops it (open connections closed) and returns its address.
    fn stop(mut self) -> SocketAddr {
        self.halt();
        self.addr
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.halt();
    }
}

fn sibling(name: &str) -> PathBuf {
    Path::new(POCKETKEY).with_file_name(name)
}

/// The bridge program, built if `cargo test -p pocketkey` did not build it.
fn bridge_program() -> PathBuf {
    let path = sibling("pocketkey-bridge");
    if !path.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "pocketkey-bridge"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

/// A `pocketkey-bridge` (UDP on a free port, nobody talks to it), its standard output lines.
struct Computer {
    child: Child,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Computer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Computer {
    fn start(relay: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut child = Command::new(bridge_program())
            .args(["--udp", &udp.to_string(), "--relay", relay])
            .args(["--name", "Laptop", "--state-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            _dir: dir,
        }
    }

    /// The next pairing code it shows: at start, and again once it forgot its phone.
    fn next_code(&self, within: Duration) -> Option<String> {
        let until = Instant::now() + within;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if let Some(code) = line.strip_prefix("pair: ") {
                return Some(code.to_string());
            }
        }
    }
}

fn pocketkey(dir: &Path, args: &[&str]) -> Output {
    Command::new(POCKETKEY)
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `pocketkey pair` with the bridge's code; asserts it paired.
fn pair_cli(phone: &Path, computer: &Computer) {
    let code = computer.next_code(WAIT).expect("a pairing code");
    let out = pocketkey(phone, &["pair", &code]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `pocketkey unpair Laptop` while the relay is down: a pending revocation, not listed.
fn unpair_offline(phone: &Path) {
    let out = pocketkey(phone, &["unpair", "Laptop"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "unpaired: Laptop (the relay will be told later)"
    );
    let out = pocketkey(phone, &["pairings"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("revoked: Laptop (the relay could not be told yet"),
        "{}",
        text(&out.stderr)
    );
}

/// Nothing pending any more: `pocketkey pairings` lists nothing and says nothing.
fn nothing_pending(phone: &Path) {
    let out = pocketkey(phone, &["pairings"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    assert!(
        !text(&out.stderr).contains("Laptop"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn pairings_retries_a_revocation_made_while_the_relay_was_down() {
    let relay = Relay::start("127.0.0.1:0".parse().unwrap());
    let computer = Computer::start(&relay.url());
    let phone = tempfile::tempdir().unwrap();
    pair_cli(phone.path(), &computer);

    let addr = relay.stop();
    unpair_offline(phone.path());
    // Still down: the retry fails and the revocation stays pending; the computer has not
    // heard of it.
    let out = pocketkey(phone.path(), &["pairings"]);
    assert!(text(&out.stderr).contains("revoked: Laptop"));
    assert_eq!(computer.next_code(Duration::from_secs(2)), None);

    let _relay = Relay::start(addr);
    let out = pocketkey(phone.path(), &["pairings"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr)
            .lines()
            .any(|l| l == "unpaired: Laptop (the relay was told now)"),
        "{}",
        text(&out.stderr)
    );
    nothing_pending(phone.path());
    // The relay told the computer (4010, or 410 at its next attach): it forgot the phone and
    // shows a new code.
    assert!(
        computer.next_code(WAIT).is_some(),
        "the computer still thinks it is paired"
    );
}

#[test]
fn a_listening_phone_does_not_serve_a_pairing_revoked_while_the_relay_was_down() {
    let relay = Relay::start("127.0.0.1:0".parse().unwrap());
    let computer = Computer::start(&relay.url());
    let phone = tempfile::tempdir().unwrap();
    pair_cli(phone.path(), &computer);

    let mut listen = Command::new(POCKETKEY)
        .args(["listen", "--auto-approve", "--state-dir"])
        .arg(phone.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, events) = mpsc::channel();
    let stderr = BufReader::new(listen.stderr.take().unwrap());
    let reader = thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The phone attached and ran a session with the computer.
    let until = Instant::now() + WAIT;
    while !events
        .recv_timeout(until.saturating_duration_since(Instant::now()))
        .expect("listen reports a session")
        .contains("Laptop: Established")
    {}

    let addr = relay.stop();
    unpair_offline(phone.path());
    // Whatever `listen` says from here on comes after the revocation.
    let _ = events.try_iter().count();
    let _relay = Relay::start(addr);

    // The listener attaches again, finds the pairing revoked, revokes it at the relay instead
    // of serving it, and ends with nothing left to serve.
    let until = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = listen.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > until {
            let _ = listen.kill();
            panic!("listen kept serving a revoked pairing");
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let _ = reader.join();
    let after: Vec<String> = events.try_iter().collect();
    assert!(
        after.iter().any(|l| l.contains("Laptop: Revoked")),
        "{after:?}"
    );
    assert!(
        !after.iter().any(|l| l.contains("Established")),
        "a session ran on a revoked pairing: {after:?}"
    );
    nothing_pending(phone.path());
    assert!(
        computer.next_code(WAIT).is_some(),
        "the computer still thinks it is paired"
    );
}

struct Keychain;
impl KeyProvider for Keychain {
    fn master_key(&self) -> Result<Vec<u8>, KeyProviderError> {
        Ok(vec![0x42; 32])
    }
}

/// Pairing asks nobody.
struct NoPrompts;
impl ApprovalListener for NoPrompts {
    fn on_approval_requested(&self, _: ApprovalPrompt) -> Result<(), ApprovalListenerError> {
        panic!("no approval expected")
    }
    fn on_approval_closed(&self, _: u64, _: ApprovalClosed) -> Result<(), ApprovalListenerError> {
        Ok(())
    }
}

/// The app's API: `SecurityKey.unpair` with the relay down leaves a pending revocation; a later
/// `pairings()` retries it (in the background) once the relay is back.
#[test]
fn the_app_retries_its_pending_revocation_when_listing_pairings() {
    let relay = Relay::start("127.0.0.1:0".parse().unwrap());
    let computer = Computer::start(&relay.url());
    let dir = tempfile::tempdir().unwrap();
    let key = SecurityKey::open(
        dir.path().join("key").to_string_lossy().into_owned(),
        Arc::new(Keychain),
        Arc::new(NoPrompts),
        None,
    )
    .unwrap();
    let code = computer.next_code(WAIT).expect("a pairing code");
    let paired = key.pair(code, "App phone".into(), false).unwrap();
    assert_eq!(paired.computer_name, "Laptop");

    let addr = relay.stop();
    assert!(key.unpair(paired.id.clone()).unwrap());
    assert_eq!(key.pairings().unwrap(), vec![]);
    assert_eq!(computer.next_code(Duration::from_secs(2)), None);

    let _relay = Relay::start(addr);
    // The retry runs on a thread of its own; the list is the same at once.
    assert_eq!(key.pairings().unwrap(), vec![]);
    assert!(
        computer.next_code(WAIT).is_some(),
        "the computer still thinks it is paired"
    );
}
