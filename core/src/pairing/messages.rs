//! The session messages (docs/pairing-protocol.md §5.2): `type (1 byte) ‖ CBOR map` with
//! unsigned integer keys, the plaintext of one transport frame. The type bytes are in
//! [`message_type`]; unknown CBOR keys are ignored, unknown types are reported as
//! [`DecodeOutcome::Unknown`] so that the session can skip them.

use ciborium::value::Value;
use thiserror::Error;

use super::url::validate_name;
use crate::ctap::cbor::{self, MapBuilder, MapReader};
use crate::engine::RequestKind;

/// The largest message plaintext (type byte included): its encrypted frame fits a relay frame.
pub const MAX_MESSAGE_LEN: usize = 16_256;
/// The longest ping/pong payload.
pub const MAX_PING_LEN: usize = 32;

/// Message type bytes, in one place.
pub mod message_type {
    pub const HELLO: u8 = 0x01;
    pub const GET_INFO: u8 = 0x02;
    pub const CTAP_REQUEST: u8 = 0x10;
    pub const CTAP_RESPONSE: u8 = 0x11;
    pub const PENDING: u8 = 0x12;
    pub const CANCEL: u8 = 0x13;
    pub const PING: u8 = 0x20;
    pub const PONG: u8 = 0x21;
    pub const REVOKE: u8 = 0x30;
    pub const BYE: u8 = 0x31;
}

/// What the phone is doing about an open request (the CTAPHID KEEPALIVE status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PendingStatus {
    Processing = 1,
    UserPresenceNeeded = 2,
}

impl PendingStatus {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Processing),
            2 => Some(Self::UserPresenceNeeded),
            _ => None,
        }
    }
}

/// The first message of each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender's display name (1..=64 bytes, the URL's name rules).
    pub name: String,
    /// The phone's authenticatorGetInfo response CBOR (no status byte); the bridge sends none.
    pub get_info: Option<Vec<u8>>,
}

/// The bridge's name for one browser request, the same in every session it is sent in: the
/// phone runs a request at most once per id (docs/pairing-protocol.md §5.2, "At most once").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub [u8; 16]);

impl RequestId {
    /// A new random id (128 bits: never repeats by chance).
    pub fn random() -> Self {
        use rand_core::{OsRng, RngCore};
        let mut id = [0; 16];
        OsRng.fill_bytes(&mut id);
        Self(id)
    }
}

/// A CTAP request, bridge → phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtapRequest {
    /// This session's sequence number (responses and `Pending` name it).
    pub id: u32,
    /// The browser request's id, kept across sessions when the bridge sends it again.
    pub request_id: RequestId,
    pub kind: RequestKind,
    pub payload: Vec<u8>,
    /// Advisory: who on the computer asks (≤ 64 bytes). Approvals name the computer by the
    /// phone's stored pairing name.
    pub requester: Option<String>,
}

/// One session message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    GetInfo(Vec<u8>),
    CtapRequest(CtapRequest),
    CtapResponse { id: u32, payload: Vec<u8> },
    Pending { id: u32, status: PendingStatus },
    Cancel { id: u32 },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Revoke,
    Bye,
}

/// What a decoded plaintext is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeOutcome {
    Message(Message),
    /// A type this version does not know: to be ignored.
    Unknown(u8),
}

/// Why a message is malformed (ends the session).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    #[error("empty message")]
    Empty,
    #[error("a {0}-byte message is longer than {MAX_MESSAGE_LEN}")]
    TooLong(usize),
    #[error("message type {0:#04x}: malformed CBOR or fields")]
    Malformed(u8),
}

impl Message {
    pub fn message_type(&self) -> u8 {
        use message_type::*;
        match self {
            Message::Hello(_) => HELLO,
            Message::GetInfo(_) => GET_INFO,
            Message::CtapRequest(_) => CTAP_REQUEST,
            Message::CtapResponse { .. } => CTAP_RESPONSE,
            Message::Pending { .. } => PENDING,
            Message::Cancel { .. } => CANCEL,
            Message::Ping(_) => PING,
            Message::Pong(_) => PONG,
            Message::Revoke => REVOKE,
            Message::Bye => BYE,
        }
    }

