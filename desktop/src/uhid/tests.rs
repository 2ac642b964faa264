//! The uhid transport against a stand-in kernel: one end of a datagram socket pair (one
//! event per read and write, like the character device). The real kernel is exercised by
//! `tests/uhid/` in a virtual machine.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::Ordering;
use std::thread;

use pocketkey_core::hid::{fragment, Command, Packet, BROADCAST_CID};

use super::*;
use pocketkey_core::engine::{Engine, RequestContext, RequestKind};

struct Echo;
impl Engine for Echo {
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        match kind {
            RequestKind::Cbor => {
                assert_eq!(cx.requester.0, "this computer (USB)");
                [&[0x00], payload].concat()
            }
            RequestKind::Msg => [payload, &[0x90, 0x00]].concat(),
        }
    }
}

struct Kernel(UnixDatagram);

impl Kernel {
    fn read_event(&self) -> Vec<u8> {
        let mut buf = vec![0u8; abi::EVENT_SIZE + 16];
        let n = self.0.recv(&mut buf).expect("an event within 3 s");
        buf.truncate(n);
        buf
    }
    fn event_type(ev: &[u8]) -> u32 {
        u32::from_ne_bytes(ev[..4].try_into().unwrap())
    }
    /// What hidraw hands uhid when a program writes a report: report id 0, then 64 bytes.
    fn write_output(&self, report: &[u8]) {
        let mut ev = vec![0u8; abi::EVENT_SIZE];
        ev[..4].copy_from_slice(&6u32.to_ne_bytes());
        ev[4] = 0;
        ev[5..5 + report.len()].copy_from_slice(report);
        let size = (report.len() + 1) as u16;
        ev[4 + abi::DATA_MAX..4 + abi::DATA_MAX + 2].copy_from_slice(&size.to_ne_bytes());
        self.0.send(&ev).unwrap();
    }
    fn write_simple(&self, kind: u32, id: u32) {
        let mut ev = vec![0u8; 16];
        ev[..4].copy_from_slice(&kind.to_ne_bytes());
        ev[4..8].copy_from_slice(&id.to_ne_bytes());
        self.0.send(&ev).unwrap();
    }
    /// Reads input reports until one that is not a KEEPALIVE.
    fn read_input(&self) -> Vec<u8> {
        loop {
            let ev = self.read_event();
            assert_eq!(Self::event_type(&ev), 12, "INPUT2");
            let size = u16::from_ne_bytes([ev[4], ev[5]]) as usize;
            assert_eq!(size, 64);
            let report = ev[6..6 + size].to_vec();
            match Packet::parse(&report) {
                Ok(Packet::Init { cmd, .. }) if cmd == Command::Keepalive as u8 => continue,
                _ => return report,
            }
        }
    }
}

#[test]
fn creates_a_fido_device_and_serves_ctaphid_through_input_and_output_reports() {
    let (ours, kernel) = UnixDatagram::pair().unwrap();
    kernel
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let kernel = Kernel(kernel);
    let transport = UhidTransport::create_on(OwnedFd::from(ours), "PocketKey test").unwrap();

    let create = kernel.read_event();
    assert_eq!(create.len(), abi::EVENT_SIZE);
    assert_eq!(Kernel::event_type(&create), 11, "CREATE2 first");
    assert_eq!(&create[4..18], b"PocketKey test");
    assert_eq!(&create[4 + 276..4 + 276 + 34], &abi::FIDO_REPORT_DESCRIPTOR);

    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let options = Options {
                log: false,
                ..Options::default()
            };
            transport.run(Echo, options, stop)
        })
    };
    kernel.write_simple(2, 0); // START
    kernel.write_simple(4, 0); // OPEN

    // The kernel waits for answers to report requests; refused with EIO.
    kernel.write_simple(9, 41); // GET_REPORT id 41
    let reply = kernel.read_event();
    assert_eq!(Kernel::event_type(&reply), 10);
    assert_eq!(u32::from_ne_bytes(reply[4..8].try_into().unwrap()), 41);
    assert_eq!(u16::from_ne_bytes([reply[8], reply[9]]), abi::EIO);
    kernel.write_simple(13, 42); // SET_REPORT id 42
    let reply = kernel.read_event();
    assert_eq!(Kernel::event_type(&reply), 14);
    assert_eq!(u32::from_ne_bytes(reply[4..8].try_into().unwrap()), 42);

    // Garbage and unknown events change nothing.
    kernel.0.send(&[1, 2]).unwrap();
    kernel.write_simple(99, 0);

    // CTAPHID_INIT on the broadcast channel.
    let nonce = [7u8; 8];
    for report in fragment(BROADCAST_CID, Command::Init.into(), &nonce).unwrap() {
        kernel.write_output(&report);
    }
    let answer = kernel.read_input();
    let Packet::Init { cid, cmd, data, .. } = Packet::parse(&answer).unwrap() else {
        panic!("an INIT answer")
    };
    assert_eq!(cid, BROADCAST_CID);
    assert_eq!(cmd, Command::Init as u8);
    assert_eq!(&data[..8], &nonce);
    let channel = u32::from_be_bytes(data[8..12].try_into().unwrap());

    // A CBOR request long enough to need continuation packets, answered by the engine.
    let request: Vec<u8> = (0..150u8).collect();
    for report in fragment(channel, Command::Cbor.into(), &request).unwrap() {
        kernel.write_output(&report);
    }
    let mut got = Vec::new();
    let first = kernel.read_input();
    let Packet::Init { bcnt, data, .. } = Packet::parse(&first).unwrap() else {
        panic!()
    };
    got.extend_from_slice(data);
    while got.len() < bcnt as usize {
        let next = kernel.read_input();
        let Packet::Cont { data, .. } = Packet::parse(&next).unwrap() else {
            panic!()
        };
        got.extend_from_slice(data);
    }
    got.truncate(bcnt as usize);
    assert_eq!(got, [&[0x00], request.as_slice()].concat());

    stop.store(true, Ordering::SeqCst);
    server.join().unwrap().unwrap();
    // Dropping the transport removes the device.
    let last = kernel.read_event();
    assert_eq!(Kernel::event_type(&last), 1, "DESTROY");
}

#[test]
fn a_missing_device_says_how_to_get_one() {
    let err = UhidTransport::create(Path::new("/nonexistent/uhid"), "x")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("modprobe uhid"), "{err}");
}
