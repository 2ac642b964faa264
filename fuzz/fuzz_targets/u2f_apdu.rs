//! Arbitrary bytes into `Authenticator::process_u2f` (a CTAP1/U2F command APDU).
//!
//! One authenticator per process (in-memory store, `AutoApprover`). Checked on every input:
//! the answer ends with a 2-byte status word, and an error status word comes alone.

#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use pocketkey_core::approver::AutoApprover;
use pocketkey_core::authenticator::{Authenticator, Config, RequestContext};
use pocketkey_core::crypto::master_key::MasterKey;
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
    let mut auth = authenticator()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let response = auth.process_u2f(data, &RequestContext::default());
    assert!(response.len() >= 2, "no status word: {response:02x?}");
    let sw = u16::from_be_bytes([response[response.len() - 2], response[response.len() - 1]]);
    if sw != 0x9000 {
        assert_eq!(response.len(), 2, "status word {sw:04x} with data");
    }
});
