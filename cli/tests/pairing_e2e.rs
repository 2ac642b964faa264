//! Pairing with real processes on loopback: the relay (`pocketkey-relay`, in process when its
//! program is not built), two `pocketkey-bridge` computers, and `pocketkey pair | pairings |
//! listen | unpair` as the phone. One phone serves two computers; a used or altered pairing
//! URL is refused; unpairing on the phone revokes at the relay and the bridge forgets the phone
//! and shows a new pairing code.

#[path = "../../bridge/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Lines};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::HidClient;

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
    url: String,
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
    child: Option<Child>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn relay() -> Relay {
    let program = sibling("pocketkey-relay");
    if program.is_file() {
        let mut child = Command::new(program)
            .args(["--listen", "127.0.0.1:0", "--memory"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        return Relay {
            url: format!("ws://{addr}"),
            _stop: None,
            child: Some(child),
        };
    }
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    thread::spawn(move || {
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
    let addr: SocketAddr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Relay {
        url: format!("ws://{addr}"),
        _stop: Some(stop_tx),
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
        let dir = tempfile::tempdir().unwrap();
        let addr = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut child = Command::new(bridge_program())
            .args(["--udp", &addr.to_string(), "--relay", relay, "--name", name])
            .args(["--phone-timeout", "3", "--state-dir"])
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
        Self {
            child,
            addr,
            lines,
            dir: Some(dir),
        }
    }

    /// The next `pair: <url>` line.
    fn pairing_url(&self) -> String {
        let line = self.lines.recv_timeout(Duration::from_secs(20)).unwrap();
        line.strip_prefix("pair: ")
            .expect("a pair: line")
            .to_string()
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

fn get_assertion(rp: &str) -> Vec<u8> {
    let mut out = vec![0x02, 0xa2, 0x01, 0x60 + rp.len() as u8];
    out.extend_from_slice(rp.as_bytes());
    out.extend_from_slice(&[0x02, 0x58, 0x20]);
    out.extend_from_slice(&[0x33; 32]);
    out
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

    let mut listen = Command::new(POCKETKEY)
        .args(["listen", "--auto-approve", "--state-dir"])
        .arg(phone.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    forwarded_ok(&a);
    forwarded_ok(&b);
    let _ = listen.kill();
    let _ = listen.wait();

    // Unpair B on the phone: revoked at the relay; the bridge forgets the phone and shows a
    // new pairing code; the phone keeps A only.
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

    // Revoke on the computer side: `pocketkey-bridge --unpair` tells the relay; the phone's
    // next attach gets 410, it forgets the pairing, and `listen` has nothing left to serve.
    let mut a = a;
    let a_dir = a.dir.take().unwrap();
    drop(a);
    let a_dir = a_dir.path();
    let out = Command::new(bridge_program())
        .args(["--list", "--state-dir"])
        .arg(a_dir)
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("PocketKey CLI\t"));
    let out = Command::new(bridge_program())
        .args(["--unpair", "--state-dir"])
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
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = listen.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = listen.kill();
            panic!("listen kept running for a revoked pairing");
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let out = pocketkey(phone.path(), &["pairings"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "");
}
