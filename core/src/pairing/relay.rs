//! Frames between a client (bridge or phone) and the relay (docs/pairing-protocol.md §3.2):
//! each websocket binary message is `type (1 byte) ‖ payload`. The relay and both clients
//! share these types; the relay never looks inside [`RelayFrame::Data`].

use ciborium::value::Value;
use thiserror::Error;

use super::encoding::{hex_decode, hex_encode};
use super::mailbox::{AttachProof, NONCE_LEN};
use crate::ctap::cbor::{self, MapBuilder, MapReader};

/// The largest frame (websocket message) either side may send.
pub const MAX_RELAY_FRAME: usize = 16 * 1024;
/// The largest DATA payload.
pub const MAX_DATA_LEN: usize = MAX_RELAY_FRAME - 1;
/// The longest push token or webhook URL.
pub const MAX_PUSH_TARGET_LEN: usize = 4096;

/// The length of a wake id.
pub const WAKE_ID_LEN: usize = 16;

/// The keys of the PUSH_REGISTER map, in one place.
pub mod push_key {
    pub const PROVIDER: i64 = 1;
    pub const TARGET: i64 = 2;
    pub const ENVIRONMENT: i64 = 3;
    pub const WAKE_ID: i64 = 4;
}

/// Frame type bytes, in one place.
pub mod frame_type {
    pub const DATA: u8 = 0x01;
    pub const WAKE: u8 = 0x02;
    pub const PUSH_REGISTER: u8 = 0x03;
    pub const PUSH_UNREGISTER: u8 = 0x04;
    pub const DELETE: u8 = 0x05;
    pub const ATTACH: u8 = 0x06;
    pub const PEER: u8 = 0x81;
    pub const WAKE_RESULT: u8 = 0x82;
    pub const ERROR: u8 = 0x83;
    pub const ACK: u8 = 0x84;
    pub const CHALLENGE: u8 = 0x85;
}

/// Close codes the relay uses.
pub mod close_code {
    /// A newer connection of the same role attached to the mailbox.
    pub const REPLACED: u16 = 4001;
    /// The mailbox was deleted (the pairing revoked).
    pub const REVOKED: u16 = 4010;
    /// The ATTACH did not answer the challenge for this mailbox, came late, or something
    /// else came first.
    pub const FORBIDDEN: u16 = 4003;
}

/// A push provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushProvider {
    Fcm,
    Apns,
    Webhook,
}

impl PushProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            PushProvider::Fcm => "fcm",
            PushProvider::Apns => "apns",
            PushProvider::Webhook => "webhook",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "fcm" => Some(Self::Fcm),
            "apns" => Some(Self::Apns),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }
}

/// APNs environment of a device token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApnsEnvironment {
    Production,
    Sandbox,
}

impl ApnsEnvironment {
    pub fn as_str(self) -> &'static str {
        match self {
            ApnsEnvironment::Production => "production",
            ApnsEnvironment::Sandbox => "sandbox",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "production" => Some(Self::Production),
            "sandbox" => Some(Self::Sandbox),
            _ => None,
        }
    }
}

/// What a push carries instead of the mailbox id (docs/pairing-protocol.md §3.3): 16 random
/// bytes the phone picks for each registration, so that the push provider sees no stable
/// per-pairing id and cannot tell whether two wakes of different sessions are for the same
/// pairing; only the phone maps it back to a pairing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WakeId(pub [u8; WAKE_ID_LEN]);

impl WakeId {
    /// A new random id.
    pub fn random() -> Self {
        let mut id = [0u8; WAKE_ID_LEN];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        Self(id)
    }

    /// Lower-case hex (32 digits), as in push payloads.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// From 32 hex digits, either case.
    pub fn from_hex(text: &str) -> Option<Self> {
        hex_decode(text).map(Self)
    }
}

impl std::fmt::Debug for WakeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WakeId({})", self.to_hex())
    }
}

