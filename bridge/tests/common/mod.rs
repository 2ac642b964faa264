//! Test helpers: a pairing-relay stand-in that follows `docs/pairing-protocol.md` §3 (attach:
//! CHALLENGE, then the ATTACH checked with the core's `verify_attach`, close 4003 otherwise; PEER, DATA routing, WAKE → "no push target",
//! DELETE → ACK + close 4010 + tombstone 410; and faults: lost frames, dead sockets, injected
//! frames, a revocation nobody asked for); and, in submodules, a minimal CTAPHID-over-UDP
//! client, the bridge as a process, and a phone in this process.
#![allow(
    dead_code,
    clippy::type_complexity,
    clippy::result_large_err,
    clippy::explicit_counter_loop
)]

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use pocketkey_core::pairing::mailbox::{parse_path, verify_attach, SUBPROTOCOL};
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::{MailboxId, Role};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
use tungstenite::Message;

pub mod bridge;
pub mod hid;
pub mod phone;

enum Out {
    Frame(Vec<u8>),
    /// A frame the relay makes up; the sender hears when it is written.
    Injected(Vec<u8>, Sender<()>),
    Close(u16),
}

#[derive(Default)]
struct State {
    mailboxes: HashMap<MailboxId, [Option<(u64, Sender<Out>)>; 2]>,
    tombstones: HashSet<MailboxId>,
    next: u64,
    /// Every DATA payload routed (for "no plaintext" checks).
    seen: Vec<Vec<u8>>,
    /// A fault: each phone connection routes at most this many DATA frames and drops the rest.
    phone_data_limit: Option<usize>,
    /// Every DATA payload the phone sent (for replays).
    from_phone: Vec<Vec<u8>>,
}

fn slot(role: Role) -> usize {
    match role {
        Role::Bridge => 0,
        Role::Phone => 1,
    }
}

pub struct StandInRelay {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Drop for StandInRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl StandInRelay {
    pub fn start() -> Self {
        Self::start_at("127.0.0.1:0".parse().unwrap())
    }

    /// A stand-in listening on `addr` (the address of one stopped before, to bring "the relay"
    /// back where the pairings point).
    pub fn start_at(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            listener.set_nonblocking(true).unwrap();
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((tcp, _)) => {
                            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
                            thread::spawn(move || connection(tcp, state, stop));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Self { url, state, stop }
    }

    /// How many mailboxes were deleted here (DELETE, or [`claim_revoked`](Self::claim_revoked)).
    pub fn tombstones(&self) -> usize {
        self.state.lock().unwrap().tombstones.len()
    }

    pub fn seen(&self) -> Vec<Vec<u8>> {
        self.state.lock().unwrap().seen.clone()
    }

    /// A fault: from now on every phone connection routes only its first `limit` DATA frames
    /// (counted from its attach) and silently drops the rest; `None` routes all.
    pub fn limit_phone_data(&self, limit: Option<usize>) {
        self.state.lock().unwrap().phone_data_limit = limit;
    }

    /// Every DATA payload a phone sent so far, in order.
    pub fn sent_by_phone(&self) -> Vec<Vec<u8>> {
        self.state.lock().unwrap().from_phone.clone()
    }

    /// A fault: closes the attached connection of `role` (as a dying socket would).
    pub fn close(&self, role: Role) {
        let s = self.state.lock().unwrap();
        for entry in s.mailboxes.values() {
            if let Some((_, tx)) = &entry[slot(role)] {
                let _ = tx.send(Out::Close(1001));
            }
        }
    }

    /// A lying relay: says every mailbox with a connection was revoked (tombstone, so later
    /// attaches get 410, and close 4010 to both sides) although nobody sent DELETE. Returns
    /// how many mailboxes it did this to.
    pub fn claim_revoked(&self) -> usize {
        let mut s = self.state.lock().unwrap();
        let ids: Vec<MailboxId> = s
            .mailboxes
            .iter()
            .filter(|(_, entry)| entry.iter().any(Option::is_some))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            s.tombstones.insert(*id);
            if let Some(entry) = s.mailboxes.remove(id) {
                for (_, t) in entry.into_iter().flatten() {
                    let _ = t.send(Out::Close(4010));
                }
            }
        }
        ids.len()
    }

