//! The Linux uhid character-device protocol (`include/uapi/linux/uhid.h`), sans-IO: one
//! `struct uhid_event` per read or write, packed, in the host's byte order.
//!
//! Only what a FIDO device needs: CREATE2/DESTROY and INPUT2 out; START/STOP/OPEN/CLOSE,
//! OUTPUT and the GET_REPORT/SET_REPORT requests (which must be answered, or the kernel waits
//! for its own timeout) in.

use thiserror::Error;

/// `sizeof(struct uhid_event)`: the type (u32) and the largest member, `uhid_create2_req`.
pub const EVENT_SIZE: usize = 4 + CREATE2_SIZE;
/// `UHID_DATA_MAX` and `HID_MAX_DESCRIPTOR_SIZE`.
pub const DATA_MAX: usize = 4096;
const CREATE2_SIZE: usize = 128 + 64 + 64 + 2 + 2 + 4 + 4 + 4 + 4 + DATA_MAX;

/// `BUS_USB` from `linux/input.h`: browsers and libfido2 then treat it as a USB key.
pub const BUS_USB: u16 = 0x03;

/// The FIDO HID report descriptor (docs/architecture.md §4; CTAP 2.1 §11.2.8.1): usage page 0xF1D0,
/// usage 0x01 (CTAPHID), 64-byte input (usage 0x20) and output (usage 0x21) reports, no
/// report ids.
pub const FIDO_REPORT_DESCRIPTOR: [u8; 34] = [
    0x06, 0xd0, 0xf1, // Usage Page (FIDO Alliance)
    0x09, 0x01, // Usage (CTAPHID)
    0xa1, 0x01, // Collection (Application)
    0x09, 0x20, //   Usage (Input Report Data)
    0x15, 0x00, //   Logical Minimum (0)
    0x26, 0xff, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //   Report Size (8)
    0x95, 0x40, //   Report Count (64)
    0x81, 0x02, //   Input (Data, Variable, Absolute)
    0x09, 0x21, //   Usage (Output Report Data)
    0x15, 0x00, //   Logical Minimum (0)
    0x26, 0xff, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //   Report Size (8)
    0x95, 0x40, //   Report Count (64)
    0x91, 0x02, //   Output (Data, Variable, Absolute)
    0xc0, // End Collection
];

/// `enum uhid_event_type`.
mod kind {
    pub const DESTROY: u32 = 1;
    pub const START: u32 = 2;
    pub const STOP: u32 = 3;
    pub const OPEN: u32 = 4;
    pub const CLOSE: u32 = 5;
    pub const OUTPUT: u32 = 6;
    pub const GET_REPORT: u32 = 9;
    pub const GET_REPORT_REPLY: u32 = 10;
    pub const CREATE2: u32 = 11;
    pub const INPUT2: u32 = 12;
    pub const SET_REPORT: u32 = 13;
    pub const SET_REPORT_REPLY: u32 = 14;
}

/// `EIO`: the answer to feature-report requests a FIDO device does not have.
pub const EIO: u16 = 5;

/// The identity the device is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Product name shown by the system (at most 127 bytes; longer is cut at a char boundary).
    pub name: String,
    pub bus: u16,
    pub vendor: u32,
    pub product: u32,
    pub version: u32,
}

/// What the kernel told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    /// The device is ready (a driver bound it).
    Start,
    Stop,
    /// A program opened the hidraw node / closed its last handle.
    Open,
    Close,
    /// The host wrote an output report (with the report-id byte hidraw users put in front).
    Output {
        data: Vec<u8>,
    },
    /// A GET_REPORT request; must be answered with [`get_report_reply`].
    GetReport {
        id: u32,
    },
    /// A SET_REPORT request; must be answered with [`set_report_reply`].
    SetReport {
        id: u32,
    },
    /// An event type this device has no use for.
    Other(u32),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AbiError {
    #[error("uhid event too short: {0} bytes")]
    Truncated(usize),
    #[error("uhid output report claims {0} bytes (at most {DATA_MAX})")]
    OutputTooLong(usize),
}

fn u32_at(buf: &[u8], at: usize) -> Result<u32, AbiError> {
    buf.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or(AbiError::Truncated(buf.len()))
}

fn u16_at(buf: &[u8], at: usize) -> Result<u16, AbiError> {
    buf.get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_ne_bytes)
        .ok_or(AbiError::Truncated(buf.len()))
}

