//! The pairing mailboxes' routing state behind the [`MailboxStore`] trait: push targets and
//! tombstones of revoked mailboxes (docs/pairing-protocol.md §3.1, §3.4). Live connections
//! stay in the node's memory; everything here is shared by several nodes through
//! `crate::RedisState` (`--redis`), and otherwise kept by [`SqliteMailboxStore`] (what
//! `pocketkey-relay` uses unless `--memory`) or [`MemoryMailboxStore`] (the library's default,
//! for tests and in-process relays).
//!
//! Both stores are bounded ([`StoreLimits`]): at most so many push targets (a registration for
//! a new mailbox beyond it is refused) and tombstones (the oldest goes first), and a
//! tombstone expires. Why expiry is sound: a tombstone only tells a side that attaches later
//! that its peer revoked the pairing; the peer has forgotten its keys, so no session can
//! complete on that mailbox anyway, and a side that stays away longer than the lifetime just
//! learns of the revocation from its user instead of the relay.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pocketkey_core::pairing::mailbox::MailboxId;
use pocketkey_core::pairing::relay::PushTarget;

use crate::registry::RegistryFuture;

/// The backing store failed (HTTP 503 at attach; the frame's request is refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mailbox store unavailable: {0}")]
pub struct StoreError(pub String);

/// How large the store may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most push targets kept. Default 1 000 000.
    pub max_push_targets: usize,
    /// Most tombstones kept; a new one beyond it evicts the oldest. Default 1 000 000.
    pub max_tombstones: usize,
    /// How long a tombstone is kept. Default 90 days.
    pub tombstone_ttl: Duration,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_push_targets: 1_000_000,
            max_tombstones: 1_000_000,
            tombstone_ttl: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// What [`MailboxStore::set_push_target`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// Stored (or forgotten).
    Done,
    /// Refused: the mailbox is tombstoned.
    Revoked,
    /// Refused: the store holds `max_push_targets` and this mailbox had none.
    Full,
}

