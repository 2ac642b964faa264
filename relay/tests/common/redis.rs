//! A real `redis-server` (Debian's package; scripts/test.sh installs it) on a loopback port of
//! its own, without persistence, and relay programs using it (`--redis`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::program::{spawn, Program};

/// A running redis-server; killed (SIGKILL) when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    /// Starts redis-server on a free loopback port and waits until it says it is ready.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::on(port)
    }

    /// Starts redis-server on `port` (again, after [`kill`](Self::kill)).
    pub fn on(port: u16) -> Self {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed");
        // Its log is read to the end (a full pipe would block it); the ready line is the
        // event to wait for.
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = ready_tx.send(());
                }
            }
        });
        ready
            .recv()
            .unwrap_or_else(|_| panic!("redis-server on port {port} ended before it was ready"));
        Self { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A relay program (one node) sharing its state through `redis`, with extra `args`.
pub fn node(redis: &str, args: &[&str]) -> Program {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"));
    command
        .args(["--listen", "127.0.0.1:0", "--redis", redis])
        .args(args);
    let (child, addr): (Child, SocketAddr) = spawn(command);
    Program { child, addr }
}
