//! The pairing mailboxes' routing state behind the [`MailboxStore`] trait: push targets and
//! tombstones of revoked mailboxes (docs/pairing-protocol.md §3.1, §3.4). Live connections
//! stay in the node's memory; everything here could be shared by several nodes through an
//! existing engine (Redis, SQL) implementing the trait instead of [`SqliteMailboxStore`] (what
//! `pocketkey-relay` uses unless `--memory`) or [`MemoryMailboxStore`] (the library's default,
//! for tests and in-process relays).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use pocketkey_core::pairing::mailbox::MailboxId;
use pocketkey_core::pairing::relay::PushTarget;

use crate::registry::RegistryFuture;

/// The backing store failed (HTTP 503 at attach; the frame's request is refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mailbox store unavailable: {0}")]
pub struct StoreError(pub String);

/// Routing data of pairing mailboxes: nothing but mailbox ids, push targets and tombstones.
pub trait MailboxStore: Send + Sync + 'static {
    /// Whether the mailbox was deleted (attach answers 410 forever).
    fn is_tombstoned(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<bool, StoreError>>;

    /// Deletes a mailbox: keeps its tombstone, forgets its push target. Idempotent.
    fn tombstone(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<(), StoreError>>;

    /// The push target the phone registered for this mailbox.
    fn push_target(
        &self,
        mailbox: MailboxId,
    ) -> RegistryFuture<'_, Result<Option<PushTarget>, StoreError>>;

    /// Replaces (`Some`) or forgets (`None`) the mailbox's push target. Refused (false) for a
    /// tombstoned mailbox.
    fn set_push_target(
        &self,
        mailbox: MailboxId,
        target: Option<PushTarget>,
    ) -> RegistryFuture<'_, Result<bool, StoreError>>;
}

#[derive(Debug, Default)]
struct State {
    targets: HashMap<MailboxId, PushTarget>,
    tombstones: HashSet<MailboxId>,
}

/// The mailbox store of a single node, in memory (lost at restart: tombstones too).
#[derive(Debug, Default)]
pub struct MemoryMailboxStore {
    state: Mutex<State>,
}

impl MemoryMailboxStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MailboxStore for MemoryMailboxStore {
    fn is_tombstoned(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<bool, StoreError>> {
        let result = self.lock().tombstones.contains(&mailbox);
        Box::pin(async move { Ok(result) })
    }

    fn tombstone(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<(), StoreError>> {
        let mut state = self.lock();
        state.targets.remove(&mailbox);
        state.tombstones.insert(mailbox);
        Box::pin(async { Ok(()) })
    }

    fn push_target(
        &self,
        mailbox: MailboxId,
    ) -> RegistryFuture<'_, Result<Option<PushTarget>, StoreError>> {
        let result = self.lock().targets.get(&mailbox).cloned();
        Box::pin(async move { Ok(result) })
    }

    fn set_push_target(
        &self,
        mailbox: MailboxId,
        target: Option<PushTarget>,
    ) -> RegistryFuture<'_, Result<bool, StoreError>> {
        let mut state = self.lock();
        let result = if state.tombstones.contains(&mailbox) {
            false
        } else {
            match target {
                Some(target) => state.targets.insert(mailbox, target),
                None => state.targets.remove(&mailbox),
            };
            true
        };
        Box::pin(async move { Ok(result) })
    }
}

/// The mailbox store in a SQLite file (the program's default; `--state FILE`): tombstones and
/// push targets survive restarts. Calls are short single-row statements made on the calling task.
pub struct SqliteMailboxStore {
    db: Mutex<rusqlite::Connection>,
}

impl std::fmt::Debug for SqliteMailboxStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMailboxStore").finish_non_exhaustive()
    }
}

fn db_error(error: rusqlite::Error) -> StoreError {
    StoreError(error.to_string())
}