    /// The plaintext: type byte ‖ canonical CBOR map. Length is checked by the session.
    pub fn encode(&self) -> Vec<u8> {
        let map = match self {
            Message::Hello(hello) => MapBuilder::new()
                .put(1, hello.name.as_str())
                .put_opt(2, hello.get_info.clone().map(Value::Bytes)),
            Message::GetInfo(info) => MapBuilder::new().put(1, Value::Bytes(info.clone())),
            Message::CtapRequest(r) => MapBuilder::new()
                .put(1, r.id)
                .put(2, r.kind as u8)
                .put(3, Value::Bytes(r.payload.clone()))
                .put_opt(4, r.requester.as_deref())
                .put(5, Value::Bytes(r.request_id.0.to_vec())),
            Message::CtapResponse { id, payload } => MapBuilder::new()
                .put(1, *id)
                .put(2, Value::Bytes(payload.clone())),
            Message::Pending { id, status } => MapBuilder::new().put(1, *id).put(2, *status as u8),
            Message::Cancel { id } => MapBuilder::new().put(1, *id),
            Message::Ping(data) | Message::Pong(data) => {
                MapBuilder::new().put(1, Value::Bytes(data.clone()))
            }
            Message::Revoke | Message::Bye => MapBuilder::new(),
        };
        let mut out = vec![self.message_type()];
        out.extend(cbor::encode(map.build()));
        out
    }

    /// Reads a plaintext. Unknown types are not errors (the caller skips them).
    pub fn decode(bytes: &[u8]) -> Result<DecodeOutcome, MessageError> {
        use message_type::*;
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(MessageError::TooLong(bytes.len()));
        }
        let (&kind, body) = bytes.split_first().ok_or(MessageError::Empty)?;
        if !matches!(
            kind,
            HELLO
                | GET_INFO
                | CTAP_REQUEST
                | CTAP_RESPONSE
                | PENDING
                | CANCEL
                | PING
                | PONG
                | REVOKE
                | BYE
        ) {
            return Ok(DecodeOutcome::Unknown(kind));
        }
        decode_known(kind, body)
            .map(DecodeOutcome::Message)
            .ok_or(MessageError::Malformed(kind))
    }
}

