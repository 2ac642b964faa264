//! The store's SQLite schema and its migrations.
//!
//! The schema version lives in `PRAGMA user_version`. [`MIGRATIONS`] is ordered: entry `i`
//! takes the database from version `i` to version `i + 1`, so adding schema v2 means appending
//! one function. Each migration runs in its own `BEGIN IMMEDIATE` transaction together with
//! the `user_version` bump, so a crash leaves the database at a whole version.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::counter::read_counter;
use super::integrity;
use super::sealing::StoreKeys;
use super::settings::read_settings_before_v4;
use super::types::StoreError;

/// `PRAGMA application_id` of a PocketKey store ("PKEY"), so a foreign SQLite file is refused.
pub(super) const APPLICATION_ID: i32 = 0x504B_4559;

/// One migration step. It gets the store's keys so that a step can seal or tag records.
type Migration = fn(&Transaction<'_>, &StoreKeys) -> Result<(), StoreError>;

/// Ordered: entry `i` migrates version `i` → `i + 1`.
const MIGRATIONS: &[Migration] = &[
    v1_initial,
    v2_key_check,
    v3_record_tags,
    v4_uv_public_key,
    v5_org_identity,
];

/// The newest schema version this build knows.
pub(super) const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

/// Name of the index `credentials_for_rp` must use (checked by a test).
#[cfg(test)]
pub(super) const CREDENTIALS_BY_RP_INDEX: &str = "credentials_by_rp";

/// Schema v1.
///
/// * `credentials`: one row per discoverable credential. `private_key`, `cred_blob` and
///   `large_blob_key` hold sealed blobs. `seq` is a store-wide insertion sequence (from
///   `store_meta.next_credential_seq`, never reused) that orders "most recently created first".
/// * `store_meta`: one row; the credential count (kept by triggers, so checking the
///   discoverable-credential limit is O(1)) and the next insertion sequence number.
/// * `settings` (one row, written with `Settings::default()` on first open and by a reset,
///   since the default holds a fresh random `wrap_salt`) and `min_pin_length_rp_ids` (its
///   list field, in order).
/// * `sign_counter`: one row, the global signature counter.
/// * `large_blob`: one row, the serialized large-blob array (absent = the empty array).
fn v1_initial(tx: &Transaction<'_>, _keys: &StoreKeys) -> Result<(), StoreError> {
    tx.execute_batch(
        "
        CREATE TABLE credentials (
            id                BLOB    NOT NULL PRIMARY KEY,
            seq               INTEGER NOT NULL,
            rp_id             TEXT    NOT NULL,
            rp_id_hash        BLOB    NOT NULL,
            rp_name           TEXT,
            user_id           BLOB    NOT NULL,
            user_name         TEXT,
            user_display_name TEXT,
            algorithm         INTEGER NOT NULL,
            private_key       BLOB    NOT NULL,
            cred_protect      INTEGER NOT NULL,
            hmac_secret       INTEGER NOT NULL,
            cred_blob         BLOB,
            large_blob_key    BLOB,
            backup_eligible   INTEGER NOT NULL,
            backup_state      INTEGER NOT NULL,
            created_at        INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX credentials_by_rp ON credentials (rp_id_hash, seq);
        CREATE UNIQUE INDEX credentials_by_rp_user ON credentials (rp_id_hash, user_id);

        CREATE TABLE store_meta (
            id                  INTEGER NOT NULL PRIMARY KEY CHECK (id = 0),
            credential_count    INTEGER NOT NULL,
            next_credential_seq INTEGER NOT NULL
        ) STRICT;
        INSERT INTO store_meta (id, credential_count, next_credential_seq) VALUES (0, 0, 1);
        CREATE TRIGGER credentials_count_insert AFTER INSERT ON credentials BEGIN
            UPDATE store_meta SET credential_count = credential_count + 1 WHERE id = 0;
        END;
        CREATE TRIGGER credentials_count_delete AFTER DELETE ON credentials BEGIN
            UPDATE store_meta SET credential_count = credential_count - 1 WHERE id = 0;
        END;

        CREATE TABLE settings (
            id                     INTEGER NOT NULL PRIMARY KEY CHECK (id = 0),
            pin_hash               BLOB,
            pin_code_points        INTEGER NOT NULL,
            pin_retries            INTEGER NOT NULL,
            uv_retries             INTEGER NOT NULL,
            min_pin_length         INTEGER NOT NULL,
            force_pin_change       INTEGER NOT NULL,
            always_uv              INTEGER NOT NULL,
            enterprise_attestation INTEGER NOT NULL,
            label                  TEXT    NOT NULL,
            wrap_salt              BLOB    NOT NULL
        ) STRICT;
        CREATE TABLE min_pin_length_rp_ids (
            position INTEGER NOT NULL PRIMARY KEY,
            rp_id    TEXT    NOT NULL
        ) STRICT;

        CREATE TABLE sign_counter (
            id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 0),
            value INTEGER NOT NULL
        ) STRICT;
        INSERT INTO sign_counter (id, value) VALUES (0, 0);

        CREATE TABLE large_blob (
            id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 0),
            data BLOB    NOT NULL
        ) STRICT;
        ",
    )?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    Ok(())
}

