//! U2F (CTAP1) registration and authentication through `process_u2f`, and how U2F and
//! CTAP2 credentials work across the two.

use p256::ecdsa::signature::Verifier;
use pocketkey_core::approver::{ApprovalOutcome, Operation};
use pocketkey_testkit::approver::present;
use pocketkey_testkit::cbor::int;
use pocketkey_testkit::cose::{PublicKey, EDDSA, ES256};
use pocketkey_testkit::key::Key;
use pocketkey_testkit::requests::{GetAssertion, MakeCredential};
use pocketkey_testkit::u2f::{self, apdu};
use pocketkey_testkit::{random32, sha256};

#[test]
fn u2f_register_and_authenticate_signatures_verify() {
    let mut key = Key::new();
    let application = sha256(b"https://example.com");
    let reg = u2f::register(&mut key, &random32(), &application);
    assert_eq!(key.seen().pop().unwrap().operation, Operation::U2fRegister);

    let mut last = 0;
    for (p1, presence) in [(0x03u8, 0x01u8), (0x08, 0x00), (0x03, 0x01)] {
        let challenge = random32();
        if p1 == 0x03 {
            key.queue([present()]);
        }
        let (body, sw) = key.u2f(&apdu(
            0x02,
            p1,
            &u2f::authenticate_data(&challenge, &application, &reg.key_handle),
        ));
        assert_eq!(sw, 0x9000);
        assert_eq!(body[0], presence);
        let counter = u32::from_be_bytes(body[1..5].try_into().unwrap());
        assert!(counter > last, "U2F counter increases");
        last = counter;
        let signed = [&application[..], &body[..5], &challenge].concat();
        let sig = p256::ecdsa::Signature::from_der(&body[5..]).unwrap();
        reg.public_key
            .verify(&signed, &sig)
            .expect("U2F authentication signature verifies");
    }
    let seen = key.seen();
    assert_eq!(seen.len(), 2, "don't-enforce asks nobody");
    assert!(seen.iter().all(|r| r.operation == Operation::U2fSignIn));
    key.assert_script_used_up();

    // CTAP2 and U2F share the one counter: it keeps increasing across both.
    key.queue([present()]);
    let r = key
        .register(&MakeCredential::typical("example.com", "alice"))
        .unwrap();
    assert!(r.parsed.sign_count > last);
}

#[test]
fn u2f_check_only_bad_key_handle_and_refusals() {
    let mut key = Key::new();
    let application = sha256(b"https://example.com");
    let reg = u2f::register(&mut key, &random32(), &application);
    key.seen();
    let challenge = random32();
    let good = u2f::authenticate_data(&challenge, &application, &reg.key_handle);
    // check-only with our key handle: "conditions not satisfied", nobody asked.
    assert_eq!(key.u2f(&apdu(0x02, 0x07, &good)), (vec![], 0x6985));
    // Someone else's key handle, or ours for another application: wrong data.
    let mut flipped = reg.key_handle.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let bad = u2f::authenticate_data(&challenge, &application, &flipped);
    assert_eq!(key.u2f(&apdu(0x02, 0x07, &bad)), (vec![], 0x6A80));
    assert_eq!(key.u2f(&apdu(0x02, 0x03, &bad)), (vec![], 0x6A80));
    let other_app = u2f::authenticate_data(
        &challenge,
        &sha256(b"https://evil.example"),
        &reg.key_handle,
    );
    assert_eq!(key.u2f(&apdu(0x02, 0x07, &other_app)), (vec![], 0x6A80));
    let random_kh = u2f::authenticate_data(&challenge, &application, &[0x42; 64]);
    assert_eq!(key.u2f(&apdu(0x02, 0x03, &random_kh)), (vec![], 0x6A80));
    assert!(key.seen().is_empty());
    // Presence refused: conditions not satisfied.
    key.queue([ApprovalOutcome::Denied]);
    assert_eq!(key.u2f(&apdu(0x02, 0x03, &good)), (vec![], 0x6985));
    key.queue([ApprovalOutcome::TimedOut]);
    assert_eq!(key.u2f(&apdu(0x01, 0x03, &[0u8; 64])), (vec![], 0x6985));
    key.assert_script_used_up();
}

