//! Tests of the SQLite store.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::rows::CREDENTIALS_FOR_RP_SQL;
use super::schema::{migrate_to, CREDENTIALS_BY_RP_INDEX, LATEST_VERSION};
use super::sealing::{settings_aad, CredentialBinding, StoreKeys};
use super::*;
use crate::crypto::master_key::MasterKey;
use crate::crypto::seal::{Purpose, Sealer};

fn key(n: u8) -> MasterKey {
    MasterKey::from_bytes([n; 32])
}

fn rp_hash(rp_id: &str) -> [u8; 32] {
    Sha256::digest(rp_id.as_bytes()).into()
}

/// A credential with every optional field empty.
fn bare(rp_id: &str, user_id: &[u8], id: &[u8]) -> Credential {
    Credential {
        id: id.to_vec(),
        rp_id: rp_id.to_string(),
        rp_id_hash: rp_hash(rp_id),
        rp_name: None,
        user_id: user_id.to_vec(),
        user_name: None,
        user_display_name: None,
        algorithm: Algorithm::Es256,
        private_key: Zeroizing::new(vec![0x11; 32]),
        cred_protect: CredProtect::UserVerificationOptional,
        hmac_secret: false,
        cred_blob: None,
        large_blob_key: None,
        backup_eligible: false,
        backup_state: false,
        created_at: 0,
    }
}

/// A credential with every optional field set.
fn full(rp_id: &str, user_id: &[u8], id: &[u8]) -> Credential {
    Credential {
        rp_name: Some(format!("{rp_id} Inc.")),
        user_name: Some("alice@example.com".into()),
        user_display_name: Some("Alice Ä. Example 🔑".into()),
        algorithm: Algorithm::EdDsa,
        private_key: Zeroizing::new((0..32).map(|i| i as u8 ^ 0x5c).collect()),
        cred_protect: CredProtect::UserVerificationRequired,
        hmac_secret: true,
        cred_blob: Some(Zeroizing::new(b"a credBlob of 32 bytes at most!!".to_vec())),
        large_blob_key: Some(Zeroizing::new([0x77; 32])),
        backup_eligible: true,
        backup_state: true,
        created_at: 1_700_000_000,
        ..bare(rp_id, user_id, id)
    }
}

fn memory() -> Store {
    Store::open_in_memory(&key(1)).unwrap()
}

fn ids(creds: &[Credential]) -> Vec<Vec<u8>> {
    creds.iter().map(|c| c.id.clone()).collect()
}

// ---------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------

#[test]
fn credential_round_trips_every_field() {
    let mut store = memory();
    let mut cases = vec![
        bare("a.example", b"u1", b"id-bare"),
        full("a.example", b"u2", b"id-full"),
    ];
    // Each combination of the enum and flag fields, with the optional fields mixed.
    for (i, (alg, cp)) in [
        (
            Algorithm::Es256,
            CredProtect::UserVerificationOptionalWithCredentialIdList,
        ),
        (Algorithm::EdDsa, CredProtect::UserVerificationOptional),
        (Algorithm::Es256, CredProtect::UserVerificationRequired),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = bare("b.example", &[i as u8], &[0xB0, i as u8]);
        c.algorithm = alg;
        c.cred_protect = cp;
        c.hmac_secret = i % 2 == 0;
        c.backup_eligible = i == 1;
        c.backup_state = i == 2;
        c.created_at = -5 + i as i64 * (i64::MAX / 4);
        c.cred_blob = (i == 0).then(|| Zeroizing::new(Vec::new())); // Some(empty) ≠ None
        c.large_blob_key = (i == 2).then(|| Zeroizing::new([i as u8; 32]));
        c.rp_name = (i == 1).then(String::new);
        c.user_name = (i != 1).then(|| "".to_string());
        cases.push(c);
    }
    for c in &cases {
        store.insert_credential(c).unwrap();
    }
    for c in &cases {
        let got = store.credential_by_id(&c.id).unwrap().expect("stored");
        assert!(got == *c, "round trip changed {c:?} into {got:?}");
        assert_eq!(got.private_key, c.private_key);
        assert_eq!(got.cred_blob, c.cred_blob);
        assert_eq!(got.large_blob_key, c.large_blob_key);
    }
    assert_eq!(store.credential_by_id(b"unknown").unwrap(), None);
    assert_eq!(store.credential_count().unwrap(), cases.len() as u32);
    let b = store.credentials_for_rp(&rp_hash("b.example")).unwrap();
    assert_eq!(ids(&b), vec![vec![0xB0, 2], vec![0xB0, 1], vec![0xB0, 0]]);
    assert!(b.iter().rev().eq(cases[2..].iter()));
}

#[test]
fn insert_replaces_credential_of_same_rp_and_user() {
    let mut store = memory();
    store
        .insert_credential(&full("a.example", b"user", b"old"))
        .unwrap();
    store
        .insert_credential(&bare("a.example", b"other user", b"x"))
        .unwrap();
    store
        .insert_credential(&bare("b.example", b"user", b"y"))
        .unwrap();
    assert_eq!(store.credential_count().unwrap(), 3);

    let new = bare("a.example", b"user", b"new");
    store.insert_credential(&new).unwrap();
    assert_eq!(store.credential_count().unwrap(), 3);
    assert_eq!(store.credential_by_id(b"old").unwrap(), None);
    assert_eq!(store.credential_by_id(b"new").unwrap(), Some(new.clone()));
    // The replacement is the newest credential of the RP.
    let a = store.credentials_for_rp(&rp_hash("a.example")).unwrap();
    assert_eq!(ids(&a), vec![b"new".to_vec(), b"x".to_vec()]);

    // Re-inserting the very same credential replaces it too.
    store.insert_credential(&new).unwrap();
    assert_eq!(store.credential_count().unwrap(), 3);

    // A clashing id with a different RP/user is refused, not silently overwritten.
    assert!(matches!(
        store.insert_credential(&bare("c.example", b"u", b"new")),
        Err(StoreError::Database(_))
    ));
    assert_eq!(store.credential_by_id(b"new").unwrap(), Some(new));
    assert_eq!(store.credential_count().unwrap(), 3);
}

#[test]
fn credentials_for_rp_lists_newest_first() {
    let mut store = memory();
    for i in 0..5u8 {
        store
            .insert_credential(&bare("a.example", &[i], &[i]))
            .unwrap();
        store
            .insert_credential(&bare("b.example", &[i], &[100 + i]))
            .unwrap();
    }
    // Created-at plays no part: order is insertion order.
    store
        .insert_credential(&Credential {
            created_at: -1,
            ..bare("a.example", &[9], &[9])
        })
        .unwrap();
    let a = store.credentials_for_rp(&rp_hash("a.example")).unwrap();
    assert_eq!(
        ids(&a),
        vec![vec![9], vec![4], vec![3], vec![2], vec![1], vec![0]]
    );
    store.delete_credential(&[9]).unwrap();
    store
        .insert_credential(&bare("a.example", &[7], &[7]))
        .unwrap();
    let a = store.credentials_for_rp(&rp_hash("a.example")).unwrap();
    assert_eq!(
        ids(&a),
        vec![vec![7], vec![4], vec![3], vec![2], vec![1], vec![0]]
    );
    assert!(store
        .credentials_for_rp(&rp_hash("c.example"))
        .unwrap()
        .is_empty());
}