    /// Sends `frame` to every attached connection of `role`, as a relay that makes frames up
    /// would; returns once each is written to its socket.
    pub fn inject(&self, role: Role, frame: &RelayFrame) {
        let (done, written) = mpsc::channel();
        let mut count = 0;
        for entry in self.state.lock().unwrap().mailboxes.values() {
            if let Some((_, tx)) = &entry[slot(role)] {
                if tx.send(Out::Injected(frame.encode(), done.clone())).is_ok() {
                    count += 1;
                }
            }
        }
        assert!(count > 0, "nobody of that role is attached");
        for _ in 0..count {
            written.recv_timeout(Duration::from_secs(10)).unwrap();
        }
    }
}

fn connection(tcp: std::net::TcpStream, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    tcp.set_nonblocking(false).unwrap();
    let mut attached: Option<MailboxId> = None;
    let callback = |request: &Request, mut response: Response| {
        let refuse = |code: u16| {
            let mut r = ErrorResponse::new(None);
            *r.status_mut() = StatusCode::from_u16(code).unwrap();
            Err(r)
        };
        match parse_path(request.uri().path()) {
            Ok(id) => {
                if state.lock().unwrap().tombstones.contains(&id) {
                    return refuse(410);
                }
                attached = Some(id);
                response.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_static(SUBPROTOCOL),
                );
                Ok(response)
            }
            Err(_) => refuse(400),
        }
    };
    let Ok(mut ws) = tungstenite::accept_hdr(tcp, callback) else {
        return;
    };
    let Some(id) = attached else { return };
    // The challenge: nothing but a valid ATTACH first (docs/pairing-protocol.md §3.1).
    let nonce: [u8; 32] = std::array::from_fn(|i| (i as u8) ^ (id.0[i % 16]) ^ 0x5a);
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if ws
        .send(Message::Binary(
            RelayFrame::Challenge(nonce).encode().into(),
        ))
        .is_err()
    {
        return;
    }
    let role = match ws.read() {
        Ok(Message::Binary(bytes)) => match RelayFrame::decode(&bytes) {
            Ok(RelayFrame::Attach(proof)) => verify_attach(id, &nonce, &proof).ok(),
            _ => None,
        },
        _ => None,
    };
    let Some(role) = role else {
        let _ = ws.close(Some(CloseFrame {
            code: CloseCode::from(4003),
            reason: "".into(),
        }));
        let _ = ws.flush();
        return;
    };
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let (tx, rx): (Sender<Out>, Receiver<Out>) = mpsc::channel();
    let me;
    {
        let mut s = state.lock().unwrap();
        s.next += 1;
        me = s.next;
        let entry = s.mailboxes.entry(id).or_default();
        if let Some((_, old)) = entry[slot(role)].replace((me, tx.clone())) {
            let _ = old.send(Out::Close(4001));
        }
        let peer_present = entry[slot(role.other())].is_some();
        let _ = tx.send(Out::Frame(
            RelayFrame::Peer {
                present: peer_present,
            }
            .encode(),
        ));
        if let Some((_, peer)) = &entry[slot(role.other())] {
            let _ = peer.send(Out::Frame(RelayFrame::Peer { present: true }.encode()));
        }
    }
    let peer_tx = |s: &State| -> Option<Sender<Out>> {
        s.mailboxes
            .get(&id)
            .and_then(|e| e[slot(role.other())].as_ref().map(|(_, t)| t.clone()))
    };
    let mut data_frames = 0;
    'outer: while !stop.load(Ordering::SeqCst) {
        match ws.read() {
            Ok(Message::Binary(bytes)) => {
                let mut s = state.lock().unwrap();
                match RelayFrame::decode(&bytes) {
                    Ok(RelayFrame::Data(payload)) => {
                        data_frames += 1;
                        if role == Role::Phone
                            && s.phone_data_limit.is_some_and(|limit| data_frames > limit)
                        {
                            continue;
                        }
                        s.seen.push(payload.clone());
                        if role == Role::Phone {
                            s.from_phone.push(payload.clone());
                        }
                        match peer_tx(&s) {
                            Some(peer) => {
                                let _ = peer.send(Out::Frame(RelayFrame::Data(payload).encode()));
                            }
                            None => {
                                let _ = tx.send(Out::Frame(
                                    RelayFrame::Error {
                                        code: 6,
                                        message: "peer_absent".into(),
                                    }
                                    .encode(),
                                ));
                            }
                        }
                    }
                    Ok(RelayFrame::Wake) => {
                        let result = if peer_tx(&s).is_some() { 0 } else { 2 };
                        let _ = tx.send(Out::Frame(vec![0x82, result]));
                    }
                    Ok(RelayFrame::Delete) => {
                        let _ = tx.send(Out::Frame(RelayFrame::Ack(0x05).encode()));
                        s.tombstones.insert(id);
                        if let Some(entry) = s.mailboxes.remove(&id) {
                            for (_, t) in entry.into_iter().flatten() {
                                let _ = t.send(Out::Close(4010));
                            }
                        }
                    }
                    Ok(other) => {
                        let _ = tx.send(Out::Frame(RelayFrame::Ack(other.frame_type()).encode()));
                    }
                    Err(_) => {}
                }
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        while let Ok(out) = rx.try_recv() {
            match out {
                Out::Frame(f) => {
                    if ws.send(Message::Binary(f.into())).is_err() {
                        break 'outer;
                    }
                }
                Out::Injected(f, done) => {
                    if ws.send(Message::Binary(f.into())).is_err() {
                        break 'outer;
                    }
                    let _ = done.send(());
                }
                Out::Close(code) => {
                    let _ = ws.close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: "".into(),
                    }));
                    let _ = ws.flush();
                    thread::sleep(Duration::from_millis(50));
                    break 'outer;
                }
            }
        }
    }
    let mut s = state.lock().unwrap();
    let mine = s
        .mailboxes
        .get(&id)
        .and_then(|e| e[slot(role)].as_ref())
        .is_some_and(|(n, _)| *n == me);
    if mine {
        let entry = s.mailboxes.get_mut(&id).unwrap();
        entry[slot(role)] = None;
        if let Some((_, peer)) = &entry[slot(role.other())] {
            let _ = peer.send(Out::Frame(RelayFrame::Peer { present: false }.encode()));
        }
    }
}