#[test]
fn u2f_version_and_malformed_apdus() {
    let mut key = Key::new();
    assert_eq!(
        key.u2f(&[0x00, 0x03, 0x00, 0x00]),
        (b"U2F_V2".to_vec(), 0x9000)
    );
    assert_eq!(
        key.u2f(&[0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00]),
        (b"U2F_V2".to_vec(), 0x9000)
    );
    assert_eq!(
        key.u2f(&[0x80, 0x03, 0x00, 0x00]).1,
        0x6E00,
        "CLA not supported"
    );
    assert_eq!(
        key.u2f(&[0x00, 0x55, 0x00, 0x00]).1,
        0x6D00,
        "INS not supported"
    );
    assert_eq!(key.u2f(&[0x00, 0x01]).1, 0x6700, "too short");
    assert_eq!(
        key.u2f(&apdu(0x01, 0x03, &[0u8; 63])).1,
        0x6700,
        "register needs 64 bytes"
    );
    assert_eq!(
        key.u2f(&apdu(0x02, 0x03, &[0u8; 64])).1,
        0x6700,
        "authenticate needs a key handle"
    );
    assert_eq!(key.u2f(&[]).1, 0x6700);
    assert!(key.seen().is_empty());
}

#[test]
fn u2f_and_ctap2_credentials_are_interchangeable() {
    // A U2F registration whose application parameter is SHA-256(rp id) signs CTAP2 assertions
    // (how platforms use U2F credentials through CTAP2), and an ES256 CTAP2 non-discoverable
    // credential answers U2F authenticate.
    let mut key = Key::new();
    let app = sha256(b"example.com");
    let u2f = u2f::register(&mut key, &random32(), &app);
    let ga = GetAssertion::typical("example.com").allow(&u2f.key_handle);
    key.queue([present()]);
    let a = key.assert(&ga).unwrap();
    a.verify(
        &PublicKey::Es256(u2f.public_key),
        "example.com",
        &ga.client_data_hash,
    );

    key.queue([present()]);
    let reg = key
        .register(&MakeCredential::typical("example.com", "alice").algs([ES256]))
        .unwrap();
    let challenge = random32();
    key.queue([present()]);
    let (body, sw) = key.u2f(&apdu(
        0x02,
        0x03,
        &u2f::authenticate_data(&challenge, &app, &reg.id()),
    ));
    assert_eq!(sw, 0x9000);
    let signed = [&app[..], &body[..5], &challenge].concat();
    assert!(reg.key().verify(&signed, &body[5..]));
    // An EdDSA credential cannot answer U2F (P-256 only): wrong data.
    key.queue([present()]);
    let ed = key
        .register(&MakeCredential::typical("example.com", "bob").algs([EDDSA]))
        .unwrap();
    assert_eq!(
        key.u2f(&apdu(
            0x02,
            0x07,
            &u2f::authenticate_data(&challenge, &app, &ed.id())
        ))
        .1,
        0x6A80
    );
    key.assert_script_used_up();
}

/// CTAP 2.1 §12.1: a credProtect userVerificationRequired credential is never usable over U2F
/// (which cannot verify the user). Its ID is an unknown key handle whatever P1 asks, and the
/// user is never asked to touch for it: no approval is scripted, so a prompt would panic.
#[test]
fn u2f_never_uses_or_prompts_for_a_cred_protect_3_credential() {
    let mut key = Key::new();
    let app = sha256(b"example.com");
    let mut mc = MakeCredential::typical("example.com", "alice").algs([ES256]);
    mc.extensions = vec![("credProtect", int(3))];
    key.queue([present()]);
    let reg = key.register(&mc).unwrap();
    for p1 in [0x03, 0x07, 0x08] {
        let data = u2f::authenticate_data(&random32(), &app, &reg.id());
        assert_eq!(key.u2f(&apdu(0x02, p1, &data)).1, 0x6A80, "P1 {p1:#04x}");
    }
    key.assert_script_used_up();
}
