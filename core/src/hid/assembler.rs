//! Reassembly of one CTAPHID message from its init packet and continuation packets.
//!
//! The server uses this for requests; clients (tests, the bridge) can use it for responses.

use std::time::{Duration, Instant};

use super::packet::{HidError, MAX_MESSAGE_LEN};

/// A complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub cid: u32,
    /// Command byte, high bit stripped.
    pub cmd: u8,
    pub payload: Vec<u8>,
}

/// A message whose init packet has arrived but not all of its continuation packets.
#[derive(Debug, Clone)]
pub struct Assembly {
    cid: u32,
    cmd: u8,
    bcnt: usize,
    buf: Vec<u8>,
    next_seq: u8,
    last_packet: Instant,
}

/// What an init packet started.
#[derive(Debug, Clone)]
pub enum Started {
    /// The whole message fitted in the init packet.
    Complete(Message),
    /// Continuation packets must follow.
    InProgress(Assembly),
}

impl Assembly {
    /// Starts a message from its init packet. `data` is the init packet's data area.
    /// A length beyond [`MAX_MESSAGE_LEN`] is `InvalidLen`.
    pub fn start(
        cid: u32,
        cmd: u8,
        bcnt: u16,
        data: &[u8],
        now: Instant,
    ) -> Result<Started, HidError> {
        let bcnt = usize::from(bcnt);
        if bcnt > MAX_MESSAGE_LEN {
            return Err(HidError::InvalidLen);
        }
        let take = bcnt.min(data.len());
        let mut buf = Vec::with_capacity(bcnt);
        buf.extend_from_slice(data.get(..take).unwrap_or_default());
        if buf.len() == bcnt {
            return Ok(Started::Complete(Message {
                cid,
                cmd,
                payload: buf,
            }));
        }
        Ok(Started::InProgress(Assembly {
            cid,
            cmd,
            bcnt,
            buf,
            next_seq: 0,
            last_packet: now,
        }))
    }

    /// Adds a continuation packet. A sequence number other than the expected one is
    /// `InvalidSeq` (the caller drops the assembly). Returns the message once complete.
    pub fn push(
        &mut self,
        seq: u8,
        data: &[u8],
        now: Instant,
    ) -> Result<Option<Message>, HidError> {
        if seq != self.next_seq {
            return Err(HidError::InvalidSeq);
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        self.last_packet = now;
        let take = (self.bcnt - self.buf.len()).min(data.len());
        self.buf
            .extend_from_slice(data.get(..take).unwrap_or_default());
        if self.buf.len() == self.bcnt {
            Ok(Some(Message {
                cid: self.cid,
                cmd: self.cmd,
                payload: std::mem::take(&mut self.buf),
            }))
        } else {
            Ok(None)
        }
    }

    pub fn cid(&self) -> u32 {
        self.cid
    }

    pub fn cmd(&self) -> u8 {
        self.cmd
    }

    /// When this assembly times out if no further packet arrives.
    pub fn deadline(&self, timeout: Duration) -> Instant {
        self.last_packet + timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_message_completes_at_once() {
        let now = Instant::now();
        match Assembly::start(1, 0x10, 3, &[1, 2, 3, 4, 5], now).unwrap() {
            Started::Complete(m) => assert_eq!(
                m,
                Message {
                    cid: 1,
                    cmd: 0x10,
                    payload: vec![1, 2, 3]
                }
            ),
            Started::InProgress(_) => panic!("should be complete"),
        }
    }

    #[test]
    fn continuation_in_order() {
        let now = Instant::now();
        let Started::InProgress(mut a) = Assembly::start(1, 0x10, 60, &[7; 57], now).unwrap()
        else {
            panic!()
        };
        let m = a.push(0, &[8; 59], now).unwrap().unwrap();
        assert_eq!(m.payload.len(), 60);
        assert_eq!(&m.payload[55..], &[7, 7, 8, 8, 8]);
    }

    #[test]
    fn wrong_seq_is_invalid_seq() {
        let now = Instant::now();
        let Started::InProgress(mut a) = Assembly::start(1, 0x10, 200, &[7; 57], now).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.push(1, &[0; 59], now), Err(HidError::InvalidSeq));
    }

    #[test]
    fn too_long_is_invalid_len() {
        let now = Instant::now();
        assert!(matches!(
            Assembly::start(1, 0x10, 7610, &[0; 57], now),
            Err(HidError::InvalidLen)
        ));
        assert!(Assembly::start(1, 0x10, 7609, &[0; 57], now).is_ok());
    }
}
