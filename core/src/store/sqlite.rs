//! SQLite implementation of the store.
//!
//! Durability: the database runs in WAL mode with `synchronous=FULL`, so every committed
//! transaction (each public mutating call is one) is on stable storage when the call returns.
//!
//! Secrets are sealed with [`Sealer`] (purpose [`Purpose::Store`]) under associated data that
//! names the field and binds the row: for a credential, its id, rp_id_hash, user_id and the
//! attributes fixed at creation (algorithm, credProtect, hmac-secret, BE/BS); for the PIN hash,
//! the settings row. A sealed value copied into another row or field, or a row whose
//! security-relevant attributes were edited on disk, fails to open ([`StoreError::Unseal`]).
//!
//! What is kept in the clear but decides security (the settings row: retries, alwaysUv,
//! minimum PIN length, enterprise attestation…; the signature counter) carries an integrity
//! tag under the master key, checked on every read (see [`super::integrity`], and its limit:
//! a whole older copy of the file is not detected).
//!
//! One program at a time: a file store holds the exclusive lock of [`super::lock`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use zeroize::Zeroizing;

use super::integrity::{self, StoredSettings};
use super::lock::StoreLock;
use super::schema;
use super::types::*;
use crate::crypto::master_key::MasterKey;
use crate::crypto::record_mac::RecordMac;
use crate::crypto::seal::{Purpose, Sealer};

/// The most discoverable credentials one key will hold.
pub const MAX_DISCOVERABLE_CREDENTIALS: u32 = 250_000;

/// How long a call waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Private keys are 32 bytes (P-256 scalar, Ed25519 seed) or, for ES256 keys made since the
/// public point is kept with them, scalar ‖ point (crypto::signing::ES256_STORED_LEN).
fn private_key_len_ok(len: usize) -> bool {
    len == 32 || len == crate::crypto::signing::ES256_STORED_LEN
}

const AAD_PREFIX: &[u8] = b"pocketkey store v1\0";

macro_rules! credential_columns {
    () => {
        "id, rp_id, rp_id_hash, rp_name, user_id, user_name, user_display_name, algorithm, \
         private_key, cred_protect, hmac_secret, cred_blob, large_blob_key, backup_eligible, \
         backup_state, created_at"
    };
}
const CREDENTIAL_COLUMN_COUNT: usize = 16;

/// The query behind [`Store::credentials_for_rp`] (its plan is checked by a test).
pub(super) const CREDENTIALS_FOR_RP_SQL: &str = concat!(
    "SELECT ",
    credential_columns!(),
    " FROM credentials WHERE rp_id_hash = ?1 ORDER BY seq DESC"
);
const CREDENTIAL_BY_ID_SQL: &str = concat!(
    "SELECT ",
    credential_columns!(),
    " FROM credentials WHERE id = ?1"
);
const INSERT_CREDENTIAL_SQL: &str = concat!(
    "INSERT INTO credentials (seq, ",
    credential_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
);

/// The keys the store's records are sealed and tagged with, derived from the master key.
pub(super) struct StoreKeys {
    pub(super) sealer: Sealer,
    pub(super) mac: RecordMac,
}

impl StoreKeys {
    pub(super) fn new(master: &MasterKey) -> Self {
        Self {
            sealer: Sealer::new(master, Purpose::Store),
            mac: RecordMac::new(master),
        }
    }
}

