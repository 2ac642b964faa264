//! Tests of the CTAPHID server rules, driven report by report.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::packet::{CAPABILITY_CBOR, CAPABILITY_NMSG, CAPABILITY_WINK, PROTOCOL_VERSION};
use super::*;

const VERSION: (u8, u8, u8) = (1, 2, 3);
const NONCE: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

struct Harness {
    server: HidServer,
    now: Instant,
}

fn init_raw(cid: u32, cmd: u8, bcnt: u16, data: &[u8]) -> Report {
    let mut r = [0u8; REPORT_LEN];
    r[..4].copy_from_slice(&cid.to_be_bytes());
    r[4] = cmd | 0x80;
    r[5..7].copy_from_slice(&bcnt.to_be_bytes());
    r[7..7 + data.len()].copy_from_slice(data);
    r
}

fn cont(cid: u32, seq: u8, data: &[u8]) -> Report {
    let mut r = [0u8; REPORT_LEN];
    r[..4].copy_from_slice(&cid.to_be_bytes());
    r[4] = seq;
    r[5..5 + data.len()].copy_from_slice(data);
    r
}

fn sent(outputs: &[HidOutput]) -> Vec<Report> {
    outputs
        .iter()
        .filter_map(|o| match o {
            HidOutput::Send(r) => Some(*r),
            _ => None,
        })
        .collect()
}

/// Reassembles the reports sent in `outputs` into one message.
fn response(outputs: &[HidOutput]) -> Message {
    let reports = sent(outputs);
    let mut assembly = None;
    let now = Instant::now();
    for report in &reports {
        match Packet::parse(report).unwrap() {
            Packet::Init {
                cid,
                cmd,
                bcnt,
                data,
            } => match Assembly::start(cid, cmd, bcnt, data, now).unwrap() {
                Started::Complete(m) => return m,
                Started::InProgress(a) => assembly = Some(a),
            },
            Packet::Cont { seq, data, .. } => {
                if let Some(m) = assembly.as_mut().unwrap().push(seq, data, now).unwrap() {
                    return m;
                }
            }
        }
    }
    panic!("incomplete response in {outputs:?}");
}

fn assert_error(outputs: &[HidOutput], cid: u32, error: HidError) {
    assert_eq!(
        sent(outputs),
        vec![error_report(cid, error)],
        "outputs: {outputs:?}"
    );
}

impl Harness {
    fn new() -> Self {
        Harness {
            server: HidServer::with_first_cid(VERSION, 0x100),
            now: Instant::now(),
        }
    }

    fn feed(&mut self, report: &[u8]) -> Vec<HidOutput> {
        self.server.handle_packet(report, self.now)
    }

    fn feed_all(&mut self, reports: &[Report]) -> Vec<HidOutput> {
        reports
            .iter()
            .flat_map(|r| self.server.handle_packet(r, self.now))
            .collect()
    }

