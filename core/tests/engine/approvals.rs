//! What the approver is shown and what its refusals become on the wire.

use std::time::Duration;

use pocketkey_core::approver::{ApprovalOutcome, Operation, Requester};
use pocketkey_testkit::approver::{present, verified};
use pocketkey_testkit::command;
use pocketkey_testkit::key::Key;
use pocketkey_testkit::pin_platform::permission;
use pocketkey_testkit::requests::{GetAssertion, MakeCredential};
use pocketkey_testkit::status::*;

#[test]
fn approval_request_names_the_rp_the_user_and_the_requester() {
    let mut key = Key::new();
    let mut mc = MakeCredential::typical("login.example.com", "alice@example.com")
        .rk(true)
        .uv(true);
    mc.user_display_name = Some("Alice Liddell".into());
    mc.rp_name = Some("Example Login".into());
    key.queue([verified()]);
    key.register(&mc).unwrap();
    let r = key.seen().pop().unwrap();
    assert_eq!(r.operation, Operation::Register);
    assert_eq!(r.rp_id.as_deref(), Some("login.example.com"));
    assert_eq!(r.rp_name.as_deref(), Some("Example Login"));
    assert_eq!(r.user_name.as_deref(), Some("alice@example.com"));
    assert_eq!(r.user_display_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(r.requester, Requester("Work laptop".into()));
    assert!(r.accounts.is_empty());
    assert!(r.timeout > Duration::ZERO);

    // Signing in with the single discoverable credential shows whose it is.
    key.queue([verified()]);
    let a = key
        .assert(&GetAssertion::typical("login.example.com").uv(true))
        .unwrap();
    let r = key.seen().pop().unwrap();
    assert_eq!(r.operation, Operation::SignIn);
    assert_eq!(r.rp_id.as_deref(), Some("login.example.com"));
    assert_eq!(r.user_name.as_deref(), Some("alice@example.com"));
    assert!(r.accounts.is_empty(), "one account: nothing to choose");
    assert_eq!(a.user_name().as_deref(), Some("alice@example.com"));
    assert!(a.number_of_credentials.is_none());
}

#[test]
fn refusals_map_to_their_status_codes() {
    let mut key = Key::new();
    for (outcome, status) in [
        (ApprovalOutcome::Denied, OPERATION_DENIED),
        (ApprovalOutcome::TimedOut, USER_ACTION_TIMEOUT),
        (ApprovalOutcome::Cancelled, KEEPALIVE_CANCEL),
    ] {
        key.queue([outcome]);
        assert_eq!(
            key.register(&MakeCredential::typical("example.com", "alice"))
                .err(),
            Some(status),
            "mc {outcome:?}"
        );
        key.queue([outcome]);
        assert_eq!(
            key.register(
                &MakeCredential::typical("example.com", "alice")
                    .rk(true)
                    .uv(true)
            )
            .err(),
            Some(status),
            "mc uv {outcome:?}"
        );
        key.queue([outcome]);
        assert_eq!(
            key.uv_token(2, permission::MAKE_CREDENTIAL, None).err(),
            Some(status),
            "clientPIN 0x06 {outcome:?}"
        );
        key.queue([outcome]);
        assert_eq!(
            key.call(command::SELECTION, None).err(),
            Some(status),
            "selection {outcome:?}"
        );
    }
    key.queue([present()]);
    let reg = key
        .register(&MakeCredential::typical("example.com", "alice"))
        .unwrap();
    for (outcome, status) in [
        (ApprovalOutcome::Denied, OPERATION_DENIED),
        (ApprovalOutcome::TimedOut, USER_ACTION_TIMEOUT),
        (ApprovalOutcome::Cancelled, KEEPALIVE_CANCEL),
    ] {
        key.queue([outcome]);
        assert_eq!(
            key.assert(&GetAssertion::typical("example.com").allow(reg.id()))
                .err(),
            Some(status),
            "ga {outcome:?}"
        );
    }
    key.assert_script_used_up();
    // Refusals are not verification failures.
    assert_eq!(key.uv_retries(), 8);

    // A request cancelled before the prompt (CTAPHID CANCEL) never reaches the approver.
    key.seen();
    key.cx.cancel.cancel();
    assert_eq!(
        key.register(&MakeCredential::typical("example.com", "alice"))
            .err(),
        Some(KEEPALIVE_CANCEL)
    );
    assert_eq!(
        key.assert(&GetAssertion::typical("example.com").allow(reg.id()))
            .err(),
        Some(KEEPALIVE_CANCEL)
    );
    assert!(key.seen().is_empty());
}
