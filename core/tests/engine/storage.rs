//! How the engine stores what it makes: keys in the form signing needs, one durable commit per
//! request.

use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::store::Store;
use pocketkey_testkit::approver::{present, verified};
use pocketkey_testkit::cose::{PublicKey, ES256};
use pocketkey_testkit::key::Key;
use pocketkey_testkit::requests::{GetAssertion, MakeCredential};
use pocketkey_testkit::{random32, sha256};
use rand_core::OsRng;

/// ES256 keys are stored with their public point (scalar ‖ uncompressed point), so signing
/// needs no point computation; the point stored is the one registered. A discoverable
/// credential stored the earlier way — a bare 32-byte scalar — still signs, repeatedly (the
/// second time from the engine's parsed-key cache), verifiably under the scalar's public key.
#[test]
fn es256_keys_are_stored_with_their_point_and_bare_scalars_still_sign() {
    use pocketkey_core::store::{Algorithm, CredProtect, Credential};
    use zeroize::Zeroizing;

    let master = MasterKey::generate();
    let mut store = Store::open_in_memory(&master).unwrap();
    let legacy = p256::SecretKey::random(&mut OsRng);
    store
        .insert_credential(&Credential {
            id: random32().to_vec(),
            rp_id: "legacy.example".into(),
            rp_id_hash: sha256(b"legacy.example"),
            rp_name: None,
            user_id: vec![1; 16],
            user_name: Some("old".into()),
            user_display_name: None,
            algorithm: Algorithm::Es256,
            private_key: Zeroizing::new(legacy.to_bytes().to_vec()),
            cred_protect: CredProtect::UserVerificationOptional,
            hmac_secret: false,
            cred_blob: None,
            large_blob_key: None,
            backup_eligible: false,
            backup_state: false,
            created_at: 1_700_000_000,
        })
        .unwrap();
    let mut key = Key::with_store(store, &master, true);
    let legacy_public = PublicKey::Es256(p256::ecdsa::VerifyingKey::from(legacy.public_key()));
    for _ in 0..2 {
        let ga = GetAssertion::typical("legacy.example").uv(true);
        key.queue([verified()]);
        let a = key.assert(&ga).unwrap();
        a.verify(&legacy_public, "legacy.example", &ga.client_data_hash);
    }

    let mc = MakeCredential::typical("example.com", "alice")
        .algs([ES256])
        .rk(true)
        .uv(true);
    key.queue([verified()]);
    let reg = key.register(&mc).unwrap();
    let stored = key
        .auth
        .store()
        .credential_by_id(&reg.id())
        .unwrap()
        .unwrap();
    assert_eq!(stored.private_key.len(), 32 + 65, "scalar ‖ point");
    let PublicKey::Es256(registered) = reg.key() else {
        panic!("ES256 was asked for")
    };
    assert_eq!(
        &stored.private_key[32..],
        registered.to_encoded_point(false).as_bytes()
    );
    let scalar = p256::SecretKey::from_slice(&stored.private_key[..32]).unwrap();
    assert_eq!(scalar.public_key(), p256::PublicKey::from(registered));
    key.assert_script_used_up();
}

/// Durable commits in a file-backed store's write-ahead log: the valid commit frames (a frame
/// whose "database size after commit" field is set, with the salts of the WAL header; SQLite
/// file format §4.1). With `synchronous=FULL` each commit is one fsync of the WAL.
fn wal_commits(db: &std::path::Path) -> usize {
    let mut path = db.as_os_str().to_owned();
    path.push("-wal");
    let wal = std::fs::read(path).unwrap_or_default();
    if wal.len() < 32 {
        return 0;
    }
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    let page_size = be(&wal[8..12]) as usize;
    let salts = &wal[16..24];
    wal[32..]
        .chunks_exact(24 + page_size)
        .filter(|frame| be(&frame[4..8]) != 0 && &frame[8..16] == salts)
        .count()
}

/// A discoverable makeCredential stores the credential and takes the counter in one durable
/// commit; a non-discoverable one and each getAssertion commit once (the counter).
#[test]
fn each_request_costs_one_durable_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pocketkey.sqlite");
    let master = MasterKey::generate();
    let mut key = Key::with_store(Store::open(&path, &master).unwrap(), &master, true);
    let commits = |key: &mut Key, op: &dyn Fn(&mut Key)| {
        let before = wal_commits(&path);
        op(key);
        wal_commits(&path) - before
    };
    let rk = |key: &mut Key| {
        key.queue([verified()]);
        key.register(
            &MakeCredential::typical("example.com", "alice")
                .rk(true)
                .uv(true),
        )
        .unwrap();
    };
    assert_eq!(commits(&mut key, &rk), 1, "discoverable makeCredential");
    let nrk = |key: &mut Key| {
        key.queue([present()]);
        key.register(&MakeCredential::typical("example.com", "bob"))
            .unwrap();
    };
    assert_eq!(
        commits(&mut key, &nrk),
        1,
        "non-discoverable makeCredential"
    );
    let ga = |key: &mut Key| {
        key.queue([verified()]);
        key.assert(&GetAssertion::typical("example.com").uv(true))
            .unwrap();
    };
    assert_eq!(commits(&mut key, &ga), 1, "getAssertion");
    key.assert_script_used_up();
}
