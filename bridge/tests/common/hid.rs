//! A minimal CTAPHID-over-UDP client (the browser's side of the bridge). The cli's tests
//! include this file alone, as their `common` module.
#![allow(dead_code, clippy::explicit_counter_loop)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

pub struct HidClient {
    socket: UdpSocket,
    cid: u32,
    pub keepalives: Vec<u8>,
}

const INIT: u8 = 0x86;
const CBOR: u8 = 0x90;
const KEEPALIVE: u8 = 0xbb;
const ERROR: u8 = 0xbf;

impl HidClient {
    pub fn connect(addr: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut client = Self {
            socket,
            cid: 0xffff_ffff,
            keepalives: Vec::new(),
        };
        // INIT is resent every read timeout until answered: a bridge that is still starting
        // has no socket yet and drops (or refuses) the datagram. The answer is the event that
        // says the bridge is up; no test sleeps for it.
        let nonce = [7u8; 8];
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 64];
        loop {
            assert!(Instant::now() < deadline, "the bridge never answered INIT");
            client.send(INIT, &nonce);
            let Ok(n) = client.socket.recv(&mut buf) else {
                continue;
            };
            assert_eq!(n, 64);
            if buf[4] != INIT || buf[7..15] != nonce {
                continue;
            }
            client.cid = u32::from_be_bytes(buf[15..19].try_into().unwrap());
            return client;
        }
    }

    fn send(&self, cmd: u8, data: &[u8]) {
        let mut report = [0u8; 64];
        report[..4].copy_from_slice(&self.cid.to_be_bytes());
        report[4] = cmd;
        report[5..7].copy_from_slice(&(data.len() as u16).to_be_bytes());
        let first = data.len().min(57);
        report[7..7 + first].copy_from_slice(&data[..first]);
        self.socket.send(&report).unwrap();
        let mut seq = 0u8;
        for chunk in data[first..].chunks(59) {
            let mut report = [0u8; 64];
            report[..4].copy_from_slice(&self.cid.to_be_bytes());
            report[4] = seq;
            report[5..5 + chunk.len()].copy_from_slice(chunk);
            self.socket.send(&report).unwrap();
            seq += 1;
        }
    }

    /// Sends a message, reads the answer (skipping KEEPALIVEs, recorded) until `timeout`.
    pub fn transact(&mut self, cmd: u8, data: &[u8], timeout: Duration) -> (u8, Vec<u8>) {
        self.send(cmd, data);
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 64];
        loop {
            assert!(Instant::now() < deadline, "no answer in {timeout:?}");
            let Ok(n) = self.socket.recv(&mut buf) else {
                continue;
            };
            assert_eq!(n, 64);
            // A late answer to a resent INIT is on the broadcast channel, not ours.
            if buf[..4] != self.cid.to_be_bytes() {
                continue;
            }
            let cmd = buf[4];
            if cmd == KEEPALIVE {
                self.keepalives.push(buf[7]);
                continue;
            }
            let len = u16::from_be_bytes([buf[5], buf[6]]) as usize;
            let mut data = buf[7..7 + len.min(57)].to_vec();
            while data.len() < len {
                let n = self.socket.recv(&mut buf).unwrap();
                assert_eq!(n, 64);
                let take = (len - data.len()).min(59);
                data.extend_from_slice(&buf[5..5 + take]);
            }
            return (cmd, data);
        }
    }

    /// One CTAP2 request; returns status ‖ CBOR.
    pub fn cbor(&mut self, request: &[u8], timeout: Duration) -> Vec<u8> {
        let (cmd, data) = self.transact(CBOR, request, timeout);
        assert_ne!(cmd, ERROR, "CTAPHID error {data:?}");
        assert_eq!(cmd, CBOR);
        data
    }
}