#[test]
fn delete_update_user_relying_parties_and_count() {
    let mut store = memory();
    assert!(store.relying_parties().unwrap().is_empty());
    assert_eq!(store.credential_count().unwrap(), 0);
    store
        .insert_credential(&full("zeta.example", b"u1", b"z1"))
        .unwrap();
    store
        .insert_credential(&bare("alpha.example", b"u1", b"a1"))
        .unwrap();
    store
        .insert_credential(&Credential {
            rp_name: Some("Alpha".into()),
            ..bare("alpha.example", b"u2", b"a2")
        })
        .unwrap();
    store
        .insert_credential(&bare("mid.example", b"u1", b"m1"))
        .unwrap();

    let rps = store.relying_parties().unwrap();
    assert_eq!(
        rps,
        vec![
            RelyingParty {
                id: "alpha.example".into(),
                id_hash: rp_hash("alpha.example"),
                name: Some("Alpha".into()), // from the newest credential
                credential_count: 2,
            },
            RelyingParty {
                id: "mid.example".into(),
                id_hash: rp_hash("mid.example"),
                name: None,
                credential_count: 1,
            },
            RelyingParty {
                id: "zeta.example".into(),
                id_hash: rp_hash("zeta.example"),
                name: Some("zeta.example Inc.".into()),
                credential_count: 1,
            },
        ]
    );

    assert!(store
        .update_user(b"a1", Some("new name"), Some("New Display"))
        .unwrap());
    let a1 = store.credential_by_id(b"a1").unwrap().unwrap();
    assert_eq!(a1.user_name.as_deref(), Some("new name"));
    assert_eq!(a1.user_display_name.as_deref(), Some("New Display"));
    assert_eq!(
        a1.private_key,
        bare("", b"", b"").private_key,
        "other fields untouched"
    );
    assert!(store.update_user(b"z1", None, None).unwrap());
    let z1 = store.credential_by_id(b"z1").unwrap().unwrap();
    assert_eq!((z1.user_name, z1.user_display_name), (None, None));
    assert_eq!(
        z1.cred_blob,
        full("", b"", b"").cred_blob,
        "secrets survive an update"
    );
    assert!(!store.update_user(b"missing", Some("x"), None).unwrap());

    assert!(store.delete_credential(b"a2").unwrap());
    assert!(!store.delete_credential(b"a2").unwrap());
    assert_eq!(store.credential_count().unwrap(), 3);
    assert!(store.delete_credential(b"m1").unwrap());
    let rps = store.relying_parties().unwrap();
    assert_eq!(
        rps.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["alpha.example", "zeta.example"]
    );
    assert_eq!(rps[0].credential_count, 1);
    assert_eq!(rps[0].name, None, "a1 is now the newest alpha credential");
    assert_eq!(store.credential_count().unwrap(), 2);
    // The O(1) count kept by triggers agrees with the table.
    let rows: u32 = store
        .connection()
        .query_row("SELECT count(*) FROM credentials", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
}

#[test]
fn insert_and_count_is_one_transaction() {
    let mut store = Store::open_in_memory_with_limit(&key(1), 1).unwrap();
    let before = store.sign_count().unwrap();
    let count = store
        .insert_credential_and_count(&bare("a.example", &[0], &[0]))
        .unwrap();
    assert_eq!(count, before + 1);
    assert_eq!(store.sign_count().unwrap(), count);
    assert!(store.credential_by_id(&[0]).unwrap().is_some());
    // A refused insert takes no counter value either.
    assert!(matches!(
        store.insert_credential_and_count(&bare("b.example", &[1], &[1])),
        Err(StoreError::Full)
    ));
    assert_eq!(store.sign_count().unwrap(), count);
    assert_eq!(store.next_sign_count().unwrap(), count + 1);
}

#[test]
fn full_limit_refuses_new_credentials_but_allows_replacing() {
    let mut store = Store::open_in_memory_with_limit(&key(1), 3).unwrap();
    for i in 0..3u8 {
        store
            .insert_credential(&bare("a.example", &[i], &[i]))
            .unwrap();
    }
    assert!(matches!(
        store.insert_credential(&bare("a.example", &[3], &[3])),
        Err(StoreError::Full)
    ));
    assert!(matches!(
        store.insert_credential(&bare("b.example", &[0], &[4])),
        Err(StoreError::Full)
    ));
    assert_eq!(store.credential_count().unwrap(), 3);
    // Replacing an existing (rp, user) credential does not grow the store.
    store
        .insert_credential(&bare("a.example", &[1], &[0x11]))
        .unwrap();
    assert_eq!(store.credential_by_id(&[1]).unwrap(), None);
    assert_eq!(store.credential_count().unwrap(), 3);
    store.delete_credential(&[0]).unwrap();
    store
        .insert_credential(&bare("a.example", &[3], &[3]))
        .unwrap();
    assert_eq!(store.credential_count().unwrap(), 3);
    assert_eq!(MAX_DISCOVERABLE_CREDENTIALS, 250_000);
}

#[test]
fn private_key_of_wrong_length_is_refused() {
    let mut store = memory();
    let c = Credential {
        private_key: Zeroizing::new(vec![1; 31]),
        ..bare("a", b"u", b"i")
    };
    assert!(matches!(
        store.insert_credential(&c),
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(store.credential_count().unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// Settings, large blob, counter, reset
// ---------------------------------------------------------------------------------------

fn custom_settings() -> Settings {
    Settings {
        pin_hash: Some(Zeroizing::new(*b"0123456789abcdef")),
        pin_code_points: 63,
        pin_retries: 0,
        uv_retries: 255,
        min_pin_length: 12,
        min_pin_length_rp_ids: vec![
            "b.example".into(),
            "a.example".into(),
            String::new(),
            "line\nbreak, comma \"quote\" ✓".into(),
        ],
        force_pin_change: true,
        always_uv: true,
        enterprise_attestation: true,
        label: "Alice's phone 📱".into(),
        wrap_salt: [0x5A; 32],
        uv_public_key: Some([0x04; 65]),
    }
}

/// Whether `s` is `Settings::default()` apart from its random wrap_salt.
fn is_default(s: &Settings) -> bool {
    *s == Settings {
        wrap_salt: s.wrap_salt,
        ..Settings::default()
    }
}

#[test]
fn settings_round_trip() {
    let mut store = memory();
    let fresh = store.load_settings().unwrap();
    assert!(is_default(&fresh), "{fresh:?}");
    assert_eq!(
        store.load_settings().unwrap().wrap_salt,
        fresh.wrap_salt,
        "salt is stable"
    );
    let s = custom_settings();
    store.save_settings(&s).unwrap();
    assert_eq!(store.load_settings().unwrap(), s);
    assert_eq!(store.load_settings().unwrap().pin_hash, s.pin_hash);
    // Overwrite with fewer rp ids and no PIN.
    let s2 = Settings {
        pin_hash: None,
        min_pin_length_rp_ids: vec!["only.example".into()],
        label: String::new(),
        ..custom_settings()
    };
    store.save_settings(&s2).unwrap();
    assert_eq!(store.load_settings().unwrap(), s2);
    let d = Settings::default();
    store.save_settings(&d).unwrap();
    assert_eq!(store.load_settings().unwrap(), d);
}

#[test]
fn large_blob_round_trip() {
    let mut store = memory();
    assert_eq!(
        store.load_large_blob_array().unwrap(),
        EMPTY_LARGE_BLOB_ARRAY
    );
    let big: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
    store.save_large_blob_array(&big).unwrap();
    assert_eq!(store.load_large_blob_array().unwrap(), big);
    store.save_large_blob_array(&[0x80]).unwrap();
    assert_eq!(store.load_large_blob_array().unwrap(), [0x80]);
    store.save_large_blob_array(&[]).unwrap();
    assert_eq!(store.load_large_blob_array().unwrap(), Vec::<u8>::new());
}

#[test]
fn counter_is_monotonic_and_saturates() {
    let mut store = memory();
    assert_eq!(store.sign_count().unwrap(), 0);
    let mut last = 0;
    for _ in 0..100 {
        let v = store.next_sign_count().unwrap();
        assert_eq!(v, last + 1);
        last = v;
    }
    assert_eq!(store.sign_count().unwrap(), 100);
    let value = u32::MAX - 2;
    let tag = super::integrity::counter_tag(&StoreKeys::new(&key(1)).mac, value);
    store
        .connection()
        .execute(
            "UPDATE sign_counter SET value = ?1, mac = ?2",
            rusqlite::params![value, tag],
        )
        .unwrap();
    assert_eq!(store.next_sign_count().unwrap(), u32::MAX - 1);
    assert_eq!(store.next_sign_count().unwrap(), u32::MAX);
    assert_eq!(store.next_sign_count().unwrap(), u32::MAX);
    assert_eq!(store.sign_count().unwrap(), u32::MAX);
}

#[test]
fn reset_clears_everything_but_the_counter() {
    let mut store = memory();
    store
        .insert_credential(&full("a.example", b"u", b"1"))
        .unwrap();
    store
        .insert_credential(&full("b.example", b"u", b"2"))
        .unwrap();
    store.save_settings(&custom_settings()).unwrap();
    store
        .save_large_blob_array(b"\x81\x01 and a checksum..")
        .unwrap();
    for _ in 0..7 {
        store.next_sign_count().unwrap();
    }
    store.reset().unwrap();
    assert_eq!(store.credential_count().unwrap(), 0);
    assert!(store.relying_parties().unwrap().is_empty());
    assert_eq!(store.credential_by_id(b"1").unwrap(), None);
    let after = store.load_settings().unwrap();
    assert!(is_default(&after), "{after:?}");
    assert_eq!(after.uv_public_key, None, "reset forgets the UV key");
    assert_ne!(
        after.wrap_salt,
        custom_settings().wrap_salt,
        "reset renews the wrap salt"
    );
    assert_eq!(
        store.load_large_blob_array().unwrap(),
        EMPTY_LARGE_BLOB_ARRAY
    );
    assert_eq!(store.sign_count().unwrap(), 7);
    assert_eq!(store.next_sign_count().unwrap(), 8);
    // The store works normally afterwards.
    store
        .insert_credential(&full("a.example", b"u", b"1"))
        .unwrap();
    assert_eq!(store.credential_count().unwrap(), 1);
}

// ---------------------------------------------------------------------------------------
// Files: reopening, permissions, schema versions, secrets at rest
// ---------------------------------------------------------------------------------------

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    (dir, path)
}

#[test]
fn reopen_from_disk_keeps_everything() {
    let (_dir, path) = temp_db();
    let creds = [
        full("a.example", b"u1", b"c1"),
        bare("a.example", b"u2", b"c2"),
        full("b.example", b"u", b"c3"),
    ];
    {
        let mut store = Store::open(&path, &key(3)).unwrap();
        for c in &creds {
            store.insert_credential(c).unwrap();
        }
        store.save_settings(&custom_settings()).unwrap();
        store.save_large_blob_array(b"blob array").unwrap();
        for _ in 0..42 {
            store.next_sign_count().unwrap();
        }
    }
    let mut store = Store::open(&path, &key(3)).unwrap();
    assert_eq!(store.credential_count().unwrap(), 3);
    for c in &creds {
        assert_eq!(store.credential_by_id(&c.id).unwrap().as_ref(), Some(c));
    }
    assert_eq!(
        ids(&store.credentials_for_rp(&rp_hash("a.example")).unwrap()),
        [b"c2".to_vec(), b"c1".to_vec()]
    );
    assert_eq!(store.load_settings().unwrap(), custom_settings());
    assert_eq!(store.load_large_blob_array().unwrap(), b"blob array");
    assert_eq!(store.next_sign_count().unwrap(), 43);
    let journal: String = store
        .connection()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let sync: i64 = store
        .connection()
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    let fk: i64 = store
        .connection()
        .pragma_query_value(None, "foreign_keys", |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
}

#[test]
fn open_creates_file_but_not_directories() {
    let (dir, path) = temp_db();
    assert!(!path.exists());
    drop(Store::open(&path, &key(1)).unwrap());
    assert!(path.exists());
    let nested = dir.path().join("missing-dir").join("store.sqlite");
    assert!(matches!(
        Store::open(&nested, &key(1)),
        Err(StoreError::Database(_))
    ));
}

#[cfg(unix)]
#[test]
fn database_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = temp_db();
    let mut store = Store::open(&path, &key(1)).unwrap();
    store
        .insert_credential(&full("a.example", b"u", b"1"))
        .unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{:?} has mode {mode:o}", entry.file_name());
        checked += 1;
    }
    assert!(checked >= 2, "database and WAL");
}

#[test]
fn wrap_salt_is_persistent_and_renewed_by_reset() {
    let (_dir, path) = temp_db();
    let first = Store::open(&path, &key(1))
        .unwrap()
        .load_settings()
        .unwrap()
        .wrap_salt;
    let mut store = Store::open(&path, &key(1)).unwrap();
    assert_eq!(store.load_settings().unwrap().wrap_salt, first);
    assert_eq!(store.load_settings().unwrap().wrap_salt, first);
    store.reset().unwrap();
    let renewed = store.load_settings().unwrap().wrap_salt;
    assert_ne!(renewed, first);
    drop(store);
    assert_eq!(
        Store::open(&path, &key(1))
            .unwrap()
            .load_settings()
            .unwrap()
            .wrap_salt,
        renewed
    );
    // Two stores never share a salt.
    assert_ne!(
        memory().load_settings().unwrap().wrap_salt,
        memory().load_settings().unwrap().wrap_salt
    );
}

#[test]
fn migrates_an_empty_file() {
    let (_dir, path) = temp_db();
    std::fs::File::create(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    let mut store = Store::open(&path, &key(1)).unwrap();
    let version: u32 = store
        .connection()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, LATEST_VERSION);
    store.insert_credential(&bare("a", b"u", b"i")).unwrap();
    assert!(is_default(&store.load_settings().unwrap()));
    assert_eq!(store.sign_count().unwrap(), 0);
}

#[test]
fn newer_schema_is_refused() {
    let (_dir, path) = temp_db();
    drop(Store::open(&path, &key(1)).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
        .unwrap();
    drop(conn);
    match Store::open(&path, &key(1)) {
        Err(StoreError::SchemaTooNew { found, known }) => {
            assert_eq!((found, known), (LATEST_VERSION + 1, LATEST_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn foreign_database_file_is_refused() {
    let (_dir, path) = temp_db();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');")
        .unwrap();
    drop(conn);
    assert!(matches!(
        Store::open(&path, &key(1)),
        Err(StoreError::Corrupt(_))
    ));
    std::fs::write(&path, b"this is not a database at all, just text").unwrap();
    assert!(Store::open(&path, &key(1)).is_err());
}

#[test]
fn wrong_master_key_cannot_unseal() {
    let (_dir, path) = temp_db();
    {
        let mut store = Store::open(&path, &key(1)).unwrap();
        store
            .insert_credential(&full("a.example", b"u", b"cred"))
            .unwrap();
        store.save_settings(&custom_settings()).unwrap();
    }
    // The key check refuses another master key at open, before any secret is read.
    assert!(matches!(
        Store::open(&path, &key(2)),
        Err(StoreError::Unseal)
    ));
    // Even a store that holds no secret yet.
    let (_empty_dir, empty) = temp_db();
    drop(Store::open(&empty, &key(1)).unwrap());
    assert!(matches!(
        Store::open(&empty, &key(2)),
        Err(StoreError::Unseal)
    ));
    // And the right key still opens everything.
    let store = Store::open(&path, &key(1)).unwrap();
    assert!(store.credential_by_id(b"cred").unwrap().is_some());
    assert_eq!(store.load_settings().unwrap(), custom_settings());
}

#[test]
fn sealed_values_are_bound_to_their_row_and_field() {
    let mut store = memory();
    store
        .insert_credential(&full("a.example", b"u1", b"one"))
        .unwrap();
    store
        .insert_credential(&full("a.example", b"u2", b"two"))
        .unwrap();
    store.save_settings(&custom_settings()).unwrap();
    let conn = store.connection();
    let exec = |sql: &str| conn.execute_batch(sql).unwrap();
    let snapshot = |sql: &str| -> Vec<u8> { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let original_key =
        snapshot("SELECT private_key FROM credentials WHERE id = CAST('one' AS BLOB)");
    let restore = || {
        conn.execute(
            "UPDATE credentials SET private_key = ?1 WHERE id = CAST('one' AS BLOB)",
            [&original_key],
        )
        .unwrap();
        assert!(store.credential_by_id(b"one").unwrap().is_some());
    };
    let one_fails = |what: &str| {
        assert!(
            matches!(store.credential_by_id(b"one"), Err(StoreError::Unseal)),
            "{what} was not detected"
        );
    };

    // Another row's private key.
    exec("UPDATE credentials SET private_key = (SELECT private_key FROM credentials WHERE id = CAST('two' AS BLOB)) WHERE id = CAST('one' AS BLOB)");
    one_fails("a private key from another row");
    restore();
    // Another field of the same row.
    exec("UPDATE credentials SET private_key = large_blob_key WHERE id = CAST('one' AS BLOB)");
    one_fails("the largeBlobKey as private key");
    restore();
    exec("UPDATE credentials SET large_blob_key = cred_blob WHERE id = CAST('one' AS BLOB)");
    one_fails("the credBlob as largeBlobKey");
    exec("UPDATE credentials SET large_blob_key = (SELECT large_blob_key FROM credentials WHERE id = CAST('two' AS BLOB)) WHERE id = CAST('one' AS BLOB)");
    one_fails("another row's largeBlobKey");
    exec("UPDATE credentials SET large_blob_key = NULL WHERE id = CAST('one' AS BLOB)");
    assert!(store.credential_by_id(b"one").unwrap().is_some());
    exec("UPDATE credentials SET cred_blob = (SELECT pin_hash FROM settings) WHERE id = CAST('one' AS BLOB)");
    one_fails("the PIN hash as credBlob");
    exec("UPDATE credentials SET cred_blob = NULL WHERE id = CAST('one' AS BLOB)");
    assert!(store.credential_by_id(b"one").unwrap().is_some());
    // Security-relevant attributes edited on disk.
    for edit in [
        "cred_protect = 1",
        "algorithm = -7",
        "backup_state = 0",
        "hmac_secret = 0",
        "user_id = CAST('u3' AS BLOB)",
        "rp_id_hash = randomblob(32)",
    ] {
        let before: i64 = conn
            .query_row("SELECT count(*) FROM credentials", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch("SAVEPOINT edit").unwrap();
        let edited = conn.execute_batch(&format!(
            "UPDATE credentials SET {edit} WHERE id = CAST('one' AS BLOB)"
        ));
        if edited.is_ok() {
            one_fails(edit);
        }
        conn.execute_batch("ROLLBACK TO edit; RELEASE edit")
            .unwrap();
        let after: i64 = conn
            .query_row("SELECT count(*) FROM credentials", [], |r| r.get(0))
            .unwrap();
        assert_eq!(before, after);
        assert!(store.credential_by_id(b"one").unwrap().is_some());
    }
    // A credential's sealed value in the PIN hash field.
    // (The settings row's integrity tag catches it before the unsealing would.)
    exec("UPDATE settings SET pin_hash = (SELECT cred_blob FROM credentials WHERE id = CAST('two' AS BLOB))");
    assert!(matches!(
        store.load_settings(),
        Err(StoreError::Tampered(Record::Settings))
    ));
    // Non-security fields may change freely.
    exec("UPDATE credentials SET rp_name = 'x', user_name = 'y', created_at = 5 WHERE id = CAST('two' AS BLOB)");
    assert!(store.credential_by_id(b"two").unwrap().is_some());
}

#[test]
fn corrupt_rows_are_errors_not_panics() {
    let mut store = memory();
    store
        .insert_credential(&full("a.example", b"u", b"c"))
        .unwrap();
    store.save_settings(&custom_settings()).unwrap();
    let sealer = Sealer::new(&key(1), Purpose::Store);
    let c = full("a.example", b"u", b"c");
    let binding = CredentialBinding::new(
        &c.id,
        &c.rp_id_hash,
        &c.user_id,
        c.algorithm.cose_id(),
        c.cred_protect as i64,
        c.hmac_secret,
        c.backup_eligible,
        c.backup_state,
    );
    let conn = store.connection();
    let lbk_short = sealer.seal(&[1; 16], &binding.aad("large_blob_key"));
    let key_short = sealer.seal(&[1; 31], &binding.aad("private_key"));
    let cases: Vec<(String, Vec<u8>)> = vec![
        ("algorithm = -999".into(), vec![]),
        ("algorithm = 0".into(), vec![]),
        ("cred_protect = 9".into(), vec![]),
        ("cred_protect = -1".into(), vec![]),
        ("cred_protect = 256 + 3".into(), vec![]),
        ("hmac_secret = 2".into(), vec![]),
        ("backup_eligible = -1".into(), vec![]),
        ("rp_id_hash = x'00'".into(), vec![]),
        ("rp_id_hash = zeroblob(33)".into(), vec![]),
        ("large_blob_key = ?1".into(), lbk_short),
        ("private_key = ?1".into(), key_short),
        ("private_key = x''".into(), vec![]),
    ];
    for (edit, param) in cases {
        conn.execute_batch("SAVEPOINT edit").unwrap();
        let sql = format!("UPDATE credentials SET {edit}");
        if param.is_empty() {
            conn.execute(&sql, []).unwrap();
        } else {
            conn.execute(&sql, [&param]).unwrap();
        }
        let by_id = store.credential_by_id(b"c");
        let by_rp = if edit.starts_with("rp_id_hash") {
            // The row no longer matches its RP; look it up by its new (bad) hash instead.
            let bad: Vec<u8> = conn
                .query_row("SELECT rp_id_hash FROM credentials", [], |r| r.get(0))
                .unwrap();
            let mut as32 = [0u8; 32];
            let n = bad.len().min(32);
            as32[..n].copy_from_slice(&bad[..n]);
            assert!(
                store.credentials_for_rp(&as32).unwrap().is_empty(),
                "lengths differ"
            );
            Err(StoreError::Corrupt(String::new()))
        } else {
            store.credentials_for_rp(&c.rp_id_hash)
        };
        match (&by_id, &by_rp) {
            (Err(StoreError::Corrupt(m)), Err(StoreError::Corrupt(_))) => {
                // Messages describe, never dump bytes.
                assert!(m.len() < 80, "{m}");
            }
            // A damaged sealed blob or edited bound attribute may also surface as Unseal.
            (Err(StoreError::Unseal), Err(StoreError::Unseal))
                if edit.starts_with("private_key = x''") => {}
            _ => panic!("{edit}: expected Corrupt, got {by_id:?} / {by_rp:?}"),
        }
        if edit.starts_with("rp_id_hash") {
            assert!(matches!(
                store.relying_parties(),
                Err(StoreError::Corrupt(_))
            ));
        }
        conn.execute_batch("ROLLBACK TO edit; RELEASE edit")
            .unwrap();
        assert!(store.credential_by_id(b"c").unwrap().is_some());
    }

    // Settings.
    let pin_short = sealer.seal(&[1; 15], &settings_aad("pin_hash"));
    for (edit, param) in [
        ("pin_retries = 256", None),
        ("min_pin_length = -1", None),
        ("always_uv = 7", None),
        ("wrap_salt = x'0011'", None),
        ("pin_hash = ?1", Some(pin_short)),
    ] {
        // Fetched again for each edit: writes behind the store's back must drop its cache.
        let conn = store.connection();
        conn.execute_batch("SAVEPOINT edit").unwrap();
        let sql = format!("UPDATE settings SET {edit}");
        match &param {
            None => conn.execute(&sql, []).unwrap(),
            Some(p) => conn.execute(&sql, [p]).unwrap(),
        };
        // A well-formed value fails the integrity tag; a malformed one fails decoding first.
        let result = store.load_settings();
        if param.is_some() {
            assert!(
                matches!(result, Err(StoreError::Tampered(Record::Settings))),
                "{edit}: {result:?}"
            );
        } else {
            assert!(matches!(result, Err(StoreError::Corrupt(_))), "{edit}");
        }
        conn.execute_batch("ROLLBACK TO edit; RELEASE edit")
            .unwrap();
    }
    assert_eq!(store.load_settings().unwrap(), custom_settings());

    // Missing single rows.
    let conn = store.connection();
    conn.execute_batch("DELETE FROM settings; DELETE FROM sign_counter; DELETE FROM store_meta;")
        .unwrap();
    assert!(matches!(store.load_settings(), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.sign_count(), Err(StoreError::Corrupt(_))));
    assert!(matches!(
        store.credential_count(),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.next_sign_count(),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.insert_credential(&bare("b.example", b"u", b"d")),
        Err(StoreError::Corrupt(_))
    ));
}

/// Whether any 8-byte window of `secret` occurs in `haystack`.
fn leaks(haystack: &[u8], secret: &[u8]) -> bool {
    let windows: std::collections::HashSet<&[u8]> = secret.windows(8).collect();
    haystack.windows(8).any(|h| windows.contains(h))
}

fn store_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn database_files_hold_no_secret_bytes() {
    let (dir, path) = temp_db();
    let private_key: Vec<u8> = (0..32u8).map(|i| 0xA0 ^ i.wrapping_mul(37)).collect();
    let pin_hash: [u8; 16] = core::array::from_fn(|i| 0xE1 ^ (i as u8).wrapping_mul(11));
    let cred_blob: Vec<u8> = (0..32u8).map(|i| 0x3C ^ i.wrapping_mul(53)).collect();
    let large_blob_key: [u8; 32] = core::array::from_fn(|i| 0x96 ^ (i as u8).wrapping_mul(29));
    let marker = "visible-user-name-marker";
    let check = |when: &str, expect_marker: bool| {
        let files = store_files(dir.path());
        if when.starts_with("open") {
            assert!(
                files
                    .iter()
                    .any(|(n, b)| n.ends_with("-wal") && !b.is_empty()),
                "no WAL"
            );
        }
        for (name, bytes) in &files {
            for (what, secret) in [
                ("private key", &private_key[..]),
                ("PIN hash", &pin_hash[..]),
                ("credBlob", &cred_blob[..]),
                ("largeBlobKey", &large_blob_key[..]),
            ] {
                assert!(
                    !leaks(bytes, secret),
                    "{what} bytes found in {name} ({when})"
                );
            }
        }
        let seen = files
            .iter()
            .any(|(_, b)| b.windows(marker.len()).any(|w| w == marker.as_bytes()));
        assert_eq!(
            seen, expect_marker,
            "sanity: the user name is plaintext on disk ({when})"
        );
    };
    {
        let mut store = Store::open(&path, &key(9)).unwrap();
        for i in 0..50u8 {
            store
                .insert_credential(&Credential {
                    user_name: Some(marker.into()),
                    private_key: Zeroizing::new(private_key.clone()),
                    cred_blob: Some(Zeroizing::new(cred_blob.clone())),
                    large_blob_key: Some(Zeroizing::new(large_blob_key)),
                    ..full(&format!("rp{i}.example"), &[i], &[i])
                })
                .unwrap();
        }
        store
            .save_settings(&Settings {
                pin_hash: Some(Zeroizing::new(pin_hash)),
                ..Settings::default()
            })
            .unwrap();
        check("open, in the WAL", true);
        let got = store.credential_by_id(&[7]).unwrap().unwrap();
        assert_eq!(&got.private_key[..], &private_key[..]);
    }
    check("closed", true);
    // After a reset the deleted user names are gone from the files too.
    {
        let mut store = Store::open(&path, &key(9)).unwrap();
        store.reset().unwrap();
    }
    check("after reset", false);
}

// ---------------------------------------------------------------------------------------
// Performance: the RP lookup uses its index
// ---------------------------------------------------------------------------------------

fn query_plan(conn: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {CREDENTIALS_FOR_RP_SQL}"))
        .unwrap();
    let rows = stmt
        .query_map([&[0u8; 32][..]], |r| r.get::<_, String>(3))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn assert_indexed_plan(plan: &[String]) {
    assert!(
        plan.iter()
            .any(|d| d.starts_with("SEARCH credentials USING INDEX")
                && d.contains(CREDENTIALS_BY_RP_INDEX)
                && d.contains("rp_id_hash=?")),
        "plan does not use the rp index: {plan:?}"
    );
    assert!(
        !plan
            .iter()
            .any(|d| d.contains("SCAN") || d.contains("TEMP B-TREE")),
        "{plan:?}"
    );
}

#[test]
fn credentials_for_rp_uses_the_index_with_100k_credentials() {
    const TOTAL: u32 = 100_000;
    const RPS: u32 = 2_000;
    let mut store = memory();
    for i in 0..TOTAL {
        let rp = i % RPS;
        let c = Credential {
            rp_id: format!("rp{rp}.example"),
            rp_id_hash: rp_hash(&format!("rp{rp}.example")),
            ..bare("", &i.to_be_bytes(), &i.to_le_bytes())
        };
        store.insert_credential(&c).unwrap();
    }
    assert_eq!(store.credential_count().unwrap(), TOTAL);
    assert_indexed_plan(&query_plan(store.connection()));

    let found = store.credentials_for_rp(&rp_hash("rp7.example")).unwrap();
    assert_eq!(found.len(), (TOTAL / RPS) as usize);
    assert!(
        found.windows(2).all(|w| w[0].user_id > w[1].user_id),
        "newest first"
    );
    {
        use rusqlite::StatementStatus::*;
        let stmt = store
            .connection()
            .prepare_cached(CREDENTIALS_FOR_RP_SQL)
            .unwrap();
        assert_eq!(stmt.get_status(FullscanStep), 0);
        assert_eq!(stmt.get_status(Sort), 0);
        assert_eq!(stmt.get_status(AutoIndex), 0);
        // Visiting 50 rows touches a few hundred VM steps, not ~100 000.
        assert!(
            stmt.get_status(VmStep) < 5_000,
            "{}",
            stmt.get_status(VmStep)
        );
    }
    // The plan also holds once the planner has statistics.
    store.connection().execute_batch("ANALYZE").unwrap();
    assert_indexed_plan(&query_plan(store.connection()));
    assert_eq!(store.relying_parties().unwrap().len(), RPS as usize);
}

// ---------------------------------------------------------------------------------------
// Property test: user-controlled fields round-trip exactly
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn arbitrary_user_fields_round_trip(
        id in prop::collection::vec(any::<u8>(), 1..80),
        rp_id in any::<String>(),
        rp_id_hash in any::<[u8; 32]>(),
        rp_name in any::<Option<String>>(),
        user_id in prop::collection::vec(any::<u8>(), 0..80),
        user_name in any::<Option<String>>(),
        user_display_name in any::<Option<String>>(),
        cred_blob in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        new_name in any::<Option<String>>(),
        new_display in any::<Option<String>>(),
        created_at in any::<i64>(),
    ) {
        let mut store = memory();
        let c = Credential {
            id,
            rp_id,
            rp_id_hash,
            rp_name,
            user_id,
            user_name,
            user_display_name,
            cred_blob: cred_blob.map(Zeroizing::new),
            created_at,
            ..full("", b"", b"")
        };
        store.insert_credential(&c).unwrap();
        prop_assert_eq!(store.credential_by_id(&c.id).unwrap(), Some(c.clone()));
        prop_assert_eq!(store.credentials_for_rp(&c.rp_id_hash).unwrap(), vec![c.clone()]);
        let rps = store.relying_parties().unwrap();
        prop_assert_eq!(rps.len(), 1);
        prop_assert_eq!(&rps[0].id, &c.rp_id);
        prop_assert_eq!(&rps[0].name, &c.rp_name);
        prop_assert!(store.update_user(&c.id, new_name.as_deref(), new_display.as_deref()).unwrap());
        let got = store.credential_by_id(&c.id).unwrap().unwrap();
        prop_assert_eq!(got.user_name, new_name);
        prop_assert_eq!(got.user_display_name, new_display);
    }
}

// ---------------------------------------------------------------------------------------
// Crash durability of the signature counter
// ---------------------------------------------------------------------------------------

const CRASH_CHILD_ENV: &str = "POCKETKEY_STORE_TEST_COUNTER_CHILD_DB";

/// Child mode: count as fast as possible, printing each value once it has been returned.
fn counter_child(path: &str) {
    let mut store = Store::open(Path::new(path), &key(5)).unwrap();
    let mut out = std::io::stdout().lock();
    let deadline = Instant::now() + Duration::from_secs(60); // in case the parent died
    while Instant::now() < deadline {
        let v = store.next_sign_count().unwrap();
        writeln!(out, "count={v}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn counter_survives_sigkill() {
    if let Ok(path) = std::env::var(CRASH_CHILD_ENV) {
        counter_child(&path);
        return;
    }
    let (_dir, path) = temp_db();
    drop(Store::open(&path, &key(5)).unwrap());
    let test_name = format!(
        "{}::counter_survives_sigkill",
        module_path!().split_once("::").unwrap().1
    );
    let mut last_printed = 0u32;
    for round_target in [150usize, 260, 370] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                test_name.as_str(),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        let mut killed = false;
        let mut line = String::new();
        // Read until EOF: after the kill, lines still in the pipe count too.
        while reader.read_line(&mut line).unwrap() > 0 {
            if let Some(v) = line
                .strip_suffix('\n')
                .and_then(|l| l.strip_prefix("count="))
            {
                let v: u32 = v.parse().unwrap();
                assert!(v > last_printed, "counter went from {last_printed} to {v}");
                last_printed = v;
                seen += 1;
                if seen == round_target && !killed {
                    child.kill().unwrap(); // SIGKILL on unix
                    killed = true;
                }
            }
            line.clear();
        }
        let status = child.wait().unwrap();
        assert!(killed, "child stopped after {seen} values: {status:?}");

        let store = Store::open(&path, &key(5)).unwrap();
        let stored = store.sign_count().unwrap();
        assert!(
            stored >= last_printed,
            "stored {stored} < printed {last_printed}"
        );
    }
    let mut store = Store::open(&path, &key(5)).unwrap();
    assert!(store.next_sign_count().unwrap() > last_printed);
}

// ---------------------------------------------------------------------------------------
// Integrity tags of the settings and the signature counter
// ---------------------------------------------------------------------------------------

/// A store file with custom settings (all retries left, no enterprise attestation) and a
/// counter at 7, closed.
fn tagged_store() -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = temp_db();
    let mut store = Store::open(&path, &key(1)).unwrap();
    store
        .save_settings(&Settings {
            pin_retries: MAX_PIN_RETRIES,
            enterprise_attestation: false,
            ..custom_settings()
        })
        .unwrap();
    for _ in 0..7 {
        store.next_sign_count().unwrap();
    }
    (dir, path)
}

/// Runs `sql` on the closed store file through SQLite directly, as someone with the file
/// but not the master key could.
fn edit_file(path: &Path, sql: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

#[test]
fn edited_retries_make_the_store_refuse_to_open() {
    let (_dir, path) = tagged_store();
    {
        let mut store = Store::open(&path, &key(1)).unwrap();
        assert_eq!(store.spend_retry(Retries::Pin).unwrap(), 7);
        assert_eq!(store.spend_retry(Retries::Pin).unwrap(), 6);
    }
    // An untouched store opens.
    drop(Store::open(&path, &key(1)).unwrap());
    edit_file(&path, "UPDATE settings SET pin_retries = 8");
    match Store::open(&path, &key(1)) {
        Err(e @ StoreError::Tampered(Record::Settings)) => assert_eq!(
            e.to_string(),
            "store settings fail their integrity check: restored or tampered"
        ),
        other => panic!("expected Tampered(Settings), got {other:?}"),
    }
    // Putting the value back makes it whole again: nothing was reset.
    edit_file(&path, "UPDATE settings SET pin_retries = 6");
    let store = Store::open(&path, &key(1)).unwrap();
    assert_eq!(store.load_settings().unwrap().pin_retries, 6);
}

#[test]
fn every_edited_setting_or_counter_is_refused() {
    let (_dir, path) = tagged_store();
    for (edit, record) in [
        ("UPDATE settings SET uv_retries = 1", Record::Settings),
        ("UPDATE settings SET always_uv = 0", Record::Settings),
        (
            "UPDATE settings SET enterprise_attestation = 1",
            Record::Settings,
        ),
        ("UPDATE settings SET min_pin_length = 4", Record::Settings),
        ("UPDATE settings SET force_pin_change = 0", Record::Settings),
        ("UPDATE settings SET label = 'x'", Record::Settings),
        ("UPDATE settings SET pin_hash = NULL", Record::Settings),
        ("UPDATE settings SET mac = NULL", Record::Settings),
        (
            "UPDATE settings SET uv_public_key = zeroblob(65)",
            Record::Settings,
        ),
        ("UPDATE settings SET uv_public_key = NULL", Record::Settings),
        (
            "UPDATE settings SET wrap_salt = randomblob(32)",
            Record::Settings,
        ),
        (
            "DELETE FROM min_pin_length_rp_ids WHERE position = 0",
            Record::Settings,
        ),
        (
            "UPDATE min_pin_length_rp_ids SET rp_id = 'evil.example'",
            Record::Settings,
        ),
        ("UPDATE sign_counter SET value = 3", Record::SignCounter),
        ("UPDATE sign_counter SET mac = NULL", Record::SignCounter),
    ] {
        let backup = std::fs::read(&path).unwrap();
        edit_file(&path, edit);
        match Store::open(&path, &key(1)) {
            Err(StoreError::Tampered(r)) if r == record => {}
            other => panic!("{edit}: expected Tampered({record:?}), got {other:?}"),
        }
        std::fs::write(&path, backup).unwrap();
        drop(Store::open(&path, &key(1)).unwrap());
    }
}

#[test]
fn tampering_while_open_is_caught_at_the_next_read() {
    let (_dir, path) = tagged_store();
    let mut store = Store::open(&path, &key(1)).unwrap();
    store
        .connection()
        .execute_batch("UPDATE settings SET pin_retries = 3; UPDATE sign_counter SET value = 1")
        .unwrap();
    assert!(matches!(
        store.load_settings(),
        Err(StoreError::Tampered(Record::Settings))
    ));
    assert!(matches!(
        store.spend_retry(Retries::Pin),
        Err(StoreError::Tampered(Record::Settings))
    ));
    assert!(matches!(
        store.next_sign_count(),
        Err(StoreError::Tampered(Record::SignCounter))
    ));
}

/// The hot path pays one HMAC per assertion (the counter's new tag): rows the store wrote or
/// verified itself are recognised, while an edit through the same connection is still
/// caught (the test above).
#[test]
fn reads_of_rows_the_store_wrote_cost_no_hmac() {
    let (_dir, path) = tagged_store();
    let mut store = Store::open(&path, &key(1)).unwrap();
    let before = store.keys.mac.computed();
    store.next_sign_count().unwrap();
    store.next_sign_count().unwrap();
    assert_eq!(
        store.keys.mac.computed() - before,
        2,
        "one new tag per bump"
    );
    let before = store.keys.mac.computed();
    store.load_settings().unwrap();
    store.load_settings().unwrap();
    assert_eq!(store.sign_count().unwrap(), 9);
    assert_eq!(store.keys.mac.computed(), before, "verified at open");
    store
        .connection()
        .execute_batch("UPDATE sign_counter SET value = 2")
        .unwrap();
    assert!(matches!(
        store.next_sign_count(),
        Err(StoreError::Tampered(Record::SignCounter))
    ));
}

/// The settings read from the cache still see every change: the store's own writes (each
/// clears the cache) and another connection's commit (`PRAGMA data_version`), which is
/// checked like any edit.
#[test]
fn cached_settings_follow_every_write_and_other_connections() {
    let (_dir, path) = tagged_store();
    let mut store = Store::open(&path, &key(1)).unwrap();
    let full = store.load_settings().unwrap().pin_retries;
    store.spend_retry(Retries::Pin).unwrap();
    assert_eq!(store.load_settings().unwrap().pin_retries, full - 1);
    store.refill_retries(Retries::Pin).unwrap();
    assert_eq!(store.load_settings().unwrap().pin_retries, full);
    let mut s = store.load_settings().unwrap();
    s.label = "renamed".into();
    store.save_settings(&s).unwrap();
    assert_eq!(store.load_settings().unwrap().label, "renamed");
    store.reset().unwrap();
    assert_eq!(
        store.load_settings().unwrap().label,
        Settings::default().label
    );

    store.load_settings().unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE settings SET pin_retries = 1")
        .unwrap();
    assert!(matches!(
        store.load_settings(),
        Err(StoreError::Tampered(Record::Settings))
    ));
}

/// A credential read again reuses its opened private key; a sealed key edited on disk is
/// opened (and refused) in full, and deletion, replacement and reset wipe what was kept.
#[test]
fn private_keys_are_opened_once_per_sealed_value() {
    let mut store = Store::open_in_memory(&key(1)).unwrap();
    store
        .insert_credential(&bare("a.example", b"u", b"c"))
        .unwrap();
    let before = store.keys.openings.get();
    for _ in 0..3 {
        assert_eq!(
            store
                .credentials_for_rp(&rp_hash("a.example"))
                .unwrap()
                .len(),
            1
        );
        assert!(store.credential_by_id(b"c").unwrap().is_some());
    }
    assert_eq!(store.keys.openings.get() - before, 1);

    let sealed: Vec<u8> = store
        .connection()
        .query_row("SELECT private_key FROM credentials", [], |r| r.get(0))
        .unwrap();
    let mut edited = sealed.clone();
    *edited.last_mut().unwrap() ^= 1;
    store
        .connection()
        .execute("UPDATE credentials SET private_key = ?1", [&edited])
        .unwrap();
    assert!(matches!(
        store.credential_by_id(b"c"),
        Err(StoreError::Unseal)
    ));
    store
        .connection()
        .execute("UPDATE credentials SET private_key = ?1", [&sealed])
        .unwrap();
    assert!(store.credential_by_id(b"c").unwrap().is_some());

    assert_eq!(store.keys.opened_key_count(), 1);
    store.delete_credential(b"c").unwrap();
    assert_eq!(store.keys.opened_key_count(), 0);
    store
        .insert_credential(&bare("a.example", b"u", b"d"))
        .unwrap();
    store.credential_by_id(b"d").unwrap();
    store
        .insert_credential(&bare("a.example", b"u", b"e"))
        .unwrap();
    assert_eq!(store.keys.opened_key_count(), 0, "replaced");
    store.credential_by_id(b"e").unwrap();
    store.reset().unwrap();
    assert_eq!(store.keys.opened_key_count(), 0);
}

/// The documented limit: a record copied back from an older copy of the same store, with
/// its own tag, is not detected (only a monotonic counter outside the file could).
#[test]
fn an_older_row_with_its_own_tag_is_not_detected() {
    let (_dir, path) = tagged_store();
    let old: (i64, Vec<u8>) = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT pin_retries, mac FROM settings", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    {
        let mut store = Store::open(&path, &key(1)).unwrap();
        store.spend_retry(Retries::Pin).unwrap();
    }
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE settings SET pin_retries = ?1, mac = ?2",
            rusqlite::params![old.0, old.1],
        )
        .unwrap();
    let store = Store::open(&path, &key(1)).unwrap();
    assert_eq!(store.load_settings().unwrap().pin_retries, 8);
}

#[test]
fn a_v2_store_is_tagged_on_first_open() {
    let (_dir, path) = temp_db();
    {
        // What the previous build left: schema v2, its settings row and counter untagged.
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        migrate_to(&mut conn, &StoreKeys::new(&key(1)), 2).unwrap();
        let sealed_pin =
            Sealer::new(&key(1), Purpose::Store).seal(&[0x42; 16], &settings_aad("pin_hash"));
        conn.execute(
            "INSERT INTO settings (id, pin_hash, pin_code_points, pin_retries, uv_retries, \
             min_pin_length, force_pin_change, always_uv, enterprise_attestation, label, \
             wrap_salt) VALUES (0, ?1, 6, 5, 8, 6, 0, 1, 0, 'Old key', ?2)",
            rusqlite::params![sealed_pin, &[9u8; 32][..]],
        )
        .unwrap();
        conn.execute_batch(
            "INSERT INTO min_pin_length_rp_ids VALUES (0, 'a.example');
             UPDATE sign_counter SET value = 17;",
        )
        .unwrap();
        assert_eq!(super::schema::user_version(&conn).unwrap(), 2);
    }
    let mut store = Store::open(&path, &key(1)).unwrap();
    let version: u32 = store
        .connection()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, LATEST_VERSION);
    let s = store.load_settings().unwrap();
    assert_eq!(s.pin_hash.as_deref(), Some(&[0x42; 16]));
    assert_eq!(
        (
            s.pin_retries,
            s.min_pin_length,
            s.always_uv,
            s.label.as_str()
        ),
        (5, 6, true, "Old key")
    );
    assert_eq!(s.min_pin_length_rp_ids, ["a.example"]);
    assert_eq!(s.wrap_salt, [9; 32]);
    assert_eq!(store.next_sign_count().unwrap(), 18);
    drop(store);
    // From now on the rows are bound.
    edit_file(&path, "UPDATE settings SET pin_retries = 8");
    assert!(matches!(
        Store::open(&path, &key(1)),
        Err(StoreError::Tampered(Record::Settings))
    ));
}

#[test]
fn the_uv_key_survives_reopening() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, &key(1)).unwrap();
    let fresh = store.load_settings().unwrap();
    assert_eq!(fresh.uv_public_key, None);
    store
        .save_settings(&Settings {
            uv_public_key: Some([0x04; 65]),
            ..fresh
        })
        .unwrap();
    drop(store);
    let store = Store::open(&path, &key(1)).unwrap();
    assert_eq!(
        store.load_settings().unwrap().uv_public_key,
        Some([0x04; 65])
    );
}

#[test]
fn a_v3_settings_row_opens_under_v4_with_its_old_tag() {
    let (_dir, path) = temp_db();
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        migrate_to(&mut conn, &StoreKeys::new(&key(1)), 2).unwrap();
        conn.execute(
            "INSERT INTO settings (id, pin_hash, pin_code_points, pin_retries, uv_retries, \
             min_pin_length, force_pin_change, always_uv, enterprise_attestation, label, \
             wrap_salt) VALUES (0, NULL, 0, 7, 8, 4, 0, 0, 0, 'v3 key', ?1)",
            rusqlite::params![&[3u8; 32][..]],
        )
        .unwrap();
        // v3 tags the row as it is; v4 must not invalidate that tag.
        migrate_to(&mut conn, &StoreKeys::new(&key(1)), 3).unwrap();
    }
    let store = Store::open(&path, &key(1)).unwrap();
    let s = store.load_settings().unwrap();
    assert_eq!((s.pin_retries, s.label.as_str()), (7, "v3 key"));
    assert_eq!(s.uv_public_key, None);
}

#[test]
fn a_fresh_v2_store_without_settings_migrates() {
    let (_dir, path) = temp_db();
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    migrate_to(&mut conn, &StoreKeys::new(&key(1)), 2).unwrap();
    drop(conn);
    let mut store = Store::open(&path, &key(1)).unwrap();
    assert!(is_default(&store.load_settings().unwrap()));
    assert_eq!(store.next_sign_count().unwrap(), 1);
}

// ---------------------------------------------------------------------------------------
// Retries spent atomically
// ---------------------------------------------------------------------------------------

#[test]
fn retries_spent_through_two_connections_all_count() {
    let (_dir, path) = temp_db();
    let mut a = Store::open(&path, &key(1)).unwrap();
    let mut b = Store::open(&path, &key(1)).unwrap(); // same process: shares the lock
    let stale = a.load_settings().unwrap();
    assert_eq!(b.spend_retry(Retries::Pin).unwrap(), 7);
    assert_eq!(a.spend_retry(Retries::Pin).unwrap(), 6);
    assert_eq!(b.spend_retry(Retries::Uv).unwrap(), 7);
    assert_eq!(stale.pin_retries, 8);
    assert_eq!(a.load_settings().unwrap().pin_retries, 6);
    a.refill_retries(Retries::Pin).unwrap();
    let s = b.load_settings().unwrap();
    assert_eq!((s.pin_retries, s.uv_retries), (8, 7));

    // Threads racing on their own connections: every spend lands, none twice.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut store = Store::open(&path, &key(1)).unwrap();
                for _ in 0..2 {
                    store.spend_retry(Retries::Pin).unwrap();
                }
            });
        }
    });
    assert_eq!(a.load_settings().unwrap().pin_retries, 0);
    assert_eq!(a.spend_retry(Retries::Pin).unwrap(), 0, "0 stays 0");
}

// ---------------------------------------------------------------------------------------
// One program at a time
// ---------------------------------------------------------------------------------------

const LOCK_CHILD_ENV: &str = "POCKETKEY_STORE_TEST_LOCK_CHILD_DB";
const LOCK_HELD: &str = "lock-held";

/// Child mode: hold the store open until standard input closes.
fn lock_child(path: &str) {
    let _store = Store::open(Path::new(path), &key(5)).unwrap();
    println!("{LOCK_HELD}");
    std::io::stdout().flush().unwrap();
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
}

/// Runs the test `name` of this module again as a child process holding the store at
/// `path`; returns once the child has it open.
fn spawn_lock_holder(name: &str, path: &Path) -> std::process::Child {
    let test_name = format!("{}::{name}", module_path!().split_once("::").unwrap().1);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            test_name.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LOCK_CHILD_ENV, path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // The harness prints the test's name on the same line first.
    while !line.contains(LOCK_HELD) {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "child ended");
    }
    // Keep reading: the child's last words must not meet a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    child
}

