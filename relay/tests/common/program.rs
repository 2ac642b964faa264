//! The built `pocketkey-relay` program for tests (started with `--listen 127.0.0.1:0
//! --memory` and extra flags), and clients that connect from a chosen loopback address
//! (127.0.0.2, 127.0.0.3, …: on Linux every 127/8 address is the loopback interface) so that
//! per-address limits can be seen to hold for one address and not another.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};

use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{client_async, MaybeTlsStream};

use super::Ws;

/// A running relay program; killed when dropped.
pub struct Program {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the program with routing data in memory and `args`; waits for its address.
pub fn program(args: &[&str]) -> Program {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"));
    command
        .args(["--listen", "127.0.0.1:0", "--memory"])
        .args(args);
    let (child, addr) = spawn(command);
    Program { child, addr }
}

/// Spawns `command` (the relay listening on port 0) and reads the address from its first
/// line, `listening on ADDR`.
pub fn spawn(mut command: Command) -> (Child, SocketAddr) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(match std::env::var_os("PK_RELAY_TEST_LOG") {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap(),
            ),
            None => Stdio::null(),
        })
        .spawn()
        .expect("start pocketkey-relay");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

/// A websocket request sent from `source` (a loopback address) to the relay at `addr`:
/// the socket, or the HTTP status it was refused with.
pub async fn connect_from(
    source: &str,
    addr: SocketAddr,
    request: Request,
) -> Result<(Ws, Response), u16> {
    let source: IpAddr = source.parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    match client_async(request, MaybeTlsStream::Plain(stream)).await {
        Ok((ws, response)) => Ok((ws, response)),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("websocket request failed: {other}"),
    }
}