    fn send(&mut self, cid: u32, cmd: Command, payload: &[u8]) -> Vec<HidOutput> {
        let reports = fragment(cid, cmd.into(), payload).unwrap();
        self.feed_all(&reports)
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    fn allocate(&mut self) -> u32 {
        let out = self.send(BROADCAST_CID, Command::Init, &NONCE);
        let m = response(&out);
        assert_eq!(m.cid, BROADCAST_CID);
        u32::from_be_bytes(m.payload[8..12].try_into().unwrap())
    }

    /// Starts a CBOR request on `cid` and checks the engine got it.
    fn start_request(&mut self, cid: u32) {
        let out = self.send(cid, Command::Cbor, &[0x04]);
        assert_eq!(
            out,
            vec![HidOutput::Request {
                cid,
                kind: RequestKind::Cbor,
                payload: vec![0x04]
            }]
        );
    }
}

#[test]
fn init_on_broadcast_allocates_a_channel() {
    let mut h = Harness::new();
    let out = h.send(BROADCAST_CID, Command::Init, &NONCE);
    let m = response(&out);
    assert_eq!(m.cid, BROADCAST_CID);
    assert_eq!(m.cmd, Command::Init as u8);
    assert_eq!(m.payload.len(), 17);
    assert_eq!(&m.payload[..8], &NONCE);
    let cid = u32::from_be_bytes(m.payload[8..12].try_into().unwrap());
    assert_eq!(cid, 0x100);
    assert_eq!(m.payload[12], PROTOCOL_VERSION);
    assert_eq!(&m.payload[13..16], &[1, 2, 3]);
    assert_eq!(m.payload[16], CAPABILITY_WINK | CAPABILITY_CBOR);
    assert_eq!(m.payload[16] & CAPABILITY_NMSG, 0);
    assert!(h.server.is_allocated(cid));
    let second = h.allocate();
    assert_ne!(second, cid);
}

#[test]
fn allocation_skips_reserved_and_broadcast_cids() {
    let mut h = Harness {
        server: HidServer::with_first_cid(VERSION, 0xffff_fffe),
        now: Instant::now(),
    };
    assert_eq!(h.allocate(), 0xffff_fffe);
    assert_eq!(h.allocate(), 1);
}

#[test]
fn random_first_cid_is_usable() {
    let mut h = Harness {
        server: HidServer::new(VERSION),
        now: Instant::now(),
    };
    let cid = h.allocate();
    assert!(cid != 0 && cid != BROADCAST_CID);
    let out = h.send(cid, Command::Ping, b"hi");
    assert_eq!(response(&out).payload, b"hi");
}

#[test]
fn init_with_wrong_length_is_invalid_len() {
    let mut h = Harness::new();
    for len in [0u16, 7, 9, 57] {
        let out = h.feed(&init_raw(BROADCAST_CID, Command::Init as u8, len, &NONCE));
        assert_error(&out, BROADCAST_CID, HidError::InvalidLen);
    }
    assert_eq!(h.server.channel_count(), 0);
    let cid = h.allocate();
    let out = h.feed(&init_raw(cid, Command::Init as u8, 4, &NONCE));
    assert_error(&out, cid, HidError::InvalidLen);
}

#[test]
fn init_on_existing_channel_resyncs_it() {
    let mut h = Harness::new();
    let cid = h.allocate();
    // Start a 100-byte PING, then resync before its continuation.
    let reports = fragment(cid, Command::Ping.into(), &[9; 100]).unwrap();
    assert!(h.feed(&reports[0]).is_empty());
    let out = h.send(cid, Command::Init, &NONCE);
    let m = response(&out);
    assert_eq!(m.cid, cid);
    assert_eq!(&m.payload[..8], &NONCE);
    assert_eq!(
        u32::from_be_bytes(m.payload[8..12].try_into().unwrap()),
        cid
    );
    // The old message's continuation is now stray and ignored.
    assert!(h.feed(&reports[1]).is_empty());
    // The channel works.
    assert_eq!(response(&h.send(cid, Command::Ping, b"ok")).payload, b"ok");
    assert_eq!(h.server.channel_count(), 1);
}

/// A host whose key restarted retries INIT on the channel it had (see server.rs).
#[test]
fn init_on_a_channel_never_allocated_is_answered_and_keeps_it() {
    let mut h = Harness::new();
    let out = h.send(0x1234, Command::Init, &NONCE);
    let m = response(&out);
    assert_eq!((m.cid, m.cmd), (0x1234, Command::Init as u8));
    assert_eq!(&m.payload[..8], &NONCE);
    assert_eq!(
        u32::from_be_bytes(m.payload[8..12].try_into().unwrap()),
        0x1234
    );
    assert!(h.server.is_allocated(0x1234));
    assert_eq!(
        response(&h.send(0x1234, Command::Ping, b"ok")).payload,
        b"ok"
    );
    // Allocation never hands out a channel that is kept this way.
    let mut h = Harness::new();
    response(&h.send(0x100, Command::Init, &NONCE));
    assert_eq!(h.allocate(), 0x101);
    // Also while another channel is busy (INIT is always answered).
    let busy = h.allocate();
    h.start_request(busy);
    assert_eq!(response(&h.send(0x5678, Command::Init, &NONCE)).cid, 0x5678);
}

/// §11.2.5.1: while a transaction holds the device, a request from any other channel gets
/// CHANNEL_BUSY, an unknown channel's too; idle, an unknown channel is INVALID_CHANNEL.
#[test]
fn an_unknown_channel_is_busy_while_another_holds_the_device() {
    let mut h = Harness::new();
    let cid = h.allocate();
    h.start_request(cid);
    assert_error(
        &h.send(0x0bad_0bad, Command::Ping, b"x"),
        0x0bad_0bad,
        HidError::ChannelBusy,
    );
    assert_eq!(h.server.finish(cid, RequestKind::Cbor, &[0]).len(), 1);
    assert_error(
        &h.send(0x0bad_0bad, Command::Ping, b"x"),
        0x0bad_0bad,
        HidError::InvalidChannel,
    );
    // A message half sent on an allocated channel holds the device too.
    let reports = fragment(cid, Command::Ping.into(), &[1; 100]).unwrap();
    h.feed(&reports[0]);
    assert_error(
        &h.send(0x0bad_0bad, Command::Cbor, &[4]),
        0x0bad_0bad,
        HidError::ChannelBusy,
    );
    assert!(!h.server.is_allocated(0x0bad_0bad));
}

#[test]
fn other_commands_on_broadcast_are_invalid_channel() {
    let mut h = Harness::new();
    for cmd in [
        Command::Ping,
        Command::Cbor,
        Command::Msg,
        Command::Wink,
        Command::Lock,
        Command::Cancel,
    ] {
        let out = h.send(BROADCAST_CID, cmd, &[1]);
        assert_error(&out, BROADCAST_CID, HidError::InvalidChannel);
    }
}

#[test]
fn unallocated_and_reserved_cids_are_invalid_channel() {
    let mut h = Harness::new();
    let _ = h.allocate();
    assert_error(
        &h.send(0x0bad_0bad, Command::Ping, b"x"),
        0x0bad_0bad,
        HidError::InvalidChannel,
    );
    assert_error(&h.send(0, Command::Ping, b"x"), 0, HidError::InvalidChannel);
    assert_error(
        &h.send(0, Command::Init, &NONCE),
        0,
        HidError::InvalidChannel,
    );
    // A continuation on an unknown channel is ignored.
    assert!(h.feed(&cont(0x0bad_0bad, 0, &[1])).is_empty());
}

#[test]
fn ping_echoes_small_and_large_payloads() {
    let mut h = Harness::new();
    let cid = h.allocate();
    for len in [0usize, 1, 57, 58, 116, 117, 1000, MAX_MESSAGE_LEN] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let out = h.send(cid, Command::Ping, &payload);
        let m = response(&out);
        assert_eq!((m.cid, m.cmd), (cid, Command::Ping as u8));
        assert_eq!(m.payload, payload, "len {len}");
    }
}

