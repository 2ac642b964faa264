//! Requests that do not parse: the exact status code for each, and nobody asked.

use ciborium::value::Value;
use pocketkey_testkit::cbor::{bytes, imap, int, text, tmap};
use pocketkey_testkit::command;
use pocketkey_testkit::key::Key;
use pocketkey_testkit::requests::MakeCredential;
use pocketkey_testkit::responses::decode_response;
use pocketkey_testkit::status::*;

#[test]
fn malformed_requests_get_their_status_codes() {
    let mut key = Key::new();
    assert_eq!(decode_response(&key.raw(&[0x55])), Err(INVALID_COMMAND));
    assert_eq!(
        decode_response(&key.raw(&[0x03, 0xa0])),
        Err(INVALID_COMMAND),
        "0x03 is not a CTAP2 command"
    );
    assert_eq!(decode_response(&key.raw(&[])), Err(INVALID_LENGTH));
    // Garbage and truncated CBOR.
    assert_eq!(
        decode_response(&key.raw(&[command::MAKE_CREDENTIAL, 0xff, 0x00])),
        Err(INVALID_CBOR)
    );
    assert_eq!(
        decode_response(&key.raw(&[command::MAKE_CREDENTIAL, 0xa2, 0x01])),
        Err(INVALID_CBOR)
    );
    assert_eq!(
        decode_response(&key.raw(&[command::GET_ASSERTION, 0x1c])),
        Err(INVALID_CBOR)
    );
    assert_eq!(
        decode_response(&key.raw(&[command::CLIENT_PIN, 0xa1, 0x01, 0x02, 0x00])),
        Err(INVALID_CBOR),
        "trailing byte"
    );

    let good = MakeCredential::typical("example.com", "alice").to_cbor();
    let Value::Map(entries) = &good else {
        unreachable!()
    };
    let with = |key_: i64, value: Option<Value>| {
        let mut m: Vec<(Value, Value)> = entries
            .iter()
            .filter(|(k, _)| *k != int(key_))
            .cloned()
            .collect();
        if let Some(v) = value {
            m.push((int(key_), v));
        }
        Value::Map(m)
    };
    // Wrong types.
    assert_eq!(
        key.call(command::MAKE_CREDENTIAL, Some(&with(1, Some(text("hash"))))),
        Err(CBOR_UNEXPECTED_TYPE)
    );
    assert_eq!(
        key.call(
            command::MAKE_CREDENTIAL,
            Some(&with(2, Some(text("example.com"))))
        ),
        Err(CBOR_UNEXPECTED_TYPE)
    );
    assert_eq!(
        key.call(
            command::MAKE_CREDENTIAL,
            Some(&with(7, Some(tmap(vec![("rk", int(1))]))))
        ),
        Err(CBOR_UNEXPECTED_TYPE)
    );
    assert_eq!(
        key.call(command::MAKE_CREDENTIAL, Some(&Value::Array(vec![]))),
        Err(CBOR_UNEXPECTED_TYPE)
    );
    assert_eq!(
        key.call(
            command::GET_ASSERTION,
            Some(&imap(vec![(1, bytes(b"x")), (2, bytes(&[0; 32]))]))
        ),
        Err(CBOR_UNEXPECTED_TYPE)
    );
    // Missing parameters.
    assert_eq!(
        key.call(command::MAKE_CREDENTIAL, Some(&with(1, None))),
        Err(MISSING_PARAMETER)
    );
    assert_eq!(
        key.call(command::MAKE_CREDENTIAL, Some(&with(4, None))),
        Err(MISSING_PARAMETER)
    );
    assert_eq!(
        key.call(
            command::GET_ASSERTION,
            Some(&imap(vec![(1, text("example.com"))]))
        ),
        Err(MISSING_PARAMETER)
    );
    // A pinUvAuthParam without its protocol (§6.1.2 step 2).
    assert_eq!(
        key.call(
            command::MAKE_CREDENTIAL,
            Some(&with(8, Some(bytes(&[1; 32]))))
        ),
        Err(MISSING_PARAMETER)
    );
    assert!(key.seen().is_empty());
}
