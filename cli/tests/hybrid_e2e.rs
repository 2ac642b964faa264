//! End to end on loopback with real processes: `pocketkey hybrid` (the phone) and
//! `pocketkey-relay` (the tunnel server), and the browser of `pocketkey_testkit::hybrid` (the
//! same one `pocketkey-hybrid-browser` runs for the app models' tests): it makes the QR code,
//! reads the advert the phone prints, connects through the relay, runs the Noise initiator,
//! registers a credential and signs in with it, and checks the results as a relying party
//! would (packed self attestation, rpIdHash, the assertion signature under the registered
//! COSE key, the counter). Then the ways a session must fail, each with a clear message and a
//! non-zero exit.
//!
//! The relay is the built `pocketkey-relay` program when it is there (next to `pocketkey`, as
//! `cargo test --workspace` leaves it, or named by `POCKETKEY_RELAY_BIN`), else the same
//! crate's `serve` on a thread of this test.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ciborium::value::Value;
use pocketkey_core::hybrid::advert::EidPlaintext;
use pocketkey_core::hybrid::keys;
use pocketkey_core::hybrid::noise::Initiator;
use pocketkey_core::hybrid::qr::QrCode;
use pocketkey_core::hybrid::session::{encode_message, MessageType};
use pocketkey_testkit::cbor::{as_bytes, get, text};
use pocketkey_testkit::hybrid::{self, recv, send, unhex, Browser, Ws};
use tungstenite::Message;

const RP_ID: &str = "hybrid.example";
const WAIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------- the relay

enum RelayRun {
    Program(Child),
    InProcess(
        Option<tokio::sync::oneshot::Sender<()>>,
        Option<JoinHandle<()>>,
    ),
}

struct Relay {
    addr: SocketAddr,
    run: RelayRun,
}

fn relay_program() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("POCKETKEY_RELAY_BIN") {
        return Some(PathBuf::from(path));
    }
    let sibling = Path::new(env!("CARGO_BIN_EXE_pocketkey")).with_file_name("pocketkey-relay");
    sibling.is_file().then_some(sibling)
}

impl Relay {
    fn start() -> Self {
        match relay_program() {
            Some(program) => Self::program(&program),
            None => Self::in_process(),
        }
    }

