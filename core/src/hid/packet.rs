//! CTAPHID report framing (CTAP 2.1 §11.2.4): parsing one 64-byte report and splitting a
//! message into reports.

/// Every CTAPHID report is exactly this long (no report-ID byte).
pub const REPORT_LEN: usize = 64;
/// Payload bytes carried by an initialization packet.
pub const INIT_DATA_LEN: usize = REPORT_LEN - 7;
/// Payload bytes carried by a continuation packet.
pub const CONT_DATA_LEN: usize = REPORT_LEN - 5;
/// Highest continuation sequence number.
pub const MAX_SEQ: u8 = 0x7f;
/// The longest message CTAPHID can carry: one init packet and 128 continuation packets.
pub const MAX_MESSAGE_LEN: usize = INIT_DATA_LEN + (MAX_SEQ as usize + 1) * CONT_DATA_LEN;
/// The broadcast channel, used only to allocate channels with INIT.
pub const BROADCAST_CID: u32 = 0xffff_ffff;
/// The reserved, never valid, channel id.
pub const RESERVED_CID: u32 = 0;
/// CTAPHID protocol version reported by INIT.
pub const PROTOCOL_VERSION: u8 = 2;

/// One HID report.
pub type Report = [u8; REPORT_LEN];

/// CTAPHID commands (without the high "init packet" bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    Ping = 0x01,
    Msg = 0x03,
    Lock = 0x04,
    Init = 0x06,
    Wink = 0x08,
    Cbor = 0x10,
    Cancel = 0x11,
    Keepalive = 0x3b,
    Error = 0x3f,
}

impl Command {
    /// The command for a (high-bit-stripped) command byte, if it is one we know.
    pub fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte & 0x7f {
            0x01 => Self::Ping,
            0x03 => Self::Msg,
            0x04 => Self::Lock,
            0x06 => Self::Init,
            0x08 => Self::Wink,
            0x10 => Self::Cbor,
            0x11 => Self::Cancel,
            0x3b => Self::Keepalive,
            0x3f => Self::Error,
            _ => return None,
        })
    }
}

impl From<Command> for u8 {
    fn from(cmd: Command) -> u8 {
        cmd as u8
    }
}

/// CTAPHID_ERROR codes (CTAP 2.1 §11.2.9.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HidError {
    InvalidCmd = 0x01,
    InvalidPar = 0x02,
    InvalidLen = 0x03,
    InvalidSeq = 0x04,
    MsgTimeout = 0x05,
    ChannelBusy = 0x06,
    LockRequired = 0x0a,
    InvalidChannel = 0x0b,
    Other = 0x7f,
}

impl HidError {
    pub fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            0x01 => Self::InvalidCmd,
            0x02 => Self::InvalidPar,
            0x03 => Self::InvalidLen,
            0x04 => Self::InvalidSeq,
            0x05 => Self::MsgTimeout,
            0x06 => Self::ChannelBusy,
            0x0a => Self::LockRequired,
            0x0b => Self::InvalidChannel,
            0x7f => Self::Other,
            _ => return None,
        })
    }
}

/// CTAPHID_KEEPALIVE status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum KeepaliveStatus {
    /// The authenticator is still working on the request.
    Processing = 1,
    /// The authenticator is waiting for the user.
    UpNeeded = 2,
}

/// CAPABILITY_WINK: the authenticator implements WINK.
pub const CAPABILITY_WINK: u8 = 0x01;
/// CAPABILITY_CBOR: the authenticator implements CBOR (CTAP2).
pub const CAPABILITY_CBOR: u8 = 0x04;
/// CAPABILITY_NMSG: the authenticator does NOT implement MSG (CTAP1). We never set it.
pub const CAPABILITY_NMSG: u8 = 0x08;

/// A report that is not a CTAPHID packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("a CTAPHID report is {REPORT_LEN} bytes, got {0}")]
    WrongLength(usize),
}

/// A parsed report, borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// The first packet of a message.
    Init {
        cid: u32,
        /// The command byte with the high bit stripped (it may be a command we do not know).
        cmd: u8,
        /// The total payload length announced for the message.
        bcnt: u16,
        /// The [`INIT_DATA_LEN`] data bytes of this packet (including any padding).
        data: &'a [u8],
    },
    /// A following packet.
    Cont {
        cid: u32,
        seq: u8,
        /// The [`CONT_DATA_LEN`] data bytes of this packet (including any padding).
        data: &'a [u8],
    },
}

