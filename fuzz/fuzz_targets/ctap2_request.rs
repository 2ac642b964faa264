//! Arbitrary bytes into `Authenticator::process_cbor` (command byte ‖ CBOR parameters).
//!
//! One authenticator per process (in-memory store, `AutoApprover`), so state built by earlier
//! inputs — credentials, a PIN, pending enumerations, large-blob writes — is there for later
//! ones. Checked on every input: the answer is one non-zero status byte, `0x00` alone, or
//! `0x00` ‖ one CTAP2-canonical CBOR item.

#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use pocketkey_core::approver::AutoApprover;
use pocketkey_core::authenticator::{Authenticator, Config, RequestContext};
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::ctap::cbor;
use pocketkey_core::store::Store;

fn authenticator() -> &'static Mutex<Authenticator> {
    static AUTH: OnceLock<Mutex<Authenticator>> = OnceLock::new();
    AUTH.get_or_init(|| {
        let master = MasterKey::from_bytes([0x5a; 32]);
        let store = Store::open_in_memory(&master).expect("in-memory store");
        let auth = Authenticator::new(store, &master, Box::new(AutoApprover), Config::default())
            .expect("authenticator");
        Mutex::new(auth)
    })
}

fuzz_target!(|data: &[u8]| {
    // A panic in an earlier input poisons the lock; the fuzzer stops at that panic anyway.
    let mut auth = authenticator()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let response = auth.process_cbor(data, &RequestContext::default());
    let (&status, body) = response
        .split_first()
        .expect("every answer has a status byte");
    if status != 0 {
        assert!(
            body.is_empty(),
            "error 0x{status:02x} carries {} body bytes",
            body.len()
        );
    } else if !body.is_empty() {
        let value = cbor::decode(body).expect("a success body is one CBOR item");
        assert_eq!(
            cbor::encode(value),
            body,
            "a success body is CTAP2-canonical"
        );
    }
});