/// Routing data of pairing mailboxes: nothing but mailbox ids, push targets and tombstones.
pub trait MailboxStore: Send + Sync + 'static {
    /// Whether the mailbox was deleted (attach answers 410 until the tombstone expires).
    fn is_tombstoned(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<bool, StoreError>>;

    /// Deletes a mailbox: keeps its tombstone, forgets its push target. Idempotent.
    fn tombstone(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<(), StoreError>>;

    /// The push target the phone registered for this mailbox.
    fn push_target(
        &self,
        mailbox: MailboxId,
    ) -> RegistryFuture<'_, Result<Option<PushTarget>, StoreError>>;

    /// Replaces (`Some`) or forgets (`None`) the mailbox's push target.
    fn set_push_target(
        &self,
        mailbox: MailboxId,
        target: Option<PushTarget>,
    ) -> RegistryFuture<'_, Result<SetOutcome, StoreError>>;
}

use pocketkey_core::clock::unix_now;

#[derive(Debug, Default)]
struct State {
    targets: HashMap<MailboxId, PushTarget>,
    /// Mailbox → when it was tombstoned (Unix seconds).
    tombstones: HashMap<MailboxId, u64>,
}

/// The mailbox store of a single node, in memory (lost at restart: tombstones too).
#[derive(Debug, Default)]
pub struct MemoryMailboxStore {
    state: Mutex<State>,
    limits: StoreLimits,
}

impl MemoryMailboxStore {
    /// An empty store with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with these limits.
    pub fn with_limits(limits: StoreLimits) -> Self {
        Self {
            state: Mutex::default(),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn live(&self, state: &State, mailbox: &MailboxId, now: u64) -> bool {
        state
            .tombstones
            .get(mailbox)
            .is_some_and(|at| now.saturating_sub(*at) < self.limits.tombstone_ttl.as_secs())
    }
}

impl MailboxStore for MemoryMailboxStore {
    fn is_tombstoned(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<bool, StoreError>> {
        let result = self.live(&self.lock(), &mailbox, unix_now());
        Box::pin(async move { Ok(result) })
    }

    fn tombstone(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<(), StoreError>> {
        let now = unix_now();
        let mut state = self.lock();
        state.targets.remove(&mailbox);
        let ttl = self.limits.tombstone_ttl.as_secs();
        state
            .tombstones
            .retain(|_, at| now.saturating_sub(*at) < ttl);
        while state.tombstones.len() >= self.limits.max_tombstones.max(1)
            && !state.tombstones.contains_key(&mailbox)
        {
            let oldest = state
                .tombstones
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(m, _)| *m);
            match oldest {
                Some(m) => state.tombstones.remove(&m),
                None => break,
            };
        }
        state.tombstones.entry(mailbox).or_insert(now);
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
    ) -> RegistryFuture<'_, Result<SetOutcome, StoreError>> {
        let mut state = self.lock();
        let result = if self.live(&state, &mailbox, unix_now()) {
            SetOutcome::Revoked
        } else {
            match target {
                Some(target) => {
                    if !state.targets.contains_key(&mailbox)
                        && state.targets.len() >= self.limits.max_push_targets
                    {
                        SetOutcome::Full
                    } else {
                        state.targets.insert(mailbox, target);
                        SetOutcome::Done
                    }
                }
                None => {
                    state.targets.remove(&mailbox);
                    SetOutcome::Done
                }
            }
        };
        Box::pin(async move { Ok(result) })
    }
}

/// A push target as stored: provider, target, environment, wake id (`None` in rows from
/// before wake ids).
type TargetRow = (String, String, Option<String>, Option<Vec<u8>>);

/// A unit of work for the store's thread.
type Job = Box<dyn FnOnce(&mut Db) + Send>;

/// How many calls may wait for the store's thread; more wait (asynchronously) to queue.
const QUEUE: usize = 256;

/// The mailbox store in a SQLite file (the program's default; `--state FILE`): tombstones and
/// push targets survive restarts. SQLite calls block (disk, another process's lock up to the
/// busy timeout), so they run on one thread of the store's own, fed through a bounded queue:
/// the async workers only wait for answers, and a flood of registrations queues up behind
/// that thread instead of stalling every task on the node.
pub struct SqliteMailboxStore {
    jobs: tokio::sync::mpsc::Sender<Job>,
}

impl std::fmt::Debug for SqliteMailboxStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMailboxStore").finish_non_exhaustive()
    }
}

fn db_error(error: rusqlite::Error) -> StoreError {
    StoreError(error.to_string())
}

/// The connection, owned by the store's thread, with row counts kept alongside (a
/// `COUNT(*)` per write would scan the table).
struct Db {
    conn: rusqlite::Connection,
    limits: StoreLimits,
    targets: usize,
    tombstones: usize,
}

impl SqliteMailboxStore {
    /// Opens (creating if needed) the store at `path` with the default limits.
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        Self::open_with_limits(path, StoreLimits::default())
    }

    /// Opens (creating if needed) the store at `path`.
    pub fn open_with_limits(
        path: &std::path::Path,
        limits: StoreLimits,
    ) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path).map_err(db_error)?;
        // Another process on the same file (a restart overlapping its predecessor) waits a
        // little instead of failing at once.
        conn.busy_timeout(Duration::from_secs(1))
            .map_err(db_error)?;
        conn.execute_batch(
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
        // Tombstones got a creation time (for their expiry); older rows count from now.
        let has_created: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM pragma_table_info('tombstones') WHERE name = 'created_at')",
                [],
                |row| row.get(0),
            )
            .map_err(db_error)?;
        if !has_created {
            conn.execute_batch(&format!(
                "ALTER TABLE tombstones ADD COLUMN created_at INTEGER NOT NULL DEFAULT {};
                 CREATE INDEX IF NOT EXISTS tombstones_by_age ON tombstones (created_at);",
                unix_now()
            ))
            .map_err(db_error)?;
        }
        // Push targets got the phone's wake id (docs/pairing-protocol.md §3.3). Older rows
        // have none and are not used: a push would have to name the mailbox; the phone
        // registers again (at its next attach or token change).
        let has_wake: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM pragma_table_info('push_targets') WHERE name = 'wake')",
                [],
                |row| row.get(0),
            )
            .map_err(db_error)?;
        if !has_wake {
            conn.execute_batch("ALTER TABLE push_targets ADD COLUMN wake BLOB")
                .map_err(db_error)?;
        }
        let count = |table: &str| -> Result<usize, StoreError> {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as usize)
            .map_err(db_error)
        };
        let mut db = Db {
            targets: count("push_targets")?,
            tombstones: count("tombstones")?,
            conn,
            limits,
        };
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("relay-store".into())
            .spawn(move || {
                while let Some(job) = queue.blocking_recv() {
                    job(&mut db);
                }
            })
            .map_err(|e| StoreError(format!("cannot start the store thread: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `f` on the store's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    ) -> RegistryFuture<'_, Result<T, StoreError>> {
        Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let job: Job = Box::new(move |db| {
                let _ = tx.send(f(db).map_err(db_error));
            });
            self.jobs
                .send(job)
                .await
                .map_err(|_| StoreError("the store thread ended".into()))?;
            rx.await
                .map_err(|_| StoreError("the store thread ended".into()))?
        })
    }
}

