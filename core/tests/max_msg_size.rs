//! getInfo's maxMsgSize (CTAP 2.1 §6.4) holds for every transport: `process_cbor` refuses a
//! longer request with CTAP1_ERR_INVALID_LENGTH before parsing it, and serves one of exactly
//! that size.

use pocketkey_core::approver::AutoApprover;
use pocketkey_core::authenticator::{Authenticator, Config, RequestContext};
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::store::Store;
use pocketkey_testkit::status::{INVALID_LENGTH, OK};
use pocketkey_testkit::MakeCredential;

fn engine() -> Authenticator {
    let master = MasterKey::generate();
    let store = Store::open_in_memory(&master).unwrap();
    Authenticator::new(store, &master, Box::new(AutoApprover), Config::default()).unwrap()
}

/// A makeCredential the engine accepts, `len` bytes long (command byte included): the user's
/// display name pads it (the engine keeps the first 64 bytes).
fn make_credential_of_len(len: usize) -> Vec<u8> {
    let with = |pad: usize| {
        MakeCredential::new("example.com", "alice")
            .user_display_name("d".repeat(pad))
            .encode()
    };
    let mut pad = len.saturating_sub(with(0).len());
    while with(pad).len() > len {
        pad -= 1;
    }
    let request = with(pad);
    assert_eq!(
        request.len(),
        len,
        "cannot pad a makeCredential to {len} bytes"
    );
    request
}

#[test]
fn a_request_over_max_msg_size_is_invalid_length_and_one_at_it_is_served() {
    let mut engine = engine();
    let max = Config::default().max_msg_size;
    let cx = RequestContext::default();
    let at = engine.process_cbor(&make_credential_of_len(max), &cx);
    assert_eq!(at[0], OK, "a request of maxMsgSize bytes is served");
    let over = engine.process_cbor(&make_credential_of_len(max + 1), &cx);
    assert_eq!(over, vec![INVALID_LENGTH]);
    // Whatever the bytes: nothing past the limit is parsed.
    let garbage = [vec![0x01], vec![0xff; max]].concat();
    assert_eq!(engine.process_cbor(&garbage, &cx), vec![INVALID_LENGTH]);
}