#[test]
fn wrong_sequence_is_invalid_seq_and_drops_the_message() {
    let mut h = Harness::new();
    let cid = h.allocate();
    let reports = fragment(cid, Command::Ping.into(), &[5; 200]).unwrap();
    assert!(h.feed(&reports[0]).is_empty());
    assert!(h.feed(&reports[1]).is_empty());
    // Skip seq 1.
    assert_error(&h.feed(&reports[3]), cid, HidError::InvalidSeq);
    // The message is gone: the rest is ignored.
    assert!(h.feed(&reports[2]).is_empty());
    // A repeated sequence number is wrong too.
    assert!(h.feed(&reports[0]).is_empty());
    assert!(h.feed(&reports[1]).is_empty());
    assert_error(&h.feed(&reports[1]), cid, HidError::InvalidSeq);
}

#[test]
fn new_init_packet_on_same_channel_while_assembling_is_invalid_seq() {
    let mut h = Harness::new();
    let cid = h.allocate();
    let reports = fragment(cid, Command::Ping.into(), &[5; 200]).unwrap();
    assert!(h.feed(&reports[0]).is_empty());
    let out = h.send(cid, Command::Ping, b"x");
    assert_error(&out, cid, HidError::InvalidSeq);
    assert!(h.feed(&reports[1]).is_empty());
    // The channel is usable again.
    assert_eq!(response(&h.send(cid, Command::Ping, b"y")).payload, b"y");
}

#[test]
fn other_channel_while_assembling_is_busy_but_init_and_cancel_work() {
    let mut h = Harness::new();
    let a = h.allocate();
    let b = h.allocate();
    let reports = fragment(a, Command::Ping.into(), &[5; 100]).unwrap();
    assert!(h.feed(&reports[0]).is_empty());
    assert_error(&h.send(b, Command::Ping, b"x"), b, HidError::ChannelBusy);
    assert_error(&h.send(b, Command::Cbor, &[4]), b, HidError::ChannelBusy);
    // B's continuation packets are ignored, not answered.
    assert!(h.feed(&cont(b, 0, &[1])).is_empty());
    // INIT on broadcast still allocates, CANCEL from B is silent.
    let c = h.allocate();
    assert!(h.send(b, Command::Cancel, &[]).is_empty());
    // A's message completes undisturbed.
    assert_eq!(response(&h.feed(&reports[1])).payload, vec![5; 100]);
    assert_eq!(response(&h.send(c, Command::Ping, b"c")).payload, b"c");
}