impl Db {
    /// Tombstones created at or before this (Unix seconds) have expired.
    fn min_created(&self) -> i64 {
        unix_now().saturating_sub(self.limits.tombstone_ttl.as_secs()) as i64
    }

    fn tombstoned(&self, mailbox: MailboxId) -> rusqlite::Result<bool> {
        self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM tombstones WHERE mailbox = ?1 AND created_at > ?2)",
            rusqlite::params![&mailbox.0[..], self.min_created()],
            |row| row.get(0),
        )
    }

    fn target(&self, mailbox: MailboxId) -> rusqlite::Result<Option<TargetRow>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT provider, target, environment, wake FROM push_targets WHERE mailbox = ?1",
        )?;
        let mut rows = statement.query([&mailbox.0[..]])?;
        match rows.next()? {
            Some(row) => Ok(Some((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))),
            None => Ok(None),
        }
    }

    fn set(
        &mut self,
        mailbox: MailboxId,
        target: Option<PushTarget>,
    ) -> rusqlite::Result<SetOutcome> {
        if self.tombstoned(mailbox)? {
            return Ok(SetOutcome::Revoked);
        }
        let existed = self.target(mailbox)?.is_some();
        match target {
            Some(target) => {
                if !existed && self.targets >= self.limits.max_push_targets {
                    return Ok(SetOutcome::Full);
                }
                self.conn.execute(
                    "INSERT OR REPLACE INTO push_targets (mailbox, provider, target, environment, wake)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![
                        &mailbox.0[..],
                        target.provider.as_str(),
                        target.target,
                        target.environment.map(|e| e.as_str()),
                        &target.wake.0[..],
                    ],
                )?;
                if !existed {
                    self.targets += 1;
                }
            }
            None => {
                let removed = self.conn.execute(
                    "DELETE FROM push_targets WHERE mailbox = ?1",
                    [&mailbox.0[..]],
                )?;
                self.targets = self.targets.saturating_sub(removed);
            }
        }
        Ok(SetOutcome::Done)
    }

    fn tombstone(&mut self, mailbox: MailboxId) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let removed = tx.execute(
            "DELETE FROM push_targets WHERE mailbox = ?1",
            [&mailbox.0[..]],
        )?;
        let expired = tx.execute(
            "DELETE FROM tombstones WHERE created_at <= ?1",
            [self.min_created()],
        )?;
        let mut tombstones = self.tombstones.saturating_sub(expired);
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM tombstones WHERE mailbox = ?1)",
            [&mailbox.0[..]],
            |row| row.get(0),
        )?;
        if !exists {
            let excess = (tombstones + 1).saturating_sub(self.limits.max_tombstones.max(1));
            if excess > 0 {
                tombstones -= tx.execute(
                    "DELETE FROM tombstones WHERE mailbox IN
                     (SELECT mailbox FROM tombstones ORDER BY created_at LIMIT ?1)",
                    [excess as i64],
                )?;
            }
            tx.execute(
                "INSERT INTO tombstones (mailbox, created_at) VALUES (?1, ?2)",
                rusqlite::params![&mailbox.0[..], unix_now() as i64],
            )?;
            tombstones += 1;
        }
        tx.commit()?;
        self.targets = self.targets.saturating_sub(removed);
        self.tombstones = tombstones;
        Ok(())
    }
}

