//! `SecurityKey` through its Rust API, as the generated bindings call it: a real database
//! in a temporary directory, a KeyProvider and an ApprovalListener implemented here, and
//! approvals answered from another thread.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use pocketkey_ffi::*;
use pocketkey_testkit::cbor::{bytes, get, tmap};
use pocketkey_testkit::command;
use pocketkey_testkit::responses::{decode_response, info_option};
use pocketkey_testkit::status::{
    INVALID_OPTION, KEEPALIVE_CANCEL, OK, OPERATION_DENIED, USER_ACTION_TIMEOUT,
};
use pocketkey_testkit::u2f::apdu;
use pocketkey_testkit::{GetAssertion, MakeCredential};

struct Keychain(Result<Vec<u8>, KeyProviderError>);

impl KeyProvider for Keychain {
    fn master_key(&self) -> Result<Vec<u8>, KeyProviderError> {
        self.0.clone()
    }
}

/// Forwards prompts to the test over a channel; records closings.
struct Listener {
    prompts: Mutex<Sender<ApprovalPrompt>>,
    closed: Mutex<Vec<(u64, ApprovalClosed)>>,
}

impl ApprovalListener for Listener {
    fn on_approval_requested(&self, request: ApprovalPrompt) -> Result<(), ApprovalListenerError> {
        self.prompts.lock().unwrap().send(request).unwrap();
        Ok(())
    }
    fn on_approval_closed(
        &self,
        id: u64,
        reason: ApprovalClosed,
    ) -> Result<(), ApprovalListenerError> {
        self.closed.lock().unwrap().push((id, reason));
        Ok(())
    }
}

struct Fixture {
    key: Arc<SecurityKey>,
    prompts: Receiver<ApprovalPrompt>,
    listener: Arc<Listener>,
    dir: tempfile::TempDir,
    /// The phone's UV key, registered at open (a software P-256 key standing in for the
    /// Keystore / Secure Enclave key).
    uv_key: SigningKey,
}

impl Fixture {
    /// "Approve with biometrics": the UV key's signature over the prompt's challenge.
    fn verified(&self, prompt: &ApprovalPrompt) -> ApprovalAnswer {
        ApprovalAnswer::ApproveVerified {
            account: None,
            signature: sign(&self.uv_key, &prompt.uv_challenge),
        }
    }
}

fn sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let sig: DerSignature = key.sign(message);
    sig.as_bytes().to_vec()
}