fn decode_known(kind: u8, body: &[u8]) -> Option<Message> {
    use message_type::*;
    let mut map = MapReader::new(cbor::decode(body).ok()?).ok()?;
    let bytes = |v: Value| v.into_bytes().ok();
    let text = |v: Value| v.into_text().ok();
    let uint = |v: Value| -> Option<u64> { cbor::as_uint(v).ok() };
    let id = |map: &mut MapReader| -> Option<u32> { u32::try_from(uint(map.take(1)?)?).ok() };
    Some(match kind {
        HELLO => {
            let name = text(map.take(1)?)?;
            validate_name(&name).ok()?;
            let get_info = match map.take(2) {
                None => None,
                Some(v) => Some(bytes(v)?),
            };
            Message::Hello(Hello { name, get_info })
        }
        GET_INFO => Message::GetInfo(bytes(map.take(1)?)?),
        CTAP_REQUEST => {
            let id = id(&mut map)?;
            let kind = RequestKind::from_byte(u8::try_from(uint(map.take(2)?)?).ok()?)?;
            let payload = bytes(map.take(3)?)?;
            let requester = match map.take(4) {
                None => None,
                Some(v) => {
                    let t = text(v)?;
                    validate_name(&t).ok()?;
                    Some(t)
                }
            };
            let request_id = RequestId(bytes(map.take(5)?)?.try_into().ok()?);
            Message::CtapRequest(CtapRequest {
                id,
                request_id,
                kind,
                payload,
                requester,
            })
        }
        CTAP_RESPONSE => {
            let id = id(&mut map)?;
            Message::CtapResponse {
                id,
                payload: bytes(map.take(2)?)?,
            }
        }
        PENDING => {
            let id = id(&mut map)?;
            let status = PendingStatus::from_byte(u8::try_from(uint(map.take(2)?)?).ok()?)?;
            Message::Pending { id, status }
        }
        CANCEL => Message::Cancel { id: id(&mut map)? },
        PING | PONG => {
            let data = bytes(map.take(1)?)?;
            if data.len() > MAX_PING_LEN {
                return None;
            }
            if kind == PING {
                Message::Ping(data)
            } else {
                Message::Pong(data)
            }
        }
        REVOKE => Message::Revoke,
        BYE => Message::Bye,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn all_messages() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                name: "Pixel 8".into(),
                get_info: Some(vec![0xa1, 0x01, 0x80]),
            }),
            Message::Hello(Hello {
                name: "laptop".into(),
                get_info: None,
            }),
            Message::GetInfo(vec![0xa0]),
            Message::CtapRequest(CtapRequest {
                id: 7,
                request_id: RequestId([0x5a; 16]),
                kind: RequestKind::Cbor,
                payload: vec![0x04],
                requester: Some("firefox".into()),
            }),
            Message::CtapRequest(CtapRequest {
                id: u32::MAX,
                request_id: RequestId([0; 16]),
                kind: RequestKind::Msg,
                payload: vec![0, 1, 0, 0, 0],
                requester: None,
            }),
            Message::CtapResponse {
                id: 7,
                payload: vec![0x00, 0xa0],
            },
            Message::Pending {
                id: 7,
                status: PendingStatus::UserPresenceNeeded,
            },
            Message::Pending {
                id: 8,
                status: PendingStatus::Processing,
            },
            Message::Cancel { id: 7 },
            Message::Ping(vec![1, 2, 3]),
            Message::Pong(vec![]),
            Message::Revoke,
            Message::Bye,
        ]
    }

    #[test]
    fn every_message_round_trips_with_its_type_byte() {
        for message in all_messages() {
            let bytes = message.encode();
            assert_eq!(bytes[0], message.message_type());
            assert_eq!(
                Message::decode(&bytes).unwrap(),
                DecodeOutcome::Message(message.clone()),
                "{message:?}"
            );
        }
        assert_eq!(Message::Bye.encode(), [0x31, 0xa0]);
        assert_eq!(Message::Cancel { id: 1 }.encode(), [0x13, 0xa1, 0x01, 0x01]);
    }

    #[test]
    fn unknown_types_and_keys_are_skipped_malformed_known_types_are_not() {
        assert_eq!(
            Message::decode(&[0x7e, 0xff]),
            Ok(DecodeOutcome::Unknown(0x7e))
        );
        // An extra key in a known message is ignored.
        let extra = [
            vec![0x13],
            cbor::encode(MapBuilder::new().put(1, 5).put(9, "x").build()),
        ]
        .concat();
        assert_eq!(
            Message::decode(&extra),
            Ok(DecodeOutcome::Message(Message::Cancel { id: 5 }))
        );
        let bad = |bytes: Vec<u8>| Message::decode(&bytes).unwrap_err();
        assert_eq!(bad(vec![]), MessageError::Empty);
        assert_eq!(bad(vec![0x13]), MessageError::Malformed(0x13));
        assert_eq!(bad(vec![0x13, 0xa0]), MessageError::Malformed(0x13));
        assert_eq!(bad(vec![0x31, 0xa0, 0x00]), MessageError::Malformed(0x31));
        let big_id = [
            vec![0x13],
            cbor::encode(MapBuilder::new().put(1, 1u64 << 32).build()),
        ]
        .concat();
        assert_eq!(bad(big_id), MessageError::Malformed(0x13));
        let bad_name = [
            vec![0x01],
            cbor::encode(MapBuilder::new().put(1, " x").build()),
        ]
        .concat();
        assert_eq!(bad(bad_name), MessageError::Malformed(0x01));
        let bad_kind = [
            vec![0x10],
            cbor::encode(
                MapBuilder::new()
                    .put(1, 1)
                    .put(2, 0x06)
                    .put(3, Value::Bytes(vec![]))
                    .build(),
            ),
        ]
        .concat();
        assert_eq!(bad(bad_kind), MessageError::Malformed(0x10));
        // A request must carry its 16-byte request id (key 5).
        for rid in [None, Some(vec![0; 15]), Some(vec![0; 17])] {
            let request = [
                vec![0x10],
                cbor::encode(
                    MapBuilder::new()
                        .put(1, 1)
                        .put(2, 0x10)
                        .put(3, Value::Bytes(vec![4]))
                        .put_opt(5, rid.map(Value::Bytes))
                        .build(),
                ),
            ]
            .concat();
            assert_eq!(bad(request), MessageError::Malformed(0x10));
        }
        let long_ping = Message::Ping(vec![0; MAX_PING_LEN + 1]).encode();
        assert_eq!(bad(long_ping), MessageError::Malformed(0x20));
        assert_eq!(
            bad(vec![0x01; MAX_MESSAGE_LEN + 1]),
            MessageError::TooLong(MAX_MESSAGE_LEN + 1)
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_known_types(kind in 0u8..0x40, body in proptest::collection::vec(any::<u8>(), 0..100)) {
            let bytes = [vec![kind], body].concat();
            if let Ok(DecodeOutcome::Message(m)) = Message::decode(&bytes) {
                prop_assert_eq!(m.message_type(), kind);
            }
        }

        #[test]
        fn requests_round_trip(id in any::<u32>(), rid in any::<[u8; 16]>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let m = Message::CtapRequest(CtapRequest { id, request_id: RequestId(rid), kind: RequestKind::Cbor, payload, requester: None });
            prop_assert_eq!(Message::decode(&m.encode()).unwrap(), DecodeOutcome::Message(m));
        }
    }
}