impl<'a> Packet<'a> {
    /// Parses one report. Anything but exactly [`REPORT_LEN`] bytes is an error.
    pub fn parse(report: &'a [u8]) -> Result<Self, PacketError> {
        let report: &'a Report = report
            .try_into()
            .map_err(|_| PacketError::WrongLength(report.len()))?;
        let [c0, c1, c2, c3, kind, rest @ ..] = report;
        let cid = u32::from_be_bytes([*c0, *c1, *c2, *c3]);
        if kind & 0x80 != 0 {
            let [bh, bl, data @ ..] = rest;
            Ok(Packet::Init {
                cid,
                cmd: kind & 0x7f,
                bcnt: u16::from_be_bytes([*bh, *bl]),
                data,
            })
        } else {
            Ok(Packet::Cont {
                cid,
                seq: *kind,
                data: rest,
            })
        }
    }

    pub fn cid(&self) -> u32 {
        match self {
            Packet::Init { cid, .. } | Packet::Cont { cid, .. } => *cid,
        }
    }
}

/// The channel id of a report, if it is long enough to have one.
pub fn report_cid(report: &[u8]) -> Option<u32> {
    match report {
        [c0, c1, c2, c3, ..] => Some(u32::from_be_bytes([*c0, *c1, *c2, *c3])),
        _ => None,
    }
}

/// A payload longer than [`MAX_MESSAGE_LEN`] cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a CTAPHID message holds at most {MAX_MESSAGE_LEN} bytes, got {0}")]
pub struct MessageTooLong(pub usize);

/// Splits a message into reports: one init packet then continuation packets, zero-padded.
/// `cmd` is the command byte (the high bit is set here).
pub fn fragment(cid: u32, cmd: u8, payload: &[u8]) -> Result<Vec<Report>, MessageTooLong> {
    let bcnt = u16::try_from(payload.len())
        .ok()
        .filter(|_| payload.len() <= MAX_MESSAGE_LEN)
        .ok_or(MessageTooLong(payload.len()))?;
    let first_len = payload.len().min(INIT_DATA_LEN);
    let (first, rest) = payload.split_at(first_len);
    let mut reports = Vec::with_capacity(1 + rest.len().div_ceil(CONT_DATA_LEN));

    let mut init = [0u8; REPORT_LEN];
    init[..4].copy_from_slice(&cid.to_be_bytes());
    init[4] = cmd | 0x80;
    init[5..7].copy_from_slice(&bcnt.to_be_bytes());
    init[7..7 + first.len()].copy_from_slice(first);
    reports.push(init);

    for (seq, chunk) in rest.chunks(CONT_DATA_LEN).enumerate() {
        let mut cont = [0u8; REPORT_LEN];
        cont[..4].copy_from_slice(&cid.to_be_bytes());
        // At most 128 chunks because of the length check above.
        cont[4] = seq as u8 & MAX_SEQ;
        cont[5..5 + chunk.len()].copy_from_slice(chunk);
        reports.push(cont);
    }
    Ok(reports)
}

/// A single-packet message (its payload fits the init packet).
fn single(cid: u32, cmd: Command, payload: &[u8]) -> Report {
    let mut report = [0u8; REPORT_LEN];
    let len = payload.len().min(INIT_DATA_LEN);
    report[..4].copy_from_slice(&cid.to_be_bytes());
    report[4] = cmd as u8 | 0x80;
    report[5..7].copy_from_slice(&(len as u16).to_be_bytes());
    report[7..7 + len].copy_from_slice(&payload[..len]);
    report
}

/// A CTAPHID_ERROR report.
pub fn error_report(cid: u32, error: HidError) -> Report {
    single(cid, Command::Error, &[error as u8])
}

/// A CTAPHID_KEEPALIVE report.
pub fn keepalive_report(cid: u32, status: KeepaliveStatus) -> Report {
    single(cid, Command::Keepalive, &[status as u8])
}

/// A report with an empty payload (WINK and LOCK answers).
pub(crate) fn empty_report(cid: u32, cmd: Command) -> Report {
    single(cid, cmd, &[])
}