fn public_key(key: &SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

fn open_with(dir: tempfile::TempDir, master: [u8; 32], timeout_ms: Option<u64>) -> Fixture {
    let (tx, prompts) = mpsc::channel();
    let listener = Arc::new(Listener {
        prompts: Mutex::new(tx),
        closed: Mutex::new(vec![]),
    });
    let key = SecurityKey::open(
        dir.path().join("key").to_string_lossy().into_owned(),
        Arc::new(Keychain(Ok(master.to_vec()))),
        listener.clone(),
        timeout_ms,
        None,
    )
    .unwrap();
    let uv_key = SigningKey::random(&mut rand_core::OsRng);
    key.register_uv_key(public_key(&uv_key)).unwrap();
    Fixture {
        key,
        prompts,
        listener,
        dir,
        uv_key,
    }
}

fn open() -> Fixture {
    open_with(tempfile::tempdir().unwrap(), [0x42; 32], None)
}

fn make_credential(rp: &str, user: &str, user_id: u8) -> Vec<u8> {
    MakeCredential::new(rp, user)
        .client_data_hash([7; 32])
        .rp_name("The Site")
        .user_id([user_id])
        .user_display_name(user.to_uppercase())
        .rk(true)
        .uv(true)
        .encode()
}

fn get_assertion(rp: &str) -> Vec<u8> {
    GetAssertion::new(rp).client_data_hash([9; 32]).encode()
}

/// Runs `request` on a worker thread (as an app does) and answers its prompt from this one.
fn with_answer(
    f: &Fixture,
    request: Vec<u8>,
    answer: impl FnOnce(&ApprovalPrompt) -> ApprovalAnswer,
) -> (Vec<u8>, ApprovalPrompt) {
    let key = f.key.clone();
    let worker = thread::spawn(move || key.process_ctap(request, "Work laptop".into()));
    let prompt = f
        .prompts
        .recv_timeout(Duration::from_secs(10))
        .expect("a prompt");
    f.key.answer(prompt.id, answer(&prompt)).unwrap();
    (worker.join().unwrap(), prompt)
}

fn register(f: &Fixture, rp: &str, user: &str, user_id: u8) -> ApprovalPrompt {
    let (response, prompt) = with_answer(f, make_credential(rp, user, user_id), |p| f.verified(p));
    assert_eq!(response[0], OK, "makeCredential failed: {response:02x?}");
    prompt
}

#[test]
fn registers_and_signs_in_with_prompts_answered_from_another_thread() {
    let f = open();
    let prompt = register(&f, "example.com", "alice", 1);
    assert_eq!(prompt.operation, ApprovalOperation::Register);
    assert_eq!(prompt.rp_id.as_deref(), Some("example.com"));
    assert_eq!(prompt.rp_name.as_deref(), Some("The Site"));
    assert_eq!(prompt.user_name.as_deref(), Some("alice"));
    assert_eq!(prompt.user_display_name.as_deref(), Some("ALICE"));
    assert_eq!(prompt.requester, "Work laptop");
    assert_eq!(
        *f.listener.closed.lock().unwrap(),
        vec![(prompt.id, ApprovalClosed::Answered)]
    );
    // The answered prompt is over.
    assert_eq!(
        f.key.answer(prompt.id, ApprovalAnswer::Deny),
        Err(PocketKeyError::UnknownApproval { id: prompt.id })
    );

    register(&f, "example.com", "bob", 2);
    let (response, prompt) = with_answer(&f, get_assertion("example.com"), |p| {
        assert_eq!(p.accounts.len(), 2);
        let bob = p
            .accounts
            .iter()
            .position(|a| a.user_name.as_deref() == Some("bob"))
            .unwrap();
        ApprovalAnswer::ApprovePresent {
            account: Some(bob as u32),
        }
    });
    assert_eq!(prompt.operation, ApprovalOperation::SignIn);
    let body = decode_response(&response).expect("getAssertion succeeds");
    // Without UV only the user id comes back: bob's is [2].
    assert_eq!(get(&body, 4), Some(&tmap(vec![("id", bytes(&[2]))])));
}

#[test]
fn deny_timeout_and_cancel_reach_the_computer() {
    let f = open_with(tempfile::tempdir().unwrap(), [1; 32], Some(300));
    let (response, _) = with_answer(&f, make_credential("example.com", "alice", 1), |_| {
        ApprovalAnswer::Deny
    });
    assert_eq!(response, vec![OPERATION_DENIED]);

    let started = Instant::now();
    assert_eq!(
        f.key
            .process_ctap(make_credential("example.com", "alice", 1), "x".into()),
        vec![USER_ACTION_TIMEOUT]
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let timed_out = f.prompts.recv().unwrap();
    assert!(f
        .listener
        .closed
        .lock()
        .unwrap()
        .contains(&(timed_out.id, ApprovalClosed::TimedOut)));
    assert!(matches!(
        f.key.answer(timed_out.id, ApprovalAnswer::Deny),
        Err(PocketKeyError::UnknownApproval { .. })
    ));

    let f = open();
    let key = f.key.clone();
    let worker = thread::spawn(move || {
        key.process_ctap(make_credential("example.com", "alice", 1), "x".into())
    });
    let prompt = f.prompts.recv_timeout(Duration::from_secs(10)).unwrap();
    f.key.cancel_pending();
    assert_eq!(worker.join().unwrap(), vec![KEEPALIVE_CANCEL]);
    assert!(f
        .listener
        .closed
        .lock()
        .unwrap()
        .contains(&(prompt.id, ApprovalClosed::Cancelled)));
}

#[test]
fn the_app_reads_while_a_request_waits() {
    let f = open();
    register(&f, "example.com", "alice", 1);
    let key = f.key.clone();
    let worker = thread::spawn(move || {
        key.process_ctap(make_credential("other.example", "carol", 3), "x".into())
    });
    let prompt = f.prompts.recv_timeout(Duration::from_secs(10)).unwrap();
    // Neither blocks on the waiting engine.
    assert_eq!(f.key.info().unwrap().credential_count, 1);
    assert_eq!(f.key.passkeys().unwrap().len(), 1);
    f.key.answer(prompt.id, f.verified(&prompt)).unwrap();
    assert_eq!(worker.join().unwrap()[0], OK);
}

#[test]
fn manages_passkeys_label_pin_and_reset() {
    let f = open();
    let info = f.key.info().unwrap();
    assert_eq!(info.aaguid, "9b1f5c0e-7d3a-4c62-a8e1-3f6b2d4c5a71");
    assert_eq!(info.label, "PocketKey");
    assert!(!info.pin_set);
    assert!(info.uv_available);
    assert_eq!(info.credential_count, 0);
    assert_eq!(info.attestation, AttestationKind::SelfAttestation);

    register(&f, "b.example", "alice", 1);
    register(&f, "a.example", "alice", 1);
    register(&f, "a.example", "bob", 2);
    let sites = f.key.passkeys().unwrap();
    assert_eq!(
        sites.iter().map(|s| s.rp_id.as_str()).collect::<Vec<_>>(),
        ["a.example", "b.example"]
    );
    assert_eq!(sites[0].rp_name.as_deref(), Some("The Site"));
    assert_eq!(sites[0].passkeys.len(), 2);
    assert_eq!(
        sites[0].passkeys[0].user_name.as_deref(),
        Some("bob"),
        "newest first"
    );
    assert!(sites[0].passkeys[0].created_at_unix > 1_700_000_000);
    assert_eq!(f.key.info().unwrap().credential_count, 3);

    let id = sites[1].passkeys[0].credential_id.clone();
    assert!(f.key.delete_passkey(id.clone()).unwrap());
    assert!(!f.key.delete_passkey(id).unwrap());
    assert_eq!(f.key.passkeys().unwrap().len(), 1);

    f.key.set_label("Alice's phone".into()).unwrap();
    assert_eq!(f.key.info().unwrap().label, "Alice's phone");
    for bad in ["", "a\nb", &"x".repeat(65)] {
        assert_eq!(
            f.key.set_label(bad.into()),
            Err(PocketKeyError::InvalidLabel { max_chars: 64 })
        );
    }

    assert_eq!(
        f.key.change_pin("1234".into(), "5678".into()),
        Err(PocketKeyError::PinNotSet)
    );
    assert_eq!(
        f.key.set_pin("123".into()),
        Err(PocketKeyError::PinTooShort { min_length: 4 })
    );
    assert_eq!(
        f.key.set_pin("1".repeat(64)),
        Err(PocketKeyError::PinTooLong { max_bytes: 63 })
    );
    assert_eq!(
        f.key.set_pin("12\u{0}45".into()),
        Err(PocketKeyError::PinInvalidCharacter)
    );
    f.key.set_pin("1234".into()).unwrap();
    assert!(f.key.info().unwrap().pin_set);
    assert_eq!(
        f.key.set_pin("5678".into()),
        Err(PocketKeyError::PinAlreadySet)
    );
    assert_eq!(
        f.key.change_pin("0000".into(), "5678".into()),
        Err(PocketKeyError::PinWrong { retries_left: 7 })
    );
    let err = f.key.change_pin("0000".into(), "5678".into()).unwrap_err();
    assert_eq!(err.user_message(), "The PIN is wrong (6 tries left)");
    assert_eq!(
        f.key.change_pin("0000".into(), "5678".into()),
        Err(PocketKeyError::PinTemporarilyBlocked)
    );
    drop(f.key);

    // Reopening is a power cycle: the strikes are gone, the retries are not.
    let f = open_with(f.dir, [0x42; 32], None);
    assert_eq!(
        f.key.change_pin("0000".into(), "5678".into()),
        Err(PocketKeyError::PinWrong { retries_left: 4 })
    );
    f.key.change_pin("1234".into(), "5678".into()).unwrap();
    assert_eq!(f.key.passkeys().unwrap().len(), 1);

    f.key.factory_reset().unwrap();
    let info = f.key.info().unwrap();
    assert!(!info.pin_set);
    assert_eq!(info.credential_count, 0);
    assert_eq!(info.label, "PocketKey");
    assert!(f.key.passkeys().unwrap().is_empty());
}

#[test]
fn open_reports_typed_errors() {
    let (tx, _rx) = mpsc::channel();
    let listener = Arc::new(Listener {
        prompts: Mutex::new(tx),
        closed: Mutex::new(vec![]),
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_string_lossy().into_owned();
    let open = |provider: Keychain| {
        SecurityKey::open(
            path.clone(),
            Arc::new(provider),
            listener.clone(),
            None,
            None,
        )
    };

    let err = open(Keychain(Ok(vec![1; 16]))).unwrap_err();
    assert_eq!(err, PocketKeyError::MasterKeyWrongLength { length: 16 });
    let err = open(Keychain(Err(KeyProviderError::Unavailable {
        reason: "device locked".into(),
    })))
    .unwrap_err();
    assert!(
        matches!(&err, PocketKeyError::KeyProviderFailed { reason } if reason.contains("device locked")),
        "{err:?}"
    );

    // A PIN is sealed under the master key: another key cannot open it.
    open(Keychain(Ok(vec![1; 32])))
        .unwrap()
        .set_pin("1234".into())
        .unwrap();
    assert_eq!(
        open(Keychain(Ok(vec![2; 32]))).unwrap_err(),
        PocketKeyError::MasterKeyMismatch
    );
    assert!(
        open(Keychain(Ok(vec![1; 32])))
            .unwrap()
            .info()
            .unwrap()
            .pin_set
    );

    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = SecurityKey::open(
        file.to_string_lossy().into_owned(),
        Arc::new(Keychain(Ok(vec![1; 32]))),
        listener.clone(),
        None,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, PocketKeyError::StorageUnavailable { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "The security key's storage could not be opened"
    );
}

#[test]
fn u2f_goes_through_the_same_prompts() {
    let f = open();
    let key = f.key.clone();
    // U2F REGISTER: INS 1, P1 3 (enforce presence), challenge ‖ application.
    let apdu = apdu(0x01, 0x03, &[[1u8; 32], [2u8; 32]].concat());
    let worker = thread::spawn(move || key.process_u2f(apdu, "Old browser".into()));
    let prompt = f.prompts.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(prompt.operation, ApprovalOperation::U2fRegister);
    assert_eq!(prompt.requester, "Old browser");
    f.key
        .answer(prompt.id, ApprovalAnswer::ApprovePresent { account: None })
        .unwrap();
    let response = worker.join().unwrap();
    assert_eq!(&response[response.len() - 2..], &[0x90, 0x00]);
    assert_eq!(response[0], 0x05);
}

#[test]
fn factory_reset_cancels_a_waiting_request() {
    let f = open();
    register(&f, "example.com", "alice", 1);
    let key = f.key.clone();
    let worker = thread::spawn(move || key.process_ctap(get_assertion("example.com"), "x".into()));
    let prompt = f.prompts.recv_timeout(Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    f.key.factory_reset().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(worker.join().unwrap(), vec![KEEPALIVE_CANCEL]);
    assert!(f
        .listener
        .closed
        .lock()
        .unwrap()
        .contains(&(prompt.id, ApprovalClosed::Cancelled)));
    assert_eq!(f.key.info().unwrap().credential_count, 0);
}

/// `builtin_uv = Some(false)` (a phone with nothing enrolled): the key claims no built-in UV
/// in getInfo nor in `info()`, and a request for built-in UV (`uv` = true) is
/// CTAP2_ERR_INVALID_OPTION without any prompt (CTAP 2.1 §6.1.2 step 5).
#[test]
fn open_without_builtin_uv_is_a_pin_only_key() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, prompts) = mpsc::channel();
    let listener = Arc::new(Listener {
        prompts: Mutex::new(tx),
        closed: Mutex::new(vec![]),
    });
    let key = SecurityKey::open(
        dir.path().join("key").to_string_lossy().into_owned(),
        Arc::new(Keychain(Ok(vec![0x42; 32]))),
        listener,
        None,
        Some(false),
    )
    .unwrap();
    assert!(!key.info().unwrap().uv_available);

    let info = key.process_ctap(vec![command::GET_INFO], "Work laptop".into());
    let info = decode_response(&info).expect("getInfo");
    assert_eq!(info_option(&info, "uv"), None);
    assert_eq!(info_option(&info, "pinUvAuthToken"), Some(true));

    let response = key.process_ctap(
        make_credential("uv.example", "alice", 1),
        "Work laptop".into(),
    );
    assert_eq!(
        response,
        vec![INVALID_OPTION],
        "uv=true without built-in UV"
    );
    assert!(prompts.try_recv().is_err(), "nobody was asked");
}

#[test]
fn a_verified_answer_needs_the_uv_keys_signature_over_its_own_prompt() {
    let f = open();
    assert!(f.key.info().unwrap().uv_key_registered);
    // Another key's signature: the computer is refused, and no UV retry is spent.
    let forger = SigningKey::random(&mut rand_core::OsRng);
    let (response, _) = with_answer(&f, make_credential("example.com", "alice", 1), |p| {
        ApprovalAnswer::ApproveVerified {
            account: None,
            signature: sign(&forger, &p.uv_challenge),
        }
    });
    assert_eq!(response, [OPERATION_DENIED]);
    // The right key over an earlier prompt's challenge (a replay).
    let first = register(&f, "example.com", "alice", 1);
    let old = sign(&f.uv_key, &first.uv_challenge);
    let (response, second) = with_answer(&f, make_credential("example.com", "bob", 2), |_| {
        ApprovalAnswer::ApproveVerified {
            account: None,
            signature: old.clone(),
        }
    });
    assert_ne!(first.uv_challenge, second.uv_challenge);
    assert_eq!(response, [OPERATION_DENIED]);
    // A signature that cannot be one is refused at `answer`; the prompt stays open.
    let key = f.key.clone();
    let worker = thread::spawn(move || {
        key.process_ctap(make_credential("example.com", "carol", 3), "x".into())
    });
    let prompt = f.prompts.recv_timeout(Duration::from_secs(10)).unwrap();
    let bad = ApprovalAnswer::ApproveVerified {
        account: None,
        signature: vec![0x30; 80],
    };
    assert_eq!(
        f.key.answer(prompt.id, bad),
        Err(PocketKeyError::InvalidUvProof { length: 80 })
    );
    f.key.answer(prompt.id, f.verified(&prompt)).unwrap();
    assert_eq!(worker.join().unwrap()[0], OK);
}

#[test]
fn without_a_uv_key_the_key_offers_no_built_in_uv() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, _prompts) = mpsc::channel();
    let listener = Arc::new(Listener {
        prompts: Mutex::new(tx),
        closed: Mutex::new(vec![]),
    });
    let key = SecurityKey::open(
        dir.path().join("key").to_string_lossy().into_owned(),
        Arc::new(Keychain(Ok(vec![0x42; 32]))),
        listener,
        None,
        None,
    )
    .unwrap();
    let info = key.info().unwrap();
    assert!(info.uv_available && !info.uv_key_registered);
    let response = key.process_ctap(vec![command::GET_INFO], "x".into());
    let info = decode_response(&response).unwrap();
    assert_eq!(info_option(&info, "uv"), None);
    // uv=true without built-in UV: INVALID_OPTION at once, no prompt.
    let response = key.process_ctap(make_credential("example.com", "alice", 1), "x".into());
    assert_eq!(response, [INVALID_OPTION]);
    assert_eq!(
        key.register_uv_key(vec![4; 65]),
        Err(PocketKeyError::InvalidUvKey)
    );
    let uv_key = SigningKey::random(&mut rand_core::OsRng);
    key.register_uv_key(public_key(&uv_key)).unwrap();
    assert!(key.info().unwrap().uv_key_registered);
    let response = key.process_ctap(vec![command::GET_INFO], "x".into());
    assert_eq!(
        info_option(&decode_response(&response).unwrap(), "uv"),
        Some(true)
    );
    // A factory reset forgets it.
    key.factory_reset().unwrap();
    assert!(!key.info().unwrap().uv_key_registered);
}
