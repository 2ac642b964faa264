//! authenticatorClientPIN with a PIN (CTAP 2.1 §6.5.5): set, change, tokens, policy,
//! retries and blocking, for both PIN/UV auth protocols.

use pocketkey_testkit::approver::{present, verified};
use pocketkey_testkit::cbor::{bytes, int};
use pocketkey_testkit::command;
use pocketkey_testkit::key::Key;
use pocketkey_testkit::pin_platform::{padded, permission};
use pocketkey_testkit::requests::{GetAssertion, MakeCredential};
use pocketkey_testkit::responses::info_option;
use pocketkey_testkit::status::*;

fn pin_lifecycle(set_with: u64, change_with: u64, token_with: u64) {
    let mut key = Key::new();
    assert_eq!(
        key.pin_token(token_with, "1234", None).err(),
        Some(PIN_NOT_SET)
    );
    key.set_pin(set_with, "1234").unwrap();
    assert_eq!(info_option(&key.info(), "clientPin"), Some(true));
    assert_eq!(key.pin_retries(), (8, false));

    // getPinToken (legacy): mc and ga permissions.
    let token = key.pin_token(token_with, "1234", None).unwrap();
    let mut mc = MakeCredential::typical("example.com", "alice").rk(true);
    mc.pin_uv_auth = Some(token.param(&mc.client_data_hash));
    key.queue([present()]); // a PIN token carries no presence
    let reg = key.register(&mc).unwrap();
    assert!(reg.parsed.uv() && reg.parsed.up());

    // changePIN voids the old PIN and every token issued before.
    let old = key
        .pin_token(
            token_with,
            "1234",
            Some((permission::GET_ASSERTION, Some("example.com"))),
        )
        .unwrap();
    key.change_pin(change_with, "1234", "ñandú-42").unwrap();
    let mut ga = GetAssertion::typical("example.com");
    ga.pin_uv_auth = Some(old.param(&ga.client_data_hash));
    assert_eq!(key.assert(&ga).err(), Some(PIN_AUTH_INVALID));
    assert_eq!(
        key.pin_token(token_with, "1234", None).err(),
        Some(PIN_INVALID)
    );
    let token = key
        .pin_token(
            token_with,
            "ñandú-42",
            Some((permission::GET_ASSERTION, Some("example.com"))),
        )
        .unwrap();
    let mut ga = GetAssertion::typical("example.com");
    ga.pin_uv_auth = Some(token.param(&ga.client_data_hash));
    key.queue([present()]);
    let a = key.assert(&ga).unwrap();
    a.verify(reg.key(), "example.com", &ga.client_data_hash);
    assert!(a.parsed.uv());
    assert_eq!(a.user_name().as_deref(), Some("alice"));
    // A wrong PIN above cost one retry; the right one restored the counter.
    assert_eq!(key.pin_retries(), (8, false));
    key.assert_script_used_up();
}

#[test]
fn pin_set_change_and_token_protocol_2() {
    pin_lifecycle(2, 2, 2);
}

#[test]
fn pin_set_change_and_token_protocol_1() {
    pin_lifecycle(1, 1, 1);
}

#[test]
fn pin_protocols_mix() {
    pin_lifecycle(1, 2, 1);
    pin_lifecycle(2, 1, 2);
}

#[test]
fn pin_policy_and_malformed_pin_requests() {
    let mut key = Key::new();
    assert_eq!(
        key.set_pin(2, "123").err(),
        Some(PIN_POLICY_VIOLATION),
        "minimum 4 code points"
    );
    assert_eq!(
        key.set_pin(1, &"9".repeat(64)).err(),
        Some(PIN_POLICY_VIOLATION),
        "at most 63 bytes"
    );
    // A bad pinUvAuthParam on setPIN.
    let shared = key.key_agreement(2);
    let new_pin_enc = shared.encrypt(&padded("1234"));
    let r = key.client_pin(vec![
        (1, int(2)),
        (2, int(0x03)),
        (3, shared.cose.clone()),
        (4, bytes(&[0u8; 32])),
        (5, bytes(&new_pin_enc)),
    ]);
    assert_eq!(r.err(), Some(PIN_AUTH_INVALID));
    // Unsupported protocol, missing subcommand parameters, unknown subcommand.
    assert_eq!(
        key.client_pin(vec![(1, int(3)), (2, int(0x02))]).err(),
        Some(INVALID_PARAMETER)
    );
    assert_eq!(
        key.client_pin(vec![(1, int(2)), (2, int(0x03))]).err(),
        Some(MISSING_PARAMETER)
    );
    assert_eq!(
        key.client_pin(vec![(1, int(2)), (2, int(0x0F))]).err(),
        Some(INVALID_SUBCOMMAND)
    );
    assert_eq!(key.change_pin(2, "1234", "5678").err(), Some(PIN_NOT_SET));
    key.set_pin(2, "１２３４").unwrap(); // four full-width digits: 4 code points, 12 bytes
    key.pin_token(1, "１２３４", None).unwrap();
}