#[test]
fn requests_go_to_the_engine_and_the_channel_is_busy_until_finish() {
    let mut h = Harness::new();
    let a = h.allocate();
    let b = h.allocate();
    let payload: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    let out = h.send(a, Command::Cbor, &payload);
    assert_eq!(
        out,
        vec![HidOutput::Request {
            cid: a,
            kind: RequestKind::Cbor,
            payload
        }]
    );
    assert_eq!(h.server.pending_request(), Some((a, RequestKind::Cbor)));
    // Same channel: busy. Other channel: busy.
    assert_error(&h.send(a, Command::Cbor, &[4]), a, HidError::ChannelBusy);
    assert_error(&h.send(a, Command::Ping, b"x"), a, HidError::ChannelBusy);
    assert_error(&h.send(b, Command::Ping, b"x"), b, HidError::ChannelBusy);
    assert_error(
        &h.send(b, Command::Msg, &[0, 1, 0, 0]),
        b,
        HidError::ChannelBusy,
    );
    // INIT on broadcast still works.
    let c = h.allocate();
    // The answer goes back on A with the CBOR command.
    let answer: Vec<u8> = (0..200u16).map(|i| (i ^ 0x55) as u8).collect();
    let reports = h.server.finish(a, RequestKind::Cbor, &answer);
    let m = response(
        &reports
            .iter()
            .map(|r| HidOutput::Send(*r))
            .collect::<Vec<_>>(),
    );
    assert_eq!((m.cid, m.cmd, m.payload), (a, Command::Cbor as u8, answer));
    assert_eq!(h.server.pending_request(), None);
    // Idle again.
    assert_eq!(response(&h.send(b, Command::Ping, b"b")).payload, b"b");
    assert_eq!(response(&h.send(c, Command::Ping, b"c")).payload, b"c");
}

#[test]
fn msg_requests_are_u2f() {
    let mut h = Harness::new();
    let cid = h.allocate();
    let apdu = [0x00, 0x03, 0x00, 0x00];
    let out = h.send(cid, Command::Msg, &apdu);
    assert_eq!(
        out,
        vec![HidOutput::Request {
            cid,
            kind: RequestKind::Msg,
            payload: apdu.to_vec()
        }]
    );
    // A finish with the wrong kind or channel is ignored.
    assert!(h.server.finish(cid, RequestKind::Cbor, &[0]).is_empty());
    assert!(h.server.finish(cid + 1, RequestKind::Msg, &[0]).is_empty());
    let reports = h.server.finish(cid, RequestKind::Msg, &[0x90, 0x00]);
    assert_eq!(&reports[0][..9], &[0, 0, 1, 0, 0x83, 0, 2, 0x90, 0x00]);
    // A second finish has nothing to answer.
    assert!(h
        .server
        .finish(cid, RequestKind::Msg, &[0x90, 0x00])
        .is_empty());
}

#[test]
fn empty_cbor_is_invalid_len() {
    let mut h = Harness::new();
    let cid = h.allocate();
    assert_error(&h.send(cid, Command::Cbor, &[]), cid, HidError::InvalidLen);
    assert!(!h.server.is_busy());
}

#[test]
fn oversized_response_is_err_other() {
    let mut h = Harness::new();
    let cid = h.allocate();
    h.start_request(cid);
    let reports = h
        .server
        .finish(cid, RequestKind::Cbor, &vec![0; MAX_MESSAGE_LEN + 1]);
    assert_eq!(reports, vec![error_report(cid, HidError::Other)]);
}