/// Parses one event read from the device.
pub fn parse(buf: &[u8]) -> Result<KernelEvent, AbiError> {
    Ok(match u32_at(buf, 0)? {
        kind::START => KernelEvent::Start,
        kind::STOP => KernelEvent::Stop,
        kind::OPEN => KernelEvent::Open,
        kind::CLOSE => KernelEvent::Close,
        kind::OUTPUT => {
            // struct uhid_output_req { __u8 data[UHID_DATA_MAX]; __u16 size; __u8 rtype; }
            let size = usize::from(u16_at(buf, 4 + DATA_MAX)?);
            if size > DATA_MAX {
                return Err(AbiError::OutputTooLong(size));
            }
            let data = buf.get(4..4 + size).ok_or(AbiError::Truncated(buf.len()))?;
            KernelEvent::Output {
                data: data.to_vec(),
            }
        }
        kind::GET_REPORT => KernelEvent::GetReport {
            id: u32_at(buf, 4)?,
        },
        kind::SET_REPORT => KernelEvent::SetReport {
            id: u32_at(buf, 4)?,
        },
        other => KernelEvent::Other(other),
    })
}

/// The CTAPHID report inside an output event: hidraw writers put the report id (0, as the
/// descriptor has none) in front of the 64 bytes; a bare 64-byte write is taken as is.
pub fn output_report(data: &[u8]) -> Option<&[u8]> {
    match data {
        [0, report @ ..] if report.len() == 64 => Some(report),
        report if report.len() == 64 => Some(report),
        _ => None,
    }
}

