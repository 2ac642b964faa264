//! authenticatorLargeBlobs (CTAP 2.1 §6.10): the limits of the serialized large-blob array and
//! of its fragments, with the exact status for each refusal.
//!
//! The key here has no PIN and no built-in UV, so writes need no pinUvAuthParam (§6.10.2:
//! the token is checked only when user verification is configured). maxMsgSize is set to
//! 1,024 so that maxFragmentLength (maxMsgSize − 64 = 960) is below the 4,096-byte array limit
//! and a full array has to be written and read in several fragments.

use ciborium::value::Value;
use pocketkey_core::authenticator::Config;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::store::Store;
use pocketkey_testkit::cbor::{as_bytes, as_int, encode, get};
use pocketkey_testkit::command;
use pocketkey_testkit::key::Key;
use pocketkey_testkit::requests::LargeBlobs;
use pocketkey_testkit::sha256;
use pocketkey_testkit::status::*;

const MAX_MSG_SIZE: u64 = 1024;
/// maxFragmentLength (CTAP 2.1 §6.10.1): maxMsgSize − 64.
const MAX_FRAGMENT: u64 = MAX_MSG_SIZE - 64;
/// maxSerializedLargeBlobArray this key advertises in getInfo (0x0B).
const MAX_ARRAY: u64 = 4096;
/// getInfo's maxSerializedLargeBlobArray key (CTAP 2.1 §6.4).
const INFO_MAX_SERIALIZED_LARGE_BLOB_ARRAY: i64 = 0x0B;
/// The response's `config` key (CTAP 2.1 §6.10.2).
const CONFIG: i64 = 0x01;

/// A key with a small maxMsgSize, no PIN and no built-in UV.
fn key() -> Key {
    let master = MasterKey::generate();
    let config = Config {
        max_msg_size: MAX_MSG_SIZE as usize,
        ..Config::default()
    };
    Key::with_config(
        Store::open_in_memory(&master).unwrap(),
        &master,
        false,
        config,
    )
}

fn call(key: &mut Key, request: &LargeBlobs) -> Result<Value, u8> {
    key.call(command::LARGE_BLOBS, Some(&request.to_cbor()))
}

/// A serialized large-blob array of exactly `total` bytes: a CBOR array holding one byte
/// string, then the first 16 bytes of SHA-256 of that CBOR (CTAP 2.1 §6.10.3).
fn serialized_array(total: usize) -> Vec<u8> {
    // Array header (1 byte) and byte-string header (3 bytes, 256..65535 long) around the data.
    let data: Vec<u8> = (0..total - 16 - 4).map(|i| (i * 7 % 251) as u8).collect();
    let body = encode(&Value::Array(vec![Value::Bytes(data)]));
    assert_eq!(body.len(), total - 16);
    let check = sha256(&body);
    [body, check[..16].to_vec()].concat()
}

/// Writes `array` in maxFragmentLength pieces, announcing `array.len()` at offset 0.
fn write_in_fragments(key: &mut Key, array: &[u8]) {
    for (i, fragment) in array.chunks(MAX_FRAGMENT as usize).enumerate() {
        let offset = i as u64 * MAX_FRAGMENT;
        let length = (offset == 0).then_some(array.len() as u64);
        assert_eq!(
            call(key, &LargeBlobs::set(offset, fragment, length)),
            Ok(Value::Null),
            "fragment at offset {offset}"
        );
    }
}

/// Reads the whole serialized array in maxFragmentLength pieces, until a short read.
fn read_all(key: &mut Key) -> Vec<u8> {
    let mut array = Vec::new();
    loop {
        let response = call(key, &LargeBlobs::get(array.len() as u64, MAX_FRAGMENT)).unwrap();
        let fragment = as_bytes(get(&response, CONFIG).expect("config in the response"));
        let short = (fragment.len() as u64) < MAX_FRAGMENT;
        array.extend(fragment);
        if short {
            return array;
        }
    }
}

#[test]
fn get_info_advertises_the_limits_these_tests_use() {
    let mut key = key();
    let info = key.info();
    assert_eq!(
        as_int(get(&info, INFO_MAX_SERIALIZED_LARGE_BLOB_ARRAY).unwrap()),
        MAX_ARRAY as i128
    );
    assert_eq!(as_int(get(&info, 0x05).unwrap()), MAX_MSG_SIZE as i128);
}