#[test]
fn cancel_is_silent_and_reported_for_the_running_request() {
    let mut h = Harness::new();
    let a = h.allocate();
    let b = h.allocate();
    // No request: nothing at all.
    assert!(h.send(a, Command::Cancel, &[]).is_empty());
    h.start_request(a);
    // Cancel from another channel: nothing.
    assert!(h.send(b, Command::Cancel, &[]).is_empty());
    assert_eq!(
        h.send(a, Command::Cancel, &[]),
        vec![HidOutput::Cancel { cid: a }]
    );
    // The engine still answers (with KEEPALIVE_CANCEL in real life).
    assert_eq!(h.server.finish(a, RequestKind::Cbor, &[0x2d]).len(), 1);
}

#[test]
fn cancel_drops_a_message_being_assembled() {
    let mut h = Harness::new();
    let a = h.allocate();
    let reports = fragment(a, Command::Ping.into(), &[5; 100]).unwrap();
    assert!(h.feed(&reports[0]).is_empty());
    assert!(h.send(a, Command::Cancel, &[]).is_empty());
    assert!(h.feed(&reports[1]).is_empty());
    assert_eq!(h.server.next_deadline(), None);
}

#[test]
fn init_resync_abandons_the_running_request() {
    let mut h = Harness::new();
    let a = h.allocate();
    h.start_request(a);
    let out = h.send(a, Command::Init, &NONCE);
    assert_eq!(out[0], HidOutput::Cancel { cid: a });
    assert_eq!(response(&out[1..]).cid, a);
    assert_eq!(h.server.pending_request(), None);
    assert!(h.server.is_busy());
    // The engine is still working: new requests are busy.
    assert_error(&h.send(a, Command::Ping, b"x"), a, HidError::ChannelBusy);
    // Its answer is dropped.
    assert!(h.server.finish(a, RequestKind::Cbor, &[0]).is_empty());
    assert!(!h.server.is_busy());
    assert_eq!(response(&h.send(a, Command::Ping, b"x")).payload, b"x");
}

#[test]
fn message_timeout_after_500ms_between_packets() {
    let mut h = Harness::new();
    let a = h.allocate();
    let reports = fragment(a, Command::Ping.into(), &[5; 200]).unwrap();
    assert!(h.feed(&reports[0]).is_empty());
    let deadline = h.server.next_deadline().unwrap();
    assert_eq!(deadline, h.now + TRANSACTION_TIMEOUT);
    h.advance(499);
    assert!(h.server.poll(h.now).is_empty());
    h.advance(1);
    assert_error(&h.server.poll(h.now), a, HidError::MsgTimeout);
    assert!(h.server.poll(h.now).is_empty());
    assert!(h.feed(&reports[1]).is_empty());
    assert_eq!(h.server.next_deadline(), None);
}

#[test]
fn timeout_is_reported_by_the_next_packet_too() {
    let mut h = Harness::new();
    let a = h.allocate();
    let reports = fragment(a, Command::Ping.into(), &[5; 200]).unwrap();
    h.feed(&reports[0]);
    h.advance(600);
    let out = h.feed(&reports[1]);
    assert_error(&out, a, HidError::MsgTimeout);
}

#[test]
fn slow_but_steady_packets_do_not_time_out() {
    let mut h = Harness::new();
    let a = h.allocate();
    let payload = vec![3u8; 300];
    let reports = fragment(a, Command::Ping.into(), &payload).unwrap();
    let mut out = Vec::new();
    for report in &reports {
        h.advance(400);
        out = h.feed(report);
    }
    assert_eq!(response(&out).payload, payload);
}

#[test]
fn bcnt_beyond_maximum_is_invalid_len() {
    let mut h = Harness::new();
    let a = h.allocate();
    let out = h.feed(&init_raw(
        a,
        Command::Ping as u8,
        MAX_MESSAGE_LEN as u16 + 1,
        &[0; 57],
    ));
    assert_error(&out, a, HidError::InvalidLen);
    let out = h.feed(&init_raw(a, Command::Cbor as u8, 0xffff, &[0; 57]));
    assert_error(&out, a, HidError::InvalidLen);
    assert_eq!(h.server.next_deadline(), None);
}

#[test]
fn unknown_commands_are_invalid_cmd() {
    let mut h = Harness::new();
    let a = h.allocate();
    for cmd in [0x00u8, 0x02, 0x05, 0x3b, 0x3f, 0x40, 0x41, 0x7f] {
        let out = h.feed(&init_raw(a, cmd, 0, &[]));
        assert_error(&out, a, HidError::InvalidCmd);
    }
}

