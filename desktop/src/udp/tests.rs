//! The UDP runtime over a real socket on 127.0.0.1, with a scripted engine.

use std::net::UdpSocket;
use std::sync::atomic::AtomicUsize;

use pocketkey_core::hid::{
    fragment, Assembly, Command, HidError, KeepaliveStatus, Packet, Report, Started, BROADCAST_CID,
};

use std::sync::atomic::Ordering;
use std::thread;
use std::time::Instant;

use pocketkey_core::approver::Requester;
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::hid::packet::report_cid;

use super::*;
use crate::engine::WaitingForUser;
use pocketkey_core::engine::{Engine, RequestContext, RequestKind};

/// First payload byte selects the behaviour: 0xAA slow (400 ms), 0xCC wait for cancel,
/// 0xEE panic, 0x5A wait for the user (raises the flag) for 300 ms; anything else echoes.
struct ScriptEngine {
    power_cycles: Arc<AtomicUsize>,
    waiting: WaitingForUser,
}

impl Engine for ScriptEngine {
    fn process(&self, kind: RequestKind, request: &[u8], cx: &RequestContext) -> Vec<u8> {
        if kind == RequestKind::Msg {
            let mut out = request.to_vec();
            out.extend_from_slice(&[0x90, 0x00]);
            return out;
        }
        match request.first() {
            Some(0xaa) => thread::sleep(Duration::from_millis(400)),
            Some(0xcc) => {
                let start = Instant::now();
                while !cx.cancel.is_cancelled() && start.elapsed() < Duration::from_secs(5) {
                    thread::sleep(Duration::from_millis(5));
                }
                return vec![0x2d];
            }
            Some(0xee) => panic!("scripted panic"),
            Some(0x5a) => {
                // What SignallingApprover does around a real approver.
                let mut approver = crate::engine::SignallingApprover::new(
                    Box::new(SlowApprover),
                    self.waiting.clone(),
                );
                let _ = pocketkey_core::approver::Approver::approve(
                    &mut approver,
                    &dummy_request(),
                    &cx.cancel,
                );
                thread::sleep(Duration::from_millis(300));
            }
            _ => {}
        }
        assert!(cx.requester.0.contains("UDP 127.0.0.1:"));
        let mut out = vec![0x00];
        out.extend_from_slice(request);
        out
    }
    fn power_cycle(&self) {
        self.power_cycles.fetch_add(1, Ordering::SeqCst);
    }
}

struct SlowApprover;
impl pocketkey_core::approver::Approver for SlowApprover {
    fn can_verify_user(&self) -> bool {
        true
    }
    fn uv_binding(&self) -> pocketkey_core::approver::UvBinding {
        pocketkey_core::approver::UvBinding::Software { reason: "a test" }
    }
    fn approve(
        &mut self,
        _: &pocketkey_core::approver::ApprovalRequest,
        _: &CancelToken,
    ) -> pocketkey_core::approver::ApprovalOutcome {
        thread::sleep(Duration::from_millis(300));
        pocketkey_core::approver::ApprovalOutcome::Verified {
            account: None,
            proof: None,
        }
    }
}

fn dummy_request() -> pocketkey_core::approver::ApprovalRequest {
    pocketkey_core::approver::ApprovalRequest {
        operation: pocketkey_core::approver::Operation::Select,
        rp_id: None,
        rp_name: None,
        user_name: None,
        user_display_name: None,
        requester: Requester::default(),
        accounts: vec![],
        verification_required: false,
        timeout: Duration::from_secs(5),
        uv_challenge: pocketkey_core::approver::UvChallenge::new(
            pocketkey_core::approver::Operation::Select,
            None,
        ),
    }
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    power_cycles: Arc<AtomicUsize>,
    handle: Option<thread::JoinHandle<io::Result<()>>>,
}

impl Server {
    fn start(with_flag: bool) -> Self {
        Self::start_on("127.0.0.1:0", with_flag, false)
    }

    /// On `bind`, with the waiting-for-user flag or not, honouring power cycles or not.
    fn start_on(bind: &str, with_flag: bool, allow_power_cycle: bool) -> Self {
        let transport = UdpTransport::bind(bind.parse().unwrap())
            .unwrap()
            .allow_power_cycle(allow_power_cycle);
        let addr = transport.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let power_cycles = Arc::new(AtomicUsize::new(0));
        let waiting = WaitingForUser::new();
        let engine = ScriptEngine {
            power_cycles: power_cycles.clone(),
            waiting: waiting.clone(),
        };
        let options = Options {
            waiting_for_user: with_flag.then_some(waiting),
            ..Options::default()
        };
        let s = stop.clone();
        let handle = thread::spawn(move || transport.run(engine, options, s));
        Server {
            addr,
            stop,
            power_cycles,
            handle: Some(handle),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            handle.join().unwrap().unwrap();
        }
    }
}

