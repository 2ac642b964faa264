//! Opening a store: the connection and its pragmas, the schema check and migrations, the
//! master-key check; and authenticatorReset, which starts the store over.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use super::lock::StoreLock;
use super::private_file::create_private_file;
use super::schema;
use super::sealing::StoreKeys;
use super::settings::{write_settings, SettingsCache};
use super::types::*;
use crate::crypto::master_key::MasterKey;

/// The most discoverable credentials one key will hold.
pub const MAX_DISCOVERABLE_CREDENTIALS: u32 = 250_000;

/// How long a call waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The credential store: one SQLite database (a file, or memory for tests).
pub struct Store {
    pub(super) conn: Connection,
    pub(super) keys: StoreKeys,
    pub(super) max_credentials: u32,
    /// The settings row as last verified (see [`SettingsCache`]).
    pub(super) settings_cache: SettingsCache,
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

    /// The underlying connection, for tests that inspect or damage the database. Writes
    /// through it bypass the store's methods, so the settings cache is dropped first.
    #[cfg(test)]
    pub(super) fn connection(&self) -> &Connection {
        self.settings_cache.clear();
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
            settings_cache: SettingsCache::default(),
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
        let opened = self.keys.open(&sealed, schema::KEY_CHECK_AAD)?;
        if &opened[..] != schema::KEY_CHECK_PLAINTEXT {
            return Err(StoreError::Corrupt(
                "the key check holds something else".into(),
            ));
        }
        Ok(())
    }

    /// authenticatorReset: deletes every credential, the PIN and settings, and the large-blob
    /// array. The signature counter keeps its value (it must never go backwards).
    pub fn reset(&mut self) -> Result<(), StoreError> {
        self.keys.forget_opened_keys();
        let tx = self.begin_settings_write()?;
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
}