/// CTAP 2.1 §6.5.5.5 step 3: "If a PIN has already been set, authenticator returns
/// CTAP2_ERR_PIN_AUTH_INVALID error.".
#[test]
fn set_pin_twice_is_pin_auth_invalid() {
    let mut key = Key::new();
    key.set_pin(2, "1234").unwrap();
    assert_eq!(key.set_pin(2, "5678").err(), Some(PIN_AUTH_INVALID));
    key.pin_token(2, "1234", None).unwrap();
}

#[test]
fn three_wrong_pins_need_a_power_cycle() {
    let mut key = Key::new();
    key.set_pin(2, "1234").unwrap();
    assert_eq!(key.pin_token(2, "0000", None).err(), Some(PIN_INVALID));
    assert_eq!(key.pin_token(1, "0000", None).err(), Some(PIN_INVALID));
    assert_eq!(key.pin_token(2, "0000", None).err(), Some(PIN_AUTH_BLOCKED));
    assert_eq!(key.pin_retries(), (5, true));
    // Even the right PIN is refused until the power cycle, and costs no retry.
    assert_eq!(key.pin_token(2, "1234", None).err(), Some(PIN_AUTH_BLOCKED));
    assert_eq!(
        key.change_pin(2, "1234", "5678").err(),
        Some(PIN_AUTH_BLOCKED)
    );
    assert_eq!(key.pin_retries(), (5, true));
    key.auth.power_cycle();
    assert_eq!(key.pin_retries(), (5, false));
    key.pin_token(2, "1234", None).unwrap();
    assert_eq!(
        key.pin_retries(),
        (8, false),
        "a correct PIN restores the retries"
    );
}

#[test]
fn eight_wrong_pins_block_the_pin_until_reset() {
    let mut key = Key::new();
    key.set_pin(2, "1234").unwrap();
    let mut results = Vec::new();
    for attempt in 1..=8 {
        results.push(
            key.pin_token(2, &format!("{attempt:04}9"), None)
                .err()
                .unwrap(),
        );
        if attempt % 3 == 0 {
            key.auth.power_cycle();
        }
    }
    assert_eq!(
        results,
        [
            PIN_INVALID,
            PIN_INVALID,
            PIN_AUTH_BLOCKED,
            PIN_INVALID,
            PIN_INVALID,
            PIN_AUTH_BLOCKED,
            PIN_INVALID,
            PIN_BLOCKED
        ]
    );
    assert_eq!(key.pin_retries().0, 0);
    assert_eq!(key.pin_token(2, "1234", None).err(), Some(PIN_BLOCKED));
    key.auth.power_cycle();
    assert_eq!(key.pin_token(1, "1234", None).err(), Some(PIN_BLOCKED));
    assert_eq!(key.change_pin(2, "1234", "5678").err(), Some(PIN_BLOCKED));
    // Only a reset gives the key back.
    key.queue([present()]);
    key.call(command::RESET, None).unwrap();
    assert_eq!(info_option(&key.info(), "clientPin"), Some(false));
    key.set_pin(2, "5678").unwrap();
    assert_eq!(key.pin_retries(), (8, false));
}

/// CTAP 2.1 §6.5.5.7.2 / §6.5.5.7.3 step 4: "Undefined permissions present in the permissions
/// are ignored".
#[test]
fn undefined_permission_bits_are_ignored() {
    let mut key = Key::new();
    key.set_pin(2, "1234").unwrap();
    let token = key
        .pin_token(
            2,
            "1234",
            Some((permission::MAKE_CREDENTIAL | 0x80, Some("example.com"))),
        )
        .unwrap();
    let mut mc = MakeCredential::typical("example.com", "alice").rk(true);
    mc.pin_uv_auth = Some(token.param(&mc.client_data_hash));
    key.queue([present()]);
    key.register(&mc).unwrap();
    key.queue([verified()]);
    key.uv_token(1, permission::GET_ASSERTION | 0x80, None)
        .unwrap();
}