fn copy_cstr(dest: &mut [u8], text: &str) {
    // Leave room for the NUL; cut at a char boundary.
    let mut end = text.len().min(dest.len() - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    dest[..end].copy_from_slice(&text.as_bytes()[..end]);
}

/// `UHID_CREATE2` for a device with `descriptor`.
pub fn create2(info: &DeviceInfo, descriptor: &[u8]) -> Vec<u8> {
    assert!(descriptor.len() <= DATA_MAX, "report descriptor too long");
    let mut ev = vec![0u8; EVENT_SIZE];
    ev[0..4].copy_from_slice(&kind::CREATE2.to_ne_bytes());
    let body = &mut ev[4..];
    copy_cstr(&mut body[0..128], &info.name); // name; phys [128..192] and uniq [192..256] empty
    let mut at = 256;
    let mut put = |bytes: &[u8]| {
        body[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&(descriptor.len() as u16).to_ne_bytes());
    put(&info.bus.to_ne_bytes());
    put(&info.vendor.to_ne_bytes());
    put(&info.product.to_ne_bytes());
    put(&info.version.to_ne_bytes());
    put(&0u32.to_ne_bytes()); // country
    put(descriptor);
    ev
}

/// `UHID_DESTROY`.
pub fn destroy() -> Vec<u8> {
    kind::DESTROY.to_ne_bytes().to_vec()
}

/// `UHID_INPUT2` carrying one input report.
pub fn input2(report: &[u8]) -> Vec<u8> {
    let len = report.len().min(DATA_MAX);
    let mut ev = Vec::with_capacity(6 + len);
    ev.extend_from_slice(&kind::INPUT2.to_ne_bytes());
    ev.extend_from_slice(&(len as u16).to_ne_bytes());
    ev.extend_from_slice(&report[..len]);
    ev
}

/// `UHID_GET_REPORT_REPLY` refusing the request with `err`.
pub fn get_report_reply(id: u32, err: u16) -> Vec<u8> {
    let mut ev = Vec::with_capacity(12);
    ev.extend_from_slice(&kind::GET_REPORT_REPLY.to_ne_bytes());
    ev.extend_from_slice(&id.to_ne_bytes());
    ev.extend_from_slice(&err.to_ne_bytes());
    ev.extend_from_slice(&0u16.to_ne_bytes()); // size
    ev
}

/// `UHID_SET_REPORT_REPLY` with `err`.
pub fn set_report_reply(id: u32, err: u16) -> Vec<u8> {
    let mut ev = Vec::with_capacity(10);
    ev.extend_from_slice(&kind::SET_REPORT_REPLY.to_ne_bytes());
    ev.extend_from_slice(&id.to_ne_bytes());
    ev.extend_from_slice(&err.to_ne_bytes());
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn output_event(data: &[u8]) -> Vec<u8> {
        let mut ev = vec![0u8; EVENT_SIZE];
        ev[0..4].copy_from_slice(&kind::OUTPUT.to_ne_bytes());
        ev[4..4 + data.len()].copy_from_slice(data);
        ev[4 + DATA_MAX..4 + DATA_MAX + 2].copy_from_slice(&(data.len() as u16).to_ne_bytes());
        ev[4 + DATA_MAX + 2] = 1; // UHID_OUTPUT_REPORT
        ev
    }

    #[test]
    fn event_size_matches_the_kernel_header() {
        // sizeof(struct uhid_event) on Linux: 4 + sizeof(struct uhid_create2_req) = 4376.
        assert_eq!(EVENT_SIZE, 4376);
    }

    #[test]
    fn descriptor_declares_the_fido_usage_page_and_64_byte_reports() {
        assert_eq!(
            &FIDO_REPORT_DESCRIPTOR[..5],
            &[0x06, 0xd0, 0xf1, 0x09, 0x01]
        );
        // Report Count 64 precedes both Input and Output items.
        let d = &FIDO_REPORT_DESCRIPTOR;
        let counts = d.windows(2).filter(|w| w == &[0x95, 0x40]).count();
        assert_eq!(counts, 2);
        assert_eq!(d.last(), Some(&0xc0));
    }

    #[test]
    fn create2_layout() {
        let info = DeviceInfo {
            name: "PocketKey".into(),
            bus: BUS_USB,
            vendor: 0x1209,
            product: 0x000a,
            version: 0x0100,
        };
        let ev = create2(&info, &FIDO_REPORT_DESCRIPTOR);
        assert_eq!(ev.len(), EVENT_SIZE);
        assert_eq!(u32_at(&ev, 0).unwrap(), 11);
        assert_eq!(&ev[4..13], b"PocketKey");
        assert_eq!(ev[13], 0);
        assert_eq!(u16_at(&ev, 4 + 256).unwrap(), 34); // rd_size
        assert_eq!(u16_at(&ev, 4 + 258).unwrap(), 3); // bus
        assert_eq!(u32_at(&ev, 4 + 260).unwrap(), 0x1209);
        assert_eq!(u32_at(&ev, 4 + 264).unwrap(), 0x000a);
        assert_eq!(u32_at(&ev, 4 + 268).unwrap(), 0x0100);
        assert_eq!(&ev[4 + 276..4 + 276 + 34], &FIDO_REPORT_DESCRIPTOR);
    }

    #[test]
    fn long_names_are_cut_at_a_char_boundary_and_stay_terminated() {
        let info = DeviceInfo {
            name: "é".repeat(100),
            bus: BUS_USB,
            vendor: 0,
            product: 0,
            version: 0,
        };
        let ev = create2(&info, &[]);
        let name = &ev[4..4 + 128];
        let end = name.iter().position(|b| *b == 0).unwrap();
        assert_eq!(end, 126);
        assert!(std::str::from_utf8(&name[..end]).is_ok());
    }

    #[test]
    fn output_events_and_their_report() {
        let mut written = vec![0u8];
        written.extend_from_slice(&[0xab; 64]);
        let ev = parse(&output_event(&written)).unwrap();
        let KernelEvent::Output { data } = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(output_report(&data), Some(&[0xab; 64][..]));
        assert_eq!(output_report(&[0xcd; 64]), Some(&[0xcd; 64][..]));
        assert_eq!(
            output_report(&[0xcd; 65]),
            None,
            "a non-zero report id is not ours"
        );
        assert_eq!(output_report(&[0; 63]), None);
    }

    #[test]
    fn requests_and_replies() {
        let mut ev = vec![0u8; 12];
        ev[0..4].copy_from_slice(&kind::GET_REPORT.to_ne_bytes());
        ev[4..8].copy_from_slice(&77u32.to_ne_bytes());
        assert_eq!(parse(&ev).unwrap(), KernelEvent::GetReport { id: 77 });
        ev[0..4].copy_from_slice(&kind::SET_REPORT.to_ne_bytes());
        assert_eq!(parse(&ev).unwrap(), KernelEvent::SetReport { id: 77 });
        let reply = get_report_reply(77, EIO);
        assert_eq!(u32_at(&reply, 0).unwrap(), 10);
        assert_eq!(u32_at(&reply, 4).unwrap(), 77);
        assert_eq!(u16_at(&reply, 8).unwrap(), EIO);
        let reply = set_report_reply(78, EIO);
        assert_eq!(u32_at(&reply, 0).unwrap(), 14);
        assert_eq!(u32_at(&reply, 4).unwrap(), 78);
        assert_eq!(
            input2(&[1, 2, 3]),
            [12u32.to_ne_bytes().as_slice(), &[3, 0, 1, 2, 3]].concat()
        );
    }

    #[test]
    fn short_and_lying_events_are_errors() {
        assert_eq!(parse(&[1, 0]), Err(AbiError::Truncated(2)));
        let mut ev = output_event(&[0; 64]);
        ev[4 + DATA_MAX..4 + DATA_MAX + 2].copy_from_slice(&5000u16.to_ne_bytes());
        assert_eq!(parse(&ev), Err(AbiError::OutputTooLong(5000)));
        assert_eq!(parse(&ev[..100]), Err(AbiError::Truncated(100)));
        assert_eq!(parse(&99u32.to_ne_bytes()), Ok(KernelEvent::Other(99)));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4400)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn output_round_trip(report in proptest::collection::vec(any::<u8>(), 0..=DATA_MAX)) {
            let ev = output_event(&report);
            prop_assert_eq!(parse(&ev), Ok(KernelEvent::Output { data: report }));
        }
    }
}
