//! authenticatorMakeCredential (CTAP 2.1 §6.1): registration, attestation, algorithms,
//! discoverable credentials and the excludeList.

use pocketkey_core::approver::{ApprovalOutcome, Operation};
use pocketkey_testkit::approver::{present, verified};
use pocketkey_testkit::cbor::{as_int, get};
use pocketkey_testkit::cose::{EDDSA, ES256};
use pocketkey_testkit::key::Key;
use pocketkey_testkit::requests::{GetAssertion, MakeCredential};
use pocketkey_testkit::status::*;
use pocketkey_testkit::{random32, sha256};

fn register_and_sign_in(alg: i64) {
    let mut key = Key::new();
    let mc = MakeCredential::typical("example.com", "alice").algs([alg]);
    key.queue([present()]);
    let reg = key.register(&mc).unwrap();
    assert_eq!(reg.key().alg(), alg);
    reg.verify_self_attestation(&mc.client_data_hash);
    let ad = &reg.parsed;
    assert_eq!(ad.rp_id_hash, sha256(b"example.com"));
    assert!(ad.up() && !ad.uv());
    assert_eq!(
        ad.aaguid,
        Some(pocketkey_core::authenticator::POCKETKEY_AAGUID)
    );
    let max_id_len = as_int(get(&key.info(), 0x08).expect("maxCredentialIdLength"));
    assert!(reg.id().len() as i128 <= max_id_len && max_id_len <= 255);

    let ga = GetAssertion::typical("example.com").allow(reg.id());
    key.queue([present()]);
    let a = key.assert(&ga).unwrap();
    assert_eq!(a.credential_id, reg.id());
    a.verify(reg.key(), "example.com", &ga.client_data_hash);
    assert!(a.parsed.up() && !a.parsed.uv());
    assert!(a.parsed.sign_count > reg.parsed.sign_count);
    assert!(
        a.user.is_none(),
        "non-discoverable credentials have no user"
    );
    assert!(a.number_of_credentials.is_none());

    // The signature really covers the clientDataHash: another hash does not verify.
    let other = [&a.auth_data[..], &random32()].concat();
    assert!(!reg.key().verify(&other, &a.signature));
    // And the credential is bound to its RP.
    assert_eq!(
        key.assert(&GetAssertion::typical("evil.example").allow(reg.id()))
            .err(),
        Some(NO_CREDENTIALS)
    );
    key.assert_script_used_up();
}

#[test]
fn es256_registration_self_attestation_and_assertion_verify() {
    register_and_sign_in(ES256);
}

#[test]
fn eddsa_registration_self_attestation_and_assertion_verify() {
    register_and_sign_in(EDDSA);
}

#[test]
fn first_supported_algorithm_in_rp_order_wins_and_unsupported_is_0x26() {
    let mut key = Key::new();
    let mut mc = MakeCredential::typical("example.com", "alice");
    mc.algs = vec![-257, EDDSA, ES256];
    key.queue([present()]);
    assert_eq!(key.register(&mc).unwrap().key().alg(), EDDSA);
    mc.algs = vec![-257, -35];
    assert_eq!(key.register(&mc).err(), Some(UNSUPPORTED_ALGORITHM));
}

#[test]
fn discoverable_credential_requires_user_verification() {
    let mut key = Key::new();
    // Built-in UV is configured: rk without uv or a token is PUAT_REQUIRED (§6.1.2 step 6,
    // makeCredUvNotRqd), and nobody is asked.
    assert_eq!(
        key.register(&MakeCredential::typical("example.com", "alice").rk(true))
            .err(),
        Some(PUAT_REQUIRED)
    );
    assert!(key.seen().is_empty());

    let mc = MakeCredential::typical("example.com", "alice")
        .rk(true)
        .uv(true);
    key.queue([verified()]);
    let reg = key.register(&mc).unwrap();
    reg.verify_self_attestation(&mc.client_data_hash);
    assert!(reg.parsed.up() && reg.parsed.uv());
    let seen = key.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].verification_required);
    assert_eq!(seen[0].operation, Operation::Register);

    // A user who only taps where verification is required does not make a credential.
    key.queue([present()]);
    assert_eq!(
        key.register(
            &MakeCredential::typical("example.com", "bob")
                .rk(true)
                .uv(true)
        )
        .err(),
        Some(OPERATION_DENIED)
    );
    key.assert_script_used_up();
}