/// What the key check seals, and the associated data it is sealed with.
pub(super) const KEY_CHECK_PLAINTEXT: &[u8] = b"pocketkey master key check v1";
pub(super) const KEY_CHECK_AAD: &[u8] = b"store_meta:key_check";

/// Schema v2: `store_meta.key_check`, a constant sealed under the master key when the store
/// is created, so opening with another master key fails at once instead of at the first
/// secret read. (A v1 store is blessed with the key it is opened with; v1 only existed during
/// development.)
fn v2_key_check(tx: &Transaction<'_>, keys: &StoreKeys) -> Result<(), StoreError> {
    tx.execute_batch("ALTER TABLE store_meta ADD COLUMN key_check BLOB")?;
    tx.execute(
        "UPDATE store_meta SET key_check = ?1 WHERE id = 0",
        [keys.sealer.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK_AAD)],
    )?;
    Ok(())
}

/// Schema v3: `settings.mac` and `sign_counter.mac`, the integrity tags of the two records
/// kept in the clear (see `integrity.rs`). The rows already there are tagged as they are:
/// whatever the file held when this build first opened it is what the tags vouch for.
/// A v2 file that was not opened with its own master key fails before this, at the key
/// check (the migration runs with the key the store is being opened with).
fn v3_record_tags(tx: &Transaction<'_>, keys: &StoreKeys) -> Result<(), StoreError> {
    tx.execute_batch(
        "ALTER TABLE settings ADD COLUMN mac BLOB; ALTER TABLE sign_counter ADD COLUMN mac BLOB;",
    )?;
    if let Some((settings, _)) = read_settings_before_v4(tx)? {
        tx.execute(
            "UPDATE settings SET mac = ?1 WHERE id = 0",
            [settings.tag(&keys.mac)],
        )?;
    }
    let (value, _) = read_counter(tx)?;
    tx.execute(
        "UPDATE sign_counter SET mac = ?1 WHERE id = 0",
        [integrity::counter_tag(&keys.mac, value)],
    )?;
    Ok(())
}

/// Schema v4: `settings.uv_public_key`, the phone's UV key (see `Settings::uv_public_key`).
/// Empty in existing rows, and an empty key adds nothing to the settings tag, so their tags
/// stay valid without re-tagging.
fn v4_uv_public_key(tx: &Transaction<'_>, _keys: &StoreKeys) -> Result<(), StoreError> {
    tx.execute_batch("ALTER TABLE settings ADD COLUMN uv_public_key BLOB")?;
    Ok(())
}

/// Schema v5: `org_identity`, one row holding the organisation this key was activated with,
/// sealed as a whole (`org_identity.rs`).
fn v5_org_identity(tx: &Transaction<'_>, _keys: &StoreKeys) -> Result<(), StoreError> {
    tx.execute_batch(
        "CREATE TABLE org_identity (
            id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 0),
            sealed BLOB    NOT NULL
        ) STRICT;",
    )?;
    Ok(())
}

pub(super) fn user_version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("schema version {v} is invalid")))
}

/// Brings the database up to [`LATEST_VERSION`], or refuses one written by a newer build.
pub(super) fn migrate(conn: &mut Connection, keys: &StoreKeys) -> Result<(), StoreError> {
    migrate_with(conn, keys, MIGRATIONS)
}

