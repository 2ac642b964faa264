//! Arbitrary bytes into the pairing protocol's byte parsers that read what others send:
//! `RelayFrame::decode` (relay websocket messages), `Message::decode` (a session message
//! plaintext from the peer), and the relay's attach check (`verify_attach`, `MailboxId::from_hex`,
//! the input split at `\n` into path, role, token and peer header).
//!
//! Checked on every input: no panic; a decoded relay frame re-encodes to bytes that decode to
//! the same frame, byte-identically for every frame but PUSH_REGISTER (whose CBOR may come
//! non-canonical; its encoding is a fixed point); a decoded session message re-encodes to one
//! that decodes equal, and an unknown type is one the decoder does not know; an attach is never
//! accepted for a mailbox other than the path's, and a parsed mailbox id prints as the
//! lower-cased hex it came from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketkey_core::pairing::mailbox::{verify_attach, AttachError, MailboxId, PATH_PREFIX};
use pocketkey_core::pairing::messages::{DecodeOutcome, Message, MAX_MESSAGE_LEN};
use pocketkey_core::pairing::relay::{frame_type, RelayFrame, MAX_RELAY_FRAME};

fn relay_frame(data: &[u8]) {
    let Ok(frame) = RelayFrame::decode(data) else {
        return;
    };
    assert!(!data.is_empty() && data.len() <= MAX_RELAY_FRAME);
    assert_eq!(frame.frame_type(), data[0]);
    let encoded = frame.encode();
    let again = RelayFrame::decode(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded {frame:?} does not decode: {e:?}"));
    assert_eq!(again, frame);
    if data[0] == frame_type::PUSH_REGISTER {
        assert_eq!(
            again.encode(),
            encoded,
            "PUSH_REGISTER encoding is a fixed point"
        );
        assert!(
            encoded.len() <= data.len(),
            "canonical CBOR is the shortest"
        );
    } else {
        assert_eq!(encoded, data, "{frame:?} re-encodes byte-identically");
    }
}

fn session_message(data: &[u8]) {
    match Message::decode(data) {
        Ok(DecodeOutcome::Message(message)) => {
            assert!(data.len() <= MAX_MESSAGE_LEN);
            assert_eq!(message.message_type(), data[0]);
            let encoded = message.encode();
            assert!(
                encoded.len() <= data.len(),
                "canonical CBOR is the shortest"
            );
            match Message::decode(&encoded) {
                Ok(DecodeOutcome::Message(again)) => assert_eq!(again, message),
                other => panic!("re-encoded {message:?} decodes as {other:?}"),
            }
        }
        Ok(DecodeOutcome::Unknown(kind)) => {
            assert_eq!(kind, data[0]);
            // A known type byte with any body is never reported as unknown.
            for known in [0x01, 0x02, 0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x30, 0x31] {
                assert_ne!(kind, known);
            }
        }
        Err(_) => {}
    }
}

fn attach(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let path = parts.next().unwrap_or_default();
    let role = parts.next().unwrap_or_default();
    let token = parts.next().unwrap_or_default();
    let peer = parts.next().unwrap_or_default();
    let hex = path.strip_prefix(PATH_PREFIX);
    let parsed = hex.and_then(MailboxId::from_hex);
    if let (Some(hex), Some(id)) = (hex, parsed) {
        assert_eq!(id.to_hex(), hex.to_ascii_lowercase());
        assert_eq!(MailboxId::from_hex(&id.to_hex()), Some(id));
    }
    match verify_attach(path, role, token, peer) {
        Ok((mailbox, verified_role)) => {
            assert_eq!(Some(mailbox), parsed);
            assert_eq!(verified_role.as_str(), role);
        }
        Err(AttachError::BadPath) => assert_eq!(parsed, None),
        Err(_) => assert!(parsed.is_some()),
    }
}

fuzz_target!(|data: &[u8]| {
    relay_frame(data);
    session_message(data);
    attach(data);
});
