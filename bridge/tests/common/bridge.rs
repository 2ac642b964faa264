//! `pocketkey-bridge` as a real process: started on a free UDP port with `--relay`, its
//! standard output and error read line by line; and its one-shot commands (`--list`, …).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

pub const BRIDGE: &str = env!("CARGO_BIN_EXE_pocketkey-bridge");
/// Only a guard against a hung test, never an expectation about speed.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Bridge {
    pub child: Child,
    pub addr: SocketAddr,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
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
    /// A bridge on `dir` with `--relay` (so it can show a pairing code), `--print-url` and
    /// `extra` options.
    pub fn start(relay: &str, dir: &Path, extra: &[&str]) -> Self {
        Self::spawn(relay, dir, &[&["--print-url"], extra].concat())
    }

    /// `pocketkey-bridge --udp <free port> --relay URL --name "Test laptop" --key-file
    /// --auto-confirm --phone-timeout 20 ARGS --state-dir DIR`, stdout and stderr to pipes.
    pub fn spawn(relay: &str, dir: &Path, args: &[&str]) -> Self {
        let addr = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut child = Command::new(BRIDGE)
            .args(["--udp", &addr.to_string(), "--relay", relay])
            .args(["--name", "Test laptop", "--key-file", "--auto-confirm"])
            .args(["--phone-timeout", "20"])
            .args(args)
            .arg("--state-dir")
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
    pub fn pairing_url(&self) -> String {
        loop {
            let line = self.stdout.recv_timeout(WAIT).expect("a pair: line");
            if let Some(url) = line.strip_prefix("pair: ") {
                return url.to_string();
            }
        }
    }

    /// Waits for the standard-error line `wanted`; the lines before it.
    pub fn said(&self, wanted: &str) -> Vec<String> {
        let until = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line == wanted => return before,
                Ok(line) => before.push(line),
                Err(_) => panic!("the bridge never said {wanted:?}; it said {before:#?}"),
            }
        }
    }

    /// Reads standard error up to the first line containing `text`; the lines read.
    pub fn stderr_until(&self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.stderr.recv_timeout(WAIT) {
                Ok(line) => {
                    let found = line.contains(text);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("no {text:?} on stderr; saw {seen:#?}"),
            }
        }
    }

    /// Waits (up to `WAIT`) for the bridge to end by itself.
    pub fn exit(&mut self) -> ExitStatus {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "the bridge kept running");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything read from standard error so far that no one took yet.
    pub fn stderr_text(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

/// `pocketkey-bridge ARGS --key-file --state-dir DIR`, run to its end.
pub fn bridge_tool(dir: &Path, args: &[&str]) -> Output {
    Command::new(BRIDGE)
        .args(args)
        .args(["--key-file", "--state-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What `--list` prints on the bridge's side (one phone a line).
pub fn listed(dir: &Path) -> String {
    let out = bridge_tool(dir, &["--list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}
