//! Pairing with real processes on loopback: the relay (`pocketkey-relay`, in process when its
//! program is not built), two `pocketkey-bridge` computers, and `pocketkey pair | pairings |
//! listen | unpair` as the phone. One phone serves two computers; a used or altered pairing
//! URL is refused; unpairing on the phone tells the attached bridge in a session (`Revoke`) and
//! the relay: the bridge forgets the phone and shows a new pairing code. A side told only by the
//! relay (410 / 4010) suspends the pairing instead (docs/pairing-protocol.md §3.4). Unpairing
//! while the relay is down leaves a pending revocation that `pocketkey pairings`, a running
//! `pocketkey listen` and the app's `SecurityKey` retry once the relay is back, never serving
//! the revoked pairing.

#[path = "../../bridge/tests/common/hid.rs"]
mod common;

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::HidClient;
use pocketkey_testkit::GetAssertion;

const POCKETKEY: &str = env!("CARGO_BIN_EXE_pocketkey");

fn sibling(name: &str) -> PathBuf {
    Path::new(POCKETKEY).with_file_name(name)
}

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

struct Relay {
    addr: SocketAddr,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
    child: Option<Child>,
}

impl Relay {
    /// Stops it (its port is free again when this returns); its address, to start it again.
    fn stop(mut self) -> SocketAddr {
        self.halt();
        self.addr
    }

