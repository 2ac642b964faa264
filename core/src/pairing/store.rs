//! The pairing records in a small SQLite file of their own (`pairings.db`).
//!
//! Not a migration of the credential store, on purpose: the bridge has no credential store;
//! an authenticatorReset (which a browser can send through the bridge) must not unpair
//! computers; and the two schemas evolve on their own. The file has its own
//! `application_id` ("PKPR") and schema version, is created 0600, and holds our static keys
//! sealed only ([`PairingRecord::seal_static_key`]).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use thiserror::Error;

use super::mailbox::{MailboxId, PairingId, MAILBOX_ID_LEN};
use super::records::{open_static_key, PairingRecord, RecordError};
use super::relay::{ApnsEnvironment, PushProvider, PushTarget, WakeId};
use super::url::{compressed, parse_compressed, validate_name, NameError};
use super::wake::EmptyWakes;
use super::Role;
use crate::crypto::master_key::MasterKey;

/// The file name runtimes use in their state directory.
pub const FILE_NAME: &str = "pairings.db";
/// `PRAGMA application_id` of a pairing store ("PKPR").
const APPLICATION_ID: i32 = 0x504B_5052;
/// The schema version this build writes and reads.
const SCHEMA_VERSION: u32 = 3;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA_V1: &str = "
    CREATE TABLE pairings (
        id            BLOB    NOT NULL PRIMARY KEY,
        role          INTEGER NOT NULL,
        name          TEXT    NOT NULL,
        relay_url     TEXT    NOT NULL,
        peer_static   BLOB    NOT NULL,
        our_static    BLOB    NOT NULL,
        created_at    INTEGER NOT NULL,
        last_seen     INTEGER,
        peer_get_info BLOB,
        revoked_at    INTEGER
    ) STRICT;
";

/// The steps from each schema version to the next: `MIGRATIONS[n]` turns version `n + 1` into
/// `n + 2`. Each keeps the rows it finds.
const MIGRATIONS: &[&str] = &[
    // 2: pairings suspended (not deleted) on the relay's unauthenticated "revoked"; existing
    // rows are kept, none suspended.
    "ALTER TABLE pairings ADD COLUMN suspended_at INTEGER;",
    // 3: the phone's push registrations (docs/pairing-protocol.md §3.3): the wake id of the
    // last PUSH_REGISTER (`current`, `current_acked` once the relay ACKed it) and the one
    // before it, still accepted until then (`previous`); the target, registered again with a
    // new wake id at each attach; the budget of wakes that brought no request.
    "CREATE TABLE wake (
         pairing       BLOB    NOT NULL PRIMARY KEY REFERENCES pairings (id) ON DELETE CASCADE,
         current       BLOB    NOT NULL UNIQUE,
         current_acked INTEGER NOT NULL DEFAULT 0,
         previous      BLOB,
         provider      TEXT    NOT NULL,
         target        TEXT    NOT NULL,
         environment   TEXT,
         empty_since   INTEGER NOT NULL DEFAULT 0,
         empty_count   INTEGER NOT NULL DEFAULT 0
     ) STRICT;
     CREATE INDEX wake_previous ON wake (previous);",
];

const COLUMNS: &str = "id, role, name, relay_url, peer_static, our_static, created_at, \
                       last_seen, peer_get_info, revoked_at, suspended_at";

/// Why a pairing store call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PairingStoreError {
    #[error("the pairing store could not be read or written: {0}")]
    Database(String),
    #[error("the pairing store was written by a newer PocketKey (schema {found}, this one knows {known})")]
    SchemaTooNew { found: u32, known: u32 },
    #[error("not a PocketKey pairing store")]
    Foreign,
    #[error("a pairing record is damaged: {0}")]
    Corrupt(String),
    #[error("a pairing's key could not be unsealed (wrong master key or damaged store)")]
    Unseal,
    #[error("that pairing is already stored")]
    Duplicate,
    #[error("no such pairing")]
    NotFound,
    #[error("name: {0}")]
    BadName(#[from] NameError),
}

impl From<rusqlite::Error> for PairingStoreError {
    fn from(e: rusqlite::Error) -> Self {
        PairingStoreError::Database(e.to_string())
    }
}

