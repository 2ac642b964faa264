//! Extensions (CTAP 2.1 §12): hmac-secret, credProtect, largeBlobKey and credBlob.

use ciborium::value::Value;
use pocketkey_testkit::approver::{present, verified};
use pocketkey_testkit::cbor::{as_bytes, as_int, bytes, get, get_text, imap, int};
use pocketkey_testkit::command;
use pocketkey_testkit::key::Key;
use pocketkey_testkit::random32;
use pocketkey_testkit::requests::{GetAssertion, MakeCredential};
use pocketkey_testkit::responses::{flags, Assertion, AuthData};
use pocketkey_testkit::status::*;

#[test]
fn hmac_secret_with_both_protocols() {
    let mut key = Key::new();
    let mut mc = MakeCredential::typical("example.com", "alice");
    mc.extensions = vec![("hmac-secret", Value::Bool(true))];
    key.queue([present()]);
    let reg = key.register(&mc).unwrap();
    let ext = reg.parsed.extensions.as_ref().unwrap();
    assert_eq!(get_text(ext, "hmac-secret"), Some(&Value::Bool(true)));

    let salt1 = random32();
    let salt2 = random32();
    let mut outputs = Vec::new();
    for (protocol, uv) in [(1u64, false), (2, false), (2, true), (1, true)] {
        let shared = key.key_agreement(protocol);
        let salt_enc = shared.encrypt(&[&salt1[..], &salt2].concat());
        let mut input = vec![
            (1, shared.cose.clone()),
            (2, bytes(&salt_enc)),
            (3, bytes(&shared.authenticate(&salt_enc))),
        ];
        if protocol == 2 {
            input.push((4, int(2)));
        }
        let mut ga = GetAssertion::typical("example.com").allow(reg.id());
        ga.extensions = vec![("hmac-secret", imap(input))];
        ga.uv = Some(uv);
        key.queue([if uv { verified() } else { present() }]);
        let a = key.assert(&ga).unwrap();
        a.verify(reg.key(), "example.com", &ga.client_data_hash);
        let ext = a.parsed.extensions.as_ref().expect("hmac-secret output");
        let out = shared.decrypt(&as_bytes(get_text(ext, "hmac-secret").unwrap()));
        assert_eq!(out.len(), 64);
        outputs.push((uv, out));
    }
    // Deterministic per credential and UV state; different with and without UV (§12.5).
    assert_eq!(outputs[0].1, outputs[1].1);
    assert_eq!(outputs[2].1, outputs[3].1);
    assert_ne!(outputs[0].1, outputs[2].1);
    assert_ne!(&outputs[0].1[..32], &outputs[0].1[32..]);

    // A saltAuth that does not verify is rejected.
    let shared = key.key_agreement(2);
    let salt_enc = shared.encrypt(&salt1);
    let mut ga = GetAssertion::typical("example.com").allow(reg.id());
    ga.extensions = vec![(
        "hmac-secret",
        imap(vec![
            (1, shared.cose.clone()),
            (2, bytes(&salt_enc)),
            (3, bytes(&[0u8; 32])),
            (4, int(2)),
        ]),
    )];
    key.queue([present()]);
    assert!(
        key.assert(&ga).is_err(),
        "a saltAuth that does not verify is refused"
    );
}