/// The INIT response payload (17 bytes).
pub(crate) fn init_response(
    cid: u32,
    nonce: &[u8; 8],
    new_cid: u32,
    version: (u8, u8, u8),
) -> Report {
    let mut payload = [0u8; 17];
    payload[..8].copy_from_slice(nonce);
    payload[8..12].copy_from_slice(&new_cid.to_be_bytes());
    payload[12] = PROTOCOL_VERSION;
    payload[13] = version.0;
    payload[14] = version.1;
    payload[15] = version.2;
    payload[16] = CAPABILITY_WINK | CAPABILITY_CBOR;
    single(cid, Command::Init, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_message_len_is_7609() {
        assert_eq!(MAX_MESSAGE_LEN, 7609);
    }

    #[test]
    fn parses_init_packet() {
        let mut r = [0u8; 64];
        r[..4].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        r[4] = 0x90;
        r[5] = 0x01;
        r[6] = 0x02;
        r[7] = 0xaa;
        match Packet::parse(&r).unwrap() {
            Packet::Init {
                cid,
                cmd,
                bcnt,
                data,
            } => {
                assert_eq!(cid, 0x0102_0304);
                assert_eq!(cmd, 0x10);
                assert_eq!(bcnt, 0x0102);
                assert_eq!(data.len(), INIT_DATA_LEN);
                assert_eq!(data[0], 0xaa);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_cont_packet() {
        let mut r = [0u8; 64];
        r[..4].copy_from_slice(&7u32.to_be_bytes());
        r[4] = 0x05;
        r[5] = 0xbb;
        match Packet::parse(&r).unwrap() {
            Packet::Cont { cid, seq, data } => {
                assert_eq!((cid, seq), (7, 5));
                assert_eq!(data.len(), CONT_DATA_LEN);
                assert_eq!(data[0], 0xbb);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_lengths_are_errors() {
        for len in [0usize, 1, 4, 5, 7, 63, 65, 128] {
            let r = vec![0x80u8; len];
            assert_eq!(Packet::parse(&r), Err(PacketError::WrongLength(len)));
        }
    }

    #[test]
    fn fragment_sizes() {
        assert_eq!(fragment(1, 0x01, &[]).unwrap().len(), 1);
        assert_eq!(fragment(1, 0x01, &[0; 57]).unwrap().len(), 1);
        assert_eq!(fragment(1, 0x01, &[0; 58]).unwrap().len(), 2);
        assert_eq!(fragment(1, 0x01, &[0; 57 + 59]).unwrap().len(), 2);
        assert_eq!(fragment(1, 0x01, &[0; 57 + 60]).unwrap().len(), 3);
        let max = fragment(1, 0x01, &[0; MAX_MESSAGE_LEN]).unwrap();
        assert_eq!(max.len(), 129);
        assert_eq!(max[128][4], 0x7f);
        assert_eq!(
            fragment(1, 0x01, &[0; MAX_MESSAGE_LEN + 1]),
            Err(MessageTooLong(7610))
        );
        assert_eq!(fragment(1, 0x01, &[0; 70000]), Err(MessageTooLong(70000)));
    }

    #[test]
    fn fragment_layout() {
        let payload: Vec<u8> = (0..100u8).collect();
        let reports = fragment(0xdead_beef, Command::Cbor.into(), &payload).unwrap();
        assert_eq!(&reports[0][..7], &[0xde, 0xad, 0xbe, 0xef, 0x90, 0x00, 100]);
        assert_eq!(&reports[0][7..], &payload[..57]);
        assert_eq!(&reports[1][..5], &[0xde, 0xad, 0xbe, 0xef, 0x00]);
        assert_eq!(&reports[1][5..5 + 43], &payload[57..]);
        assert!(reports[1][5 + 43..].iter().all(|b| *b == 0));
    }

    #[test]
    fn keepalive_and_error_reports() {
        let k = keepalive_report(9, KeepaliveStatus::UpNeeded);
        assert_eq!(&k[..8], &[0, 0, 0, 9, 0xbb, 0, 1, 2]);
        let e = error_report(9, HidError::ChannelBusy);
        assert_eq!(&e[..8], &[0, 0, 0, 9, 0xbf, 0, 1, 6]);
    }

    #[test]
    fn command_bytes() {
        for byte in 0..=255u8 {
            if let Some(cmd) = Command::from_u8(byte) {
                assert_eq!(cmd as u8, byte & 0x7f);
            }
        }
        assert_eq!(Command::from_u8(0x86), Some(Command::Init));
        assert_eq!(Command::from_u8(0x02), None);
    }
}
