//! User verification bound to hardware: with a hardware-bound approver, a verified answer
//! counts only with an ES256 signature over the prompt's challenge by the registered UV key
//! (docs/apps.md, "User verification bound to hardware").

use std::sync::{Arc, Mutex};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use pocketkey_core::approver::{ApprovalOutcome, ApprovalRequest, Operation, UvChallenge, UvProof};
use pocketkey_core::authenticator::UvKeyError;
use pocketkey_testkit::approver::Answer;
use pocketkey_testkit::key::Key;
use pocketkey_testkit::pin_platform::permission;
use pocketkey_testkit::requests::{GetAssertion, MakeCredential};
use pocketkey_testkit::responses::info_option;
use pocketkey_testkit::status::*;

/// The phone's UV key, as the OS keystore would hold it (here a software P-256 key).
struct PhoneKey(SigningKey);

impl PhoneKey {
    fn new() -> Self {
        Self(SigningKey::random(&mut rand_core::OsRng))
    }

    fn public(&self) -> Vec<u8> {
        self.0
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    fn sign(&self, message: &[u8]) -> UvProof {
        let sig: DerSignature = self.0.sign(message);
        UvProof::from_der(sig.as_bytes()).unwrap()
    }
}

fn verified_with(proof: Option<UvProof>) -> ApprovalOutcome {
    ApprovalOutcome::Verified {
        account: None,
        proof,
    }
}

/// An answer that signs the request's own challenge with `key`.
fn signed_by(key: &Arc<PhoneKey>) -> Answer {
    let key = key.clone();
    Answer::Made(Box::new(move |r: &ApprovalRequest| {
        verified_with(Some(key.sign(r.uv_challenge.as_bytes())))
    }))
}

fn registered() -> (Key, Arc<PhoneKey>) {
    let mut key = Key::hardware_bound();
    let phone = Arc::new(PhoneKey::new());
    key.auth.register_uv_key(&phone.public()).unwrap();
    (key, phone)
}

#[test]
fn a_signature_over_the_prompts_challenge_verifies_the_user() {
    let (mut key, phone) = registered();
    assert_eq!(info_option(&key.info(), "uv"), Some(true));
    key.answer_with([signed_by(&phone)]);
    let mc = MakeCredential::typical("example.com", "alice").uv(true);
    let reg = key.register(&mc).unwrap();
    assert!(reg.parsed.up() && reg.parsed.uv());
    let shown = key.seen().pop().unwrap();
    // The challenge names the operation and the site, then a nonce.
    let c = shown.uv_challenge.as_bytes();
    assert_eq!(c.len(), UvChallenge::LEN);
    assert!(c.starts_with(UvChallenge::PREFIX));
    assert_eq!(c[UvChallenge::PREFIX.len()], Operation::Register.code());
    use sha2::Digest;
    let rp_hash = sha2::Sha256::digest("example.com");
    assert_eq!(
        &c[UvChallenge::PREFIX.len() + 1..UvChallenge::PREFIX.len() + 33],
        &rp_hash[..]
    );
    key.assert_script_used_up();
}

#[test]
fn a_forged_signature_is_denied_without_spending_a_retry() {
    let (mut key, _phone) = registered();
    let forger = Arc::new(PhoneKey::new());
    key.answer_with([signed_by(&forger)]);
    let mc = MakeCredential::typical("example.com", "alice").uv(true);
    assert_eq!(key.register(&mc).err(), Some(OPERATION_DENIED));
    assert_eq!(key.uv_retries(), 8, "the user did not fail a biometric");
    // Garbage in the signature's place is refused the same way, not a panic.
    key.queue([verified_with(UvProof::from_der(&[0x30, 0x02, 0x01]))]);
    assert_eq!(key.register(&mc).err(), Some(OPERATION_DENIED));
    assert_eq!(key.uv_retries(), 8);
}

#[test]
fn a_proof_made_for_another_prompt_is_denied() {
    let (mut key, phone) = registered();
    // A valid signature by the registered key, over a challenge for another site and
    // operation (what a proof for some other prompt looks like).
    let other = UvChallenge::new(Operation::SignIn, Some("evil.example"));
    key.queue([verified_with(Some(phone.sign(other.as_bytes())))]);
    let mc = MakeCredential::typical("example.com", "alice").uv(true);
    assert_eq!(key.register(&mc).err(), Some(OPERATION_DENIED));
    assert_eq!(key.uv_retries(), 8);
}

#[test]
fn a_replayed_proof_is_denied() {
    let (mut key, phone) = registered();
    let captured = Arc::new(Mutex::new(None));
    let keep = captured.clone();
    let signer = phone.clone();
    key.answer_with([Answer::Made(Box::new(move |r: &ApprovalRequest| {
        let proof = signer.sign(r.uv_challenge.as_bytes());
        *keep.lock().unwrap() = Some(proof);
        verified_with(Some(proof))
    }))]);
    let mc = MakeCredential::typical("example.com", "alice").uv(true);
    key.register(&mc).unwrap();
    // The same operation at the same site, answered with the first prompt's signature.
    let old = captured.lock().unwrap().unwrap();
    key.queue([verified_with(Some(old))]);
    assert_eq!(key.register(&mc).err(), Some(OPERATION_DENIED));
    let prompts = key.seen();
    assert_eq!(prompts.len(), 2);
    assert_ne!(prompts[0].uv_challenge, prompts[1].uv_challenge);
}

#[test]
fn a_verified_answer_without_a_proof_is_denied_for_uv_and_for_a_uv_token() {
    let (mut key, _phone) = registered();
    key.queue([verified_with(None)]);
    let mc = MakeCredential::typical("example.com", "alice").uv(true);
    assert_eq!(key.register(&mc).err(), Some(OPERATION_DENIED));
    // getPinUvAuthTokenUsingUvWithPermissions: OPERATION_DENIED, not UV_INVALID.
    key.queue([verified_with(None)]);
    assert_eq!(
        key.uv_token(2, permission::MAKE_CREDENTIAL, Some("example.com"))
            .err(),
        Some(OPERATION_DENIED)
    );
    assert_eq!(key.uv_retries(), 8);
    // A real verification failure still counts.
    key.queue([ApprovalOutcome::VerificationFailed]);
    assert_eq!(
        key.uv_token(2, permission::MAKE_CREDENTIAL, Some("example.com"))
            .err(),
        Some(UV_INVALID)
    );
    assert_eq!(key.uv_retries(), 7);
}

#[test]
fn presence_needs_no_proof() {
    let (mut key, _phone) = registered();
    key.queue([verified_with(None)]);
    let reg = key
        .register(&MakeCredential::typical("example.com", "alice"))
        .unwrap();
    assert!(reg.parsed.up() && !reg.parsed.uv());
}

#[test]
fn without_a_registered_uv_key_the_key_reports_no_built_in_uv() {
    let mut key = Key::hardware_bound();
    assert_eq!(info_option(&key.info(), "uv"), None);
    let mc = MakeCredential::typical("example.com", "alice").uv(true);
    assert_eq!(key.register(&mc).err(), Some(INVALID_OPTION));
    assert_eq!(
        key.assert(&GetAssertion::typical("example.com").uv(true))
            .err(),
        Some(INVALID_OPTION)
    );
    assert_eq!(
        key.uv_token(2, permission::MAKE_CREDENTIAL, None).err(),
        Some(INVALID_SUBCOMMAND)
    );
    key.assert_script_used_up();
}

#[test]
fn registration_refuses_malformed_keys_and_a_reset_forgets_the_key() {
    let mut key = Key::hardware_bound();
    let phone = PhoneKey::new();
    let public = phone.public();
    for bad in [&[4u8; 65][..], &public[..64], &[][..]] {
        assert!(matches!(
            key.auth.register_uv_key(bad),
            Err(UvKeyError::Malformed)
        ));
    }
    let compressed = phone.0.verifying_key().to_encoded_point(true);
    assert!(matches!(
        key.auth.register_uv_key(compressed.as_bytes()),
        Err(UvKeyError::Malformed)
    ));
    assert!(!key.auth.uv_key_registered().unwrap());
    key.auth.register_uv_key(&public).unwrap();
    assert!(key.auth.uv_key_registered().unwrap());
    assert_eq!(info_option(&key.info(), "uv"), Some(true));
    key.auth.factory_reset().unwrap();
    assert!(!key.auth.uv_key_registered().unwrap());
    assert_eq!(info_option(&key.info(), "uv"), None);
}
