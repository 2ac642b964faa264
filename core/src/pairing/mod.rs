//! Pairing the phone with a computer (docs/pairing-protocol.md), free of I/O.
//!
//! The desktop *bridge* shows a `pocketkey://pair?…` QR code; the phone scans it and the two
//! run a Noise handshake through a relay mailbox; from then on every session is a mutually
//! authenticated Noise KK handshake followed by encrypted CTAP requests and responses. The
//! wire protocol is specified in `docs/pairing-protocol.md`; this module does every
//! byte-level step of it for both roles, and the runtimes (websockets, timers, push, HID) live
//! elsewhere and feed bytes in.
//!
//! | module | job |
//! |---|---|
//! | [`url`] | the pairing URL: parse, build, field rules |
//! | [`offer`] | the bridge's one-time offer (static key + secret) behind a QR code |
//! | [`mailbox`] | mailbox ids and attach keys; the relay's stateless check of an attach (a signature over its challenge) |
//! | [`relay`] | the frames between a client and the relay (DATA, WAKE, push registration…) |
//! | [`confirm`] | the six-digit confirmation code of first contact, from the handshake hash |
//! | [`handshake`] | `Noise_XKpsk3_P256_AESGCM_SHA256` (first contact) and `Noise_KK_…` (sessions) |
//! | [`messages`] | the session messages and their type bytes |
//! | [`session`] | the sans-IO session for either role: frames in, frames/events/deadlines out |
//! | [`delivery`] | the phone's memory of the last request, so that a repeat never runs twice |
//! | [`records`] | the pairing record and the sealing of our static key |
//! | [`store`] | the pairing records in their own small SQLite file |
//!
//! The phone's first contact, with the runtime's part in brackets:
//!
//! ```text
//! url::PairingUrl::parse(scanned)
//! mailbox::MailboxKeys::rendezvous(k, s).attach(Phone)         → [websocket to the relay]
//! session::Session::phone_first_contact(url, new key, hello, now)
//! receive(DATA payload) / poll_frame → [DATA] / poll_event
//!   ShowCode(code)                → [show the code; the computer's user compares it]
//!   Established { new_pairing }   → store.insert(PairingRecord::from_new(..)); bye(); detach
//!   Refused                       → [the computer's user said no: nothing stored]
//! record.mailbox_keys().attach(Phone)                          → [attach, PUSH_REGISTER]
//! ```
//!
//! Then, when woken: `record.session(hello, now)`, `CtapRequest` events to the engine,
//! `set_status` while asking the user, `respond`. The bridge mirrors it with
//! `Session::bridge_first_contact(offer, hello)` (its `ConfirmationNeeded` answered by
//! `confirm()` or `refuse()`), `record.session(..)` per phone HS1,
//! `send_request`, `cancel`, and `Pending`/`CtapResponse` events.

pub mod confirm;
pub mod delivery;
pub mod encoding;
pub mod handshake;
pub mod mailbox;
pub mod messages;
pub mod offer;
pub mod records;
pub mod relay;
pub mod session;
pub mod store;
pub mod url;
pub mod wake;

pub use confirm::ConfirmationCode;
pub use mailbox::{MailboxId, MailboxKeys, PairingId};
pub use messages::{CtapRequest, Hello, Message, PendingStatus, RequestId};
pub use offer::PairingOffer;
pub use records::PairingRecord;
pub use session::{Event, Session, SessionError, SessionState};
pub use store::{PairingStore, PairingStoreError};
pub use url::{PairingSecret, PairingUrl, UrlError, UrlPolicy};

/// A side of a pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The desktop pairing tool; the Noise responder.
    Bridge,
    /// The phone; the Noise initiator.
    Phone,
}

impl Role {
    /// `bridge` / `phone`, as in the relay's role header and the HKDF labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bridge => "bridge",
            Role::Phone => "phone",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "bridge" => Some(Role::Bridge),
            "phone" => Some(Role::Phone),
            _ => None,
        }
    }

    pub fn other(self) -> Self {
        match self {
            Role::Bridge => Role::Phone,
            Role::Phone => Role::Bridge,
        }
    }

    /// The stored form: 1 bridge, 2 phone.
    pub fn to_byte(self) -> u8 {
        match self {
            Role::Bridge => 1,
            Role::Phone => 2,
        }
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Role::Bridge),
            2 => Some(Role::Phone),
            _ => None,
        }
    }
}