pub struct Store {
    conn: Connection,
    keys: StoreKeys,
    max_credentials: u32,
    /// Held while this handle lives (file stores only).
    _lock: Option<Arc<StoreLock>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .field("max_credentials", &self.max_credentials)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating and migrating as needed) the store at `path`.
    ///
    /// The file is created if missing (its directory must exist), with mode 0600 on unix.
    ///
    /// Only one program at a time may have a store open: while another holds it, this fails
    /// with [`StoreError::InUse`] naming that program (opens within one process share the
    /// lock). A settings row or signature counter whose integrity tag does not verify fails
    /// with [`StoreError::Tampered`].
    pub fn open(path: &Path, master: &MasterKey) -> Result<Self, StoreError> {
        Self::open_file(path, master, MAX_DISCOVERABLE_CREDENTIALS)
    }

    /// An in-memory store for tests.
    pub fn open_in_memory(master: &MasterKey) -> Result<Self, StoreError> {
        Self::open_memory(master, MAX_DISCOVERABLE_CREDENTIALS)
    }

    #[cfg(test)]
    pub(super) fn open_in_memory_with_limit(
        master: &MasterKey,
        max_credentials: u32,
    ) -> Result<Self, StoreError> {
        Self::open_memory(master, max_credentials)
    }

    /// The underlying connection, for tests that inspect or damage the database.
    #[cfg(test)]
    pub(super) fn connection(&self) -> &Connection {
        &self.conn
    }

    fn open_file(
        path: &Path,
        master: &MasterKey,
        max_credentials: u32,
    ) -> Result<Self, StoreError> {
        create_private_file(path).map_err(StoreError::Database)?;
        // Before the first read: a second program must not even migrate the file.
        let lock = StoreLock::acquire(path)?;
        // No SQLITE_OPEN_URI: the path is a path, never a URI with options.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        Self::init(conn, master, max_credentials, Some(lock))
    }

    fn open_memory(master: &MasterKey, max_credentials: u32) -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, master, max_credentials, None)
    }

    fn init(
        mut conn: Connection,
        master: &MasterKey,
        max_credentials: u32,
        lock: Option<Arc<StoreLock>>,
    ) -> Result<Self, StoreError> {
        let file_backed = lock.is_some();
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Refuse to let SQL (or a schema planted in the file) corrupt the database file.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        conn.pragma_update(None, "trusted_schema", false)?;
        // Refuse newer or foreign databases before changing anything in the file.
        schema::check_compatible(&conn)?;
        if file_backed {
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Database(format!(
                    "could not switch the store to WAL mode (got {mode})"
                )));
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Overwrite deleted content (user names, RP ids) instead of leaving it in free pages.
        conn.pragma_update(None, "secure_delete", true)?;
        conn.set_prepared_statement_cache_capacity(32);

        let keys = StoreKeys::new(master);
        schema::migrate(&mut conn, &keys)?;
        let mut store = Self {
            conn,
            keys,
            max_credentials,
            _lock: lock,
        };
        store.check_master_key()?;
        store.ensure_settings()?;
        // A tampered or transplanted record refuses the open, before the engine uses it.
        store.load_settings()?;
        store.sign_count()?;
        Ok(store)
    }

    /// Opens the key check: another master key than the one the store was made with fails
    /// here with [`StoreError::Unseal`].
    fn check_master_key(&self) -> Result<(), StoreError> {
        let sealed: Vec<u8> = self
            .conn
            .query_row("SELECT key_check FROM store_meta WHERE id = 0", [], |r| {
                r.get(0)
            })
            .map_err(|_| StoreError::Corrupt("the key check is missing".into()))?;
        let opened = self.open_secret(&sealed, schema::KEY_CHECK_AAD)?;
        if &opened[..] != schema::KEY_CHECK_PLAINTEXT {
            return Err(StoreError::Corrupt(
                "the key check holds something else".into(),
            ));
        }
        Ok(())
    }

    pub fn load_settings(&self) -> Result<Settings, StoreError> {
        let stored = verified_settings(&self.conn, &self.keys)?;
        let pin_hash = match &stored.pin_hash {
            None => None,
            Some(sealed) => {
                let opened = self.open_secret(sealed, &settings_aad("pin_hash"))?;
                let hash: [u8; 16] = opened[..].try_into().map_err(|_| {
                    StoreError::Corrupt(format!("PIN hash is {} bytes, not 16", opened.len()))
                })?;
                Some(Zeroizing::new(hash))
            }
        };
        let StoredSettings {
            pin_code_points,
            pin_retries,
            uv_retries,
            min_pin_length,
            force_pin_change,
            always_uv,
            enterprise_attestation,
            label,
            wrap_salt,
            min_pin_length_rp_ids,
            ..
        } = stored;
        Ok(Settings {
            pin_hash,
            pin_code_points,
            pin_retries,
            uv_retries,
            min_pin_length,
            min_pin_length_rp_ids,
            force_pin_change,
            always_uv,
            enterprise_attestation,
            label,
            wrap_salt,
        })
    }

    pub fn save_settings(&mut self, settings: &Settings) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        write_settings(&tx, &self.keys, settings)?;
        tx.commit()?;
        Ok(())
    }

    /// Spends one PIN or UV retry and returns how many are left (0 stays 0).
    ///
    /// One read-check-write under the write lock (`BEGIN IMMEDIATE`), durable before it
    /// returns: a retry spent by another connection meanwhile is never written back, and
    /// pulling the plug after the call cannot give the retry back (CTAP 2.1 §6.5.5.5).
    pub fn spend_retry(&mut self, which: Retries) -> Result<u8, StoreError> {
        self.update_retries(which, |n| n.saturating_sub(1))
    }

    /// Restores the PIN or UV retries to their maximum (after a correct PIN or a successful
    /// verification), leaving every other setting as it is on disk.
    pub fn refill_retries(&mut self, which: Retries) -> Result<(), StoreError> {
        self.update_retries(which, |_| which.max()).map(drop)
    }

    fn update_retries(
        &mut self,
        which: Retries,
        change: impl FnOnce(u8) -> u8,
    ) -> Result<u8, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut stored = verified_settings(&tx, &self.keys)?;
        let (field, sql) = match which {
            Retries::Pin => (
                &mut stored.pin_retries,
                "UPDATE settings SET pin_retries = ?1, mac = ?2 WHERE id = 0 RETURNING pin_retries",
            ),
            Retries::Uv => (
                &mut stored.uv_retries,
                "UPDATE settings SET uv_retries = ?1, mac = ?2 WHERE id = 0 RETURNING uv_retries",
            ),
        };
        *field = change(*field);
        let value = *field;
        let tag = stored.tag(&self.keys.mac);
        let written: i64 = tx
            .prepare_cached(sql)?
            .query_row(params![value, tag], |r| r.get(0))?;
        if written != i64::from(value) {
            return Err(StoreError::Corrupt(format!(
                "retries read back as {written}"
            )));
        }
        tx.commit()?;
        Ok(value)
    }

    /// Writes `Settings::default()` (with its fresh random wrap_salt) if the store has no
    /// settings yet. Race-free against another connection doing the same.
    fn ensure_settings(&mut self) -> Result<(), StoreError> {
        if settings_exist(&self.conn)? {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !settings_exist(&tx)? {
            write_settings(&tx, &self.keys, &Settings::default())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Increments the global signature counter by one, durably, and returns the new value.
    ///
    /// The first value is 1. At `u32::MAX` the counter stays there instead of wrapping.
    pub fn next_sign_count(&mut self) -> Result<u32, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = bump_counter(&tx, &self.keys)?;
        // synchronous=FULL: the commit is on stable storage before we hand the value out.
        tx.commit()?;
        Ok(value)
    }

    /// The signature counter's current value (what the last [`Store::next_sign_count`]
    /// returned, or 0), without changing it.
    pub fn sign_count(&self) -> Result<u32, StoreError> {
        verified_counter(&self.conn, &self.keys)
    }

    /// Stores a credential, replacing any with the same rp_id_hash and user_id (CTAP 2.1 §6.1.2
    /// step 16). Fails with `Full` past [`MAX_DISCOVERABLE_CREDENTIALS`].
    pub fn insert_credential(&mut self, cred: &Credential) -> Result<(), StoreError> {
        self.insert_credential_inner(cred, false).map(|_| ())
    }

    /// [`insert_credential`](Self::insert_credential) and [`next_sign_count`](Self::next_sign_count)
    /// in one transaction: a discoverable makeCredential costs one durable commit (one WAL
    /// fsync), not two. Nothing is stored and the counter is unchanged if either fails.
    pub fn insert_credential_and_count(&mut self, cred: &Credential) -> Result<u32, StoreError> {
        self.insert_credential_inner(cred, true)
            .map(|count| count.expect("counted"))
    }

    fn insert_credential_inner(
        &mut self,
        cred: &Credential,
        count: bool,
    ) -> Result<Option<u32>, StoreError> {
        if !private_key_len_ok(cred.private_key.len()) {
            return Err(StoreError::Corrupt(format!(
                "refusing to store a {}-byte private key",
                cred.private_key.len()
            )));
        }
        let binding = CredentialBinding::new(
            &cred.id,
            &cred.rp_id_hash,
            &cred.user_id,
            cred.algorithm.cose_id(),
            cred.cred_protect as i64,
            cred.hmac_secret,
            cred.backup_eligible,
            cred.backup_state,
        );
        let sealed_key = self
            .keys
            .sealer
            .seal(&cred.private_key, &binding.aad("private_key"));
        let sealed_blob = cred
            .cred_blob
            .as_ref()
            .map(|b| self.keys.sealer.seal(b, &binding.aad("cred_blob")));
        let sealed_lbk = cred.large_blob_key.as_ref().map(|k| {
            self.keys
                .sealer
                .seal(&k[..], &binding.aad("large_blob_key"))
        });

        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let replaced = tx
            .prepare_cached("DELETE FROM credentials WHERE rp_id_hash = ?1 AND user_id = ?2")?
            .execute(params![&cred.rp_id_hash[..], cred.user_id])?
            > 0;
        if !replaced && count_credentials(&tx)? >= self.max_credentials {
            return Err(StoreError::Full); // dropping `tx` rolls back
        }
        let seq: i64 = tx
            .prepare_cached(
                "UPDATE store_meta SET next_credential_seq = next_credential_seq + 1 \
                 WHERE id = 0 RETURNING next_credential_seq - 1",
            )?
            .query_row([], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::Corrupt("store metadata is missing".into()))?;
        tx.prepare_cached(INSERT_CREDENTIAL_SQL)?.execute(params![
            seq,
            cred.id,
            cred.rp_id,
            &cred.rp_id_hash[..],
            cred.rp_name,
            cred.user_id,
            cred.user_name,
            cred.user_display_name,
            cred.algorithm.cose_id(),
            sealed_key,
            cred.cred_protect as i64,
            cred.hmac_secret,
            sealed_blob,
            sealed_lbk,
            cred.backup_eligible,
            cred.backup_state,
            cred.created_at,
        ])?;
        let counter = count.then(|| bump_counter(&tx, &self.keys)).transpose()?;
        tx.commit()?;
        Ok(counter)
    }

    /// Credentials of one RP, most recently created first.
    pub fn credentials_for_rp(&self, rp_id_hash: &[u8; 32]) -> Result<Vec<Credential>, StoreError> {
        let mut stmt = self.conn.prepare_cached(CREDENTIALS_FOR_RP_SQL)?;
        let mut rows = stmt.query([&rp_id_hash[..]])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(self.decode_credential(raw_credential(row)?)?);
        }
        Ok(out)
    }

    pub fn credential_by_id(&self, id: &[u8]) -> Result<Option<Credential>, StoreError> {
        let raw = self
            .conn
            .prepare_cached(CREDENTIAL_BY_ID_SQL)?
            .query_row([id], raw_credential)
            .optional()?;
        raw.map(|raw| self.decode_credential(raw)).transpose()
    }

    /// Returns whether a credential was deleted.
    pub fn delete_credential(&mut self, id: &[u8]) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM credentials WHERE id = ?1")?
            .execute([id])?;
        Ok(n > 0)
    }

    /// Replaces user name and display name (credMgmt updateUserInformation).
    pub fn update_user(
        &mut self,
        id: &[u8],
        name: Option<&str>,
        display_name: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE credentials SET user_name = ?2, user_display_name = ?3 WHERE id = ?1",
            )?
            .execute(params![id, name, display_name])?;
        Ok(n > 0)
    }

    /// RPs with discoverable credentials, ordered by RP id.
    ///
    /// The id and name shown are those of the RP's most recently created credential.
    pub fn relying_parties(&self) -> Result<Vec<RelyingParty>, StoreError> {
        // SQLite takes the bare columns of an aggregate query with max() from the max row.
        let mut stmt = self.conn.prepare_cached(
            "SELECT rp_id_hash, rp_id, rp_name, max(seq), count(*) FROM credentials \
             GROUP BY rp_id_hash ORDER BY rp_id, rp_id_hash",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let id_hash = hash32(r.get(0)?, "rp_id_hash")?;
            let id = text(r.get(1)?, "rp_id")?;
            let name = opt_text(r.get(2)?, "rp_name")?;
            let count = r.get::<_, i64>(4)?;
            let credential_count = u32::try_from(count)
                .map_err(|_| StoreError::Corrupt(format!("credential count {count} is invalid")))?;
            out.push(RelyingParty {
                id,
                id_hash,
                name,
                credential_count,
            });
        }
        Ok(out)
    }

    pub fn credential_count(&self) -> Result<u32, StoreError> {
        count_credentials(&self.conn)
    }

    pub fn load_large_blob_array(&self) -> Result<Vec<u8>, StoreError> {
        let data: Option<Value> = self
            .conn
            .prepare_cached("SELECT data FROM large_blob WHERE id = 0")?
            .query_row([], |r| r.get(0))
            .optional()?;
        match data {
            None => Ok(EMPTY_LARGE_BLOB_ARRAY.to_vec()),
            Some(v) => blob(v, "large_blob"),
        }
    }

    pub fn save_large_blob_array(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO large_blob (id, data) VALUES (0, ?1) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            )?
            .execute([bytes])?;
        Ok(())
    }

    /// authenticatorReset: deletes every credential, the PIN and settings, and the large-blob
    /// array. The signature counter keeps its value (it must never go backwards).
    pub fn reset(&mut self) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch("DELETE FROM credentials; DELETE FROM large_blob;")?;
        // Fresh defaults, including a new wrap_salt: old credential IDs stop opening.
        write_settings(&tx, &self.keys, &Settings::default())?;
        tx.commit()?;
        // Best effort: copy the (securely deleted) pages into the database and empty the WAL,
        // so old page images with the deleted RP ids and user names do not linger in it.
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(())
    }

    fn open_secret(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.keys
            .sealer
            .open(sealed, aad)
            .map_err(|_| StoreError::Unseal)
    }

    fn decode_credential(&self, raw: Vec<Value>) -> Result<Credential, StoreError> {
        let mut raw = raw.into_iter();
        let mut next = || raw.next().unwrap_or(Value::Null);
        let id = blob(next(), "id")?;
        let rp_id = text(next(), "rp_id")?;
        let rp_id_hash = hash32(next(), "rp_id_hash")?;
        let rp_name = opt_text(next(), "rp_name")?;
        let user_id = blob(next(), "user_id")?;
        let user_name = opt_text(next(), "user_name")?;
        let user_display_name = opt_text(next(), "user_display_name")?;
        let algorithm_id = integer(next(), "algorithm")?;
        let algorithm = Algorithm::from_cose_id(algorithm_id)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown algorithm {algorithm_id}")))?;
        let sealed_key = blob(next(), "private_key")?;
        let cred_protect_id = integer(next(), "cred_protect")?;
        let cred_protect = u8::try_from(cred_protect_id)
            .ok()
            .and_then(CredProtect::from_u8)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown credProtect {cred_protect_id}")))?;
        let hmac_secret = boolean(next(), "hmac_secret")?;
        let sealed_blob = opt_blob(next(), "cred_blob")?;
        let sealed_lbk = opt_blob(next(), "large_blob_key")?;
        let backup_eligible = boolean(next(), "backup_eligible")?;
        let backup_state = boolean(next(), "backup_state")?;
        let created_at = integer(next(), "created_at")?;

        let binding = CredentialBinding::new(
            &id,
            &rp_id_hash,
            &user_id,
            algorithm_id,
            cred_protect_id,
            hmac_secret,
            backup_eligible,
            backup_state,
        );
        let private_key = self.open_secret(&sealed_key, &binding.aad("private_key"))?;
        if !private_key_len_ok(private_key.len()) {
            return Err(StoreError::Corrupt(format!(
                "private key is {} bytes",
                private_key.len()
            )));
        }
        let cred_blob = sealed_blob
            .map(|s| self.open_secret(&s, &binding.aad("cred_blob")))
            .transpose()?;
        let large_blob_key = match sealed_lbk {
            None => None,
            Some(s) => {
                let opened = self.open_secret(&s, &binding.aad("large_blob_key"))?;
                let key: [u8; 32] = opened[..].try_into().map_err(|_| {
                    StoreError::Corrupt(format!("largeBlobKey is {} bytes, not 32", opened.len()))
                })?;
                Some(Zeroizing::new(key))
            }
        };
        Ok(Credential {
            id,
            rp_id,
            rp_id_hash,
            rp_name,
            user_id,
            user_name,
            user_display_name,
            algorithm,
            private_key,
            cred_protect,
            hmac_secret,
            cred_blob,
            large_blob_key,
            backup_eligible,
            backup_state,
            created_at,
        })
    }
}

