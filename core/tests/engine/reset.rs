//! authenticatorReset (CTAP 2.1 §6.6).

use std::time::Duration;

use ciborium::value::Value;
use pocketkey_core::approver::{ApprovalOutcome, Operation};
use pocketkey_testkit::approver::{present, verified};
use pocketkey_testkit::command;
use pocketkey_testkit::key::Key;
use pocketkey_testkit::requests::{GetAssertion, MakeCredential};
use pocketkey_testkit::responses::info_option;
use pocketkey_testkit::status::*;

#[test]
fn reset_within_ten_seconds_wipes_every_credential_and_the_pin() {
    let mut key = Key::new();
    key.queue([verified(), present()]);
    let rk = key
        .register(
            &MakeCredential::typical("example.com", "alice")
                .rk(true)
                .uv(true),
        )
        .unwrap();
    let nrk = key
        .register(&MakeCredential::typical("example.com", "bob"))
        .unwrap();
    key.set_pin(2, "1234").unwrap();
    // Denied: nothing happens.
    key.queue([ApprovalOutcome::Denied]);
    assert_eq!(key.call(command::RESET, None).err(), Some(OPERATION_DENIED));
    key.queue([present()]);
    key.assert(&GetAssertion::typical("example.com").allow(nrk.id()))
        .unwrap();

    key.seen();
    key.queue([present()]);
    assert_eq!(key.call(command::RESET, None), Ok(Value::Null));
    assert_eq!(key.seen().pop().unwrap().operation, Operation::Reset);
    // Discoverable gone; non-discoverable ID no longer opens; PIN gone.
    assert_eq!(
        key.assert(&GetAssertion::typical("example.com").uv(true))
            .err(),
        Some(NO_CREDENTIALS)
    );
    assert_eq!(
        key.assert(&GetAssertion::typical("example.com").allow(rk.id()))
            .err(),
        Some(NO_CREDENTIALS)
    );
    assert_eq!(
        key.assert(&GetAssertion::typical("example.com").allow(nrk.id()))
            .err(),
        Some(NO_CREDENTIALS)
    );
    let mut mc = MakeCredential::typical("example.com", "bob");
    mc.exclude_list = vec![nrk.id(), rk.id()];
    key.queue([present()]);
    key.register(&mc).unwrap();
    assert_eq!(info_option(&key.info(), "clientPin"), Some(false));
    assert_eq!(key.pin_retries().0, 8);
    key.assert_script_used_up();
}

#[test]
fn reset_after_the_window_is_not_allowed_until_power_cycle() {
    let mut key = Key::new();
    std::thread::sleep(Duration::from_millis(10_300));
    assert_eq!(key.call(command::RESET, None).err(), Some(NOT_ALLOWED));
    assert!(key.seen().is_empty());
    key.auth.power_cycle();
    key.queue([present()]);
    assert_eq!(key.call(command::RESET, None), Ok(Value::Null));
}