/// The pairing records of one phone or one bridge.
pub struct PairingStore {
    conn: Connection,
    master: MasterKey,
}

impl std::fmt::Debug for PairingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingStore")
            .field("path", &self.conn.path())
            .finish_non_exhaustive()
    }
}

fn to_i64(v: u64) -> Result<i64, PairingStoreError> {
    i64::try_from(v).map_err(|_| PairingStoreError::Corrupt("timestamp out of range".into()))
}

impl PairingStore {
    /// Opens (creating as needed, mode 0600 on unix) the store at `path`; its directory must
    /// exist.
    pub fn open(path: &Path, master: &MasterKey) -> Result<Self, PairingStoreError> {
        crate::store::private_file::create_private_file(path)
            .map_err(PairingStoreError::Database)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        Self::init(conn, master)
    }

    /// A store in memory, for tests.
    pub fn open_in_memory(master: &MasterKey) -> Result<Self, PairingStoreError> {
        Self::init(Connection::open_in_memory()?, master)
    }

    fn init(mut conn: Connection, master: &MasterKey) -> Result<Self, PairingStoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "trusted_schema", false)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let app_id: i32 = tx.pragma_query_value(None, "application_id", |r| r.get(0))?;
        match version {
            0 => {
                let objects: i64 =
                    tx.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
                if objects > 0 || app_id != 0 {
                    return Err(PairingStoreError::Foreign);
                }
                tx.execute_batch(SCHEMA_V1)?;
                tx.execute_batch(&MIGRATIONS.concat())?;
                tx.pragma_update(None, "application_id", APPLICATION_ID)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            _ if app_id != APPLICATION_ID => return Err(PairingStoreError::Foreign),
            SCHEMA_VERSION => {}
            older if older < SCHEMA_VERSION => {
                for step in &MIGRATIONS[older as usize - 1..] {
                    tx.execute_batch(step)?;
                }
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            found => {
                return Err(PairingStoreError::SchemaTooNew {
                    found,
                    known: SCHEMA_VERSION,
                })
            }
        }
        tx.commit()?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Forgetting a pairing forgets its push registration (ON DELETE CASCADE).
        conn.pragma_update(None, "foreign_keys", true)?;
        Ok(Self {
            conn,
            master: master.clone(),
        })
    }

    /// Stores a new pairing.
    pub fn insert(&self, record: &PairingRecord) -> Result<(), PairingStoreError> {
        validate_name(&record.name)?;
        let result = self.conn.execute(
            &format!(
                "INSERT INTO pairings ({COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            params![
                record.id.0.as_slice(),
                record.role.to_byte(),
                record.name,
                record.relay_url,
                compressed(&record.peer_static).as_slice(),
                record.seal_static_key(&self.master),
                to_i64(record.created_at)?,
                record.last_seen.map(to_i64).transpose()?,
                record.peer_get_info,
                record.revoked_at.map(to_i64).transpose()?,
                record.suspended_at.map(to_i64).transpose()?,
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(PairingStoreError::Duplicate)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One pairing, revoked or not.
    pub fn get(&self, id: &PairingId) -> Result<Option<PairingRecord>, PairingStoreError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM pairings WHERE id = ?1"),
                [id.0.as_slice()],
                RawRow::read,
            )
            .optional()?;
        row.map(|r| r.into_record(&self.master)).transpose()
    }

    /// The pairing (revoked or not) whose relay mailbox is `mailbox` (a push names the
    /// mailbox). A record stored before attach keys existed kept the id of the bearer-token
    /// mailbox it was made with, which is no longer its mailbox: it is found by recomputing
    /// each record's mailbox from its keys.
    pub fn by_mailbox(
        &self,
        mailbox: &MailboxId,
    ) -> Result<Option<PairingRecord>, PairingStoreError> {
        if let Some(record) = self.get(mailbox)? {
            return Ok(Some(record));
        }
        Ok(self
            .select("1", &[])?
            .into_iter()
            .find(|record| record.mailbox_keys().id() == *mailbox))
    }

    fn select(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<PairingRecord>, PairingStoreError> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM pairings WHERE {filter} ORDER BY created_at DESC, rowid DESC"
        ))?;
        let rows = statement.query_map(args, RawRow::read)?;
        rows.map(|row| row?.into_record(&self.master)).collect()
    }

    /// The pairings not revoked, newest first: suspended ones too (with `suspended_at` set),
    /// so that the user sees them and can resume or remove them.
    pub fn list(&self) -> Result<Vec<PairingRecord>, PairingStoreError> {
        self.select("revoked_at IS NULL", &[])
    }

    /// The pairings in use with this exact name (for `pocketkey unpair NAME`).
    pub fn find_by_name(&self, name: &str) -> Result<Vec<PairingRecord>, PairingStoreError> {
        self.select("revoked_at IS NULL AND name = ?1", &[&name])
    }

    /// Revoked pairings whose deletion at the relay is not yet acknowledged.
    pub fn pending_revocations(&self) -> Result<Vec<PairingRecord>, PairingStoreError> {
        self.select("revoked_at IS NOT NULL", &[])
    }

    fn update(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<(), PairingStoreError> {
        match self.conn.execute(sql, args)? {
            0 => Err(PairingStoreError::NotFound),
            _ => Ok(()),
        }
    }

    /// Renames a pairing (local only).
    pub fn rename(&self, id: &PairingId, name: &str) -> Result<(), PairingStoreError> {
        validate_name(name)?;
        self.update(
            "UPDATE pairings SET name = ?2 WHERE id = ?1",
            &[&id.0.as_slice(), &name],
        )
    }

    /// Records an established session at `now` (Unix seconds).
    pub fn touch(&self, id: &PairingId, now: u64) -> Result<(), PairingStoreError> {
        self.update(
            "UPDATE pairings SET last_seen = ?2 WHERE id = ?1",
            &[&id.0.as_slice(), &to_i64(now)?],
        )
    }

    /// Bridge: replaces the cached getInfo of the phone.
    pub fn set_peer_get_info(
        &self,
        id: &PairingId,
        get_info: &[u8],
    ) -> Result<(), PairingStoreError> {
        self.update(
            "UPDATE pairings SET peer_get_info = ?2 WHERE id = ?1",
            &[&id.0.as_slice(), &get_info],
        )
    }

    /// Revokes a pairing locally: it leaves [`PairingStore::list`] at once and stays in
    /// [`PairingStore::pending_revocations`] until [`PairingStore::forget`] (after the relay
    /// acknowledged DELETE).
    pub fn revoke(&self, id: &PairingId, now: u64) -> Result<(), PairingStoreError> {
        self.update(
            "UPDATE pairings SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
            &[&id.0.as_slice(), &to_i64(now)?],
        )
    }

    /// Suspends a pairing at `now` (Unix seconds): the relay said its mailbox was deleted,
    /// which nobody authenticates, so the record and its keys stay; the runtimes stop
    /// attaching and waking for it until [`PairingStore::resume`]. Keeps the first time.
    pub fn suspend(&self, id: &PairingId, now: u64) -> Result<(), PairingStoreError> {
        self.update(
            "UPDATE pairings SET suspended_at = coalesce(suspended_at, ?2) WHERE id = ?1",
            &[&id.0.as_slice(), &to_i64(now)?],
        )
    }

    /// The user's resume of a suspended pairing: it is used again (the next attach tells
    /// whether the peer is still there). Not an error for a pairing not suspended.
    pub fn resume(&self, id: &PairingId) -> Result<(), PairingStoreError> {
        self.update(
            "UPDATE pairings SET suspended_at = NULL WHERE id = ?1",
            &[&id.0.as_slice()],
        )
    }

    /// Deletes a pairing for good (the peer revoked it, or our revocation reached the relay).
    /// Returns whether it existed.
    pub fn forget(&self, id: &PairingId) -> Result<bool, PairingStoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM pairings WHERE id = ?1", [id.0.as_slice()])?
            > 0)
    }

    /// Phone: a PUSH_REGISTER of `target` for the pairing is about to be sent. Its wake id
    /// becomes the current one; the last one the relay acknowledged stays accepted
    /// ([`PairingStore::by_wake_id`]) until [`PairingStore::push_registered`].
    pub fn push_registering(
        &self,
        id: &PairingId,
        target: &PushTarget,
    ) -> Result<(), PairingStoreError> {
        self.update(
            "INSERT INTO wake (pairing, current, provider, target, environment)
             SELECT id, ?2, ?3, ?4, ?5 FROM pairings WHERE id = ?1
             ON CONFLICT (pairing) DO UPDATE SET
                 previous = CASE WHEN current_acked = 1 THEN current ELSE previous END,
                 current = excluded.current, current_acked = 0,
                 provider = excluded.provider, target = excluded.target,
                 environment = excluded.environment",
            &[
                &id.0.as_slice(),
                &target.wake.0.as_slice(),
                &target.provider.as_str(),
                &target.target,
                &target.environment.map(|e| e.as_str()),
            ],
        )
    }

    /// Phone: the relay acknowledged the registration carrying `wake`: only it is accepted
    /// from now on.
    pub fn push_registered(&self, id: &PairingId, wake: &WakeId) -> Result<(), PairingStoreError> {
        self.update(
            "UPDATE wake SET current_acked = 1, previous = NULL
             WHERE pairing = ?1 AND current = ?2",
            &[&id.0.as_slice(), &wake.0.as_slice()],
        )
    }

    /// Phone: the push target last registered for the pairing (with its current wake id).
    pub fn push_target(&self, id: &PairingId) -> Result<Option<PushTarget>, PairingStoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT current, provider, target, environment FROM wake WHERE pairing = ?1",
                [id.0.as_slice()],
                |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((wake, provider, target, environment)) = row else {
            return Ok(None);
        };
        let corrupt = || PairingStoreError::Corrupt("push registration".into());
        Ok(Some(PushTarget {
            provider: PushProvider::parse(&provider).ok_or_else(corrupt)?,
            target,
            environment: environment
                .map(|e| ApnsEnvironment::parse(&e).ok_or_else(corrupt))
                .transpose()?,
            wake: WakeId(wake.try_into().map_err(|_| corrupt())?),
        }))
    }

    /// Phone: the pairing (revoked or not) a push carrying `wake` is for: its current wake id
    /// or the previous one while the current is not acknowledged.
    pub fn by_wake_id(&self, wake: &WakeId) -> Result<Option<PairingRecord>, PairingStoreError> {
        let pairing: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT pairing FROM wake WHERE current = ?1 OR previous = ?1",
                [wake.0.as_slice()],
                |row| row.get(0),
            )
            .optional()?;
        match pairing {
            None => Ok(None),
            Some(id) => {
                let id = id
                    .try_into()
                    .map_err(|_| PairingStoreError::Corrupt("wake pairing".into()))?;
                self.get(&MailboxId(id))
            }
        }
    }

    /// Phone: the pairing's wakes that brought no request, in the current window.
    pub fn empty_wakes(&self, id: &PairingId) -> Result<EmptyWakes, PairingStoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT empty_since, empty_count FROM wake WHERE pairing = ?1",
                [id.0.as_slice()],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()?;
        let corrupt = || PairingStoreError::Corrupt("wake budget".into());
        Ok(match row {
            None => EmptyWakes::default(),
            Some((since, count)) => EmptyWakes {
                window_start: u64::try_from(since).map_err(|_| corrupt())?,
                count: u32::try_from(count).map_err(|_| corrupt())?,
            },
        })
    }

    /// Phone: stores the pairing's empty wakes (after [`EmptyWakes::record`]).
    pub fn set_empty_wakes(
        &self,
        id: &PairingId,
        wakes: EmptyWakes,
    ) -> Result<(), PairingStoreError> {
        self.update(
            "UPDATE wake SET empty_since = ?2, empty_count = ?3 WHERE pairing = ?1",
            &[
                &id.0.as_slice(),
                &to_i64(wakes.window_start)?,
                &i64::from(wakes.count),
            ],
        )
    }
}