/// Where the relay sends a mailbox's wake-ups, and the wake id they carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    pub provider: PushProvider,
    /// FCM registration token, APNs device token (hex) or webhook URL.
    pub target: String,
    /// APNs only.
    pub environment: Option<ApnsEnvironment>,
    /// The id the pushes for this registration carry.
    pub wake: WakeId,
}

/// Why a PUSH_REGISTER payload is refused (the relay answers ERROR `bad_push_target` with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PushTargetError {
    #[error("not a CBOR map")]
    NotAMap,
    #[error("no push provider, or not one of fcm, apns, webhook")]
    Provider,
    #[error("no push target, or not 1..={MAX_PUSH_TARGET_LEN} bytes of text")]
    Target,
    #[error("APNs environment is not production or sandbox")]
    Environment,
    /// A phone from before wake ids (key 4): it must be updated, its pushes would name the
    /// mailbox.
    #[error("no wake id (key 4): update PocketKey")]
    MissingWakeId,
    #[error("the wake id is not {WAKE_ID_LEN} bytes")]
    WakeId,
}

/// What WAKE achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WakeResult {
    AlreadyAttached = 0,
    PushSent = 1,
    NoPushTarget = 2,
    ProviderFailed = 3,
    RateLimited = 4,
}

impl WakeResult {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::AlreadyAttached,
            1 => Self::PushSent,
            2 => Self::NoPushTarget,
            3 => Self::ProviderFailed,
            4 => Self::RateLimited,
            _ => return None,
        })
    }
}

/// ERROR codes (docs/pairing-protocol.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RelayErrorCode {
    Malformed = 1,
    NotAllowedForRole = 2,
    TooLarge = 3,
    RateLimited = 4,
    /// The push target will be refused again as it is (too long, a provider this relay does
    /// not offer, a webhook URL it does not allow, no wake id): the phone tells its user.
    BadPushTarget = 5,
    PeerAbsent = 6,
    /// The relay's own passing trouble (its store full or unavailable): the same frame may
    /// succeed later.
    Unavailable = 7,
}

impl RelayErrorCode {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Malformed,
            2 => Self::NotAllowedForRole,
            3 => Self::TooLarge,
            4 => Self::RateLimited,
            5 => Self::BadPushTarget,
            6 => Self::PeerAbsent,
            7 => Self::Unavailable,
            _ => return None,
        })
    }
}

/// One relay frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayFrame {
    /// To or from the peer, opaque (an end-to-end frame, see `session`).
    Data(Vec<u8>),
    /// Bridge → relay: wake the phone.
    Wake,
    /// Phone → relay.
    PushRegister(PushTarget),
    /// Phone → relay.
    PushUnregister,
    /// Either → relay: revoke the mailbox.
    Delete,
    /// Relay → client: whether the peer is attached.
    Peer { present: bool },
    /// Relay → bridge.
    WakeResult(WakeResult),
    /// Relay → client. Unknown codes are kept as their byte.
    Error { code: u8, message: String },
    /// Relay → client: the acknowledged frame type.
    Ack(u8),
    /// Relay → client, the first frame after the upgrade: the nonce ATTACH must sign.
    Challenge([u8; NONCE_LEN]),
    /// Client → relay, the answer to CHALLENGE; nothing else is accepted before it.
    Attach(AttachProof),
}

/// Why bytes are not a relay frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RelayFrameError {
    #[error("empty frame")]
    Empty,
    #[error("a {0}-byte frame is larger than {MAX_RELAY_FRAME}")]
    TooLarge(usize),
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    #[error("malformed payload for frame type {0:#04x}")]
    Malformed(u8),
    #[error("PUSH_REGISTER: {0}")]
    PushTarget(#[from] PushTargetError),
}

