//! The CTAPHID channel state machine (CTAP 2.1 §11.2), sans-IO.
//!
//! The transport feeds every received report to [`HidServer::handle_packet`] together with the
//! current time, sends the [`HidOutput::Send`] reports it returns, hands
//! [`HidOutput::Request`]s to the engine, and gives the engine's answer back through
//! [`HidServer::finish`]. While a request runs the transport keeps feeding reports (INIT and
//! CANCEL still work; everything else gets CHANNEL_BUSY) and sends [`HidServer::keepalive`]
//! reports. [`HidServer::poll`] reports transaction timeouts when no packet arrives.
//!
//! Rules beyond the specification's letter, chosen for robustness:
//! - Continuation packets that belong to no message being assembled are ignored (they are the
//!   tail of a message already rejected with an error; answering each would queue stray error
//!   reports on that channel).
//! - CANCEL on a channel that is mid-message drops that message, silently.
//! - INIT on an allocated channel also releases that channel's LOCK and abandons its running
//!   request (a [`HidOutput::Cancel`] is emitted; its eventual answer is discarded).
//! - At most [`MAX_CHANNELS`] channels are kept; allocating past that forgets the least
//!   recently used idle one.
//! - INIT on a channel id this server never allocated (nor 0) is answered on that channel,
//!   which it then keeps, as INIT on an allocated channel is: a host whose key restarted
//!   retries INIT on its old channel. §11.2.9.1.3 says what INIT does on the broadcast and on
//!   an allocated channel and nothing about other ids; the reference keys (SoloKeys,
//!   YubiKey) answer it.
//! - Any other packet on an unknown channel is refused with INVALID_CHANNEL ("command not
//!   allowed on this cid", §11.2.9.1.6) while the device is idle, and with CHANNEL_BUSY
//!   while another channel holds it: §11.2.5.1 fails a request "from a different channel
//!   while the device is busy" with a busy error, whatever that channel is.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

use super::assembler::{Assembly, Message, Started};
use super::packet::{
    empty_report, error_report, fragment, init_response, keepalive_report, report_cid, Command,
    HidError, KeepaliveStatus, Packet, Report, BROADCAST_CID, RESERVED_CID,
};
pub use crate::engine::RequestKind;

/// Longest gap between two packets of one message before it is dropped with MSG_TIMEOUT.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest LOCK a channel may take, in seconds.
pub const MAX_LOCK_SECONDS: u8 = 10;
/// Channels remembered at once.
pub const MAX_CHANNELS: usize = 256;

/// Something the transport must do after feeding the server a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HidOutput {
    /// Send this report to the host.
    Send(Report),
    /// Hand this request to the engine; answer with [`HidServer::finish`].
    Request {
        cid: u32,
        kind: RequestKind,
        payload: Vec<u8>,
    },
    /// The host cancelled the request running on `cid` (CTAPHID_CANCEL or a resyncing INIT).
    Cancel { cid: u32 },
    /// The host asked the authenticator to identify itself (already answered).
    Wink { cid: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    cid: u32,
    kind: RequestKind,
    /// Resynced by INIT: the answer is dropped when it comes.
    abandoned: bool,
}

#[derive(Debug, Clone, Copy)]
struct Lock {
    cid: u32,
    until: Instant,
}

/// The CTAPHID server: channel allocation, reassembly, busy/lock rules, timeouts.
#[derive(Debug)]
pub struct HidServer {
    version: (u8, u8, u8),
    next_cid: u32,
    /// Allocated channels and when each was last used (a counter, for eviction).
    channels: HashMap<u32, u64>,
    tick: u64,
    assembly: Option<Assembly>,
    pending: Option<Pending>,
    lock: Option<Lock>,
    timeout: Duration,
}

impl HidServer {
    /// A server reporting device version `(major, minor, build)` in INIT responses. Channel
    /// ids are allocated sequentially from a random starting point.
    pub fn new(version: (u8, u8, u8)) -> Self {
        Self::with_first_cid(version, OsRng.next_u32())
    }