#[test]
fn wink_is_answered_and_surfaced() {
    let mut h = Harness::new();
    let a = h.allocate();
    let out = h.send(a, Command::Wink, &[]);
    assert_eq!(out.len(), 2);
    let m = response(&out);
    assert_eq!((m.cid, m.cmd, m.payload.len()), (a, Command::Wink as u8, 0));
    assert_eq!(out[1], HidOutput::Wink { cid: a });
    assert_error(&h.send(a, Command::Wink, &[1]), a, HidError::InvalidLen);
}

#[test]
fn lock_accepts_up_to_ten_seconds() {
    let mut h = Harness::new();
    let a = h.allocate();
    for seconds in 0..=10u8 {
        let m = response(&h.send(a, Command::Lock, &[seconds]));
        assert_eq!((m.cid, m.cmd, m.payload.len()), (a, Command::Lock as u8, 0));
    }
    assert_error(&h.send(a, Command::Lock, &[11]), a, HidError::InvalidPar);
    assert_error(&h.send(a, Command::Lock, &[255]), a, HidError::InvalidPar);
    assert_error(&h.send(a, Command::Lock, &[]), a, HidError::InvalidLen);
    assert_error(&h.send(a, Command::Lock, &[1, 1]), a, HidError::InvalidLen);
}

#[test]
fn lock_makes_other_channels_busy_until_it_expires() {
    let mut h = Harness::new();
    let a = h.allocate();
    let b = h.allocate();
    response(&h.send(a, Command::Lock, &[2]));
    assert_error(&h.send(b, Command::Ping, b"x"), b, HidError::ChannelBusy);
    assert_error(&h.send(b, Command::Cbor, &[4]), b, HidError::ChannelBusy);
    // The holder keeps working, INIT on broadcast and CANCEL still work.
    assert_eq!(response(&h.send(a, Command::Ping, b"a")).payload, b"a");
    let _c = h.allocate();
    assert!(h.send(b, Command::Cancel, &[]).is_empty());
    assert!(h.server.next_deadline().is_some());
    h.advance(1999);
    assert_error(&h.send(b, Command::Ping, b"x"), b, HidError::ChannelBusy);
    h.advance(1);
    assert_eq!(response(&h.send(b, Command::Ping, b"b")).payload, b"b");
}

#[test]
fn lock_zero_releases_and_init_resync_releases() {
    let mut h = Harness::new();
    let a = h.allocate();
    let b = h.allocate();
    response(&h.send(a, Command::Lock, &[10]));
    response(&h.send(a, Command::Lock, &[0]));
    assert_eq!(response(&h.send(b, Command::Ping, b"b")).payload, b"b");
    response(&h.send(a, Command::Lock, &[10]));
    response(&h.send(a, Command::Init, &NONCE));
    assert_eq!(response(&h.send(b, Command::Ping, b"b")).payload, b"b");
}

#[test]
fn short_and_long_reports_are_errors_not_panics() {
    let mut h = Harness::new();
    let a = h.allocate();
    for len in 0..REPORT_LEN {
        let mut report = init_raw(a, Command::Ping as u8, 1, &[1]).to_vec();
        report.truncate(len);
        let out = h.feed(&report);
        if len >= 4 {
            assert_error(&out, a, HidError::InvalidLen);
        } else {
            assert!(out.is_empty());
        }
        // Unknown channels get nothing.
        let mut report = init_raw(0x0bad, Command::Ping as u8, 1, &[1]).to_vec();
        report.truncate(len);
        assert!(h.feed(&report).is_empty());
    }
    let mut long = init_raw(a, Command::Ping as u8, 1, &[1]).to_vec();
    long.push(0);
    assert_error(&h.feed(&long), a, HidError::InvalidLen);
    // State is intact.
    assert_eq!(response(&h.send(a, Command::Ping, b"a")).payload, b"a");
}

#[test]
fn a_short_report_does_not_disturb_a_message_in_progress() {
    let mut h = Harness::new();
    let a = h.allocate();
    let reports = fragment(a, Command::Ping.into(), &[5; 100]).unwrap();
    h.feed(&reports[0]);
    h.feed(&reports[1][..10]);
    assert_eq!(response(&h.feed(&reports[1])).payload, vec![5; 100]);
}