impl RelayFrame {
    pub fn frame_type(&self) -> u8 {
        use frame_type::*;
        match self {
            RelayFrame::Data(_) => DATA,
            RelayFrame::Wake => WAKE,
            RelayFrame::PushRegister(_) => PUSH_REGISTER,
            RelayFrame::PushUnregister => PUSH_UNREGISTER,
            RelayFrame::Delete => DELETE,
            RelayFrame::Peer { .. } => PEER,
            RelayFrame::WakeResult(_) => WAKE_RESULT,
            RelayFrame::Error { .. } => ERROR,
            RelayFrame::Ack(_) => ACK,
            RelayFrame::Challenge(_) => CHALLENGE,
            RelayFrame::Attach(_) => ATTACH,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.frame_type()];
        match self {
            RelayFrame::Data(bytes) => out.extend_from_slice(bytes),
            RelayFrame::Wake | RelayFrame::PushUnregister | RelayFrame::Delete => {}
            RelayFrame::PushRegister(target) => out.extend(cbor::encode(
                MapBuilder::new()
                    .put(push_key::PROVIDER, target.provider.as_str())
                    .put(push_key::TARGET, target.target.as_str())
                    .put_opt(
                        push_key::ENVIRONMENT,
                        target.environment.map(|e| e.as_str()),
                    )
                    .put(push_key::WAKE_ID, Value::Bytes(target.wake.0.to_vec()))
                    .build(),
            )),
            RelayFrame::Peer { present } => out.push(u8::from(*present)),
            RelayFrame::WakeResult(result) => out.push(*result as u8),
            RelayFrame::Error { code, message } => {
                out.push(*code);
                out.extend_from_slice(message.as_bytes());
            }
            RelayFrame::Ack(kind) => out.push(*kind),
            RelayFrame::Challenge(nonce) => out.extend_from_slice(nonce),
            RelayFrame::Attach(proof) => out.extend(proof.encode()),
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RelayFrameError> {
        use frame_type::*;
        if bytes.len() > MAX_RELAY_FRAME {
            return Err(RelayFrameError::TooLarge(bytes.len()));
        }
        let (&kind, payload) = bytes.split_first().ok_or(RelayFrameError::Empty)?;
        let malformed = RelayFrameError::Malformed(kind);
        let empty = |frame: RelayFrame| {
            if payload.is_empty() {
                Ok(frame)
            } else {
                Err(malformed.clone())
            }
        };
        let one_byte = || match payload {
            [b] => Ok(*b),
            _ => Err(malformed.clone()),
        };
        match kind {
            DATA if payload.is_empty() => Err(malformed),
            DATA => Ok(RelayFrame::Data(payload.to_vec())),
            WAKE => empty(RelayFrame::Wake),
            PUSH_UNREGISTER => empty(RelayFrame::PushUnregister),
            DELETE => empty(RelayFrame::Delete),
            PUSH_REGISTER => Ok(RelayFrame::PushRegister(decode_push_target(payload)?)),
            PEER => match one_byte()? {
                0 => Ok(RelayFrame::Peer { present: false }),
                1 => Ok(RelayFrame::Peer { present: true }),
                _ => Err(malformed),
            },
            WAKE_RESULT => WakeResult::from_byte(one_byte()?)
                .map(RelayFrame::WakeResult)
                .ok_or(malformed),
            ERROR => {
                let (&code, text) = payload.split_first().ok_or(malformed.clone())?;
                let message = String::from_utf8(text.to_vec()).map_err(|_| malformed)?;
                Ok(RelayFrame::Error { code, message })
            }
            ACK => Ok(RelayFrame::Ack(one_byte()?)),
            CHALLENGE => payload
                .try_into()
                .map(RelayFrame::Challenge)
                .map_err(|_| malformed),
            ATTACH => AttachProof::decode(payload)
                .map(RelayFrame::Attach)
                .ok_or(malformed),
            other => Err(RelayFrameError::UnknownType(other)),
        }
    }
}

fn decode_push_target(payload: &[u8]) -> Result<PushTarget, PushTargetError> {
    use PushTargetError as E;
    let value = cbor::decode(payload).map_err(|_| E::NotAMap)?;
    let mut map = MapReader::new(value).map_err(|_| E::NotAMap)?;
    let text = |v: Value| v.into_text().ok();
    let provider = map
        .take(push_key::PROVIDER)
        .and_then(text)
        .and_then(|t| PushProvider::parse(&t))
        .ok_or(E::Provider)?;
    let target = map
        .take(push_key::TARGET)
        .and_then(text)
        .filter(|t| (1..=MAX_PUSH_TARGET_LEN).contains(&t.len()))
        .ok_or(E::Target)?;
    let environment = match map.take(push_key::ENVIRONMENT) {
        None => None,
        Some(v) => Some(
            text(v)
                .and_then(|t| ApnsEnvironment::parse(&t))
                .ok_or(E::Environment)?,
        ),
    };
    let wake = match map.take(push_key::WAKE_ID) {
        None => return Err(E::MissingWakeId),
        Some(Value::Bytes(bytes)) => bytes.try_into().map(WakeId).map_err(|_| E::WakeId)?,
        Some(_) => return Err(E::WakeId),
    };
    Ok(PushTarget {
        provider,
        target,
        environment,
        wake,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_frame_round_trips() {
        let frames = [
            RelayFrame::Data(vec![1, 2, 3]),
            RelayFrame::Wake,
            RelayFrame::PushRegister(PushTarget {
                provider: PushProvider::Apns,
                target: "abcd".into(),
                environment: Some(ApnsEnvironment::Sandbox),
                wake: WakeId([7; WAKE_ID_LEN]),
            }),
            RelayFrame::PushRegister(PushTarget {
                provider: PushProvider::Webhook,
                target: "http://127.0.0.1:9/wake".into(),
                environment: None,
                wake: WakeId::random(),
            }),
            RelayFrame::PushUnregister,
            RelayFrame::Delete,
            RelayFrame::Peer { present: true },
            RelayFrame::Peer { present: false },
            RelayFrame::WakeResult(WakeResult::RateLimited),
            RelayFrame::Error {
                code: RelayErrorCode::PeerAbsent as u8,
                message: "peer absent".into(),
            },
            RelayFrame::Ack(frame_type::DELETE),
            RelayFrame::Challenge([9; NONCE_LEN]),
            RelayFrame::Attach(AttachProof {
                role: crate::pairing::Role::Phone,
                key: [1; 32],
                peer: [2; 32],
                signature: [3; 64],
            }),
        ];
        for frame in frames {
            assert_eq!(RelayFrame::decode(&frame.encode()).unwrap(), frame);
        }
        assert_eq!(RelayFrame::Wake.encode(), [0x02]);
        assert_eq!(RelayFrame::Peer { present: true }.encode(), [0x81, 1]);
    }

    #[test]
    fn malformed_frames() {
        use RelayFrameError::*;
        assert_eq!(RelayFrame::decode(&[]), Err(Empty));
        assert_eq!(RelayFrame::decode(&[0x01]), Err(Malformed(0x01)));
        assert_eq!(RelayFrame::decode(&[0x02, 0]), Err(Malformed(0x02)));
        assert_eq!(RelayFrame::decode(&[0x81, 2]), Err(Malformed(0x81)));
        assert_eq!(RelayFrame::decode(&[0x82, 9]), Err(Malformed(0x82)));
        assert_eq!(RelayFrame::decode(&[0x83, 1, 0xff]), Err(Malformed(0x83)));
        assert_eq!(
            RelayFrame::decode(&[0x03, 0xa0]),
            Err(PushTarget(PushTargetError::Provider))
        );
        assert_eq!(RelayFrame::decode(&[0x7f]), Err(UnknownType(0x7f)));
        assert_eq!(RelayFrame::decode(&[0x85, 1]), Err(Malformed(0x85)));
        assert_eq!(RelayFrame::decode(&[0x06, 1, 2]), Err(Malformed(0x06)));
        let big = vec![1u8; MAX_RELAY_FRAME + 1];
        assert_eq!(RelayFrame::decode(&big), Err(TooLarge(MAX_RELAY_FRAME + 1)));
        assert!(RelayFrame::decode(&big[..MAX_RELAY_FRAME]).is_ok());
        let unknown_provider = [
            vec![0x03],
            cbor::encode(MapBuilder::new().put(1, "sms").put(2, "x").build()),
        ]
        .concat();
        assert_eq!(
            RelayFrame::decode(&unknown_provider),
            Err(PushTarget(PushTargetError::Provider))
        );
    }

    fn push_register(map: MapBuilder) -> Vec<u8> {
        [vec![frame_type::PUSH_REGISTER], cbor::encode(map.build())].concat()
    }

    #[test]
    fn push_register_carries_the_wake_id_under_key_4() {
        let wake = WakeId([0xab; WAKE_ID_LEN]);
        let frame = RelayFrame::PushRegister(PushTarget {
            provider: PushProvider::Fcm,
            target: "token".into(),
            environment: None,
            wake,
        });
        let bytes = frame.encode();
        let expected = push_register(
            MapBuilder::new()
                .put(1, "fcm")
                .put(2, "token")
                .put(4, Value::Bytes(vec![0xab; WAKE_ID_LEN])),
        );
        assert_eq!(bytes, expected);
        assert_eq!(RelayFrame::decode(&bytes), Ok(frame));
        assert_eq!(WakeId::from_hex(&wake.to_hex()), Some(wake));
        assert_eq!(WakeId::from_hex(&"AB".repeat(WAKE_ID_LEN)), Some(wake));
        assert_eq!(WakeId::from_hex("ab"), None);
        assert_ne!(WakeId::random(), WakeId::random());
    }

    #[test]
    fn push_register_refusals_are_typed() {
        use PushTargetError as E;
        let base = || MapBuilder::new().put(1, "webhook").put(2, "http://h/");
        let wake = || Value::Bytes(vec![1; WAKE_ID_LEN]);
        let cases = [
            // A phone from before wake ids.
            (base(), E::MissingWakeId),
            (base().put(4, Value::Bytes(vec![1; 15])), E::WakeId),
            (base().put(4, Value::Bytes(vec![1; 17])), E::WakeId),
            (base().put(4, "0101010101010101"), E::WakeId),
            (
                MapBuilder::new().put(2, "http://h/").put(4, wake()),
                E::Provider,
            ),
            (
                MapBuilder::new().put(1, "webhook").put(4, wake()),
                E::Target,
            ),
            (
                MapBuilder::new().put(1, "fcm").put(2, "").put(4, wake()),
                E::Target,
            ),
            (base().put(3, "staging").put(4, wake()), E::Environment),
        ];
        for (map, error) in cases {
            let bytes = push_register(map);
            assert_eq!(
                RelayFrame::decode(&bytes),
                Err(RelayFrameError::PushTarget(error)),
                "{bytes:02x?}"
            );
        }
        assert_eq!(
            RelayFrame::decode(&[frame_type::PUSH_REGISTER, 0x01]),
            Err(RelayFrameError::PushTarget(E::NotAMap))
        );
        let long = "x".repeat(MAX_PUSH_TARGET_LEN + 1);
        assert_eq!(
            RelayFrame::decode(&push_register(
                MapBuilder::new()
                    .put(1, "fcm")
                    .put(2, long.as_str())
                    .put(4, wake())
            )),
            Err(RelayFrameError::PushTarget(E::Target))
        );
        assert!(E::MissingWakeId.to_string().contains("update PocketKey"));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(frame) = RelayFrame::decode(&bytes) {
                // Whatever decodes re-encodes to something that decodes the same.
                prop_assert_eq!(RelayFrame::decode(&frame.encode()).unwrap(), frame);
            }
        }
    }
}