/// Migrates to the end of `migrations` (tests migrate to older versions with a prefix).
pub(super) fn migrate_with(
    conn: &mut Connection,
    keys: &StoreKeys,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let known = migrations.len() as u32;
    let current = check_version(conn, known)?;
    for (index, step) in migrations.iter().enumerate().skip(current as usize) {
        let target = index as u32 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read under the write lock: another connection may have migrated meanwhile.
        let current = check_version(&tx, known)?;
        if current >= target {
            continue; // dropping `tx` rolls back the (empty) transaction
        }
        step(&tx, keys)?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
    }
    Ok(())
}

/// Migrates only up to `version` (tests build older stores with it).
#[cfg(test)]
pub(super) fn migrate_to(
    conn: &mut Connection,
    keys: &StoreKeys,
    version: u32,
) -> Result<(), StoreError> {
    migrate_with(conn, keys, &MIGRATIONS[..version as usize])
}

/// Refuses a database written by a newer build or by something other than PocketKey.
pub(super) fn check_compatible(conn: &Connection) -> Result<(), StoreError> {
    check_version(conn, LATEST_VERSION).map(|_| ())
}

/// Returns the current version after checking it is one this build can handle.
fn check_version(conn: &Connection, known: u32) -> Result<u32, StoreError> {
    let found = user_version(conn)?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if found > 0 && app_id != APPLICATION_ID {
        return Err(StoreError::Corrupt(format!(
            "not a PocketKey store (application id {app_id:#x})"
        )));
    }
    if found == 0 {
        // An unversioned database must be empty; anything else belongs to someone else.
        let objects: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        if objects > 0 || app_id != 0 {
            return Err(StoreError::Corrupt(
                "not a PocketKey store (unversioned, not empty)".into(),
            ));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::master_key::MasterKey;

    fn sealer() -> StoreKeys {
        StoreKeys::new(&MasterKey::from_bytes([1; 32]))
    }

    fn v2_add_column(tx: &Transaction<'_>, _: &StoreKeys) -> Result<(), StoreError> {
        tx.execute_batch("ALTER TABLE store_meta ADD COLUMN note TEXT")?;
        Ok(())
    }

    fn v2_failing(tx: &Transaction<'_>, _: &StoreKeys) -> Result<(), StoreError> {
        tx.execute_batch("ALTER TABLE store_meta ADD COLUMN note TEXT")?;
        Err(StoreError::Corrupt("boom".into()))
    }

    #[test]
    fn fresh_database_reaches_latest_and_rerun_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &sealer()).unwrap();
        assert_eq!(user_version(&conn).unwrap(), LATEST_VERSION);
        migrate(&mut conn, &sealer()).unwrap();
        assert_eq!(user_version(&conn).unwrap(), LATEST_VERSION);
    }

    #[test]
    fn a_second_migration_is_one_more_entry() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_with(&mut conn, &sealer(), &[v1_initial]).unwrap();
        migrate_with(&mut conn, &sealer(), &[v1_initial, v2_add_column]).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 2);
        conn.execute("UPDATE store_meta SET note = 'x'", [])
            .unwrap();
        // The v1-only build now refuses this database.
        match migrate_with(&mut conn, &sealer(), &[v1_initial]) {
            Err(StoreError::SchemaTooNew { found: 2, known: 1 }) => {}
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn a_failing_migration_rolls_back_entirely() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_with(&mut conn, &sealer(), &[v1_initial]).unwrap();
        assert!(migrate_with(&mut conn, &sealer(), &[v1_initial, v2_failing]).is_err());
        assert_eq!(user_version(&conn).unwrap(), 1);
        // The column added before the failure is gone.
        migrate_with(&mut conn, &sealer(), &[v1_initial, v2_add_column]).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 2);
    }

    #[test]
    fn foreign_sqlite_file_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 1;")
            .unwrap();
        assert!(matches!(
            migrate(&mut conn, &sealer()),
            Err(StoreError::Corrupt(_))
        ));
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x);").unwrap();
        assert!(matches!(
            migrate(&mut conn, &sealer()),
            Err(StoreError::Corrupt(_))
        ));
    }
}