/// Creates a database file with owner-only permissions if it does not exist yet (the
/// credential store and the pairing store). SQLite gives its `-wal` and `-shm` files the same
/// permissions as the database file. The error says which file.
#[cfg(unix)]
pub(crate) fn create_private_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

#[cfg(not(unix))]
pub(crate) fn create_private_file(_path: &Path) -> Result<(), String> {
    Ok(()) // SQLite creates it (SQLITE_OPEN_CREATE)
}

/// A read transaction that works with `&Connection` and also nests (a savepoint).
struct ReadSnapshot<'c>(&'c Connection);

impl<'c> ReadSnapshot<'c> {
    fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        conn.execute_batch("SAVEPOINT store_read")?;
        Ok(Self(conn))
    }

    fn end(self) -> Result<(), StoreError> {
        let conn = self.0;
        std::mem::forget(self);
        conn.execute_batch("RELEASE store_read")?;
        Ok(())
    }
}

impl Drop for ReadSnapshot<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .execute_batch("ROLLBACK TO store_read; RELEASE store_read");
    }
}

fn settings_exist(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM settings WHERE id = 0")?
        .exists([])?)
}

/// The settings row and its rp id list as stored, after checking their integrity tag.
pub(super) fn verified_settings(
    conn: &Connection,
    keys: &StoreKeys,
) -> Result<StoredSettings, StoreError> {
    let (stored, tag) = read_settings(conn)?
        // The row is written when the store is created and by every reset; defaults here
        // would hand out a different random wrap_salt on every call.
        .ok_or_else(|| StoreError::Corrupt("the settings row is missing".into()))?;
    stored.check(&keys.mac, tag.as_deref())?;
    Ok(stored)
}

