//! Built-in user verification: getPinUvAuthTokenUsingUvWithPermissions (CTAP 2.1
//! §6.5.5.7.3), performBuiltInUv inside makeCredential and getAssertion, uvRetries.

use pocketkey_core::approver::{ApprovalOutcome, Operation};
use pocketkey_core::authenticator::Config;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::store::Store;
use pocketkey_testkit::approver::verified;
use pocketkey_testkit::cbor::{get, int};
use pocketkey_testkit::key::Key;
use pocketkey_testkit::pin_platform::permission;
use pocketkey_testkit::random32;
use pocketkey_testkit::requests::{GetAssertion, MakeCredential};
use pocketkey_testkit::responses::info_option;
use pocketkey_testkit::status::*;

use crate::three_accounts;

#[test]
fn built_in_uv_token_with_mc_permission_registers_without_a_second_prompt() {
    for protocol in [2, 1] {
        let mut key = Key::new();
        key.queue([verified()]);
        let token = key
            .uv_token(protocol, permission::MAKE_CREDENTIAL, Some("example.com"))
            .unwrap();
        let r = key.seen().pop().unwrap();
        assert_eq!(r.operation, Operation::VerifyUser);
        assert!(r.verification_required);
        assert_eq!(r.rp_id.as_deref(), Some("example.com"));

        // pinUvAuthParam = authenticate(token, clientDataHash); rk allowed, no second prompt.
        let mut mc = MakeCredential::typical("example.com", "alice").rk(true);
        mc.pin_uv_auth = Some(token.param(&mc.client_data_hash));
        let reg = key.register(&mc).unwrap();
        assert!(
            key.seen().is_empty(),
            "protocol {protocol}: the token's presence was used"
        );
        assert!(reg.parsed.up() && reg.parsed.uv());
        reg.verify_self_attestation(&mc.client_data_hash);

        // The token has no ga permission.
        let mut ga = GetAssertion::typical("example.com");
        ga.pin_uv_auth = Some(token.param(&ga.client_data_hash));
        assert_eq!(key.assert(&ga).err(), Some(PIN_AUTH_INVALID));
        // And its mc permission was used up by the registration (§6.1.2, clear permissions).
        let mut mc = MakeCredential::typical("example.com", "bob").rk(true);
        mc.pin_uv_auth = Some(token.param(&mc.client_data_hash));
        assert_eq!(key.register(&mc).err(), Some(PIN_AUTH_INVALID));
        // A pinUvAuthParam over the wrong message is PIN_AUTH_INVALID too.
        key.queue([verified()]);
        let token = key
            .uv_token(
                protocol,
                permission::MAKE_CREDENTIAL | permission::GET_ASSERTION,
                None,
            )
            .unwrap();
        let mut mc = MakeCredential::typical("example.com", "carol").rk(true);
        mc.pin_uv_auth = Some(token.param(&random32()));
        assert_eq!(key.register(&mc).err(), Some(PIN_AUTH_INVALID));
        key.assert_script_used_up();
    }
}

#[test]
fn built_in_uv_token_with_ga_permission_is_bound_to_its_rp() {
    let mut key = Key::new();
    let regs = three_accounts(&mut key);
    key.seen();
    key.queue([verified()]);
    let token = key
        .uv_token(2, permission::GET_ASSERTION, Some("example.com"))
        .unwrap();
    assert_eq!(key.seen().len(), 1);
    let mut ga = GetAssertion::typical("other.example");
    ga.pin_uv_auth = Some(token.param(&ga.client_data_hash));
    assert_eq!(
        key.assert(&ga).err(),
        Some(PIN_AUTH_INVALID),
        "bound to example.com"
    );
    let mut ga = GetAssertion::typical("example.com").allow(regs[2].id());
    ga.pin_uv_auth = Some(token.param(&ga.client_data_hash));
    let a = key.assert(&ga).unwrap();
    a.verify(regs[2].key(), "example.com", &ga.client_data_hash);
    assert!(a.parsed.up() && a.parsed.uv());
    assert!(
        key.seen().is_empty(),
        "no second prompt within the user-present window"
    );
}

