//! The CTAPHID device loop shared by every desktop transport (UDP, uhid): reports in from a
//! [`Port`], CTAPHID via [`HidServer`], KEEPALIVE, CANCEL, busy answers, timeouts.
//!
//! Two threads: this one owns the port loop; the engine's [`Worker`] runs one request at a
//! time. The worker sends the engine's answer itself, under the same lock as the keepalives,
//! so an answer is never followed by a stray KEEPALIVE.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pocketkey_core::approver::Requester;
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::ctap::CtapError;
use pocketkey_core::engine::{Engine, RequestContext, RequestKind, Worker};
use pocketkey_core::hid::packet::report_cid;
use pocketkey_core::hid::{HidOutput, HidServer, KeepaliveStatus, MAX_CHANNELS};

use crate::engine::WaitingForUser;

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

/// Where reports come from and go to: a UDP socket, a uhid device.
pub trait Port: Send + Sync + 'static {
    /// Who wrote a report: a UDP address, or the one host of a HID device.
    type Peer: Copy + Eq + Hash + Send + fmt::Display + 'static;

    /// Waits up to `timeout` for the host. `Ok(None)` when nothing for the loop arrived
    /// (a timeout, or a device event the port handled itself).
    fn recv(&self, timeout: Duration) -> io::Result<Option<Incoming<Self::Peer>>>;

    /// Sends one 64-byte report. A lost report is the host's to retry, never ours to die of.
    fn send(&self, report: &[u8], to: Self::Peer);

    /// How approval prompts name the host, e.g. "this computer (UDP 127.0.0.1:5000)".
    fn requester(&self, peer: Self::Peer) -> String;
}

/// What a [`Port`] received.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<P> {
    /// One CTAPHID report.
    Report(Vec<u8>, P),
    /// "Unplug and plug in again": keep persistent state, drop volatile state.
    PowerCycle(P),
}

struct Inflight<P> {
    cid: u32,
    cancel: CancelToken,
    peer: P,
    last_keepalive: Instant,
}

struct Shared<P> {
    hid: HidServer,
    inflight: Option<Inflight<P>>,
    /// Where each channel's host last wrote from (for answers not triggered by a packet).
    peers: HashMap<u32, P>,
}

struct Job<P> {
    cid: u32,
    kind: RequestKind,
    payload: Vec<u8>,
    cx: RequestContext,
    peer: P,
}

fn lock<P>(shared: &Mutex<Shared<P>>) -> MutexGuard<'_, Shared<P>> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Serves `engine` on `port` until `stop` is raised (checked at least every 250 ms) or the
/// port fails.
pub fn serve<P: Port, E: Engine + 'static>(
    port: Arc<P>,
    engine: E,
    options: Options,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    let shared = Arc::new(Mutex::new(Shared {
        hid: HidServer::new(options.version),
        inflight: None,
        peers: HashMap::new(),
    }));
    let worker = Worker::spawn("pocketkey-engine", engine)?;

    let result = Loop {
        port: &port,
        shared: &shared,
        worker: &worker,
        options: &options,
    }
    .run(&stop);

    // Stop: end any wait for the user, let the worker finish, do not hang forever.
    if let Some(inflight) = &lock(&shared).inflight {
        inflight.cancel.cancel();
    }
    worker.stop(Duration::from_secs(2));
    result
}

struct Loop<'a, P: Port> {
    port: &'a Arc<P>,
    shared: &'a Arc<Mutex<Shared<P::Peer>>>,
    worker: &'a Worker<'static>,
    options: &'a Options,
}