#[test]
fn channels_are_bounded_and_least_recently_used_is_forgotten() {
    let mut h = Harness::new();
    let first = h.allocate();
    let second = h.allocate();
    for _ in 2..MAX_CHANNELS {
        h.allocate();
    }
    assert_eq!(h.server.channel_count(), MAX_CHANNELS);
    // Use the first so the second is now the least recently used.
    response(&h.send(first, Command::Ping, b"x"));
    let newest = h.allocate();
    assert_eq!(h.server.channel_count(), MAX_CHANNELS);
    assert!(h.server.is_allocated(first));
    assert!(!h.server.is_allocated(second));
    assert!(h.server.is_allocated(newest));
    assert_error(
        &h.send(second, Command::Ping, b"x"),
        second,
        HidError::InvalidChannel,
    );
}

#[test]
fn busy_channel_is_never_evicted() {
    let mut h = Harness::new();
    let first = h.allocate();
    h.start_request(first);
    for _ in 0..MAX_CHANNELS * 2 {
        h.allocate();
    }
    assert!(h.server.is_allocated(first));
    assert_eq!(h.server.finish(first, RequestKind::Cbor, &[0]).len(), 1);
}

#[test]
fn keepalive_report_layout() {
    let h = Harness::new();
    let r = h.server.keepalive(0x0a0b_0c0d, KeepaliveStatus::Processing);
    assert_eq!(&r[..8], &[0x0a, 0x0b, 0x0c, 0x0d, 0xbb, 0x00, 0x01, 0x01]);
    let r = h.server.keepalive(0x0a0b_0c0d, KeepaliveStatus::UpNeeded);
    assert_eq!(r[7], 0x02);
    assert!(r[8..].iter().all(|b| *b == 0));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn fragment_then_reassemble_is_identity(payload in proptest::collection::vec(any::<u8>(), 0..=MAX_MESSAGE_LEN)) {
        let mut h = Harness::new();
        let cid = h.allocate();
        // As a request to the engine.
        let out = h.send(cid, Command::Msg, &payload);
        prop_assert_eq!(out, vec![HidOutput::Request { cid, kind: RequestKind::Msg, payload: payload.clone() }]);
        let answer: Vec<HidOutput> =
            h.server.finish(cid, RequestKind::Msg, &payload).into_iter().map(HidOutput::Send).collect();
        prop_assert_eq!(&response(&answer).payload, &payload);
        // As a PING echo.
        let out = h.send(cid, Command::Ping, &payload);
        prop_assert_eq!(&response(&out).payload, &payload);
    }

    #[test]
    fn arbitrary_packet_sequences_never_panic(
        steps in proptest::collection::vec(
            (
                prop_oneof![Just(0u32), Just(BROADCAST_CID), 0x100u32..0x104, any::<u32>()],
                prop_oneof![
                    Just(Command::Init as u8 | 0x80),
                    Just(Command::Cbor as u8 | 0x80),
                    Just(Command::Ping as u8 | 0x80),
                    Just(Command::Cancel as u8 | 0x80),
                    Just(Command::Lock as u8 | 0x80),
                    0u8..4,
                    any::<u8>()
                ],
                prop_oneof![Just(8u16), 0u16..200, any::<u16>()],
                proptest::collection::vec(any::<u8>(), 0..=59),
                prop_oneof![Just(REPORT_LEN), 0usize..80],
                0u64..700,
                0u8..4,
            ),
            0..200,
        )
    ) {
        let mut h = Harness::new();
        for (cid, kind, bcnt, data, len, advance, action) in steps {
            let mut report = vec![0u8; len.max(64)];
            report[..4].copy_from_slice(&cid.to_be_bytes());
            report[4] = kind;
            report[5..7].copy_from_slice(&bcnt.to_be_bytes());
            report[7..7 + data.len().min(57)].copy_from_slice(&data[..data.len().min(57)]);
            report.truncate(len);
            h.advance(advance);
            let out = h.feed(&report);
            for output in &out {
                if let HidOutput::Send(r) = output {
                    prop_assert!(Packet::parse(r).is_ok());
                }
            }
            match action {
                0 => {
                    if let Some((cid, kind)) = h.server.pending_request() {
                        h.server.finish(cid, kind, &data);
                    }
                }
                1 => { h.server.poll(h.now); }
                _ => {}
            }
            prop_assert!(h.server.channel_count() <= MAX_CHANNELS);
        }
    }
}