struct Client {
    socket: UdpSocket,
}

/// What came back for one request.
struct Reply {
    cmd: u8,
    payload: Vec<u8>,
    keepalives: Vec<(Instant, u8)>,
}

impl Client {
    fn new(server: &Server) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(server.addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        Client { socket }
    }

    fn send(&self, cid: u32, cmd: Command, payload: &[u8]) {
        for report in fragment(cid, cmd.into(), payload).unwrap() {
            self.socket.send(&report).unwrap();
        }
    }

    fn recv(&self) -> Report {
        let mut buf = [0u8; 100];
        let n = self.socket.recv(&mut buf).expect("a reply within 3 s");
        assert_eq!(n, 64);
        buf[..64].try_into().unwrap()
    }

    fn read_message(&self, cid: u32) -> Reply {
        let mut keepalives = Vec::new();
        let mut assembly = None;
        loop {
            let report = self.recv();
            let now = Instant::now();
            match Packet::parse(&report).unwrap() {
                Packet::Init {
                    cid: c,
                    cmd,
                    bcnt,
                    data,
                } => {
                    assert_eq!(c, cid);
                    if cmd == Command::Keepalive as u8 {
                        keepalives.push((now, data[0]));
                        continue;
                    }
                    match Assembly::start(c, cmd, bcnt, data, now).unwrap() {
                        Started::Complete(m) => {
                            return Reply {
                                cmd: m.cmd,
                                payload: m.payload,
                                keepalives,
                            }
                        }
                        Started::InProgress(a) => assembly = Some(a),
                    }
                }
                Packet::Cont { seq, data, .. } => {
                    if let Some(m) = assembly.as_mut().unwrap().push(seq, data, now).unwrap() {
                        return Reply {
                            cmd: m.cmd,
                            payload: m.payload,
                            keepalives,
                        };
                    }
                }
            }
        }
    }

    fn init(&self) -> u32 {
        let nonce = [9u8; 8];
        self.send(BROADCAST_CID, Command::Init, &nonce);
        let reply = self.read_message(BROADCAST_CID);
        assert_eq!(reply.cmd, Command::Init as u8);
        assert_eq!(&reply.payload[..8], &nonce);
        u32::from_be_bytes(reply.payload[8..12].try_into().unwrap())
    }

    fn expect_error(&self, cid: u32, error: HidError) {
        let reply = self.read_message(cid);
        assert_eq!(
            (reply.cmd, reply.payload),
            (Command::Error as u8, vec![error as u8])
        );
    }
}

#[test]
fn power_cycle_magic_matches_design() {
    assert_eq!(&POWER_CYCLE_MAGIC[..4], &[0xac, 0x10, 0x52, 0xca]);
    assert_eq!(&POWER_CYCLE_MAGIC[60..], &[0x9a, 0x72, 0x50, 0xdc]);
}

#[test]
fn cbor_msg_and_ping_round_trip() {
    let server = Server::start(true);
    let client = Client::new(&server);
    let cid = client.init();
    let big: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8 + 1).collect();
    client.send(cid, Command::Cbor, &big);
    let reply = client.read_message(cid);
    assert_eq!(reply.cmd, Command::Cbor as u8);
    assert_eq!(reply.payload[0], 0);
    assert_eq!(&reply.payload[1..], &big[..]);
    client.send(cid, Command::Msg, &[0x00, 0x03, 0x00, 0x00]);
    let reply = client.read_message(cid);
    assert_eq!(
        (reply.cmd, reply.payload),
        (Command::Msg as u8, vec![0, 3, 0, 0, 0x90, 0])
    );
    client.send(cid, Command::Ping, &big);
    assert_eq!(client.read_message(cid).payload, big);
}

#[test]
fn keepalive_upneeded_while_a_request_runs() {
    let server = Server::start(false);
    let client = Client::new(&server);
    let cid = client.init();
    let sent = Instant::now();
    client.send(cid, Command::Cbor, &[0xaa]);
    let reply = client.read_message(cid);
    assert_eq!(reply.payload, vec![0x00, 0xaa]);
    assert!(
        reply.keepalives.len() >= 3,
        "{} keepalives",
        reply.keepalives.len()
    );
    assert!(reply
        .keepalives
        .iter()
        .all(|(_, status)| *status == KeepaliveStatus::UpNeeded as u8));
    let mut times = vec![sent];
    times.extend(reply.keepalives.iter().map(|(t, _)| *t));
    let mut gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    // At most every 100 ms per CTAP; generous ceiling for a loaded 2-core machine.
    assert!(
        gaps[gaps.len() / 2] <= Duration::from_millis(100),
        "gaps {gaps:?}"
    );
    assert!(
        *gaps.last().unwrap() <= Duration::from_millis(300),
        "gaps {gaps:?}"
    );
}

