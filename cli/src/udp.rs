//! The UDP transport (DESIGN §4): one datagram is one 64-byte CTAPHID report, no report id;
//! replies go to the sender. A datagram equal to [`POWER_CYCLE_MAGIC`] power-cycles the engine.
//!
//! Two threads: this one owns the socket loop (CTAPHID via [`HidServer`], KEEPALIVE, CANCEL,
//! busy answers, timeouts); a worker owns the engine and runs one request at a time. The
//! worker sends the engine's answer itself, under the same lock as the keepalives, so an
//! answer is never followed by a stray KEEPALIVE.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use pocketkey_core::approver::Requester;
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::hid::packet::report_cid;
use pocketkey_core::hid::{
    HidOutput, HidServer, KeepaliveStatus, RequestKind, MAX_CHANNELS, REPORT_LEN,
};

use crate::engine::{Engine, RequestContext, WaitingForUser};

/// Where the simulation convention expects the key.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8111";

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

/// How the transport behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Device version in INIT responses.
    pub version: (u8, u8, u8),
    /// Gap between KEEPALIVEs while a request runs (CTAP asks for at most 100 ms).
    pub keepalive_interval: Duration,
    /// When set, KEEPALIVE says UPNEEDED only while it is raised (PROCESSING otherwise);
    /// when not, every KEEPALIVE says UPNEEDED.
    pub waiting_for_user: Option<WaitingForUser>,
    /// One line per request on stderr.
    pub log: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            version: version_triple(),
            keepalive_interval: Duration::from_millis(75),
            waiting_for_user: None,
            log: true,
        }
    }
}

/// This crate's version as (major, minor, patch), saturated to bytes.
pub fn version_triple() -> (u8, u8, u8) {
    let part = |s: &str| s.parse::<u64>().map_or(0, |v| v.min(255) as u8);
    (
        part(env!("CARGO_PKG_VERSION_MAJOR")),
        part(env!("CARGO_PKG_VERSION_MINOR")),
        part(env!("CARGO_PKG_VERSION_PATCH")),
    )
}

/// A bound UDP socket, ready to serve.
pub struct UdpTransport {
    socket: Arc<UdpSocket>,
}

struct Inflight {
    cid: u32,
    cancel: CancelToken,
    peer: SocketAddr,
    last_keepalive: Instant,
}

struct Shared {
    hid: HidServer,
    inflight: Option<Inflight>,
    /// Where each channel's host last wrote from (for answers not triggered by a packet).
    peers: HashMap<u32, SocketAddr>,
}

struct Job {
    cid: u32,
    kind: RequestKind,
    payload: Vec<u8>,
    cx: RequestContext,
    peer: SocketAddr,
}