/// A row as read, before its key is unsealed.
struct RawRow {
    id: Vec<u8>,
    role: i64,
    name: String,
    relay_url: String,
    peer_static: Vec<u8>,
    our_static: Vec<u8>,
    created_at: i64,
    last_seen: Option<i64>,
    peer_get_info: Option<Vec<u8>>,
    revoked_at: Option<i64>,
    suspended_at: Option<i64>,
}

impl RawRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            role: row.get(1)?,
            name: row.get(2)?,
            relay_url: row.get(3)?,
            peer_static: row.get(4)?,
            our_static: row.get(5)?,
            created_at: row.get(6)?,
            last_seen: row.get(7)?,
            peer_get_info: row.get(8)?,
            revoked_at: row.get(9)?,
            suspended_at: row.get(10)?,
        })
    }

    fn into_record(self, master: &MasterKey) -> Result<PairingRecord, PairingStoreError> {
        let corrupt = |what: &str| PairingStoreError::Corrupt(what.to_string());
        let id: [u8; MAILBOX_ID_LEN] = self.id.try_into().map_err(|_| corrupt("id"))?;
        let id = MailboxId(id);
        let role = u8::try_from(self.role)
            .ok()
            .and_then(Role::from_byte)
            .ok_or_else(|| corrupt("role"))?;
        let peer_static = parse_compressed(&self.peer_static).ok_or_else(|| corrupt("peer key"))?;
        let our_static = open_static_key(master, &id, role, &peer_static, &self.our_static)
            .map_err(|e| match e {
                RecordError::Unseal(_) => PairingStoreError::Unseal,
                RecordError::BadKey => corrupt("our key"),
            })?;
        let time = |t: i64| u64::try_from(t).map_err(|_| corrupt("timestamp"));
        Ok(PairingRecord {
            id,
            role,
            name: self.name,
            relay_url: self.relay_url,
            peer_static,
            our_static,
            created_at: time(self.created_at)?,
            last_seen: self.last_seen.map(time).transpose()?,
            peer_get_info: self.peer_get_info,
            revoked_at: self.revoked_at.map(time).transpose()?,
            suspended_at: self.suspended_at.map(time).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::MailboxKeys;
    use p256::SecretKey;

    fn master() -> MasterKey {
        MasterKey::from_bytes([9; 32])
    }

    fn record(seed: u8, name: &str, created_at: u64) -> PairingRecord {
        let ours = SecretKey::from_slice(&[seed; 32]).unwrap();
        let peer = SecretKey::from_slice(&[seed + 100; 32])
            .unwrap()
            .public_key();
        PairingRecord {
            id: MailboxKeys::pairing(&ours, &peer, Role::Phone).id(),
            role: Role::Phone,
            name: name.into(),
            relay_url: "wss://relay.example".into(),
            peer_static: peer,
            our_static: ours,
            created_at,
            last_seen: None,
            peer_get_info: None,
            revoked_at: None,
            suspended_at: None,
        }
    }

    #[test]
    fn a_record_stored_under_its_old_id_is_found_by_its_mailbox() {
        let store = PairingStore::open_in_memory(&master()).unwrap();
        let mut old = record(3, "old laptop", 10);
        let mailbox = old.mailbox_keys().id();
        old.id = MailboxId([0x42; 16]);
        store.insert(&old).unwrap();
        let found = store.by_mailbox(&mailbox).unwrap().unwrap();
        assert_eq!(found.id, old.id);
        assert_eq!(store.by_mailbox(&old.id).unwrap().unwrap().id, old.id);
        assert!(store.by_mailbox(&MailboxId([1; 16])).unwrap().is_none());
    }

    #[test]
    fn pairings_made_in_the_same_second_list_the_later_first() {
        let store = PairingStore::open_in_memory(&master()).unwrap();
        // Ids in both orders, so the tie is not broken by the id.
        let (a, b, c) = (
            record(9, "first", 100),
            record(1, "second", 100),
            record(5, "third", 100),
        );
        for r in [&a, &b, &c] {
            store.insert(r).unwrap();
        }
        assert_eq!(store.list().unwrap(), vec![c, b, a]);
    }

    #[test]
    fn insert_list_rename_touch_revoke_forget() {
        let store = PairingStore::open_in_memory(&master()).unwrap();
        let a = record(1, "desk", 100);
        let b = record(2, "laptop", 200);
        store.insert(&a).unwrap();
        store.insert(&b).unwrap();
        assert_eq!(store.insert(&a), Err(PairingStoreError::Duplicate));
        assert_eq!(store.list().unwrap(), vec![b.clone(), a.clone()]);
        assert_eq!(store.get(&a.id).unwrap(), Some(a.clone()));

        store.rename(&a.id, "work desk").unwrap();
        assert_eq!(
            store.rename(&a.id, ""),
            Err(PairingStoreError::BadName(NameError::Empty))
        );
        assert_eq!(store.find_by_name("work desk").unwrap().len(), 1);
        store.touch(&a.id, 150).unwrap();
        store.set_peer_get_info(&a.id, &[0xa0]).unwrap();
        let got = store.get(&a.id).unwrap().unwrap();
        assert_eq!((got.name.as_str(), got.last_seen), ("work desk", Some(150)));
        assert_eq!(got.peer_get_info, Some(vec![0xa0]));

        store.revoke(&a.id, 300).unwrap();
        store.revoke(&a.id, 400).unwrap(); // keeps the first time
        assert_eq!(store.list().unwrap(), vec![b.clone()]);
        assert!(store.find_by_name("work desk").unwrap().is_empty());
        let pending = store.pending_revocations().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].revoked_at, Some(300));
        assert!(store.forget(&a.id).unwrap());
        assert!(!store.forget(&a.id).unwrap());
        assert_eq!(store.get(&a.id).unwrap(), None);
        assert_eq!(store.touch(&a.id, 1), Err(PairingStoreError::NotFound));
    }

    #[test]
    fn file_store_persists_seals_and_refuses_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let a = record(3, "desk", 1);
        {
            let store = PairingStore::open(&path, &master()).unwrap();
            store.insert(&a).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw
            .windows(32)
            .any(|w| w == a.our_static.to_bytes().as_slice()));
        let store = PairingStore::open(&path, &master()).unwrap();
        assert_eq!(store.list().unwrap(), vec![a.clone()]);
        drop(store);

        let wrong = PairingStore::open(&path, &MasterKey::from_bytes([1; 32])).unwrap();
        assert_eq!(wrong.list(), Err(PairingStoreError::Unseal));

        // A credential store (another application id) or a newer schema is refused.
        let other = dir.path().join("other.db");
        let conn = Connection::open(&other).unwrap();
        conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 1;")
            .unwrap();
        drop(conn);
        assert_eq!(
            PairingStore::open(&other, &master()).unwrap_err(),
            PairingStoreError::Foreign
        );
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 4).unwrap();
        drop(conn);
        assert_eq!(
            PairingStore::open(&path, &master()).unwrap_err(),
            PairingStoreError::SchemaTooNew { found: 4, known: 3 }
        );
    }

    #[test]
    fn suspend_keeps_the_record_and_its_keys_until_resumed_or_forgotten() {
        let store = PairingStore::open_in_memory(&master()).unwrap();
        let a = record(1, "desk", 100);
        store.insert(&a).unwrap();
        store.suspend(&a.id, 300).unwrap();
        store.suspend(&a.id, 400).unwrap(); // keeps the first time
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1, "a suspended pairing is still listed");
        assert_eq!(listed[0].suspended_at, Some(300));
        assert_eq!(
            listed[0].our_static.to_bytes(),
            a.our_static.to_bytes(),
            "its key is kept"
        );
        assert_eq!(store.find_by_name("desk").unwrap().len(), 1);
        assert!(store.pending_revocations().unwrap().is_empty());
        store.resume(&a.id).unwrap();
        assert_eq!(store.get(&a.id).unwrap(), Some(a.clone()));
        assert_eq!(
            store.suspend(&MailboxId([7; 16]), 1),
            Err(PairingStoreError::NotFound)
        );
    }

    /// A store written by the previous version (schema 1, no `suspended_at`) opens, keeps its
    /// rows (none suspended) and can suspend them.
    #[test]
    fn a_version_1_store_is_migrated_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let a = record(4, "old desk", 50);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO pairings (id, role, name, relay_url, peer_static, our_static, \
                 created_at, last_seen, peer_get_info, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, NULL)",
                params![
                    a.id.0.as_slice(),
                    a.role.to_byte(),
                    a.name,
                    a.relay_url,
                    compressed(&a.peer_static).as_slice(),
                    a.seal_static_key(&master()),
                    50i64,
                ],
            )
            .unwrap();
        }
        let store = PairingStore::open(&path, &master()).unwrap();
        assert_eq!(store.list().unwrap(), vec![a.clone()]);
        store.suspend(&a.id, 60).unwrap();
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        drop(conn);
        let store = PairingStore::open(&path, &master()).unwrap();
        assert_eq!(store.get(&a.id).unwrap().unwrap().suspended_at, Some(60));
    }

    fn webhook(wake: u8) -> PushTarget {
        PushTarget {
            provider: PushProvider::Webhook,
            target: "http://127.0.0.1:9/wake".into(),
            environment: None,
            wake: WakeId([wake; 16]),
        }
    }

    /// A version 2 file (suspensions, before push registrations) opens as version 3 with its
    /// rows, and then takes registrations.
    #[test]
    fn a_version_2_store_is_migrated_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let a = record(3, "desk", 1);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            let store = PairingStore {
                conn,
                master: master(),
            };
            store.insert(&a).unwrap();
        }
        let store = PairingStore::open(&path, &master()).unwrap();
        assert_eq!(store.list().unwrap(), vec![a.clone()]);
        let version: u32 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        store.push_registering(&a.id, &webhook(1)).unwrap();
        assert_eq!(store.by_wake_id(&WakeId([1; 16])).unwrap(), Some(a));
    }

    /// Each registration's wake id finds the pairing; the previous one too until the new one
    /// is acknowledged, then only the new one; an unknown id finds nothing; forgetting the
    /// pairing forgets its registration.
    #[test]
    fn wake_ids_rotate_and_the_previous_one_lasts_until_the_ack() {
        let store = PairingStore::open_in_memory(&master()).unwrap();
        let a = record(1, "desk", 100);
        let b = record(2, "laptop", 200);
        store.insert(&a).unwrap();
        store.insert(&b).unwrap();
        let found = |w: u8| store.by_wake_id(&WakeId([w; 16])).unwrap().map(|r| r.name);
        assert_eq!(
            store.push_registering(&MailboxId([0; 16]), &webhook(9)),
            Err(PairingStoreError::NotFound)
        );
        store.push_registering(&a.id, &webhook(1)).unwrap();
        store.push_registering(&b.id, &webhook(5)).unwrap();
        assert_eq!(found(1).as_deref(), Some("desk"));
        store.push_registered(&a.id, &WakeId([1; 16])).unwrap();
        assert_eq!(store.push_target(&a.id).unwrap(), Some(webhook(1)));

        store.push_registering(&a.id, &webhook(2)).unwrap();
        assert_eq!(found(1).as_deref(), Some("desk"), "until the ACK");
        assert_eq!(found(2).as_deref(), Some("desk"));
        // Never acknowledged: the acknowledged one stays accepted.
        store.push_registering(&a.id, &webhook(3)).unwrap();
        assert_eq!(found(1).as_deref(), Some("desk"));
        assert_eq!(found(2), None);
        store.push_registered(&a.id, &WakeId([3; 16])).unwrap();
        assert_eq!(found(1), None);
        assert_eq!(found(3).as_deref(), Some("desk"));
        assert_eq!(found(5).as_deref(), Some("laptop"));
        assert_eq!(found(7), None);
        assert_eq!(store.push_target(&a.id).unwrap(), Some(webhook(3)));

        let wakes = EmptyWakes {
            window_start: 50,
            count: 4,
        };
        store.set_empty_wakes(&a.id, wakes).unwrap();
        assert_eq!(store.empty_wakes(&a.id).unwrap(), wakes);
        assert_eq!(store.empty_wakes(&b.id).unwrap(), EmptyWakes::default());

        assert!(store.forget(&a.id).unwrap());
        assert_eq!(found(3), None);
        assert_eq!(store.push_target(&a.id).unwrap(), None);
        store.insert(&a).unwrap();
        assert_eq!(store.push_target(&a.id).unwrap(), None, "a new start");
    }
}
