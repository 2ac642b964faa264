//! Arbitrary bytes into the pairing protocol's byte parsers that read what others send:
//! `RelayFrame::decode` (relay websocket messages), `Message::decode` (a session message
//! plaintext from the peer), and the relay's attach check (`parse_path`, `AttachProof::decode`,
//! `verify_attach`: the input split at the first `\n` into the request path and, after it, the
//! relay's 32-byte nonce followed by an ATTACH payload).
//!
//! Checked on every input: no panic; a decoded relay frame re-encodes to bytes that decode to
//! the same frame, byte-identically for every frame but PUSH_REGISTER (whose CBOR may come
//! non-canonical; its encoding is a fixed point); a decoded session message re-encodes to one
//! that decodes equal, and an unknown type is one the decoder does not know; a decoded ATTACH
//! payload re-encodes byte-identically; an attach is accepted only for the role it claims and
//! only when its two keys hash to the path's mailbox, and a parsed mailbox id prints as the
//! lower-cased hex it came from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketkey_core::pairing::mailbox::{
    parse_path, verify_attach, AttachError, AttachProof, MailboxId, NONCE_LEN, PATH_PREFIX,
};
use pocketkey_core::pairing::Role;
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
    let (path, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let path = String::from_utf8_lossy(path);
    let hex = path.strip_prefix(PATH_PREFIX);
    let parsed = hex.and_then(MailboxId::from_hex);
    if let (Some(hex), Some(id)) = (hex, parsed) {
        assert_eq!(id.to_hex(), hex.to_ascii_lowercase());
        assert_eq!(MailboxId::from_hex(&id.to_hex()), Some(id));
    }
    match parse_path(&path) {
        Ok(mailbox) => assert_eq!(Some(mailbox), parsed),
        Err(error) => {
            assert_eq!(error, AttachError::BadPath);
            assert_eq!(parsed, None);
        }
    }
    let Some((nonce, proof)) = rest.split_first_chunk::<NONCE_LEN>() else {
        return;
    };
    let Some(proof) = AttachProof::decode(proof) else {
        return;
    };
    assert_eq!(proof.encode(), rest[NONCE_LEN..], "ATTACH re-encodes byte-identically");
    let mailbox = parsed.unwrap_or(MailboxId([0; 16]));
    if let Ok(role) = verify_attach(mailbox, nonce, &proof) {
        assert_eq!(role, proof.role);
        let expected = match role {
            Role::Bridge => MailboxId::from_attach_keys(&proof.key, &proof.peer),
            Role::Phone => MailboxId::from_attach_keys(&proof.peer, &proof.key),
        };
        assert_eq!(expected, mailbox);
    }
}

fuzz_target!(|data: &[u8]| {
    relay_frame(data);
    session_message(data);
    attach(data);
});