#[test]
fn keepalive_says_processing_unless_waiting_for_the_user() {
    let server = Server::start(true);
    let client = Client::new(&server);
    let cid = client.init();
    client.send(cid, Command::Cbor, &[0xaa]);
    let reply = client.read_message(cid);
    assert!(!reply.keepalives.is_empty());
    assert!(reply
        .keepalives
        .iter()
        .all(|(_, s)| *s == KeepaliveStatus::Processing as u8));

    client.send(cid, Command::Cbor, &[0x5a]);
    let reply = client.read_message(cid);
    let statuses: Vec<u8> = reply.keepalives.iter().map(|(_, s)| *s).collect();
    assert!(
        statuses.contains(&(KeepaliveStatus::UpNeeded as u8)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&(KeepaliveStatus::Processing as u8)),
        "{statuses:?}"
    );
    // UPNEEDED (approver) comes before PROCESSING (after it).
    let first_processing = statuses.iter().position(|s| *s == 1).unwrap();
    assert!(statuses[..first_processing].iter().all(|s| *s == 2));
}

#[test]
fn cancel_ends_the_request() {
    let server = Server::start(false);
    let client = Client::new(&server);
    let cid = client.init();
    client.send(cid, Command::Cbor, &[0xcc]);
    thread::sleep(Duration::from_millis(150));
    let cancelled_at = Instant::now();
    client.send(cid, Command::Cancel, &[]);
    let reply = client.read_message(cid);
    assert_eq!(reply.payload, vec![0x2d]);
    assert!(cancelled_at.elapsed() < Duration::from_millis(1000));
    // The channel is usable again.
    client.send(cid, Command::Ping, b"after");
    assert_eq!(client.read_message(cid).payload, b"after");
}

#[test]
fn other_channels_are_busy_but_init_works_while_a_request_runs() {
    let server = Server::start(false);
    let a = Client::new(&server);
    let b = Client::new(&server);
    let cid_a = a.init();
    let cid_b = b.init();
    a.send(cid_a, Command::Cbor, &[0xaa]);
    thread::sleep(Duration::from_millis(50));
    b.send(cid_b, Command::Ping, b"hello");
    b.expect_error(cid_b, HidError::ChannelBusy);
    let cid_c = b.init();
    assert_ne!(cid_c, cid_b);
    b.send(cid_c, Command::Cbor, &[0x04]);
    b.expect_error(cid_c, HidError::ChannelBusy);
    assert_eq!(a.read_message(cid_a).payload, vec![0x00, 0xaa]);
    b.send(cid_b, Command::Ping, b"hello");
    assert_eq!(b.read_message(cid_b).payload, b"hello");
}

#[test]
fn power_cycle_keeps_channels() {
    let server = Server::start_on("127.0.0.1:0", false, true);
    let client = Client::new(&server);
    let cid = client.init();
    client.socket.send(&POWER_CYCLE_MAGIC).unwrap();
    let start = Instant::now();
    while server.power_cycles.load(Ordering::SeqCst) == 0
        && start.elapsed() < Duration::from_secs(3)
    {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.power_cycles.load(Ordering::SeqCst), 1);
    client.send(cid, Command::Ping, b"still here");
    assert_eq!(client.read_message(cid).payload, b"still here");
}

/// The magic datagram as the CTAPHID server sees it: an INIT packet on a channel nobody
/// allocated, answered like any such packet. Datagrams are handled in order, so once the
/// answer to the magic datagram is in, a power cycle would have been handed to the engine.
fn send_magic_and_expect_an_ordinary_answer(client: &Client) {
    client.socket.send(&POWER_CYCLE_MAGIC).unwrap();
    let magic_cid = u32::from_be_bytes(POWER_CYCLE_MAGIC[..4].try_into().unwrap());
    let reply = client.recv();
    assert_eq!(report_cid(&reply), Some(magic_cid), "{reply:02x?}");
}

#[test]
fn power_cycle_is_an_ordinary_report_unless_allowed() {
    let server = Server::start(false);
    let client = Client::new(&server);
    let cid = client.init();
    send_magic_and_expect_an_ordinary_answer(&client);
    client.send(cid, Command::Ping, b"after");
    assert_eq!(client.read_message(cid).payload, b"after");
    assert_eq!(server.power_cycles.load(Ordering::SeqCst), 0);
}

