//! The engine writes back only the retry counter it changed: settings written by another
//! connection while it waited for the user (the app renaming the key or setting a PIN from
//! its settings screen) survive the engine's write after the wait.

use pocketkey_core::approver::{ApprovalOutcome, ApprovalRequest, Approver, UvBinding};
use pocketkey_core::authenticator::{Authenticator, Config, RequestContext};
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::store::Store;
use pocketkey_testkit::status::{OK, OPERATION_DENIED};
use pocketkey_testkit::MakeCredential;
use zeroize::Zeroizing;

/// While "asking the user", changes the label and sets a PIN through its own connection,
/// then answers `outcome`.
struct WritesMeanwhile {
    other: Store,
    outcome: fn() -> ApprovalOutcome,
}

impl Approver for WritesMeanwhile {
    fn can_verify_user(&self) -> bool {
        true
    }
    fn uv_binding(&self) -> UvBinding {
        UvBinding::Software { reason: "a test" }
    }
    fn approve(&mut self, _: &ApprovalRequest, _: &CancelToken) -> ApprovalOutcome {
        let mut settings = self.other.load_settings().unwrap();
        settings.label.push('+');
        settings.pin_hash = Some(Zeroizing::new([7; 16]));
        settings.pin_code_points = 4;
        self.other.save_settings(&settings).unwrap();
        (self.outcome)()
    }
}

/// authenticatorMakeCredential asking for built-in user verification (options.uv).
fn make_credential_with_uv() -> Vec<u8> {
    MakeCredential::new("example.com", "alice")
        .client_data_hash([0x11; 32])
        .user_id(*b"user")
        .uv(true)
        .encode()
}

fn key_on_file(
    path: &std::path::Path,
    master: &MasterKey,
    outcome: fn() -> ApprovalOutcome,
) -> Authenticator {
    let approver = WritesMeanwhile {
        other: Store::open(path, master).unwrap(),
        outcome,
    };
    let store = Store::open(path, master).unwrap();
    Authenticator::new(store, master, Box::new(approver), Config::default()).unwrap()
}

#[test]
fn a_failed_verification_spends_a_uv_retry_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pocketkey.sqlite");
    let master = MasterKey::generate();
    let mut auth = key_on_file(&path, &master, || ApprovalOutcome::VerificationFailed);
    let response = auth.process_cbor(&make_credential_with_uv(), &RequestContext::default());
    // CTAP 2.1 §6.1.2 step 11.2: a failed built-in UV in makeCredential is OPERATION_DENIED.
    assert_eq!(response, vec![OPERATION_DENIED]);
    let settings = auth.store().load_settings().unwrap();
    assert_eq!(settings.uv_retries, 7);
    assert_eq!(
        settings.label, "PocketKey+",
        "the label written meanwhile is kept"
    );
    assert_eq!(
        settings.pin_hash.as_deref(),
        Some(&[7; 16]),
        "the PIN set meanwhile is kept"
    );
}

#[test]
fn a_successful_verification_restores_uv_retries_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pocketkey.sqlite");
    let master = MasterKey::generate();
    {
        let mut store = Store::open(&path, &master).unwrap();
        let mut settings = store.load_settings().unwrap();
        settings.uv_retries = 3;
        store.save_settings(&settings).unwrap();
    }
    let mut auth = key_on_file(&path, &master, || ApprovalOutcome::Verified {
        account: None,
        proof: None,
    });
    let response = auth.process_cbor(&make_credential_with_uv(), &RequestContext::default());
    assert_eq!(response[0], OK, "makeCredential succeeds");
    let settings = auth.store().load_settings().unwrap();
    assert_eq!(settings.uv_retries, 8);
    assert_eq!(settings.label, "PocketKey+");
    assert_eq!(settings.pin_hash.as_deref(), Some(&[7; 16]));
}