#[test]
fn cred_protect_3_is_invisible_without_user_verification() {
    let mut key = Key::new();
    let protect = |mc: MakeCredential| MakeCredential {
        extensions: vec![("credProtect", int(3))],
        ..mc
    };
    key.queue([verified(), verified()]);
    let rk = key
        .register(&protect(
            MakeCredential::typical("example.com", "alice")
                .rk(true)
                .uv(true),
        ))
        .unwrap();
    let nrk = key
        .register(&protect(
            MakeCredential::typical("example.com", "bob").uv(true),
        ))
        .unwrap();
    for reg in [&rk, &nrk] {
        let ext = reg.parsed.extensions.as_ref().expect("extension outputs");
        assert_eq!(as_int(get_text(ext, "credProtect").unwrap()), 3);
    }
    key.seen();
    // Without UV: not found by discovery nor by ID, and nobody is bothered.
    assert_eq!(
        key.assert(&GetAssertion::typical("example.com")).err(),
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
    assert!(key.seen().is_empty());
    // Nor does an excludeList reveal them without UV (§6.1.2 step 12).
    let mut mc = MakeCredential::typical("example.com", "dave");
    mc.exclude_list = vec![rk.id(), nrk.id()];
    key.queue([present()]);
    key.register(&mc).unwrap();
    // With UV they are there.
    for reg in [&rk, &nrk] {
        let ga = GetAssertion::typical("example.com")
            .allow(reg.id())
            .uv(true);
        key.queue([verified()]);
        key.assert(&ga)
            .unwrap()
            .verify(reg.key(), "example.com", &ga.client_data_hash);
    }
    key.queue([verified()]);
    assert_eq!(
        key.assert(&GetAssertion::typical("example.com").uv(true))
            .unwrap()
            .credential_id,
        rk.id()
    );
    key.assert_script_used_up();
}

#[test]
fn cred_protect_2_needs_uv_only_for_discovery() {
    let mut key = Key::new();
    let mut mc = MakeCredential::typical("example.com", "alice")
        .rk(true)
        .uv(true);
    mc.extensions = vec![("credProtect", int(2))];
    key.queue([verified()]);
    let reg = key.register(&mc).unwrap();
    assert_eq!(
        key.assert(&GetAssertion::typical("example.com")).err(),
        Some(NO_CREDENTIALS)
    );
    key.queue([present()]);
    key.assert(&GetAssertion::typical("example.com").allow(reg.id()))
        .unwrap();
}

#[test]
fn large_blob_key_and_cred_blob_come_back_with_the_assertion() {
    let mut key = Key::new();
    let mut mc = MakeCredential::typical("example.com", "alice")
        .rk(true)
        .uv(true);
    mc.extensions = vec![
        ("largeBlobKey", Value::Bool(true)),
        ("credBlob", bytes(b"sixteen byte blb")),
    ];
    key.queue([verified()]);
    let reg = key.register(&mc).unwrap();
    let lbk = reg
        .large_blob_key
        .clone()
        .expect("largeBlobKey in the makeCredential response");
    assert_eq!(lbk.len(), 32);
    let ext = reg.parsed.extensions.as_ref().unwrap();
    assert_eq!(get_text(ext, "credBlob"), Some(&Value::Bool(true)));
    assert!(
        get_text(ext, "largeBlobKey").is_none(),
        "largeBlobKey is not an authData extension"
    );

    let mut ga = GetAssertion::typical("example.com").uv(true);
    ga.extensions = vec![
        ("largeBlobKey", Value::Bool(true)),
        ("credBlob", Value::Bool(true)),
    ];
    key.queue([verified()]);
    let v = key
        .call(command::GET_ASSERTION, Some(&ga.to_cbor()))
        .unwrap();
    assert_eq!(get(&v, 7).map(as_bytes), Some(lbk));
    let a = Assertion::parse(&v);
    a.verify(reg.key(), "example.com", &ga.client_data_hash);
    assert_eq!(
        get_text(a.parsed.extensions.as_ref().unwrap(), "credBlob"),
        Some(&bytes(b"sixteen byte blb"))
    );
    // Not asked for: not given.
    key.queue([verified()]);
    let v = key
        .call(
            command::GET_ASSERTION,
            Some(&GetAssertion::typical("example.com").uv(true).to_cbor()),
        )
        .unwrap();
    assert!(get(&v, 7).is_none());
    assert_eq!(
        AuthData::parse(&as_bytes(get(&v, 2).unwrap())).flags & flags::ED,
        0
    );
}