#[test]
fn discoverable_credential_without_any_uv_configured_needs_presence_only() {
    // No built-in UV and no PIN: nothing to verify with, so rk needs only a touch.
    let mut key = Key::in_memory(false);
    key.queue([present()]);
    let reg = key
        .register(&MakeCredential::typical("example.com", "alice").rk(true))
        .unwrap();
    assert!(!reg.parsed.uv());
    // uv=true without built-in UV is INVALID_OPTION (§6.1.2 step 5).
    assert_eq!(
        key.register(
            &MakeCredential::typical("example.com", "alice")
                .rk(true)
                .uv(true)
        )
        .err(),
        Some(INVALID_OPTION)
    );
    // Once a PIN is set the key is protected by UV: rk needs a token.
    key.set_pin(2, "1234").unwrap();
    assert_eq!(
        key.register(&MakeCredential::typical("example.com", "bob").rk(true))
            .err(),
        Some(PUAT_REQUIRED)
    );
    key.assert_script_used_up();
}

#[test]
fn excluded_credential_is_0x19_after_presence() {
    let mut key = Key::new();
    key.queue([present(), verified()]);
    let nrk = key
        .register(&MakeCredential::typical("example.com", "alice"))
        .unwrap();
    let rk = key
        .register(
            &MakeCredential::typical("example.com", "bob")
                .rk(true)
                .uv(true),
        )
        .unwrap();
    for id in [nrk.id(), rk.id()] {
        let mut mc = MakeCredential::typical("example.com", "alice");
        mc.exclude_list = vec![random32().to_vec(), id];
        key.seen();
        // "regardless of whether user presence is obtained" (§6.1.2 step 12).
        key.queue([ApprovalOutcome::Denied]);
        assert_eq!(key.register(&mc).err(), Some(CREDENTIAL_EXCLUDED));
        assert_eq!(key.seen().len(), 1, "the user is asked before the answer");
    }
    // The same IDs for another RP exclude nothing.
    let mut mc = MakeCredential::typical("other.example", "alice");
    mc.exclude_list = vec![nrk.id(), rk.id()];
    key.queue([present()]);
    key.register(&mc).unwrap();
    key.assert_script_used_up();
}

#[test]
fn registering_the_same_account_again_replaces_its_discoverable_credential() {
    let mut key = Key::new();
    key.queue([verified(), verified(), verified()]);
    let old = key
        .register(
            &MakeCredential::typical("example.com", "alice")
                .rk(true)
                .uv(true),
        )
        .unwrap();
    let other = key
        .register(
            &MakeCredential::typical("example.com", "bob")
                .rk(true)
                .uv(true),
        )
        .unwrap();
    let new = key
        .register(
            &MakeCredential::typical("example.com", "alice")
                .rk(true)
                .uv(true),
        )
        .unwrap();
    assert_ne!(old.id(), new.id());
    // §6.1.2 step 17: "If a credential for the same rp.id and account ID already exists on the
    // authenticator, overwrite that credential."
    key.queue([present()]);
    let first = key.assert(&GetAssertion::typical("example.com")).unwrap();
    assert_eq!(first.number_of_credentials, Some(2));
    let second = key.next_assertion().unwrap();
    let mut ids = vec![first.credential_id, second.credential_id];
    ids.sort();
    let mut expected = vec![new.id(), other.id()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(
        key.assert(&GetAssertion::typical("example.com").allow(old.id()))
            .err(),
        Some(NO_CREDENTIALS)
    );
}

#[test]
fn zero_length_pin_uv_auth_param_is_a_touch_probe() {
    let mut key = Key::new();
    let mut mc = MakeCredential::typical("example.com", "alice");
    mc.pin_uv_auth = Some((vec![], 2));
    key.queue([present()]);
    assert_eq!(key.register(&mc).err(), Some(PIN_NOT_SET));
    assert_eq!(key.seen().pop().unwrap().operation, Operation::Select);
    key.set_pin(2, "1234").unwrap();
    let mut ga = GetAssertion::typical("example.com");
    ga.pin_uv_auth = Some((vec![], 1));
    key.queue([present()]);
    assert_eq!(key.assert(&ga).err(), Some(PIN_INVALID));
}