impl SqliteMailboxStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        let db = rusqlite::Connection::open(path).map_err(db_error)?;
        // Another process on the same file (a restart overlapping its predecessor) waits a
        // little instead of failing at once.
        db.busy_timeout(std::time::Duration::from_secs(1))
            .map_err(db_error)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS tombstones (mailbox BLOB PRIMARY KEY NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS push_targets (
                 mailbox BLOB PRIMARY KEY NOT NULL,
                 provider TEXT NOT NULL,
                 target TEXT NOT NULL,
                 environment TEXT
             ) WITHOUT ROWID;",
        )
        .map_err(db_error)?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        f(&db).map_err(db_error)
    }

    fn tombstoned_now(&self, mailbox: MailboxId) -> Result<bool, StoreError> {
        self.with(|db| {
            db.query_row(
                "SELECT EXISTS (SELECT 1 FROM tombstones WHERE mailbox = ?1)",
                [&mailbox.0[..]],
                |row| row.get(0),
            )
        })
    }

    fn target_now(&self, mailbox: MailboxId) -> Result<Option<PushTarget>, StoreError> {
        use pocketkey_core::pairing::relay::{ApnsEnvironment, PushProvider};
        let row: Option<(String, String, Option<String>)> = self.with(|db| {
            let mut statement = db.prepare_cached(
                "SELECT provider, target, environment FROM push_targets WHERE mailbox = ?1",
            )?;
            let mut rows = statement.query([&mailbox.0[..]])?;
            match rows.next()? {
                Some(row) => Ok(Some((row.get(0)?, row.get(1)?, row.get(2)?))),
                None => Ok(None),
            }
        })?;
        let Some((provider, target, environment)) = row else {
            return Ok(None);
        };
        let provider = PushProvider::parse(&provider)
            .ok_or_else(|| StoreError(format!("unknown provider {provider:?} in the store")))?;
        Ok(Some(PushTarget {
            provider,
            target,
            environment: environment.as_deref().and_then(ApnsEnvironment::parse),
        }))
    }

    fn set_now(&self, mailbox: MailboxId, target: Option<PushTarget>) -> Result<bool, StoreError> {
        self.with(|db| {
            let tx = db.unchecked_transaction()?;
            let tombstoned: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM tombstones WHERE mailbox = ?1)",
                [&mailbox.0[..]],
                |row| row.get(0),
            )?;
            if tombstoned {
                return Ok(false);
            }
            match target {
                Some(target) => tx.execute(
                    "INSERT OR REPLACE INTO push_targets (mailbox, provider, target, environment)
                     VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![
                        &mailbox.0[..],
                        target.provider.as_str(),
                        target.target,
                        target.environment.map(|e| e.as_str()),
                    ],
                )?,
                None => tx.execute(
                    "DELETE FROM push_targets WHERE mailbox = ?1",
                    [&mailbox.0[..]],
                )?,
            };
            tx.commit()?;
            Ok(true)
        })
    }

    fn tombstone_now(&self, mailbox: MailboxId) -> Result<(), StoreError> {
        self.with(|db| {
            let tx = db.unchecked_transaction()?;
            tx.execute(
                "DELETE FROM push_targets WHERE mailbox = ?1",
                [&mailbox.0[..]],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO tombstones (mailbox) VALUES (?1)",
                [&mailbox.0[..]],
            )?;
            tx.commit()
        })
    }
}

impl MailboxStore for SqliteMailboxStore {
    fn is_tombstoned(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<bool, StoreError>> {
        let result = self.tombstoned_now(mailbox);
        Box::pin(async move { result })
    }

    fn tombstone(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<(), StoreError>> {
        let result = self.tombstone_now(mailbox);
        Box::pin(async move { result })
    }

    fn push_target(
        &self,
        mailbox: MailboxId,
    ) -> RegistryFuture<'_, Result<Option<PushTarget>, StoreError>> {
        let result = self.target_now(mailbox);
        Box::pin(async move { result })
    }

    fn set_push_target(
        &self,
        mailbox: MailboxId,
        target: Option<PushTarget>,
    ) -> RegistryFuture<'_, Result<bool, StoreError>> {
        let result = self.set_now(mailbox, target);
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pocketkey_core::pairing::relay::PushProvider;

    fn block<T>(future: RegistryFuture<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn check(store: &dyn MailboxStore) {
        let m = MailboxId([7; 16]);
        let target = PushTarget {
            provider: PushProvider::Webhook,
            target: "http://127.0.0.1:1/".into(),
            environment: None,
        };
        assert!(block(store.set_push_target(m, Some(target.clone()))).unwrap());
        assert_eq!(block(store.push_target(m)).unwrap(), Some(target.clone()));
        assert!(!block(store.is_tombstoned(m)).unwrap());
        block(store.tombstone(m)).unwrap();
        assert!(block(store.is_tombstoned(m)).unwrap());
        assert_eq!(block(store.push_target(m)).unwrap(), None);
        assert!(!block(store.set_push_target(m, Some(target))).unwrap());
    }

    #[test]
    fn tombstone_drops_the_push_target_and_refuses_new_ones() {
        check(&MemoryMailboxStore::new());
        let dir = std::env::temp_dir().join(format!("pk-relay-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let _ = std::fs::remove_file(&path);
        check(&SqliteMailboxStore::open(&path).unwrap());
    }

    #[test]
    fn the_sqlite_store_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("pk-relay-reopen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let _ = std::fs::remove_file(&path);
        let apns = PushTarget {
            provider: PushProvider::Apns,
            target: "abcd".into(),
            environment: Some(pocketkey_core::pairing::relay::ApnsEnvironment::Sandbox),
        };
        {
            let store = SqliteMailboxStore::open(&path).unwrap();
            assert!(block(store.set_push_target(MailboxId([1; 16]), Some(apns.clone()))).unwrap());
            block(store.tombstone(MailboxId([2; 16]))).unwrap();
        }
        let store = SqliteMailboxStore::open(&path).unwrap();
        assert_eq!(
            block(store.push_target(MailboxId([1; 16]))).unwrap(),
            Some(apns)
        );
        assert!(block(store.is_tombstoned(MailboxId([2; 16]))).unwrap());
        assert!(!block(store.is_tombstoned(MailboxId([1; 16]))).unwrap());
        assert!(block(store.set_push_target(MailboxId([1; 16]), None)).unwrap());
        assert_eq!(block(store.push_target(MailboxId([1; 16]))).unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