    /// Like [`HidServer::new`] but allocating channel ids from `first` on (tests, fuzzing).
    pub fn with_first_cid(version: (u8, u8, u8), first: u32) -> Self {
        HidServer {
            version,
            next_cid: first,
            channels: HashMap::new(),
            tick: 0,
            assembly: None,
            pending: None,
            lock: None,
            timeout: TRANSACTION_TIMEOUT,
        }
    }

    /// Changes the transaction timeout (default [`TRANSACTION_TIMEOUT`]).
    pub fn set_transaction_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Processes one received report. Never panics, whatever the bytes.
    pub fn handle_packet(&mut self, report: &[u8], now: Instant) -> Vec<HidOutput> {
        let mut out = self.poll(now);
        match Packet::parse(report) {
            Ok(Packet::Init {
                cid,
                cmd,
                bcnt,
                data,
            }) => self.on_init_packet(cid, cmd, bcnt, data, now, &mut out),
            Ok(Packet::Cont { cid, seq, data }) => {
                self.on_cont_packet(cid, seq, data, now, &mut out)
            }
            Err(_) => {
                // Not a report; answer only a channel that exists, and change no state.
                if let Some(cid) = report_cid(report) {
                    if cid == BROADCAST_CID || self.channels.contains_key(&cid) {
                        out.push(send_error(cid, HidError::InvalidLen));
                    }
                }
            }
        }
        out
    }

    /// Expires a stalled message (MSG_TIMEOUT) and an expired lock. Call when
    /// [`HidServer::next_deadline`] passes without a packet; `handle_packet` calls it too.
    pub fn poll(&mut self, now: Instant) -> Vec<HidOutput> {
        let mut out = Vec::new();
        if let Some(assembly) = &self.assembly {
            if now >= assembly.deadline(self.timeout) {
                out.push(send_error(assembly.cid(), HidError::MsgTimeout));
                self.assembly = None;
            }
        }
        if let Some(lock) = self.lock {
            if now >= lock.until {
                self.lock = None;
            }
        }
        out
    }