    fn halt(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

fn relay() -> Relay {
    relay_at("127.0.0.1:0".parse().unwrap())
}

/// The relay program when it is built (routing data in memory), else the relay in process.
fn relay_at(addr: SocketAddr) -> Relay {
    relay_with(addr, &[])
}

/// The relay program (built if it is not), accepting webhook push targets at `hook` (on
/// loopback: that address and port only).
fn relay_with_webhooks(hook: SocketAddr) -> Relay {
    let program = sibling("pocketkey-relay");
    if !program.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "pocketkey-relay"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    relay_with(
        "127.0.0.1:0".parse().unwrap(),
        &["--webhook-allow", &format!("http://{hook}")],
    )
}

/// The relay program with `extra` options when it is built, else the relay in process.
fn relay_with(addr: SocketAddr, extra: &[&str]) -> Relay {
    let program = sibling("pocketkey-relay");
    if program.is_file() {
        let mut child = Command::new(program)
            .args(["--listen", &addr.to_string(), "--memory"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr: SocketAddr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .parse()
            .unwrap();
        return Relay {
            addr,
            url: format!("ws://{addr}"),
            stop: None,
            thread: None,
            child: Some(child),
        };
    }
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
    let addr: SocketAddr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Relay {
        addr,
        url: format!("ws://{addr}"),
        stop: Some(stop_tx),
        thread: Some(thread),
        child: None,
    }
}

struct Bridge {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bridge {
    fn start(relay: &str, name: &str) -> Self {
        Self::start_in(relay, name, tempfile::tempdir().unwrap(), &[])
    }

    /// A bridge on the state directory `dir` (say, of an earlier bridge), with `extra` options.
    fn start_in(relay: &str, name: &str, dir: tempfile::TempDir, extra: &[&str]) -> Self {
        let addr = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut child = Command::new(bridge_program())
            .args(["--key-file", "--udp", &addr.to_string(), "--relay", relay])
            .args(["--name", name])
            .args(extra)
            .args([
                "--print-url",
                "--auto-confirm",
                "--phone-timeout",
                "3",
                "--state-dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout: Lines<BufReader<ChildStdout>> =
            BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in stdout.map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        answers_init(addr);
        Self {
            child,
            addr,
            lines,
            dir: Some(dir),
        }
    }

    /// Waits until the bridge has stored `phones` pairings (the phone may finish the handshake
    /// first), stops it and hands back its state directory.
    fn stop_when_stored(mut self, phones: usize) -> tempfile::TempDir {
        let dir = self.dir.take().unwrap();
        let deadline = Instant::now() + WAIT;
        while text(&bridge_tool(dir.path(), &["--list"]).stdout)
            .lines()
            .count()
            < phones
        {
            assert!(
                Instant::now() < deadline,
                "the bridge never stored the pairing"
            );
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        dir
    }

    /// The next `pair: <url>` line (past the confirmation lines of `--auto-confirm`).
    fn pairing_url(&self) -> String {
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(20)).unwrap();
            if let Some(url) = line.strip_prefix("pair: ") {
                return url.to_string();
            }
            assert!(
                line.starts_with("Phone ") || line.starts_with("Paired with "),
                "{line:?}"
            );
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

/// Waits for `pocketkey listen` to end by itself (nothing left to serve: every pairing revoked
/// or suspended).
fn ends_within(listen: &mut Child, wait: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = listen.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = listen.kill();
            panic!("listen kept running for a revoked or suspended pairing");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn get_assertion(rp: &str) -> Vec<u8> {
    GetAssertion::new(rp).client_data_hash([0x33; 32]).encode()
}

/// getInfo from the bridge's cache (the phone paired), then a forwarded request answered by the
/// phone (no credentials for this RP: CTAP2_ERR_NO_CREDENTIALS, which only the phone's engine
/// can say).
fn forwarded_ok(bridge: &Bridge) {
    let mut hid = HidClient::connect(bridge.addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while hid.cbor(&[0x04], Duration::from_secs(2))[0] != 0x00 {
        assert!(Instant::now() < deadline, "getInfo never cached");
        thread::sleep(Duration::from_millis(100));
    }
    let answer = hid.cbor(&get_assertion("example.com"), Duration::from_secs(20));
    assert_eq!(answer, vec![0x2e], "getAssertion through the phone");
}

#[test]
fn one_phone_two_computers_reuse_tamper_and_unpair() {
    let relay = relay();
    let a = Bridge::start(&relay.url, "Laptop A");
    let b = Bridge::start(&relay.url, "Laptop B");
    let phone = tempfile::tempdir().unwrap();
    let url_a = a.pairing_url();
    let url_b = b.pairing_url();

    // An altered URL (computer name changed: the prologue differs) does not pair, and burns
    // the offer it was aimed at.
    let tampered = url_b.replace("n=Laptop%20B", "n=Laptop%20C");
    assert_ne!(tampered, url_b);
    let out = pocketkey(phone.path(), &["pair", &tampered]);
    assert!(!out.status.success(), "a tampered URL paired");
    // The bridge shows a new code after the failed first contact.
    let url_b = b.pairing_url();

    for url in [&url_a, &url_b] {
        let out = pocketkey(phone.path(), &["pair", url]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A used URL does not pair again.
    let out = pocketkey(phone.path(), &["pair", &url_a]);
    assert!(!out.status.success(), "a used URL paired again");

    let out = pocketkey(phone.path(), &["pairings"]);
    let listed = String::from_utf8(out.stdout).unwrap();
    let mut names: Vec<&str> = listed
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Laptop A", "Laptop B"]);

    let listen = Listening::start(phone.path());
    forwarded_ok(&a);
    forwarded_ok(&b);
    drop(listen);

    // Unpair B on the phone: the attached bridge is told in a session, then the relay; the
    // bridge forgets the phone and shows a new pairing code; the phone keeps A only.
    let out = pocketkey(phone.path(), &["unpair", "Laptop B"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "unpaired: Laptop B"
    );
    let fresh = b.pairing_url();
    assert!(fresh.starts_with("pocketkey://pair?"));
    let out = pocketkey(phone.path(), &["pairings"]);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.starts_with("Laptop A\t") && listed.lines().count() == 1,
        "{listed}"
    );
    let mut hid = HidClient::connect(b.addr);
    assert_eq!(hid.cbor(&[0x04], Duration::from_secs(2)), vec![0x7f]);

    // Revoke on the computer side while the phone is away: `pocketkey-bridge --unpair` tells
    // the relay; the phone's next attach gets 410, which the relay alone says: the phone
    // suspends the pairing (keeps it, listed as suspended) and `listen` has nothing left to
    // serve.
    let mut a = a;
    let a_dir = a.dir.take().unwrap();
    drop(a);
    let a_dir = a_dir.path();
    let out = Command::new(bridge_program())
        .args(["--key-file", "--list", "--state-dir"])
        .arg(a_dir)
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("PocketKey CLI\t"));
    let out = Command::new(bridge_program())
        .args(["--key-file", "--unpair", "--state-dir"])
        .arg(a_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "unpaired: PocketKey CLI"
    );
    let mut listen = Command::new(POCKETKEY)
        .args(["listen", "--state-dir"])
        .arg(phone.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(ends_within(&mut listen, Duration::from_secs(20)).success());
    let out = pocketkey(phone.path(), &["pairings"]);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.starts_with("Laptop A\t") && listed.trim_end().ends_with("\tsuspended"),
        "{listed}"
    );
    assert_eq!(listed.lines().count(), 1, "{listed}");
}

const WAIT: Duration = Duration::from_secs(30);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `pocketkey pair` with the bridge's code.
fn pair_cli(phone: &Path, bridge: &Bridge) {
    let out = pocketkey(phone, &["pair", &bridge.pairing_url()]);
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

/// Nothing pending any more: `pocketkey pairings` lists nothing and mentions nothing.
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

/// Whether the bridge shows a new pairing code within `wait`: it does once the phone told it
/// in a session (`Revoke`) that the pairing was revoked.
fn forgot_the_phone(bridge: &Bridge, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match bridge.lines.recv_timeout(left) {
            // What `--auto-confirm` printed when the phone paired.
            Ok(line) if line.starts_with("Phone ") || line.starts_with("Paired with ") => {}
            Ok(line) => return line.starts_with("pair: "),
            Err(_) => return false,
        }
    }
}

/// Whether the bridge stops within `wait` with its pairing listed as suspended: it does once
/// the relay alone told it (4010, or 410 at its next attach) that the pairing was revoked.
fn suspended_the_phone(bridge: &mut Bridge, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    while bridge.child.try_wait().unwrap().is_none() {
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let dir = bridge.dir.as_ref().expect("a running bridge's directory");
    text(&bridge_tool(dir.path(), &["--list"]).stdout)
        .trim_end()
        .ends_with("\tsuspended")
}

#[test]
fn pairings_retries_a_revocation_made_while_the_relay_was_down() {
    let relay = relay();
    let mut bridge = Bridge::start(&relay.url, "Laptop");
    let phone = tempfile::tempdir().unwrap();
    pair_cli(phone.path(), &bridge);

    let addr = relay.stop();
    unpair_offline(phone.path());
    // Still down: the retry fails, the revocation stays pending, the bridge knows nothing.
    let out = pocketkey(phone.path(), &["pairings"]);
    assert!(text(&out.stderr).contains("revoked: Laptop"));
    assert!(!suspended_the_phone(&mut bridge, Duration::from_secs(2)));

    let _relay = relay_at(addr);
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
    // Only the relay told the bridge (the retry is a DELETE alone): suspended, not deleted.
    assert!(
        suspended_the_phone(&mut bridge, WAIT),
        "the bridge did not suspend the pairing"
    );
}

#[test]
fn a_listening_phone_does_not_serve_a_pairing_revoked_while_the_relay_was_down() {
    let relay = relay();
    let mut bridge = Bridge::start(&relay.url, "Laptop");
    let phone = tempfile::tempdir().unwrap();
    pair_cli(phone.path(), &bridge);

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
    // The phone attached and ran a session with the bridge.
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
    let _relay = relay_at(addr);

    // The listener attaches again, finds the pairing revoked, revokes it at the relay instead
    // of serving it, and ends with nothing left to serve.
    assert!(ends_within(&mut listen, WAIT).success());
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
    // The listener's DELETE came before any session: only the relay told the bridge.
    assert!(
        suspended_the_phone(&mut bridge, WAIT),
        "the bridge did not suspend the pairing"
    );
}

struct Keychain;
impl pocketkey_ffi::KeyProvider for Keychain {
    fn master_key(&self) -> Result<Vec<u8>, pocketkey_ffi::KeyProviderError> {
        Ok(vec![0x42; 32])
    }
}

/// The app's approval listener in these tests: prompts go to the test through the channel;
/// without one (pairing and unpairing ask nobody) a prompt fails the test.
struct Prompts(Option<std::sync::Mutex<mpsc::Sender<pocketkey_ffi::ApprovalPrompt>>>);
impl pocketkey_ffi::ApprovalListener for Prompts {
    fn on_approval_requested(
        &self,
        prompt: pocketkey_ffi::ApprovalPrompt,
    ) -> Result<(), pocketkey_ffi::ApprovalListenerError> {
        let to_test = self.0.as_ref().expect("no approval expected");
        let _ = to_test.lock().unwrap().send(prompt);
        Ok(())
    }
    fn on_approval_closed(
        &self,
        _: u64,
        _: pocketkey_ffi::ApprovalClosed,
    ) -> Result<(), pocketkey_ffi::ApprovalListenerError> {
        Ok(())
    }
}

/// The app's API: a key in `dir` paired as "App phone" with `bridge`.
fn app_paired_with(
    dir: &Path,
    bridge: &Bridge,
) -> (Arc<pocketkey_ffi::SecurityKey>, pocketkey_ffi::PairingInfo) {
    let key = pocketkey_ffi::SecurityKey::open(
        dir.join("key").to_string_lossy().into_owned(),
        Arc::new(Keychain),
        Arc::new(Prompts(None)),
        None,
        None,
    )
    .unwrap();
    let paired = key
        .pair(
            bridge.pairing_url(),
            "App phone".into(),
            false,
            Arc::new(ShownCode::default()),
        )
        .unwrap();
    (key, paired)
}

/// The app's API: `SecurityKey.unpair` with the relay down leaves a pending revocation; a later
/// `pairings()` retries it (in the background) once the relay is back.
#[test]
fn the_app_retries_its_pending_revocation_when_listing_pairings() {
    let relay = relay();
    let mut bridge = Bridge::start(&relay.url, "Laptop");
    let dir = tempfile::tempdir().unwrap();
    let (key, paired) = app_paired_with(dir.path(), &bridge);
    assert_eq!(paired.computer_name, "Laptop");

    let addr = relay.stop();
    assert!(key.unpair(paired.id.clone()).unwrap());
    assert_eq!(key.pairings().unwrap(), vec![]);
    assert!(!suspended_the_phone(&mut bridge, Duration::from_secs(2)));

    let _relay = relay_at(addr);
    // The retry runs on a thread of its own; the list is the same at once.
    assert_eq!(key.pairings().unwrap(), vec![]);
    // The retry is a DELETE alone: the bridge, told only by the relay, suspends.
    assert!(
        suspended_the_phone(&mut bridge, WAIT),
        "the bridge did not suspend the pairing"
    );
}

/// The app's API: the computer revoked the pairing while the app was away, so the app hears
/// it from the relay alone (410). `listen` suspends it — `pairings()` still lists it, with
/// `suspended` set — a push for it is not served, and `resume_pairing` makes it served again
/// (the relay still says 410: suspended again). (Before: the app deleted the pairing.)
#[test]
fn the_app_shows_a_pairing_the_relay_calls_revoked_as_suspended_and_resumes_it() {
    let relay = relay();
    let bridge = Bridge::start(&relay.url, "Laptop");
    let dir = tempfile::tempdir().unwrap();
    let (key, paired) = app_paired_with(dir.path(), &bridge);
    let bridge_dir = bridge.stop_when_stored(1);
    let out = bridge_tool(bridge_dir.path(), &["--unpair"]);
    assert_eq!(text(&out.stdout).trim(), "unpaired: App phone");

    let suspended = |key: &pocketkey_ffi::SecurityKey| {
        let listed = key.pairings().unwrap();
        assert_eq!(listed.len(), 1, "the pairing is kept");
        assert_eq!(listed[0].id, paired.id);
        listed[0].suspended
    };
    assert!(!suspended(&key));
    // A push registration of the pairing, so that a push naming it is one the app knows.
    let wake = registered_wake_id(dir.path(), &paired.id);
    for _ in 0..2 {
        let listener = Arc::clone(&key).listen("App phone".into());
        let deadline = Instant::now() + WAIT;
        while !suspended(&key) {
            assert!(Instant::now() < deadline, "never suspended");
            thread::sleep(Duration::from_millis(50));
        }
        listener.stop();
        let push = format!(r#"{{"v":1,"w":"{wake}"}}"#);
        assert_eq!(
            Arc::clone(&key)
                .handle_push(push, "App phone".into(), 100)
                .unwrap(),
            pocketkey_ffi::PushOutcome::Ignored,
            "a push for a suspended pairing was served"
        );
        assert!(key.resume_pairing(paired.id.clone()).unwrap());
        assert!(!suspended(&key));
    }
    assert!(!key.resume_pairing("00".repeat(16)).unwrap());
}

/// Waits until a CTAPHID INIT sent to `addr` is answered: the process has bound its port.
fn answers_init(addr: SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut init = [0u8; 64];
    init[..4].copy_from_slice(&[0xff; 4]);
    init[4] = 0x86;
    init[6] = 8;
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 64];
    loop {
        let _ = socket.send(&init);
        if socket.recv(&mut buf).is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "the bridge never answered INIT");
    }
}

/// `pocketkey-bridge ARGS --state-dir DIR` to completion.
fn bridge_tool(dir: &Path, args: &[&str]) -> Output {
    Command::new(bridge_program())
        .args(args)
        .args(["--key-file", "--state-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn the_bridge_retries_an_unpair_made_while_the_relay_was_down() {
    let relay = relay();
    let bridge = Bridge::start(&relay.url, "Laptop");
    let phone = tempfile::tempdir().unwrap();
    pair_cli(phone.path(), &bridge);
    let dir = bridge.stop_when_stored(1);

    let addr = relay.stop();
    let out = bridge_tool(dir.path(), &["--unpair"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("the relay could not be told"),
        "{}",
        text(&out.stdout)
    );
    // Still down: listed as pending, nothing paired.
    let out = bridge_tool(dir.path(), &["--list"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("could not be told yet"),
        "{}",
        text(&out.stderr)
    );

    let _relay = relay_at(addr);
    let out = bridge_tool(dir.path(), &["--list"]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr)
            .lines()
            .any(|l| l == "unpaired: PocketKey CLI (the relay was told now)"),
        "{}",
        text(&out.stderr)
    );
    let out = bridge_tool(dir.path(), &["--list"]);
    assert!(
        !text(&out.stderr).contains("unpair"),
        "nothing pending any more: {}",
        text(&out.stderr)
    );

    // The phone hears it from the relay at its next attach (410), which proves nothing: it
    // suspends the pairing, says so and what to do, and has nothing left to serve.
    let said = phone.path().join("listen.err");
    let mut listen = Command::new(POCKETKEY)
        .args(["listen", "--auto-approve", "--state-dir"])
        .arg(phone.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&said).unwrap())
        .spawn()
        .unwrap();
    assert!(ends_within(&mut listen, WAIT).success());
    let said = std::fs::read_to_string(&said).unwrap();
    assert!(
        said.contains("Laptop: suspended: the relay says this computer removed"),
        "{said}"
    );
    let out = pocketkey(phone.path(), &["pairings"]);
    assert!(
        text(&out.stdout).trim_end().ends_with("\tsuspended"),
        "the phone kept the computer, suspended: {}",
        text(&out.stdout)
    );
    // The user resumes it: served again, 410 again, suspended again.
    let out = pocketkey(phone.path(), &["resume", "Laptop"]);
    assert_eq!(text(&out.stdout).trim(), "resumed: Laptop");
    let out = pocketkey(phone.path(), &["pairings"]);
    assert!(!text(&out.stdout).contains("suspended"));
    let mut listen = Command::new(POCKETKEY)
        .args(["listen", "--auto-approve", "--state-dir"])
        .arg(phone.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(ends_within(&mut listen, WAIT).success());
    let out = pocketkey(phone.path(), &["pairings"]);
    assert!(text(&out.stdout).trim_end().ends_with("\tsuspended"));
    // Removing it is the user's action: the relay says it is gone already, the record goes.
    let out = pocketkey(phone.path(), &["unpair", "Laptop"]);
    assert_eq!(text(&out.stdout).trim(), "unpaired: Laptop");
    nothing_pending(phone.path());
}

#[test]
fn the_phone_renames_a_computer_locally() {
    let relay = relay();
    let bridge = Bridge::start(&relay.url, "Laptop");
    let phone = tempfile::tempdir().unwrap();
    pair_cli(phone.path(), &bridge);

    let out = pocketkey(phone.path(), &["rename", "Laptop", "Work laptop"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "renamed: Laptop -> Work laptop");
    let out = pocketkey(phone.path(), &["pairings"]);
    assert!(
        text(&out.stdout).starts_with("Work laptop\t"),
        "{}",
        text(&out.stdout)
    );

    for (old, new, says) in [
        ("Laptop", "Anything", "no pairing named"),
        ("Work laptop", "", "cannot rename"),
        ("Work laptop", " padded", "cannot rename"),
        ("Work laptop", &"x".repeat(65), "cannot rename"),
    ] {
        let out = pocketkey(phone.path(), &["rename", old, new]);
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains(says),
            "{new:?}: {}",
            text(&out.stderr)
        );
    }
    let out = pocketkey(phone.path(), &["pairings"]);
    assert!(
        text(&out.stdout).starts_with("Work laptop\t"),
        "unchanged by refused renames"
    );

    // The renamed pairing still works: the bridge forwards to this phone.
    let listen = Listening::start(phone.path());
    forwarded_ok(&bridge);
    drop(listen);
}

/// The app's API: `SecurityKey.renamePairing` changes the listed name; bad names and unknown
/// ids change nothing.
#[test]
fn the_app_renames_a_pairing() {
    let relay = relay();
    let bridge = Bridge::start(&relay.url, "Laptop");
    let dir = tempfile::tempdir().unwrap();
    let (key, paired) = app_paired_with(dir.path(), &bridge);
    assert!(key
        .rename_pairing(paired.id.clone(), "Desk at home".into())
        .unwrap());
    assert_eq!(key.pairings().unwrap()[0].computer_name, "Desk at home");
    assert!(matches!(
        key.rename_pairing(paired.id.clone(), "\u{202e}evil".into()),
        Err(pocketkey_ffi::PocketKeyError::InvalidLabel { max_chars: 64 })
    ));
    assert!(!key.rename_pairing("00".repeat(16), "Other".into()).unwrap());
    assert!(!key
        .rename_pairing("not hex".into(), "Other".into())
        .unwrap());
    assert_eq!(key.pairings().unwrap()[0].computer_name, "Desk at home");
}

/// `pocketkey listen --auto-approve` for the phone in `dir`, until dropped.
struct Listening(Child);

impl Listening {
    fn start(dir: &Path) -> Self {
        let child = Command::new(POCKETKEY)
            .args(["listen", "--auto-approve", "--state-dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A getAssertion the bridge cannot get answered: CTAP2_ERR_USER_ACTION_TIMEOUT after its
/// --phone-timeout (3 s here), because the phone it serves is not listening.
fn not_forwarded(bridge: &Bridge) {
    let mut hid = HidClient::connect(bridge.addr);
    let answer = hid.cbor(&get_assertion("example.com"), Duration::from_secs(20));
    assert_eq!(answer, vec![0x2f], "the served phone is not listening");
}

#[test]
fn one_computer_two_phones_served_one_at_a_time() {
    let relay = relay();
    let (phone_a, phone_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pair_as = |phone: &Path, bridge: &Bridge, name: &str| {
        let out = pocketkey(
            phone,
            &["pair", &bridge.pairing_url(), "--phone-name", name],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    let bridge = Bridge::start(&relay.url, "Laptop");
    pair_as(phone_a.path(), &bridge, "Phone A");
    let dir = bridge.stop_when_stored(1);

    // Paired already, but asked to pair another: a new code, and the new phone is served.
    let bridge = Bridge::start_in(&relay.url, "Laptop", dir, &["--pair-another"]);
    pair_as(phone_b.path(), &bridge, "Phone B");
    let dir = bridge.stop_when_stored(2);
    let out = bridge_tool(dir.path(), &["--list"]);
    let listed = text(&out.stdout);
    let names: Vec<&str> = listed
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Phone B", "Phone A"],
        "newest (served by default) first"
    );

    // Only phone A listens: the default (newest, B) cannot answer; --phone "Phone A" can.
    let _a = Listening::start(phone_a.path());
    let bridge = Bridge::start_in(&relay.url, "Laptop", dir, &[]);
    not_forwarded(&bridge);
    let dir = bridge.stop_when_stored(2);
    let bridge = Bridge::start_in(&relay.url, "Laptop", dir, &["--phone", "Phone A"]);
    forwarded_ok(&bridge);
    let dir = bridge.stop_when_stored(2);

    // Management by name: rename, an ambiguous unpair refused, unpair by name.
    let out = bridge_tool(dir.path(), &["--rename", "Phone A", "Old phone"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = bridge_tool(dir.path(), &["--unpair"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("name the phone (paired: "),
        "{}",
        text(&out.stderr)
    );
    let out = bridge_tool(dir.path(), &["--unpair", "Phone B"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "unpaired: Phone B");
    let out = bridge_tool(dir.path(), &["--list"]);
    assert!(
        text(&out.stdout).starts_with("Old phone\t"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stdout).lines().count(), 1);

    // A phone that is not paired cannot be chosen.
    let out = Command::new(bridge_program())
        .args([
            "--key-file",
            "--udp",
            "127.0.0.1:0",
            "--phone",
            "Phone B",
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no phone named \"Phone B\" (paired: Old phone)"),
        "{}",
        text(&out.stderr)
    );
}

/// Accepts one webhook POST on `hook`, answers 204 and returns its body.
fn webhook_body(hook: &std::net::TcpListener) -> String {
    let (mut stream, _) = hook.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    let (head_end, length) = loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the relay closed before its POST was complete");
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap())
                .unwrap();
            break (end + 4, length);
        }
    };
    while data.len() < head_end + length {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        data.extend_from_slice(&buf[..n]);
    }
    stream
        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    String::from_utf8(data[head_end..head_end + length].to_vec()).unwrap()
}

/// The app's push path: `registerPush(Webhook)` at the relay; a request at the bridge makes the
/// relay POST the wake-up, which carries the wake id the phone registered and not the pairing's
/// mailbox id; `handlePush(body)` attaches and serves it. Payloads that are not ours — a wake id
/// the phone never registered, a payload naming the pairing's mailbox as pushes used to, the
/// same push again once the phone registered a new id at its attach — are ignored without
/// traffic.
#[test]
fn the_app_is_woken_by_push_and_serves_the_request() {
    use pocketkey_ffi::PushOutcome;
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = relay_with_webhooks(hook.local_addr().unwrap());
    let bridge = Bridge::start(&relay.url, "Laptop");
    let dir = tempfile::tempdir().unwrap();
    let (key, paired) = app_paired_with(dir.path(), &bridge);
    let url = format!("http://{}/wake", hook.local_addr().unwrap());
    let unreached = key
        .register_push(pocketkey_ffi::PushRegistration::Webhook { url })
        .unwrap();
    assert!(unreached.is_empty(), "{unreached:?}");
    let push = |payload: String, idle_ms: u32| {
        Arc::clone(&key)
            .handle_push(payload, "App phone".into(), idle_ms)
            .unwrap()
    };
    for not_ours in [
        "{}".to_string(),
        r#"{"v":1,"w":"00112233445566778899aabbccddeeff"}"#.to_string(),
        format!(r#"{{"v":1,"mailbox":"{}"}}"#, paired.id),
        format!(r#"{{"v":"1","m":"{}"}}"#, paired.id),
    ] {
        assert_eq!(push(not_ours, 500), PushOutcome::Ignored);
    }

    let browser = thread::spawn(move || forwarded_ok(&bridge));
    let body = webhook_body(&hook);
    assert!(
        !body.contains("Laptop") && !body.contains("example.com"),
        "content-free: {body}"
    );
    assert!(!body.contains(&paired.id), "the mailbox id: {body}");
    assert_eq!(
        push(body.clone(), 1000),
        PushOutcome::Served {
            computer_name: "Laptop".into(),
            request: true
        }
    );
    browser
        .join()
        .expect("the browser's request was answered by the woken phone");
    // The attach registered a new wake id (ACKed while serving): the old push is stale.
    assert_eq!(push(body, 500), PushOutcome::Ignored);
}

/// Records in the app's pairing store a push registration of `pairing` (as `registerPush`
/// does once the relay ACKs it); returns its wake id.
fn registered_wake_id(dir: &Path, pairing: &str) -> String {
    let store = pocketkey_core::pairing::PairingStore::open(
        &dir.join("key")
            .join(pocketkey_core::pairing::store::FILE_NAME),
        &pocketkey_core::crypto::master_key::MasterKey::from_bytes([0x42; 32]),
    )
    .unwrap();
    let id = pocketkey_core::pairing::MailboxId::from_hex(pairing).unwrap();
    let wake = pocketkey_core::pairing::relay::WakeId::random();
    let target = pocketkey_core::pairing::relay::PushTarget {
        provider: pocketkey_core::pairing::relay::PushProvider::Webhook,
        target: "http://127.0.0.1:9/wake".into(),
        environment: None,
        wake,
    };
    store.push_registering(&id, &target).unwrap();
    store.push_registered(&id, &wake).unwrap();
    wake.to_hex()
}

/// The wake id the app registered last for `pairing`, read from its pairing store.
fn current_wake_id(dir: &Path, pairing: &str) -> String {
    let store = pocketkey_core::pairing::PairingStore::open(
        &dir.join("key")
            .join(pocketkey_core::pairing::store::FILE_NAME),
        &pocketkey_core::crypto::master_key::MasterKey::from_bytes([0x42; 32]),
    )
    .unwrap();
    let id = pocketkey_core::pairing::MailboxId::from_hex(pairing).unwrap();
    store
        .push_target(&id)
        .unwrap()
        .expect("registered")
        .wake
        .to_hex()
}

/// Wakes that bring no request (what a relay, or whoever holds the bridge's keys, can send):
/// each is served, and counted; after `EMPTY_WAKE_LIMIT` of them the app stops answering that
/// computer's wakes for the rest of the hour and says so (`Paused`), without connecting.
#[test]
fn the_app_stops_answering_wakes_that_bring_no_request() {
    use pocketkey_core::pairing::wake::{EMPTY_WAKE_LIMIT, EMPTY_WAKE_WINDOW_SECS};
    use pocketkey_ffi::PushOutcome;
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = relay_with_webhooks(hook.local_addr().unwrap());
    let bridge = Bridge::start(&relay.url, "Laptop");
    let dir = tempfile::tempdir().unwrap();
    let (key, paired) = app_paired_with(dir.path(), &bridge);
    let url = format!("http://{}/wake", hook.local_addr().unwrap());
    assert!(key
        .register_push(pocketkey_ffi::PushRegistration::Webhook { url })
        .unwrap()
        .is_empty());
    let push = |wake: String| {
        Arc::clone(&key)
            .handle_push(
                format!(r#"{{"v":1,"w":"{wake}"}}"#),
                "App phone".into(),
                200,
            )
            .unwrap()
    };
    let mut seen = std::collections::HashSet::new();
    for _ in 0..EMPTY_WAKE_LIMIT {
        let wake = current_wake_id(dir.path(), &paired.id);
        assert!(seen.insert(wake.clone()), "a new wake id at each attach");
        assert_eq!(
            push(wake),
            PushOutcome::Served {
                computer_name: "Laptop".into(),
                request: false
            }
        );
    }
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    match push(current_wake_id(dir.path(), &paired.id)) {
        PushOutcome::Paused {
            computer_name,
            until,
        } => {
            assert_eq!(computer_name, "Laptop");
            assert!(until > start && until <= start + EMPTY_WAKE_WINDOW_SECS);
        }
        other => panic!("expected Paused, got {other:?}"),
    }
    drop(bridge);
}

/// A listener that runs already reads the pairing again at each request: a rename shows in the
/// next prompt; a pairing revoked behind its back (by another process of this phone whose DELETE
/// did not reach the relay) is not served — no prompt, the bridge is told in the session
/// (`Revoke`) and forgets the phone, answering the waiting browser at once, and the relay is
/// told.
#[test]
fn a_running_listener_reads_the_pairing_again_at_each_request() {
    const SELECTION: [u8; 1] = [0x0b]; // authenticatorSelection: asks the user, signs nothing
    let relay = relay();
    let bridge = Bridge::start(&relay.url, "Laptop");
    let dir = tempfile::tempdir().unwrap();
    let (prompted, prompts) = mpsc::channel();
    let key = pocketkey_ffi::SecurityKey::open(
        dir.path().join("key").to_string_lossy().into_owned(),
        Arc::new(Keychain),
        Arc::new(Prompts(Some(std::sync::Mutex::new(prompted)))),
        None,
        None,
    )
    .unwrap();
    let paired = key
        .pair(
            bridge.pairing_url(),
            "App phone".into(),
            false,
            Arc::new(ShownCode::default()),
        )
        .unwrap();
    let listener = Arc::clone(&key).listen("App phone".into());

    let mut hid = HidClient::connect(bridge.addr);
    let deadline = Instant::now() + WAIT;
    while hid.cbor(&[0x04], Duration::from_secs(2))[0] != 0x00 {
        assert!(Instant::now() < deadline, "getInfo never cached");
        thread::sleep(Duration::from_millis(100));
    }
    // The browser's request runs on its own thread; the test is the user.
    let ask = |mut hid: HidClient| thread::spawn(move || (hid.cbor(&SELECTION, WAIT * 2), hid));
    let approve = |key: &pocketkey_ffi::SecurityKey| {
        let prompt = prompts.recv_timeout(WAIT).expect("a prompt");
        key.answer(
            prompt.id,
            pocketkey_ffi::ApprovalAnswer::ApprovePresent { account: None },
        )
        .unwrap();
        prompt.requester
    };

    let browser = ask(hid);
    assert_eq!(approve(&key), "Laptop");
    let (answer, hid) = browser.join().unwrap();
    assert_eq!(answer, vec![0x00]);

    assert!(key
        .rename_pairing(paired.id.clone(), "Desk at home".into())
        .unwrap());
    let browser = ask(hid);
    assert_eq!(
        approve(&key),
        "Desk at home",
        "the prompt names the new name"
    );
    let (answer, hid) = browser.join().unwrap();
    assert_eq!(answer, vec![0x00]);

    // Another process of this phone revokes the pairing; its DELETE never left.
    {
        let master = pocketkey_core::crypto::master_key::MasterKey::from_bytes([0x42; 32]);
        let store = pocketkey_core::pairing::PairingStore::open(
            &dir.path()
                .join("key")
                .join(pocketkey_core::pairing::store::FILE_NAME),
            &master,
        )
        .unwrap();
        let id = store.list().unwrap()[0].id;
        store.revoke(&id, 1).unwrap();
    }
    let browser = ask(hid);
    assert!(
        forgot_the_phone(&bridge, WAIT),
        "the bridge still thinks it is paired"
    );
    let (answer, _) = browser.join().unwrap();
    assert_eq!(answer, vec![0x2f], "CTAP2_ERR_USER_ACTION_TIMEOUT at once");
    assert!(
        prompts.try_recv().is_err(),
        "a revoked pairing raised a prompt"
    );
    // The revocation reached the relay: nothing is pending any more.
    let deadline = Instant::now() + WAIT;
    while !pending_cleared(dir.path()) {
        assert!(Instant::now() < deadline, "the revocation stayed pending");
        thread::sleep(Duration::from_millis(50));
    }
    listener.stop();
}

/// Whether the app key's pairing store in `dir` has no pending revocation left.
fn pending_cleared(dir: &Path) -> bool {
    let master = pocketkey_core::crypto::master_key::MasterKey::from_bytes([0x42; 32]);
    pocketkey_core::pairing::PairingStore::open(
        &dir.join("key")
            .join(pocketkey_core::pairing::store::FILE_NAME),
        &master,
    )
    .unwrap()
    .pending_revocations()
    .unwrap()
    .is_empty()
}

/// The app's side of the confirmation code: checks it gets six digits once per pairing.
#[derive(Default)]
struct ShownCode(std::sync::Mutex<Vec<String>>);

impl pocketkey_ffi::PairingCodeListener for ShownCode {
    fn show_code(&self, code: String) {
        assert!(
            code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
            "{code:?}"
        );
        let mut shown = self.0.lock().unwrap();
        shown.push(code);
        assert_eq!(shown.len(), 1, "one code per pairing");
    }
}