#[test]
fn failed_verifications_count_down_uv_retries_until_blocked() {
    let mut key = Key::new();
    assert_eq!(key.uv_retries(), 8);
    // A success resets the counter.
    key.queue([
        ApprovalOutcome::VerificationFailed,
        ApprovalOutcome::VerificationFailed,
        verified(),
    ]);
    assert_eq!(
        key.uv_token(2, permission::MAKE_CREDENTIAL, None).err(),
        Some(UV_INVALID)
    );
    assert_eq!(
        key.uv_token(2, permission::MAKE_CREDENTIAL, None).err(),
        Some(UV_INVALID)
    );
    assert_eq!(key.uv_retries(), 6);
    key.uv_token(2, permission::MAKE_CREDENTIAL, None).unwrap();
    assert_eq!(key.uv_retries(), 8);

    // makeCredential's built-in UV counts against the same counter (its status codes are
    // checked in built_in_uv_failure_inside_make_credential_and_get_assertion).
    key.queue([ApprovalOutcome::VerificationFailed]);
    assert_eq!(
        key.register(
            &MakeCredential::typical("example.com", "alice")
                .rk(true)
                .uv(true)
        )
        .err(),
        Some(OPERATION_DENIED)
    );
    assert_eq!(key.uv_retries(), 7);
    for left in (1..7).rev() {
        key.queue([ApprovalOutcome::VerificationFailed]);
        assert_eq!(
            key.uv_token(1, permission::GET_ASSERTION, None).err(),
            Some(UV_INVALID)
        );
        assert_eq!(key.uv_retries(), left);
    }
    key.queue([ApprovalOutcome::VerificationFailed]);
    assert_eq!(
        key.uv_token(2, permission::MAKE_CREDENTIAL, None).err(),
        Some(UV_BLOCKED)
    );
    assert_eq!(key.uv_retries(), 0);
    key.seen();
    // Blocked: nobody is asked any more, and a power cycle does not help.
    key.auth.power_cycle();
    assert_eq!(
        key.uv_token(2, permission::MAKE_CREDENTIAL, None).err(),
        Some(UV_BLOCKED)
    );
    // Inside makeCredential a blocked built-in UV is PIN_BLOCKED (§6.1.2 step 11.2).
    assert_eq!(
        key.register(
            &MakeCredential::typical("example.com", "alice")
                .rk(true)
                .uv(true)
        )
        .err(),
        Some(PIN_BLOCKED)
    );
    assert!(key.seen().is_empty());
    key.assert_script_used_up();
}

/// CTAP 2.1 §6.1.2 step 11.2 and §6.2.2 step 6.2: a failed performBuiltInUv inside mc/ga is
/// USER_ACTION_TIMEOUT on timeout, PIN_BLOCKED once uvRetries is 0, OPERATION_DENIED otherwise;
/// UV_INVALID / UV_BLOCKED are clientPIN 0x06's.
#[test]
fn built_in_uv_failure_inside_make_credential_and_get_assertion() {
    let mut key = Key::new();
    key.queue([verified()]);
    let reg = key
        .register(
            &MakeCredential::typical("example.com", "alice")
                .rk(true)
                .uv(true),
        )
        .unwrap();

    key.queue([ApprovalOutcome::VerificationFailed]);
    assert_eq!(
        key.register(
            &MakeCredential::typical("example.com", "bob")
                .rk(true)
                .uv(true)
        )
        .err(),
        Some(OPERATION_DENIED)
    );
    assert_eq!(key.uv_retries(), 7, "performBuiltInUv counts the failure");
    key.queue([ApprovalOutcome::VerificationFailed]);
    assert_eq!(
        key.assert(
            &GetAssertion::typical("example.com")
                .allow(reg.id())
                .uv(true)
        )
        .err(),
        Some(OPERATION_DENIED)
    );
    assert_eq!(key.uv_retries(), 6);
    key.queue([ApprovalOutcome::TimedOut]);
    assert_eq!(
        key.assert(&GetAssertion::typical("example.com").uv(true))
            .err(),
        Some(USER_ACTION_TIMEOUT)
    );
    for _ in 0..5 {
        key.queue([ApprovalOutcome::VerificationFailed]);
        assert_eq!(
            key.register(
                &MakeCredential::typical("example.com", "bob")
                    .rk(true)
                    .uv(true)
            )
            .err(),
            Some(OPERATION_DENIED)
        );
    }
    assert_eq!(key.uv_retries(), 1);
    key.queue([ApprovalOutcome::VerificationFailed]);
    assert_eq!(
        key.assert(&GetAssertion::typical("example.com").uv(true))
            .err(),
        Some(PIN_BLOCKED)
    );
    assert_eq!(key.uv_retries(), 0);
}

/// Config::builtin_uv = false wins over an Approver that could verify: no `uv` in getInfo,
/// clientPIN 0x06 and 0x07 are INVALID_SUBCOMMAND (§6.5.5.7.3), `uv` = true is
/// INVALID_OPTION (§6.1.2 step 5), and nobody is asked.
#[test]
fn builtin_uv_off_is_a_pin_only_key() {
    let master = MasterKey::generate();
    let config = Config {
        builtin_uv: false,
        ..Config::default()
    };
    let mut key = Key::with_config(
        Store::open_in_memory(&master).unwrap(),
        &master,
        true,
        config,
    );
    let info = key.info();
    assert_eq!(info_option(&info, "uv"), None);
    assert!(get(&info, 0x11).is_none() && get(&info, 0x12).is_none());
    assert_eq!(
        key.uv_token(2, permission::MAKE_CREDENTIAL, Some("example.com"))
            .err(),
        Some(INVALID_SUBCOMMAND)
    );
    assert_eq!(
        key.client_pin(vec![(2, int(0x07))]).err(),
        Some(INVALID_SUBCOMMAND)
    );
    assert_eq!(
        key.register(&MakeCredential::typical("example.com", "alice").uv(true))
            .err(),
        Some(INVALID_OPTION)
    );
    key.assert_script_used_up();
}