    /// The next instant at which [`HidServer::poll`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let assembly = self.assembly.as_ref().map(|a| a.deadline(self.timeout));
        let lock = self.lock.map(|l| l.until);
        match (assembly, lock) {
            (Some(a), Some(l)) => Some(a.min(l)),
            (a, l) => a.or(l),
        }
    }

    /// The engine answered the request on `cid`: returns the reports to send (none if the
    /// request was abandoned or is unknown) and marks the channel idle. A response too long
    /// for CTAPHID is answered with ERR_OTHER.
    pub fn finish(&mut self, cid: u32, kind: RequestKind, response: &[u8]) -> Vec<Report> {
        match self.pending {
            Some(p) if p.cid == cid && p.kind == kind => {
                self.pending = None;
                if p.abandoned {
                    return Vec::new();
                }
                fragment(cid, kind.command().into(), response)
                    .unwrap_or_else(|_| vec![error_report(cid, HidError::Other)])
            }
            _ => Vec::new(),
        }
    }

    /// A KEEPALIVE report for `cid`.
    pub fn keepalive(&self, cid: u32, status: KeepaliveStatus) -> Report {
        keepalive_report(cid, status)
    }

    /// The request the engine is working on and has not been abandoned, if any.
    pub fn pending_request(&self) -> Option<(u32, RequestKind)> {
        self.pending
            .filter(|p| !p.abandoned)
            .map(|p| (p.cid, p.kind))
    }

    /// Whether the engine holds a request (abandoned or not).
    pub fn is_busy(&self) -> bool {
        self.pending.is_some()
    }

    pub fn is_allocated(&self, cid: u32) -> bool {
        self.channels.contains_key(&cid)
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    fn on_init_packet(
        &mut self,
        cid: u32,
        cmd: u8,
        bcnt: u16,
        data: &[u8],
        now: Instant,
        out: &mut Vec<HidOutput>,
    ) {
        if cid == RESERVED_CID {
            out.push(send_error(cid, HidError::InvalidChannel));
            return;
        }
        let command = Command::from_u8(cmd);
        if command == Some(Command::Init) {
            self.on_init_command(cid, bcnt, data, out);
            return;
        }
        if cid == BROADCAST_CID {
            out.push(send_error(cid, HidError::InvalidChannel));
            return;
        }
        if !self.channels.contains_key(&cid) {
            let error = if self.is_held() {
                HidError::ChannelBusy
            } else {
                HidError::InvalidChannel
            };
            out.push(send_error(cid, error));
            return;
        }
        self.touch(cid);

        if command == Some(Command::Cancel) {
            if self.assembly.as_ref().is_some_and(|a| a.cid() == cid) {
                self.assembly = None;
            }
            if self.pending.is_some_and(|p| p.cid == cid && !p.abandoned) {
                out.push(HidOutput::Cancel { cid });
            }
            return;
        }

        if let Some(assembly) = &self.assembly {
            if assembly.cid() == cid {
                // A new message before the previous one was complete.
                self.assembly = None;
                out.push(send_error(cid, HidError::InvalidSeq));
            } else {
                out.push(send_error(cid, HidError::ChannelBusy));
            }
            return;
        }
        if self.pending.is_some() || self.lock.is_some_and(|l| l.cid != cid) {
            out.push(send_error(cid, HidError::ChannelBusy));
            return;
        }
        if !matches!(
            command,
            Some(Command::Ping | Command::Msg | Command::Lock | Command::Wink | Command::Cbor)
        ) {
            out.push(send_error(cid, HidError::InvalidCmd));
            return;
        }
        match Assembly::start(cid, cmd, bcnt, data, now) {
            Err(error) => out.push(send_error(cid, error)),
            Ok(Started::Complete(message)) => self.dispatch(message, now, out),
            Ok(Started::InProgress(assembly)) => self.assembly = Some(assembly),
        }
    }

    fn on_init_command(&mut self, cid: u32, bcnt: u16, data: &[u8], out: &mut Vec<HidOutput>) {
        let nonce: Option<&[u8; 8]> = data.get(..8).and_then(|n| n.try_into().ok());
        let (8, Some(nonce)) = (bcnt, nonce) else {
            out.push(send_error(cid, HidError::InvalidLen));
            return;
        };
        let new_cid = if cid == BROADCAST_CID {
            self.allocate()
        } else if self.channels.contains_key(&cid) {
            self.resync(cid, out);
            self.touch(cid);
            cid
        } else {
            // A channel of an earlier run (see the module documentation): kept from now on.
            self.make_room();
            self.tick += 1;
            self.channels.insert(cid, self.tick);
            cid
        };
        out.push(HidOutput::Send(init_response(
            cid,
            nonce,
            new_cid,
            self.version,
        )));
    }

    fn on_cont_packet(
        &mut self,
        cid: u32,
        seq: u8,
        data: &[u8],
        now: Instant,
        out: &mut Vec<HidOutput>,
    ) {
        let Some(assembly) = self.assembly.as_mut().filter(|a| a.cid() == cid) else {
            // Stray continuation: see the module documentation.
            return;
        };
        match assembly.push(seq, data, now) {
            Err(error) => {
                self.assembly = None;
                out.push(send_error(cid, error));
            }
            Ok(Some(message)) => {
                self.assembly = None;
                self.touch(cid);
                self.dispatch(message, now, out);
            }
            Ok(None) => {}
        }
    }

    fn dispatch(&mut self, message: Message, now: Instant, out: &mut Vec<HidOutput>) {
        let Message { cid, cmd, payload } = message;
        match Command::from_u8(cmd) {
            Some(Command::Ping) => match fragment(cid, Command::Ping.into(), &payload) {
                Ok(reports) => out.extend(reports.into_iter().map(HidOutput::Send)),
                Err(_) => out.push(send_error(cid, HidError::InvalidLen)),
            },
            Some(Command::Wink) => {
                if payload.is_empty() {
                    out.push(HidOutput::Send(empty_report(cid, Command::Wink)));
                    out.push(HidOutput::Wink { cid });
                } else {
                    out.push(send_error(cid, HidError::InvalidLen));
                }
            }
            Some(Command::Lock) => match payload.as_slice() {
                [seconds] if *seconds <= MAX_LOCK_SECONDS => {
                    self.lock = (*seconds > 0).then(|| Lock {
                        cid,
                        until: now + Duration::from_secs(u64::from(*seconds)),
                    });
                    out.push(HidOutput::Send(empty_report(cid, Command::Lock)));
                }
                [_] => out.push(send_error(cid, HidError::InvalidPar)),
                _ => out.push(send_error(cid, HidError::InvalidLen)),
            },
            Some(Command::Cbor) if payload.is_empty() => {
                out.push(send_error(cid, HidError::InvalidLen))
            }
            Some(command @ (Command::Cbor | Command::Msg)) => {
                let kind = if command == Command::Cbor {
                    RequestKind::Cbor
                } else {
                    RequestKind::Msg
                };
                self.pending = Some(Pending {
                    cid,
                    kind,
                    abandoned: false,
                });
                out.push(HidOutput::Request { cid, kind, payload });
            }
            _ => out.push(send_error(cid, HidError::InvalidCmd)),
        }
    }

    /// INIT on an allocated channel: forget its message, lock and running request.
    fn resync(&mut self, cid: u32, out: &mut Vec<HidOutput>) {
        if self.assembly.as_ref().is_some_and(|a| a.cid() == cid) {
            self.assembly = None;
        }
        if self.lock.is_some_and(|l| l.cid == cid) {
            self.lock = None;
        }
        if let Some(pending) = self
            .pending
            .as_mut()
            .filter(|p| p.cid == cid && !p.abandoned)
        {
            pending.abandoned = true;
            out.push(HidOutput::Cancel { cid });
        }
    }

    fn touch(&mut self, cid: u32) {
        self.tick += 1;
        if let Some(last_used) = self.channels.get_mut(&cid) {
            *last_used = self.tick;
        }
    }

    /// Whether a transaction holds the device: a request the engine works on, a message
    /// being assembled, or a LOCK.
    fn is_held(&self) -> bool {
        self.pending.is_some() || self.assembly.is_some() || self.lock.is_some()
    }

    fn allocate(&mut self) -> u32 {
        self.make_room();
        loop {
            let cid = self.next_cid;
            self.next_cid = self.next_cid.wrapping_add(1);
            if cid != RESERVED_CID && cid != BROADCAST_CID && !self.channels.contains_key(&cid) {
                self.tick += 1;
                self.channels.insert(cid, self.tick);
                return cid;
            }
        }
    }

    /// Forgets the least recently used idle channel when [`MAX_CHANNELS`] are kept.
    fn make_room(&mut self) {
        if self.channels.len() >= MAX_CHANNELS {
            let in_use = [
                self.pending.map(|p| p.cid),
                self.assembly.as_ref().map(|a| a.cid()),
                self.lock.map(|l| l.cid),
            ];
            let victim = self
                .channels
                .iter()
                .filter(|(cid, _)| !in_use.contains(&Some(**cid)))
                .min_by_key(|(_, last_used)| **last_used)
                .map(|(cid, _)| *cid);
            if let Some(victim) = victim {
                self.channels.remove(&victim);
            }
        }
    }
}

fn send_error(cid: u32, error: HidError) -> HidOutput {
    HidOutput::Send(error_report(cid, error))
}