/// A settings row and its stored tag (`None`: the column is empty).
pub(super) type TaggedSettings = (StoredSettings, Option<Vec<u8>>);

/// The settings row, its rp id list and its tag, unchecked; `None` if there is no row yet.
pub(super) fn read_settings(conn: &Connection) -> Result<Option<TaggedSettings>, StoreError> {
    // Both queries read one snapshot.
    let snapshot = ReadSnapshot::begin(conn)?;
    let row = conn
        .prepare_cached(
            "SELECT pin_hash, pin_code_points, pin_retries, uv_retries, min_pin_length, \
             force_pin_change, always_uv, enterprise_attestation, label, wrap_salt, mac \
             FROM settings WHERE id = 0",
        )?
        .query_row([], |r| {
            (0..11)
                .map(|i| r.get::<_, Value>(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .optional()?;
    let Some(row) = row else {
        snapshot.end()?;
        return Ok(None);
    };
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(Value::Null);
    let pin_hash = opt_blob(next(), "pin_hash")?;
    let pin_code_points = small_int(next(), "pin_code_points")?;
    let pin_retries = small_int(next(), "pin_retries")?;
    let uv_retries = small_int(next(), "uv_retries")?;
    let min_pin_length = small_int(next(), "min_pin_length")?;
    let force_pin_change = boolean(next(), "force_pin_change")?;
    let always_uv = boolean(next(), "always_uv")?;
    let enterprise_attestation = boolean(next(), "enterprise_attestation")?;
    let label = text(next(), "label")?;
    let wrap_salt = hash32(next(), "wrap_salt")?;
    let tag = opt_blob(next(), "settings.mac")?;

    let mut min_pin_length_rp_ids = Vec::new();
    {
        let mut stmt =
            conn.prepare_cached("SELECT rp_id FROM min_pin_length_rp_ids ORDER BY position")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            min_pin_length_rp_ids.push(text(r.get(0)?, "min_pin_length_rp_ids.rp_id")?);
        }
    }
    snapshot.end()?;
    let stored = StoredSettings {
        pin_hash,
        pin_code_points,
        pin_retries,
        uv_retries,
        min_pin_length,
        force_pin_change,
        always_uv,
        enterprise_attestation,
        label,
        wrap_salt,
        min_pin_length_rp_ids,
    };
    Ok(Some((stored, tag)))
}

/// Replaces the settings row and its rp id list (inside the caller's transaction).
fn write_settings(
    conn: &Connection,
    keys: &StoreKeys,
    settings: &Settings,
) -> Result<(), StoreError> {
    let stored = StoredSettings {
        pin_hash: settings
            .pin_hash
            .as_ref()
            .map(|h| keys.sealer.seal(&h[..], &settings_aad("pin_hash"))),
        pin_code_points: settings.pin_code_points,
        pin_retries: settings.pin_retries,
        uv_retries: settings.uv_retries,
        min_pin_length: settings.min_pin_length,
        force_pin_change: settings.force_pin_change,
        always_uv: settings.always_uv,
        enterprise_attestation: settings.enterprise_attestation,
        label: settings.label.clone(),
        wrap_salt: settings.wrap_salt,
        min_pin_length_rp_ids: settings.min_pin_length_rp_ids.clone(),
    };
    conn.prepare_cached(
        "INSERT INTO settings (id, pin_hash, pin_code_points, pin_retries, uv_retries, \
         min_pin_length, force_pin_change, always_uv, enterprise_attestation, label, wrap_salt, \
         mac) VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (id) DO UPDATE SET pin_hash = excluded.pin_hash, \
         pin_code_points = excluded.pin_code_points, pin_retries = excluded.pin_retries, \
         uv_retries = excluded.uv_retries, min_pin_length = excluded.min_pin_length, \
         force_pin_change = excluded.force_pin_change, always_uv = excluded.always_uv, \
         enterprise_attestation = excluded.enterprise_attestation, label = excluded.label, \
         wrap_salt = excluded.wrap_salt, mac = excluded.mac",
    )?
    .execute(params![
        stored.pin_hash,
        stored.pin_code_points,
        stored.pin_retries,
        stored.uv_retries,
        stored.min_pin_length,
        stored.force_pin_change,
        stored.always_uv,
        stored.enterprise_attestation,
        stored.label,
        &stored.wrap_salt[..],
        stored.tag(&keys.mac),
    ])?;
    conn.prepare_cached("DELETE FROM min_pin_length_rp_ids")?
        .execute([])?;
    let mut insert =
        conn.prepare_cached("INSERT INTO min_pin_length_rp_ids (position, rp_id) VALUES (?1, ?2)")?;
    for (position, rp_id) in stored.min_pin_length_rp_ids.iter().enumerate() {
        insert.execute(params![position as i64, rp_id])?;
    }
    Ok(())
}

/// The signature counter and its tag, unchecked.
pub(super) fn read_counter(conn: &Connection) -> Result<(u32, Option<Vec<u8>>), StoreError> {
    let row: Option<(i64, Value)> = conn
        .prepare_cached("SELECT value, mac FROM sign_counter WHERE id = 0")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (value, tag) =
        row.ok_or_else(|| StoreError::Corrupt("the signature counter is missing".into()))?;
    let value = u32::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("signature counter {value} is out of range")))?;
    Ok((value, opt_blob(tag, "sign_counter.mac")?))
}

/// Increments the signature counter inside `tx` (and re-tags it); the new value.
fn bump_counter(tx: &Connection, keys: &StoreKeys) -> Result<u32, StoreError> {
    let value = verified_counter(tx, keys)?.saturating_add(1);
    tx.prepare_cached("UPDATE sign_counter SET value = ?1, mac = ?2 WHERE id = 0")?
        .execute(params![value, integrity::counter_tag(&keys.mac, value)])?;
    Ok(value)
}

fn verified_counter(conn: &Connection, keys: &StoreKeys) -> Result<u32, StoreError> {
    let (value, tag) = read_counter(conn)?;
    integrity::check_counter(&keys.mac, value, tag.as_deref())?;
    Ok(value)
}

fn count_credentials(conn: &Connection) -> Result<u32, StoreError> {
    let n: Option<i64> = conn
        .prepare_cached("SELECT credential_count FROM store_meta WHERE id = 0")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let n = n.ok_or_else(|| StoreError::Corrupt("store metadata is missing".into()))?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("credential count {n} is invalid")))
}