#[test]
fn a_second_program_on_the_store_is_told_who_holds_it() {
    if let Ok(path) = std::env::var(LOCK_CHILD_ENV) {
        return lock_child(&path);
    }
    let (_dir, path) = temp_db();
    let mut child = spawn_lock_holder("a_second_program_on_the_store_is_told_who_holds_it", &path);
    let program = std::env::current_exe()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    match Store::open(&path, &key(5)) {
        Err(e @ StoreError::InUse { .. }) => {
            let shown = e.to_string();
            // The child's argv[1] is the test's path, with "::": only the program shows.
            assert!(
                shown.contains(&format!("in use by `{program}` (pid {})", child.id())),
                "{shown}"
            );
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    // The holder goes: the store opens.
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    drop(Store::open(&path, &key(5)).unwrap());
}

#[test]
fn a_killed_holder_leaves_no_lock_behind() {
    if let Ok(path) = std::env::var(LOCK_CHILD_ENV) {
        return lock_child(&path);
    }
    let (_dir, path) = temp_db();
    let mut child = spawn_lock_holder("a_killed_holder_leaves_no_lock_behind", &path);
    assert!(matches!(
        Store::open(&path, &key(5)),
        Err(StoreError::InUse { .. })
    ));
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    drop(Store::open(&path, &key(5)).unwrap());
}