enum Work {
    Request(Job),
    PowerCycle,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn send(socket: &UdpSocket, report: &[u8], to: SocketAddr) {
    // A lost datagram is the host's problem to retry; never ours to die of.
    let _ = socket.send_to(report, to);
}

impl UdpTransport {
    /// Binds `addr`. The error names the address and says what to do.
    pub fn bind(addr: SocketAddr) -> Result<Self, String> {
        let socket = UdpSocket::bind(addr).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => {
                format!(
                    "cannot listen on UDP {addr}: the address is in use (is another key running?)"
                )
            }
            io::ErrorKind::PermissionDenied => {
                format!("cannot listen on UDP {addr}: permission denied")
            }
            io::ErrorKind::AddrNotAvailable => {
                format!("cannot listen on UDP {addr}: no such local address")
            }
            _ => format!("cannot listen on UDP {addr}: {e}"),
        })?;
        Ok(Self {
            socket: Arc::new(socket),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves until `stop` is raised (checked at least every 250 ms) or the socket fails.
    pub fn run<E: Engine>(
        self,
        engine: E,
        options: Options,
        stop: Arc<AtomicBool>,
    ) -> io::Result<()> {
        let shared = Arc::new(Mutex::new(Shared {
            hid: HidServer::new(options.version),
            inflight: None,
            peers: HashMap::new(),
        }));
        let (jobs, job_rx) = mpsc::channel::<Work>();
        let worker = {
            let shared = Arc::clone(&shared);
            let socket = Arc::clone(&self.socket);
            let log = options.log;
            thread::Builder::new()
                .name("pocketkey-engine".into())
                .spawn(move || {
                    let mut engine = engine;
                    for work in job_rx {
                        run_work(&mut engine, work, &shared, &socket, log);
                    }
                })?
        };

        let result = self.serve(&shared, &jobs, &options, &stop);

        // Stop: end any wait for the user, let the worker finish, do not hang forever.
        if let Some(inflight) = &lock(&shared).inflight {
            inflight.cancel.cancel();
        }
        drop(jobs);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !worker.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if worker.is_finished() {
            let _ = worker.join();
        }
        result
    }

    fn serve(
        &self,
        shared: &Mutex<Shared>,
        jobs: &Sender<Work>,
        options: &Options,
        stop: &AtomicBool,
    ) -> io::Result<()> {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::SeqCst) {
            let wait = next_wakeup(&lock(shared), options, Instant::now());
            self.socket
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            match self.socket.recv_from(&mut buf) {
                Ok((len, peer)) => {
                    let data = buf.get(..len).unwrap_or_default();
                    self.on_datagram(data, peer, shared, jobs, options);
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
                    ) => {}
                Err(e) => return Err(e),
            }
            self.on_timers(shared, options, Instant::now());
        }
        Ok(())
    }

    fn on_datagram(
        &self,
        data: &[u8],
        peer: SocketAddr,
        shared: &Mutex<Shared>,
        jobs: &Sender<Work>,
        options: &Options,
    ) {
        if data == POWER_CYCLE_MAGIC {
            if options.log {
                eprintln!("power cycle requested by {peer}");
            }
            let _ = jobs.send(Work::PowerCycle);
            return;
        }
        let now = Instant::now();
        let mut guard = lock(shared);
        let s = &mut *guard;
        let packet_cid = report_cid(data);
        for output in s.hid.handle_packet(data, now) {
            match output {
                HidOutput::Send(report) => {
                    let to = if report_cid(&report) == packet_cid {
                        Some(peer)
                    } else {
                        report_cid(&report).and_then(|cid| s.peers.get(&cid).copied())
                    };
                    if let Some(to) = to {
                        send(&self.socket, &report, to);
                    }
                }
                HidOutput::Request { cid, kind, payload } => {
                    let cancel = CancelToken::new();
                    let cx = RequestContext {
                        cancel: cancel.clone(),
                        requester: Requester(format!("this computer (UDP {peer})")),
                    };
                    s.inflight = Some(Inflight {
                        cid,
                        cancel,
                        peer,
                        last_keepalive: now,
                    });
                    if jobs
                        .send(Work::Request(Job {
                            cid,
                            kind,
                            payload,
                            cx,
                            peer,
                        }))
                        .is_err()
                    {
                        // The worker is gone (only while stopping): answer rather than hang.
                        s.inflight = None;
                        let answer = match kind {
                            RequestKind::Cbor => vec![0x7f],
                            RequestKind::Msg => vec![0x6f, 0x00],
                        };
                        for report in s.hid.finish(cid, kind, &answer) {
                            send(&self.socket, &report, peer);
                        }
                    }
                }
                HidOutput::Cancel { cid } => {
                    if let Some(inflight) = s.inflight.as_ref().filter(|f| f.cid == cid) {
                        inflight.cancel.cancel();
                        if options.log {
                            eprintln!("cancel on channel {cid:08x}");
                        }
                    }
                }
                HidOutput::Wink { .. } => {
                    if options.log {
                        eprintln!("wink: the computer asks PocketKey to show itself");
                    }
                }
            }
        }
        if let Some(cid) = packet_cid.filter(|cid| s.hid.is_allocated(*cid)) {
            s.peers.insert(cid, peer);
            if s.peers.len() > 2 * MAX_CHANNELS {
                let hid = &s.hid;
                s.peers.retain(|cid, _| hid.is_allocated(*cid));
            }
        }
    }

    fn on_timers(&self, shared: &Mutex<Shared>, options: &Options, now: Instant) {
        let mut guard = lock(shared);
        let s = &mut *guard;
        for output in s.hid.poll(now) {
            if let HidOutput::Send(report) = output {
                if let Some(to) = report_cid(&report).and_then(|cid| s.peers.get(&cid)) {
                    send(&self.socket, &report, *to);
                }
            }
        }
        let running = s.hid.pending_request().map(|(cid, _)| cid);
        if let Some(inflight) = s.inflight.as_mut().filter(|f| Some(f.cid) == running) {
            if now.duration_since(inflight.last_keepalive) >= options.keepalive_interval {
                let status = match &options.waiting_for_user {
                    Some(waiting) if !waiting.is_waiting() => KeepaliveStatus::Processing,
                    _ => KeepaliveStatus::UpNeeded,
                };
                send(
                    &self.socket,
                    &s.hid.keepalive(inflight.cid, status),
                    inflight.peer,
                );
                inflight.last_keepalive = now;
            }
        }
    }
}

/// How long the socket may sleep before a timer is due.
fn next_wakeup(s: &Shared, options: &Options, now: Instant) -> Duration {
    let mut wait = Duration::from_millis(250);
    let running = s.hid.pending_request().map(|(cid, _)| cid);
    if let Some(inflight) = s.inflight.as_ref().filter(|f| Some(f.cid) == running) {
        let due = inflight.last_keepalive + options.keepalive_interval;
        wait = wait.min(due.saturating_duration_since(now));
    }
    if let Some(deadline) = s.hid.next_deadline() {
        wait = wait.min(deadline.saturating_duration_since(now));
    }
    wait
}

fn run_work<E: Engine>(
    engine: &mut E,
    work: Work,
    shared: &Mutex<Shared>,
    socket: &UdpSocket,
    log: bool,
) {
    match work {
        Work::PowerCycle => {
            if catch_unwind(AssertUnwindSafe(|| engine.power_cycle())).is_err() {
                eprintln!("error: the engine panicked during power cycle");
            }
        }
        Work::Request(job) => {
            let started = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| match job.kind {
                RequestKind::Cbor => engine.process_cbor(&job.payload, &job.cx),
                RequestKind::Msg => engine.process_u2f(&job.payload, &job.cx),
            }));
            let response = outcome.unwrap_or_else(|_| {
                eprintln!("error: the engine panicked; answering with an error");
                match job.kind {
                    RequestKind::Cbor => vec![0x7f],      // CTAP1_ERR_OTHER
                    RequestKind::Msg => vec![0x6f, 0x00], // SW_UNKNOWN
                }
            });
            let sent = {
                let mut s = lock(shared);
                let reports = s.hid.finish(job.cid, job.kind, &response);
                for report in &reports {
                    send(socket, report, job.peer);
                }
                s.inflight = None;
                !reports.is_empty()
            };
            if log {
                eprintln!("{}", log_line(&job, &response, started.elapsed(), sent));
            }
        }
    }
}

/// One line per request: command byte, status, time. Never payload bytes.
fn log_line(job: &Job, response: &[u8], elapsed: Duration, sent: bool) -> String {
    let ms = elapsed.as_millis();
    let tail = if sent { "" } else { " (abandoned by the host)" };
    match job.kind {
        RequestKind::Cbor => {
            let cmd = job.payload.first().copied().unwrap_or(0);
            let status = response.first().copied().unwrap_or(0);
            format!("ctap2 cmd 0x{cmd:02x} -> status 0x{status:02x} in {ms} ms{tail}")
        }
        RequestKind::Msg => {
            let ins = job.payload.get(1).copied().unwrap_or(0);
            let sw = match response {
                [.., a, b] => u16::from_be_bytes([*a, *b]),
                _ => 0,
            };
            format!("u2f ins 0x{ins:02x} -> sw {sw:04x} in {ms} ms{tail}")
        }
    }
}

#[cfg(test)]
mod tests;