/// The columns of one credential row, undecoded (decoding errors become `Corrupt`).
fn raw_credential(row: &rusqlite::Row<'_>) -> rusqlite::Result<Vec<Value>> {
    (0..CREDENTIAL_COLUMN_COUNT)
        .map(|i| row.get::<_, Value>(i))
        .collect()
}

/// What a credential's sealed fields are bound to: the row's identity and the attributes
/// fixed when it was made. Variable-length parts are length-prefixed, so the encoding is
/// unambiguous.
pub(super) struct CredentialBinding(Vec<u8>);

impl CredentialBinding {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        id: &[u8],
        rp_id_hash: &[u8; 32],
        user_id: &[u8],
        algorithm: i64,
        cred_protect: i64,
        hmac_secret: bool,
        backup_eligible: bool,
        backup_state: bool,
    ) -> Self {
        let mut b = Vec::with_capacity(AAD_PREFIX.len() + 96 + id.len() + user_id.len());
        b.extend_from_slice(AAD_PREFIX);
        b.extend_from_slice(b"credential\0");
        b.extend_from_slice(&(id.len() as u64).to_be_bytes());
        b.extend_from_slice(id);
        b.extend_from_slice(rp_id_hash);
        b.extend_from_slice(&(user_id.len() as u64).to_be_bytes());
        b.extend_from_slice(user_id);
        b.extend_from_slice(&algorithm.to_be_bytes());
        b.extend_from_slice(&cred_protect.to_be_bytes());
        b.push(
            u8::from(hmac_secret) | u8::from(backup_eligible) << 1 | u8::from(backup_state) << 2,
        );
        Self(b)
    }

    /// The associated data for one sealed field of this credential.
    pub(super) fn aad(&self, field: &str) -> Vec<u8> {
        [&self.0[..], field.as_bytes()].concat()
    }
}