impl<P: Port> Loop<'_, P> {
    fn run(&self, stop: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::SeqCst) {
            let wait = next_wakeup(&lock(self.shared), self.options, Instant::now());
            match self.port.recv(wait.max(Duration::from_millis(1)))? {
                Some(Incoming::Report(report, peer)) => self.on_report(&report, peer),
                Some(Incoming::PowerCycle(peer)) => {
                    if self.options.log {
                        eprintln!("power cycle requested by {peer}");
                    }
                    // Only while stopping is the worker gone, and then nothing is volatile.
                    let _ = self.worker.power_cycle();
                }
                None => {}
            }
            self.on_timers(Instant::now());
        }
        Ok(())
    }

    fn on_report(&self, data: &[u8], peer: P::Peer) {
        let now = Instant::now();
        let mut guard = lock(self.shared);
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
                        self.port.send(&report, to);
                    }
                }
                HidOutput::Request { cid, kind, payload } => {
                    let cancel = CancelToken::new();
                    let cx = RequestContext {
                        cancel: cancel.clone(),
                        requester: Requester(self.port.requester(peer)),
                    };
                    s.inflight = Some(Inflight {
                        cid,
                        cancel,
                        peer,
                        last_keepalive: now,
                    });
                    let job = Job {
                        cid,
                        kind,
                        payload,
                        cx,
                        peer,
                    };
                    if self.submit(job).is_err() {
                        // The worker is gone (only while stopping): answer rather than hang.
                        s.inflight = None;
                        let failure = kind.failure(CtapError::Other);
                        for report in s.hid.finish(cid, kind, &failure) {
                            self.port.send(&report, peer);
                        }
                    }
                }
                HidOutput::Cancel { cid } => {
                    if let Some(inflight) = s.inflight.as_ref().filter(|f| f.cid == cid) {
                        inflight.cancel.cancel();
                        if self.options.log {
                            eprintln!("cancel on channel {cid:08x}");
                        }
                    }
                }
                HidOutput::Wink { .. } => {
                    if self.options.log {
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

    /// Hands `job` to the worker, which sends the answer itself (see [`send_answer`]).
    fn submit(&self, job: Job<P::Peer>) -> Result<(), pocketkey_core::engine::WorkerGone> {
        let shared = Arc::clone(self.shared);
        let port = Arc::clone(self.port);
        let log = self.options.log;
        let started = Instant::now();
        let (payload, cx) = (job.payload.clone(), job.cx.clone());
        self.worker.submit(job.kind, payload, cx, move |response| {
            send_answer(&job, &response, &shared, &*port, log, started)
        })
    }

    fn on_timers(&self, now: Instant) {
        let mut guard = lock(self.shared);
        let s = &mut *guard;
        for output in s.hid.poll(now) {
            if let HidOutput::Send(report) = output {
                if let Some(to) = report_cid(&report).and_then(|cid| s.peers.get(&cid)) {
                    self.port.send(&report, *to);
                }
            }
        }
        let running = s.hid.pending_request().map(|(cid, _)| cid);
        if let Some(inflight) = s.inflight.as_mut().filter(|f| Some(f.cid) == running) {
            if now.duration_since(inflight.last_keepalive) >= self.options.keepalive_interval {
                let status = match &self.options.waiting_for_user {
                    Some(waiting) if !waiting.is_waiting() => KeepaliveStatus::Processing,
                    _ => KeepaliveStatus::UpNeeded,
                };
                self.port
                    .send(&s.hid.keepalive(inflight.cid, status), inflight.peer);
                inflight.last_keepalive = now;
            }
        }
    }
}

/// How long the port may sleep before a timer is due.
fn next_wakeup<P>(s: &Shared<P>, options: &Options, now: Instant) -> Duration {
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

/// Sends the engine's answer to `job` (on the worker's thread) and ends the request.
fn send_answer<P: Port>(
    job: &Job<P::Peer>,
    response: &[u8],
    shared: &Mutex<Shared<P::Peer>>,
    port: &P,
    log: bool,
    started: Instant,
) {
    let sent = {
        let mut s = lock(shared);
        let reports = s.hid.finish(job.cid, job.kind, response);
        for report in &reports {
            port.send(report, job.peer);
        }
        s.inflight = None;
        !reports.is_empty()
    };
    if log {
        eprintln!("{}", log_line(job, response, started.elapsed(), sent));
    }
}

/// One line per request: command byte, status, time. Never payload bytes.
fn log_line<P>(job: &Job<P>, response: &[u8], elapsed: Duration, sent: bool) -> String {
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
mod tests {
    use super::*;

    #[test]
    fn log_lines_show_no_payload() {
        let job = Job {
            cid: 1,
            kind: RequestKind::Cbor,
            payload: vec![0x01, 0xde, 0xad, 0xbe, 0xef],
            cx: RequestContext::default(),
            peer: (),
        };
        let line = log_line(&job, &[0x00, 0xca, 0xfe], Duration::from_millis(12), true);
        assert_eq!(line, "ctap2 cmd 0x01 -> status 0x00 in 12 ms");
        let job = Job {
            kind: RequestKind::Msg,
            payload: vec![0x00, 0x02, 0x03, 0x00, 0xaa],
            ..job
        };
        let line = log_line(&job, &[0xbb, 0x69, 0x85], Duration::from_millis(3), false);
        assert_eq!(
            line,
            "u2f ins 0x02 -> sw 6985 in 3 ms (abandoned by the host)"
        );
    }
}