#[test]
fn an_array_of_exactly_the_maximum_round_trips_in_fragments() {
    let mut key = key();
    let array = serialized_array(MAX_ARRAY as usize);
    write_in_fragments(&mut key, &array);
    assert_eq!(read_all(&mut key), array);
}

#[test]
fn one_byte_over_the_maximum_is_storage_full_and_keeps_the_stored_array() {
    let mut key = key();
    let before = serialized_array(1000);
    write_in_fragments(&mut key, &before);

    let too_big = serialized_array(MAX_ARRAY as usize + 1);
    let first = &too_big[..MAX_FRAGMENT as usize];
    assert_eq!(
        call(&mut key, &LargeBlobs::set(0, first, Some(MAX_ARRAY + 1))),
        Err(LARGE_BLOB_STORAGE_FULL)
    );
    // No write was started: a next fragment is out of sequence.
    assert_eq!(
        call(
            &mut key,
            &LargeBlobs::set(MAX_FRAGMENT, &too_big[..10], None)
        ),
        Err(INVALID_SEQ)
    );
    assert_eq!(read_all(&mut key), before);
}

#[test]
fn a_fragment_over_max_msg_size_minus_64_is_invalid_length() {
    let mut key = key();
    let array = serialized_array(2000);
    // Exactly maxFragmentLength is accepted...
    assert_eq!(
        call(
            &mut key,
            &LargeBlobs::set(0, &array[..MAX_FRAGMENT as usize], Some(2000))
        ),
        Ok(Value::Null)
    );
    // ...one byte more is not, in a write or in a read.
    let over = &array[MAX_FRAGMENT as usize..2 * MAX_FRAGMENT as usize + 1];
    assert_eq!(
        call(&mut key, &LargeBlobs::set(MAX_FRAGMENT, over, None)),
        Err(INVALID_LENGTH)
    );
    assert_eq!(
        call(&mut key, &LargeBlobs::get(0, MAX_FRAGMENT + 1)),
        Err(INVALID_LENGTH)
    );
}

#[test]
fn a_fragment_at_the_wrong_offset_is_invalid_seq() {
    let mut key = key();
    let before = serialized_array(300);
    write_in_fragments(&mut key, &before);

    let array = serialized_array(2000);
    let fragment = MAX_FRAGMENT as usize;
    assert_eq!(
        call(
            &mut key,
            &LargeBlobs::set(0, &array[..fragment], Some(2000))
        ),
        Ok(Value::Null)
    );
    // The next fragment belongs at offset 960; one byte off either way is out of sequence.
    for wrong in [MAX_FRAGMENT - 1, MAX_FRAGMENT + 1] {
        assert_eq!(
            call(
                &mut key,
                &LargeBlobs::set(wrong, &array[fragment..2 * fragment], None)
            ),
            Err(INVALID_SEQ),
            "offset {wrong}"
        );
    }
    // The write in progress is still the one at 960, and nothing was stored meanwhile.
    assert_eq!(read_all(&mut key), before);
    assert_eq!(
        call(
            &mut key,
            &LargeBlobs::set(MAX_FRAGMENT, &array[fragment..2 * fragment], None)
        ),
        Ok(Value::Null)
    );
    assert_eq!(
        call(
            &mut key,
            &LargeBlobs::set(2 * MAX_FRAGMENT, &array[2 * fragment..], None)
        ),
        Ok(Value::Null)
    );
    assert_eq!(read_all(&mut key), array);
}

#[test]
fn a_fragment_with_no_write_started_is_invalid_seq() {
    let mut key = key();
    assert_eq!(
        call(&mut key, &LargeBlobs::set(5, [0u8; 5], None)),
        Err(INVALID_SEQ)
    );
}

#[test]
fn a_length_under_17_is_invalid_parameter_and_17_is_the_smallest_array() {
    let mut key = key();
    // 16 bytes cannot hold the 16-byte checksum and any CBOR array before it.
    assert_eq!(
        call(&mut key, &LargeBlobs::set(0, [0u8; 16], Some(16))),
        Err(INVALID_PARAMETER)
    );
    assert_eq!(
        call(&mut key, &LargeBlobs::set(0, Vec::new(), Some(0))),
        Err(INVALID_PARAMETER)
    );
    // The empty array 0x80 and its checksum: 17 bytes, accepted.
    let empty = [vec![0x80], sha256(&[0x80])[..16].to_vec()].concat();
    assert_eq!(
        call(&mut key, &LargeBlobs::set(0, empty.clone(), Some(17))),
        Ok(Value::Null)
    );
    assert_eq!(read_all(&mut key), empty);
}
