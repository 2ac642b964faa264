//! The PIN set and changed from the device itself (`Authenticator::set_pin_on_device`,
//! `change_pin_on_device`): the same policy, retry counter and strike rules as clientPIN.

use pocketkey_core::approver::AutoApprover;
use pocketkey_core::authenticator::{Authenticator, Config, RequestContext};
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::ctap::CtapError;
use pocketkey_core::store::Store;
use pocketkey_testkit::command;
use pocketkey_testkit::pin_platform::pin_hash;
use pocketkey_testkit::responses::{decode_response, info_option};

fn key() -> Authenticator {
    let master = MasterKey::generate();
    let store = Store::open_in_memory(&master).unwrap();
    Authenticator::new(store, &master, Box::new(AutoApprover), Config::default()).unwrap()
}

fn stored_hash(auth: &Authenticator) -> Option<[u8; 16]> {
    auth.store().load_settings().unwrap().pin_hash.map(|h| *h)
}

fn retries(auth: &Authenticator) -> u8 {
    auth.store().load_settings().unwrap().pin_retries
}

/// getInfo's clientPin option.
fn client_pin_option(auth: &mut Authenticator) -> bool {
    let response = auth.process_cbor(&[command::GET_INFO], &RequestContext::default());
    let info = decode_response(&response).expect("getInfo");
    info_option(&info, "clientPin").expect("clientPin in getInfo's options")
}

#[test]
fn set_pin_stores_the_clientpin_hash_and_shows_in_get_info() {
    let mut auth = key();
    assert!(!client_pin_option(&mut auth));
    auth.set_pin_on_device("1234").unwrap();
    assert_eq!(stored_hash(&auth), Some(pin_hash("1234")));
    assert!(client_pin_option(&mut auth));
    assert_eq!(auth.set_pin_on_device("5678"), Err(CtapError::NotAllowed));
    assert_eq!(stored_hash(&auth), Some(pin_hash("1234")));
}

#[test]
fn set_pin_applies_the_policy() {
    let mut auth = key();
    assert_eq!(
        auth.set_pin_on_device("123"),
        Err(CtapError::PinPolicyViolation)
    );
    assert_eq!(
        auth.set_pin_on_device(&"9".repeat(64)),
        Err(CtapError::PinPolicyViolation)
    );
    assert_eq!(
        auth.set_pin_on_device("12\u{0}34"),
        Err(CtapError::PinPolicyViolation)
    );
    assert_eq!(stored_hash(&auth), None);
    // Code points, not bytes: four two-byte characters are a four-character PIN.
    auth.set_pin_on_device("ñÑéü").unwrap();
    assert_eq!(stored_hash(&auth), Some(pin_hash("ñÑéü")));
    let mut auth = key();
    auth.set_pin_on_device(&"9".repeat(63)).unwrap();
}

#[test]
fn change_pin_checks_the_old_pin_and_spends_retries() {
    let mut auth = key();
    assert_eq!(
        auth.change_pin_on_device("1234", "5678"),
        Err(CtapError::PinNotSet)
    );
    auth.set_pin_on_device("1234").unwrap();
    assert_eq!(
        auth.change_pin_on_device("0000", "5678"),
        Err(CtapError::PinInvalid)
    );
    assert_eq!(retries(&auth), 7);
    // A correct old PIN restores the retries even when the new one is refused.
    assert_eq!(
        auth.change_pin_on_device("1234", "56"),
        Err(CtapError::PinPolicyViolation)
    );
    assert_eq!(retries(&auth), 8);
    auth.change_pin_on_device("1234", "5678").unwrap();
    assert_eq!(stored_hash(&auth), Some(pin_hash("5678")));
}

#[test]
fn three_wrong_pins_need_a_power_cycle_and_eight_block() {
    let mut auth = key();
    auth.set_pin_on_device("1234").unwrap();
    for _ in 0..2 {
        assert_eq!(
            auth.change_pin_on_device("0000", "5678"),
            Err(CtapError::PinInvalid)
        );
    }
    assert_eq!(
        auth.change_pin_on_device("0000", "5678"),
        Err(CtapError::PinAuthBlocked)
    );
    assert_eq!(
        auth.change_pin_on_device("1234", "5678"),
        Err(CtapError::PinAuthBlocked)
    );
    assert_eq!(retries(&auth), 5);
    for _ in 0..2 {
        auth.power_cycle();
        for _ in 0..2 {
            let _ = auth.change_pin_on_device("0000", "5678");
        }
    }
    auth.power_cycle();
    assert_eq!(retries(&auth), 1);
    assert_eq!(
        auth.change_pin_on_device("0000", "5678"),
        Err(CtapError::PinBlocked)
    );
    assert_eq!(
        auth.change_pin_on_device("1234", "5678"),
        Err(CtapError::PinBlocked)
    );
    assert_eq!(stored_hash(&auth), Some(pin_hash("1234")));
}