pub(super) fn settings_aad(field: &str) -> Vec<u8> {
    [AAD_PREFIX, b"settings\0", field.as_bytes()].concat()
}

fn corrupt_type(column: &str, expected: &str) -> StoreError {
    StoreError::Corrupt(format!("{column} is not {expected}"))
}

fn blob(v: Value, column: &str) -> Result<Vec<u8>, StoreError> {
    match v {
        Value::Blob(b) => Ok(b),
        _ => Err(corrupt_type(column, "a blob")),
    }
}

fn opt_blob(v: Value, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
    match v {
        Value::Null => Ok(None),
        v => blob(v, column).map(Some),
    }
}

fn text(v: Value, column: &str) -> Result<String, StoreError> {
    match v {
        Value::Text(s) => Ok(s),
        _ => Err(corrupt_type(column, "text")),
    }
}

fn opt_text(v: Value, column: &str) -> Result<Option<String>, StoreError> {
    match v {
        Value::Null => Ok(None),
        v => text(v, column).map(Some),
    }
}

fn integer(v: Value, column: &str) -> Result<i64, StoreError> {
    match v {
        Value::Integer(i) => Ok(i),
        _ => Err(corrupt_type(column, "an integer")),
    }
}

fn boolean(v: Value, column: &str) -> Result<bool, StoreError> {
    match integer(v, column)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::Corrupt(format!(
            "{column} is {other}, not a boolean"
        ))),
    }
}

fn small_int(v: Value, column: &str) -> Result<u8, StoreError> {
    let i = integer(v, column)?;
    u8::try_from(i).map_err(|_| StoreError::Corrupt(format!("{column} is {i}, out of range")))
}

fn hash32(v: Value, column: &str) -> Result<[u8; 32], StoreError> {
    let b = blob(v, column)?;
    b[..]
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{column} is {} bytes, not 32", b.len())))
}