#[test]
fn power_cycle_from_a_non_loopback_sender_is_refused_even_when_allowed() {
    let transport = UdpTransport::bind("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .allow_power_cycle(true);
    let lan: SocketAddr = "192.0.2.7:5000".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:192.0.2.7]:5000".parse().unwrap();
    for peer in [lan, mapped] {
        assert_eq!(
            transport.incoming(&POWER_CYCLE_MAGIC, peer),
            Incoming::Report(POWER_CYCLE_MAGIC.to_vec(), peer)
        );
    }
    for peer in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
        let peer: SocketAddr = peer.parse().unwrap();
        assert_eq!(
            transport.incoming(&POWER_CYCLE_MAGIC, peer),
            Incoming::PowerCycle(peer)
        );
    }
}

/// The same over real sockets, from this machine's first non-loopback IPv4 address (the
/// address a route to a documentation network leaves from; none: the test says so and stops).
#[test]
fn power_cycle_over_the_network_is_refused_even_when_allowed() {
    let probe = UdpSocket::bind("0.0.0.0:0").unwrap();
    let lan = probe
        .connect("203.0.113.1:9")
        .and_then(|()| probe.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    let Some(lan) = lan else {
        eprintln!("no non-loopback IPv4 address here: only the unit check above ran");
        return;
    };
    let mut server = Server::start_on("0.0.0.0:0", false, true);
    server.addr = SocketAddr::new(lan, server.addr.port());
    let socket = UdpSocket::bind(SocketAddr::new(lan, 0)).unwrap();
    socket.connect(server.addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let client = Client { socket };
    let cid = client.init();
    send_magic_and_expect_an_ordinary_answer(&client);
    client.send(cid, Command::Ping, b"after");
    assert_eq!(client.read_message(cid).payload, b"after");
    assert_eq!(server.power_cycles.load(Ordering::SeqCst), 0);
}

#[test]
fn a_non_loopback_address_is_warned_about() {
    for addr in ["127.0.0.1:8111", "[::1]:8111", "[::ffff:127.0.0.1]:8111"] {
        assert_eq!(exposure_warning(addr.parse().unwrap()), None, "{addr}");
    }
    for addr in ["0.0.0.0:8111", "192.0.2.2:8111", "[::]:8111"] {
        let warning = exposure_warning(addr.parse().unwrap()).expect(addr);
        assert!(
            warning.starts_with("WARNING") && warning.contains(addr),
            "{warning}"
        );
    }
}

#[test]
fn malformed_datagrams_get_errors_not_crashes() {
    let server = Server::start(false);
    let client = Client::new(&server);
    let cid = client.init();
    let mut short = fragment(cid, Command::Ping.into(), b"x").unwrap()[0].to_vec();
    short.truncate(10);
    client.socket.send(&short).unwrap();
    client.expect_error(cid, HidError::InvalidLen);
    let mut long = fragment(cid, Command::Ping.into(), b"x").unwrap()[0].to_vec();
    long.resize(1500, 0);
    client.socket.send(&long).unwrap();
    client.expect_error(cid, HidError::InvalidLen);
    client.socket.send(&[]).unwrap();
    client.socket.send(&[0xff; 3]).unwrap();
    client.send(cid, Command::Ping, b"ok");
    assert_eq!(client.read_message(cid).payload, b"ok");
}

#[test]
fn message_timeout_reaches_the_sender() {
    let server = Server::start(false);
    let client = Client::new(&server);
    let cid = client.init();
    let reports = fragment(cid, Command::Ping.into(), &[1; 100]).unwrap();
    client.socket.send(&reports[0]).unwrap();
    let start = Instant::now();
    client.expect_error(cid, HidError::MsgTimeout);
    assert!(start.elapsed() >= Duration::from_millis(450));
}

#[test]
fn engine_panic_is_an_error_answer_and_serving_goes_on() {
    let server = Server::start(false);
    let client = Client::new(&server);
    let cid = client.init();
    client.send(cid, Command::Cbor, &[0xee]);
    assert_eq!(client.read_message(cid).payload, vec![0x7f]);
    client.send(cid, Command::Cbor, &[0x04]);
    assert_eq!(client.read_message(cid).payload, vec![0x00, 0x04]);
}

#[test]
fn stop_cancels_a_waiting_request_and_returns() {
    let server = Server::start(false);
    let client = Client::new(&server);
    let cid = client.init();
    client.send(cid, Command::Cbor, &[0xcc]);
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    drop(server);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn bind_errors_are_clear() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = UdpTransport::bind(addr).err().unwrap().to_string();
    assert!(err.contains("in use"), "{err}");
    assert!(err.contains(&addr.to_string()), "{err}");
}