    /// The program prints `listening on ADDR` first.
    fn program(program: &Path) -> Self {
        let mut child = Command::new(program)
            .args(["--listen", "127.0.0.1:0", "--memory"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("relay's first line: {first:?}"))
            .parse()
            .unwrap();
        Self {
            addr,
            run: RelayRun::Program(child),
        }
    }

    fn in_process() -> Self {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let relay =
                    pocketkey_relay::serve(listener, pocketkey_relay::Config::default()).unwrap();
                addr_tx.send(relay.local_addr()).unwrap();
                let _ = stop_rx.await;
                relay.shutdown().await;
            });
        });
        Self {
            addr: addr_rx.recv_timeout(WAIT).unwrap(),
            run: RelayRun::InProcess(Some(stop_tx), Some(thread)),
        }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        match &mut self.run {
            RelayRun::Program(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            RelayRun::InProcess(stop, thread) => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------- the phone

struct Phone {
    child: Child,
    stdout: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

struct Ended {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
}

impl Phone {
    fn spawn(qr: &str, tunnel_url: &str, state_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pocketkey"))
            .arg("hybrid")
            .arg(qr)
            .args(["--tunnel-url", tunnel_url, "--auto-approve", "--state-dir"])
            .arg(state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pocketkey hybrid");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Self {
            child,
            stdout,
            stderr: Some(stderr),
        }
    }

    /// The 20 bytes of the `advert: <40 hex digits>` line.
    fn advert(&mut self) -> Vec<u8> {
        let line = match self.stdout.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(_) => {
                let ended = self.end();
                panic!("no advert line; stderr:\n{}", ended.stderr);
            }
        };
        let digits = line
            .strip_prefix("advert: ")
            .unwrap_or_else(|| panic!("first stdout line: {line:?}"));
        assert_eq!(digits.len(), 40, "{line:?}");
        unhex(digits).unwrap_or_else(|| panic!("{line:?}"))
    }

    /// Waits for the exit (killing the process after [`WAIT`]).
    fn end(&mut self) -> Ended {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let stderr = self.stderr.take().unwrap().join().unwrap();
                panic!("pocketkey hybrid did not exit; stderr:\n{stderr}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        let stdout = self.stdout.try_iter().collect();
        Ended {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------- tests

#[test]
fn registers_and_signs_in_through_the_relay() {
    let relay = Relay::start();
    let state = tempfile::tempdir().unwrap();
    let browser = Browser::new();
    let mut phone = Phone::spawn(&browser.qr(), &relay.url(), state.path());

    let eid = browser
        .read_advert(&phone.advert())
        .expect("the advert is ours");
    assert_eq!(eid.domain_id, 0);
    let mut ws = browser.connect(&relay.url(), &eid).unwrap();
    let (mut c, post) = browser.handshake(&mut ws, &eid).unwrap();

    assert_eq!(post.features, vec!["ctap".to_string()]);
    let info: Value = ciborium::from_reader(&post.get_info[..]).expect("getInfo CBOR");
    let versions = get(&info, 1).and_then(Value::as_array).expect("versions");
    assert!(versions.contains(&text("FIDO_2_1")), "{versions:?}");
    let transports = get(&info, 9).and_then(Value::as_array).expect("transports");
    assert!(transports.contains(&text("hybrid")), "{transports:?}");
    let aaguid = as_bytes(get(&info, 3).expect("aaguid"));

    // Registration and sign-in, checked as a relying party would (packed self attestation,
    // rpIdHash, flags, AAGUID, the assertion signature under the registered key, the counter).
    hybrid::register_and_sign_in(&mut ws, &mut c, &aaguid, RP_ID)
        .expect("registered and signed in");

    // The browser ends the session; the phone exits 0.
    send(&mut ws, &mut c, MessageType::Shutdown, &[]);
    assert!(
        recv(&mut ws).is_none(),
        "the phone sends nothing after the shutdown"
    );
    let ended = phone.end();
    assert!(
        ended.status.success(),
        "{:?}\n{}",
        ended.status,
        ended.stderr
    );
    assert!(
        ended.stdout.is_empty(),
        "one advert line only: {:?}",
        ended.stdout
    );
    assert!(ended.stderr.contains("2 request(s)"), "{}", ended.stderr);
}

/// Runs the phone up to its advert and a browser that joins the tunnel; `misbehave` does the
/// rest. Returns how the phone ended.
fn failing_session(misbehave: impl FnOnce(&Browser, &mut Ws, &EidPlaintext)) -> Ended {
    let relay = Relay::start();
    let state = tempfile::tempdir().unwrap();
    let browser = Browser::new();
    let mut phone = Phone::spawn(&browser.qr(), &relay.url(), state.path());
    let eid = browser.read_advert(&phone.advert()).unwrap();
    let mut ws = browser.connect(&relay.url(), &eid).unwrap();
    misbehave(&browser, &mut ws, &eid);
    let ended = phone.end();
    assert!(!ended.status.success(), "must fail: {}", ended.stderr);
    assert_eq!(ended.status.code(), Some(1));
    ended
}

#[test]
fn a_browser_with_the_wrong_secret_is_rejected() {
    let ended = failing_session(|browser, ws, eid| {
        // A browser that showed another QR code (another secret) derives another PSK.
        let psk = keys::psk(&[0x5a; 16], &eid.to_bytes());
        let (_, msg1) = Initiator::start(&browser.key, &psk).unwrap();
        ws.send(Message::Binary(msg1.to_vec().into())).unwrap();
        assert!(recv(ws).is_none(), "no answer to a bad handshake");
    });
    assert!(
        ended
            .stderr
            .contains("pocketkey: The browser could not be verified: scan the QR code again"),
        "{}",
        ended.stderr
    );
}

#[test]
fn a_wrong_advert_is_rejected() {
    let ended = failing_session(|browser, ws, eid| {
        // A browser that read another advert (another nonce) derives another PSK.
        let mut seen = *eid;
        seen.nonce[0] ^= 1;
        let psk = keys::psk(&browser.secret, &seen.to_bytes());
        let (_, msg1) = Initiator::start(&browser.key, &psk).unwrap();
        ws.send(Message::Binary(msg1.to_vec().into())).unwrap();
        assert!(recv(ws).is_none());
    });
    assert!(
        ended.stderr.contains("could not be verified"),
        "{}",
        ended.stderr
    );
}

#[test]
fn a_tampered_handshake_is_rejected() {
    let ended = failing_session(|browser, ws, eid| {
        let psk = keys::psk(&browser.secret, &eid.to_bytes());
        let (_, mut msg1) = Initiator::start(&browser.key, &psk).unwrap();
        msg1[40] ^= 0x20;
        ws.send(Message::Binary(msg1.to_vec().into())).unwrap();
        assert!(recv(ws).is_none());
    });
    assert!(
        ended.stderr.contains("could not be verified"),
        "{}",
        ended.stderr
    );
}

#[test]
fn a_tampered_transport_frame_ends_the_session() {
    let ended = failing_session(|browser, ws, eid| {
        let (mut c, _) = browser.handshake(ws, eid).unwrap();
        let cdh = hybrid::client_data_hash(RP_ID, "tampered");
        let mut frame = c
            .encrypt(&encode_message(
                MessageType::Ctap,
                &hybrid::make_credential(RP_ID, &cdh),
            ))
            .unwrap();
        frame[10] ^= 0x01;
        ws.send(Message::Binary(frame.into())).unwrap();
        assert!(recv(ws).is_none());
    });
    assert!(
        ended
            .stderr
            .contains("pocketkey: A message from the browser was damaged or out of order"),
        "{}",
        ended.stderr
    );
}

#[test]
fn a_malformed_code_fails_before_any_network_or_file() {
    // A tunnel "server" that must see no connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let good = Browser::new().qr();
    for bad in [
        "FIDO:/123".to_string(),
        "https://example.com".to_string(),
        good[..good.len() - 1].to_string(),
        good.replacen('1', "x", 1),
    ] {
        let mut phone = Phone::spawn(&bad, &url, &state);
        let ended = phone.end();
        assert_eq!(ended.status.code(), Some(1), "{bad}");
        assert!(ended.stdout.is_empty(), "{bad}: {:?}", ended.stdout);
        assert!(
            ended
                .stderr
                .starts_with("pocketkey: This is not a valid passkey QR code ("),
            "{bad}: {}",
            ended.stderr
        );
    }
    assert!(listener.accept().is_err(), "no connection was made");
    assert!(!state.exists(), "no state directory was created");
}

/// A code made an hour ago (a photo of an old code) fails before any connection; one made
/// now is served (the other tests' codes carry no timestamp).
#[test]
fn an_expired_code_fails_before_any_network() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let browser = Browser::new();
    let mut code = QrCode::new(browser.key.public_key(), browser.secret);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    code.timestamp = Some(now - 3600);
    let mut phone = Phone::spawn(&code.to_url(), &url, &dir.path().join("state"));
    let ended = phone.end();
    assert_eq!(ended.status.code(), Some(1));
    assert!(
        ended
            .stderr
            .starts_with("pocketkey: This code has expired: show a new one in the browser ("),
        "{}",
        ended.stderr
    );
    assert!(listener.accept().is_err(), "no connection was made");
}

#[test]
fn an_unknown_tunnel_is_a_clear_error() {
    // A tunnel URL whose path the relay does not serve: 404, reported with the status.
    let relay = Relay::start();
    let state = tempfile::tempdir().unwrap();
    let mut phone = Phone::spawn(
        &Browser::new().qr(),
        &format!("{}/not-a-tunnel-server", relay.url()),
        state.path(),
    );
    let ended = phone.end();
    assert_eq!(ended.status.code(), Some(1));
    assert!(ended.stdout.is_empty());
    assert!(
        ended
            .stderr
            .contains("The tunnel server refused the connection (HTTP 404)"),
        "{}",
        ended.stderr
    );
}

#[test]
fn help_names_the_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_pocketkey"))
        .args(["hybrid", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for option in [
        "--tunnel-url",
        "--state-dir",
        "--auto-approve",
        "--keyring",
        "FIDO_URL",
    ] {
        assert!(help.contains(option), "{option} in:\n{help}");
    }
}