impl MailboxStore for SqliteMailboxStore {
    fn is_tombstoned(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<bool, StoreError>> {
        self.call(move |db| db.tombstoned(mailbox))
    }

    fn tombstone(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<(), StoreError>> {
        self.call(move |db| db.tombstone(mailbox))
    }

    fn push_target(
        &self,
        mailbox: MailboxId,
    ) -> RegistryFuture<'_, Result<Option<PushTarget>, StoreError>> {
        use pocketkey_core::pairing::relay::{ApnsEnvironment, PushProvider, WakeId};
        let row = self.call(move |db| db.target(mailbox));
        Box::pin(async move {
            let Some((provider, target, environment, wake)) = row.await? else {
                return Ok(None);
            };
            // A row from before wake ids: as if there were no target.
            let Some(wake) = wake.and_then(|w| <[u8; 16]>::try_from(w).ok()) else {
                return Ok(None);
            };
            let provider = PushProvider::parse(&provider)
                .ok_or_else(|| StoreError(format!("unknown provider {provider:?} in the store")))?;
            Ok(Some(PushTarget {
                provider,
                target,
                environment: environment.as_deref().and_then(ApnsEnvironment::parse),
                wake: WakeId(wake),
            }))
        })
    }

    fn set_push_target(
        &self,
        mailbox: MailboxId,
        target: Option<PushTarget>,
    ) -> RegistryFuture<'_, Result<SetOutcome, StoreError>> {
        self.call(move |db| db.set(mailbox, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pocketkey_core::pairing::relay::{PushProvider, WakeId};

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
            wake: WakeId([1; 16]),
        };
        assert_eq!(
            block(store.set_push_target(m, Some(target.clone()))).unwrap(),
            SetOutcome::Done
        );
        assert_eq!(block(store.push_target(m)).unwrap(), Some(target.clone()));
        assert!(!block(store.is_tombstoned(m)).unwrap());
        block(store.tombstone(m)).unwrap();
        assert!(block(store.is_tombstoned(m)).unwrap());
        assert_eq!(block(store.push_target(m)).unwrap(), None);
        assert_eq!(
            block(store.set_push_target(m, Some(target))).unwrap(),
            SetOutcome::Revoked
        );
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

    /// The caps: a full store refuses a target for a new mailbox (not a replacement), the
    /// oldest tombstone gives way, an expired tombstone no longer counts.
    fn check_bounds(store: &dyn MailboxStore) {
        let target = |n: u8| PushTarget {
            provider: PushProvider::Webhook,
            target: format!("http://127.0.0.1:1/{n}"),
            environment: None,
            wake: WakeId([n; 16]),
        };
        for n in 0..2 {
            assert_eq!(
                block(store.set_push_target(MailboxId([n; 16]), Some(target(n)))).unwrap(),
                SetOutcome::Done
            );
        }
        assert_eq!(
            block(store.set_push_target(MailboxId([2; 16]), Some(target(2)))).unwrap(),
            SetOutcome::Full
        );
        assert_eq!(
            block(store.set_push_target(MailboxId([1; 16]), Some(target(9)))).unwrap(),
            SetOutcome::Done
        );
        for n in 10..13 {
            block(store.tombstone(MailboxId([n; 16]))).unwrap();
        }
        // Two kept: 10 went (the oldest, or all of the same second but one of them).
        let kept = (10..13)
            .filter(|n| block(store.is_tombstoned(MailboxId([*n; 16]))).unwrap())
            .count();
        assert_eq!(kept, 2);
        assert!(block(store.is_tombstoned(MailboxId([12; 16]))).unwrap());
        // Tombstoning 1 freed its target's place.
        block(store.tombstone(MailboxId([1; 16]))).unwrap();
        assert_eq!(
            block(store.set_push_target(MailboxId([2; 16]), Some(target(2)))).unwrap(),
            SetOutcome::Done
        );
    }

    fn small() -> StoreLimits {
        StoreLimits {
            max_push_targets: 2,
            max_tombstones: 2,
            ..StoreLimits::default()
        }
    }

    #[test]
    fn the_stores_are_bounded() {
        check_bounds(&MemoryMailboxStore::with_limits(small()));
        let dir = std::env::temp_dir().join(format!("pk-relay-bounds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let _ = std::fs::remove_file(&path);
        check_bounds(&SqliteMailboxStore::open_with_limits(&path, small()).unwrap());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn tombstones_expire() {
        let expired = StoreLimits {
            tombstone_ttl: Duration::ZERO,
            ..StoreLimits::default()
        };
        let dir = std::env::temp_dir().join(format!("pk-relay-ttl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let _ = std::fs::remove_file(&path);
        let stores: [Box<dyn MailboxStore>; 2] = [
            Box::new(MemoryMailboxStore::with_limits(expired)),
            Box::new(SqliteMailboxStore::open_with_limits(&path, expired).unwrap()),
        ];
        for store in stores {
            block(store.tombstone(MailboxId([5; 16]))).unwrap();
            assert!(!block(store.is_tombstoned(MailboxId([5; 16]))).unwrap());
        }
        let _ = std::fs::remove_dir_all(dir);
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
            wake: WakeId([2; 16]),
        };
        {
            let store = SqliteMailboxStore::open(&path).unwrap();
            assert_eq!(
                block(store.set_push_target(MailboxId([1; 16]), Some(apns.clone()))).unwrap(),
                SetOutcome::Done
            );
            block(store.tombstone(MailboxId([2; 16]))).unwrap();
        }
        let store = SqliteMailboxStore::open(&path).unwrap();
        assert_eq!(
            block(store.push_target(MailboxId([1; 16]))).unwrap(),
            Some(apns)
        );
        assert!(block(store.is_tombstoned(MailboxId([2; 16]))).unwrap());
        assert!(!block(store.is_tombstoned(MailboxId([1; 16]))).unwrap());
        assert_eq!(
            block(store.set_push_target(MailboxId([1; 16]), None)).unwrap(),
            SetOutcome::Done
        );
        assert_eq!(block(store.push_target(MailboxId([1; 16]))).unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A state file from before wake ids keeps its tombstones; its push targets (which have
    /// no wake id) are not used until the phone registers again.
    #[test]
    fn an_older_state_file_gets_wake_ids() {
        let dir = std::env::temp_dir().join(format!("pk-relay-wake-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let _ = std::fs::remove_file(&path);
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE tombstones (mailbox BLOB PRIMARY KEY NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
                 CREATE TABLE push_targets (mailbox BLOB PRIMARY KEY NOT NULL, provider TEXT NOT NULL,
                     target TEXT NOT NULL, environment TEXT) WITHOUT ROWID;",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO push_targets VALUES (?1, 'webhook', 'http://127.0.0.1:1/', NULL)",
                [&[1u8; 16][..]],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO tombstones VALUES (?1, ?2)",
                rusqlite::params![&[2u8; 16][..], unix_now() as i64],
            )
            .unwrap();
        }
        let store = SqliteMailboxStore::open(&path).unwrap();
        assert_eq!(block(store.push_target(MailboxId([1; 16]))).unwrap(), None);
        assert!(block(store.is_tombstoned(MailboxId([2; 16]))).unwrap());
        let target = PushTarget {
            provider: PushProvider::Webhook,
            target: "http://127.0.0.1:1/".into(),
            environment: None,
            wake: WakeId([3; 16]),
        };
        assert_eq!(
            block(store.set_push_target(MailboxId([1; 16]), Some(target.clone()))).unwrap(),
            SetOutcome::Done
        );
        assert_eq!(
            block(store.push_target(MailboxId([1; 16]))).unwrap(),
            Some(target)
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
