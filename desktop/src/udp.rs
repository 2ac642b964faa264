//! The UDP transport (the FIDO simulation convention): one datagram is one 64-byte CTAPHID
//! report, no report id; replies go to the sender. A datagram equal to [`POWER_CYCLE_MAGIC`]
//! power-cycles the engine, which forgets the per-boot PIN strikes and reopens the reset
//! window: so only when asked for ([`UdpTransport::allow_power_cycle`], for test tools) and
//! only from a loopback sender. Otherwise it is an ordinary (invalid) report.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pocketkey_core::hid::REPORT_LEN;

use crate::ctaphid_loop::{self, Incoming, Options, Port};
use pocketkey_core::engine::Engine;

/// Where the simulation convention expects the key.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8111";
/// [`DEFAULT_ADDR`] as an address.
pub const DEFAULT_SOCKET_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8111);

/// "Power cycle" (not a CTAPHID frame): keep persistent state, drop volatile state.
pub const POWER_CYCLE_MAGIC: [u8; REPORT_LEN] = hex64(
    b"ac1052ca95e569de69e02ebff333485f13f9b2da34c5a8a340526697a9ab2e0b\
      394d8d04973c134005be1a0140bff6045bb26eb77a73eaa47813f6b49a7250dc",
);

const fn hex64(text: &[u8]) -> [u8; REPORT_LEN] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not lowercase hex"),
        }
    }
    let mut out = [0u8; REPORT_LEN];
    let (mut i, mut n) = (0, 0);
    while i < text.len() {
        if text[i] == b' ' || text[i] == b'\n' {
            i += 1;
            continue;
        }
        out[n / 2] = out[n / 2] << 4 | nibble(text[i]);
        n += 1;
        i += 1;
    }
    assert!(n == 2 * REPORT_LEN);
    out
}

/// What `--udp ADDR` should say on stderr before serving: anyone who can reach a
/// non-loopback address can use the key (register, sign in, guess PINs).
pub fn exposure_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().to_canonical().is_loopback()).then(|| {
        format!(
            "WARNING: the security key listens on UDP {addr}, which is not a loopback address: \
             anyone who can send it datagrams can use this key. Use 127.0.0.1 unless you \
             mean it."
        )
    })
}

/// The socket could not be bound; says what to do.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on UDP {addr}: {}", bind_advice(source))]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

fn bind_advice(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "the address is in use (is another key running?)".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::AddrNotAvailable => "no such local address".into(),
        _ => e.to_string(),
    }
}

/// A bound UDP socket, ready to serve.
pub struct UdpTransport {
    socket: UdpSocket,
    allow_power_cycle: bool,
    /// Whether a refused power-cycle datagram was logged already (once is enough).
    refusal_logged: AtomicBool,
}

impl UdpTransport {
    /// Binds `addr`. The error names the address and says what to do.
    pub fn bind(addr: SocketAddr) -> Result<Self, BindError> {
        let socket = UdpSocket::bind(addr).map_err(|source| BindError { addr, source })?;
        Ok(Self {
            socket,
            allow_power_cycle: false,
            refusal_logged: AtomicBool::new(false),
        })
    }

    /// Honours [`POWER_CYCLE_MAGIC`] from loopback senders (`--allow-power-cycle`, for test
    /// tools). Without it the datagram is an ordinary report.
    pub fn allow_power_cycle(mut self, allow: bool) -> Self {
        self.allow_power_cycle = allow;
        self
    }

    /// What the datagram `data` from `peer` is to the device loop.
    fn incoming(&self, data: &[u8], peer: SocketAddr) -> Incoming<SocketAddr> {
        if data == POWER_CYCLE_MAGIC {
            if self.allow_power_cycle && peer.ip().to_canonical().is_loopback() {
                return Incoming::PowerCycle(peer);
            }
            if !self.refusal_logged.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "note: a power-cycle datagram from {peer} was treated as an ordinary \
                     report (power cycles need --allow-power-cycle and a loopback sender); \
                     further ones are not logged"
                );
            }
        }
        Incoming::Report(data.to_vec(), peer)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves until `stop` is raised (checked at least every 250 ms) or the socket fails.
    pub fn run<E: Engine + 'static>(
        self,
        engine: E,
        options: Options,
        stop: Arc<AtomicBool>,
    ) -> io::Result<()> {
        ctaphid_loop::serve(Arc::new(self), engine, options, stop)
    }
}

impl Port for UdpTransport {
    type Peer = SocketAddr;

    fn recv(&self, timeout: Duration) -> io::Result<Option<Incoming<SocketAddr>>> {
        let mut buf = [0u8; 2048];
        self.socket.set_read_timeout(Some(timeout))?;
        match self.socket.recv_from(&mut buf) {
            Ok((len, peer)) => {
                let data = buf.get(..len).unwrap_or_default();
                Ok(Some(self.incoming(data, peer)))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        // ICMP "port unreachable" for an earlier reply to a host that left.
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn send(&self, report: &[u8], to: SocketAddr) {
        let _ = self.socket.send_to(report, to);
    }

    fn requester(&self, peer: SocketAddr) -> String {
        format!("this computer (UDP {peer})")
    }
}

#[cfg(test)]
mod tests;
