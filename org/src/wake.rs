//! Wake-ups to the phones (docs/org.md, "Wake-ups"): a revocation, suspension or resumption,
//! and a new registration job, reach the phone by a data-less push, after which the phone
//! fetches its status and jobs over HTTPS (`/api/v1/device/sync`). The push carries only the
//! version and the wake id the phone registered (`push_targets.rs`), as the relay's do.
//!
//! A change that calls for a wake writes a row in `push_wakes` in its own transaction
//! ([`owe`]), so only committed changes wake anyone, and every path that changes a key (REST,
//! console, SCIM, all through `lifecycle::change_key`) is covered. The sender ([`run`]) takes
//! the rows when told (after a commit on this node) or at its next look (another node's
//! commits, a key held by the interval), at most one wake per key per [`Waker::new`]'s
//! interval. The interval lives in the key's row (`keys.wake_due_at`), taken by one
//! conditional UPDATE, so on several nodes sharing a database exactly one sends. Each send is
//! spawned with a deadline: nothing waits for a provider; its outcome is kept in the key's
//! row for the inventory (never the token or URL) and is never an error for the admin.

use std::sync::Arc;
use std::time::Duration;

use pocketkey_core::pairing::relay::{
    ApnsEnvironment, PushProvider as ProviderKind, PushTarget, WakeId,
};
use pocketkey_push::{Providers, PushError};
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::Notify;

use crate::{clock, lookout, secret};

/// How often the sender looks for wakes it was not told of.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// The longest one push may take.
const SEND_DEADLINE: Duration = Duration::from_secs(15);
/// Keys handled per look.
const BATCH: i64 = 100;

/// Why a wake is owed (kept in `push_wakes.cause`, logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    KeyStatus,
    Job,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::KeyStatus => "key_status",
            Cause::Job => "job",
        }
    }
}

/// The server's push providers and the per-key interval. Nothing here is state another node
/// needs: the interval's clock and the outcomes are in the database.
pub struct Waker {
    providers: Providers,
    interval: Duration,
    notify: Notify,
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waker")
            .field("providers", &self.providers)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Waker {
    /// `providers`; at most one wake per key per `interval`.
    pub fn new(providers: Providers, interval: Duration) -> Self {
        Self {
            providers,
            interval,
            notify: Notify::new(),
        }
    }

    /// Checks a target the phone registers.
    pub fn check_target(&self, target: &PushTarget) -> Result<(), PushError> {
        self.providers.check_target(target)
    }

    /// Tells the sender that wakes were committed (call after the commit).
    pub fn committed(&self) {
        self.notify.notify_one();
    }
}

/// What became of a key's last wake, as the inventory shows it (`keys.last_wake_outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The provider took it.
    Sent,
    /// The provider refused it or could not be reached: see [`refusal_class`].
    Failed,
    /// A wake was owed, but the phone registered no push target.
    NoTarget,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Failed => "failed",
            Outcome::NoTarget => "no_target",
        }
    }
}

/// The class of a provider's refusal, kept for the admin: a word, never the provider's text
/// (which may quote the target).
pub fn refusal_class(error: &PushError) -> &'static str {
    match error {
        PushError::BadTarget(_) => "bad_target",
        PushError::Failed(_) => "failed",
        PushError::Unregistered(_) => "unregistered",
        PushError::Throttled { .. } => "throttled",
    }
}

/// Milliseconds since the Unix epoch, the unit of `keys.wake_due_at`.
fn now_ms() -> i64 {
    let since = clock::now() - time::OffsetDateTime::UNIX_EPOCH;
    i64::try_from(since.whole_milliseconds()).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Records, in the caller's transaction, that key `key_id`'s phone is owed a wake.
pub async fn owe(conn: &mut AnyConnection, key_id: &str, cause: Cause) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO push_wakes (id, key_id, cause, created_at) VALUES ($1, $2, $3, $4)")
        .bind(secret::new_id())
        .bind(key_id)
        .bind(cause.as_str())
        .bind(clock::now_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The sender: runs until the process ends.
pub async fn run(pool: AnyPool, waker: Arc<Waker>) {
    let failure = "wake-ups: cannot read the owed wakes";
    lookout::run(&waker.notify, LOOK_EVERY, failure, || look(&pool, &waker)).await;
}

/// Sends the wakes owed now: a key whose interval has passed is taken by one node (the
/// conditional UPDATE of its `wake_due_at`), which takes (deletes) all its rows at once.
async fn look(pool: &AnyPool, waker: &Arc<Waker>) -> Result<(), sqlx::Error> {
    // Keys due longest first, held ones last: keys held for long (a provider's 429) never
    // keep due ones out of the batch.
    let keys: Vec<String> = sqlx::query(
        "SELECT w.key_id FROM push_wakes w JOIN keys k ON k.id = w.key_id \
         GROUP BY w.key_id, k.wake_due_at ORDER BY COALESCE(k.wake_due_at, 0) LIMIT $1",
    )
    .bind(BATCH)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<Result<_, _>>()?;
    for key_id in keys {
        match take(pool, &key_id, waker.interval).await? {
            Take::Taken => {}
            Take::Held => {
                // The rows stay for a later look, so the change still wakes the phone.
                tracing::debug!(%key_id, "wake-up held by the key's interval");
                continue;
            }
            Take::Gone => continue,
        }
        let Some(target) = target_of(pool, &key_id).await? else {
            tracing::debug!(%key_id, "wake-up owed, but the phone registered no push target");
            record(pool, &key_id, Outcome::NoTarget, None).await;
            continue;
        };
        let (pool, waker) = (pool.clone(), waker.clone());
        tokio::spawn(async move { send(&pool, &waker, &key_id, target).await });
    }
    Ok(())
}

/// What [`take`] found.
enum Take {
    /// This node sends the key's wake.
    Taken,
    /// The key's interval has not passed (since a wake by this node or another).
    Held,
    /// Another node took the rows first.
    Gone,
}

/// Takes the key's wake: its interval's slot and its owed rows, in one transaction. On
/// PostgreSQL a node racing for the same slot waits for the row lock, then sees the new
/// `wake_due_at` and takes nothing.
async fn take(pool: &AnyPool, key_id: &str, interval: Duration) -> Result<Take, sqlx::Error> {
    let now = now_ms();
    let mut tx = pool.begin().await?;
    let slot = sqlx::query(
        "UPDATE keys SET wake_due_at = $2 WHERE id = $1 \
         AND (wake_due_at IS NULL OR wake_due_at <= $3)",
    )
    .bind(key_id)
    .bind(now.saturating_add(millis(interval)))
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if slot == 0 {
        return Ok(Take::Held);
    }
    let taken = sqlx::query("DELETE FROM push_wakes WHERE key_id = $1")
        .bind(key_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if taken == 0 {
        return Ok(Take::Gone); // the transaction rolls back: the slot stays free
    }
    tx.commit().await?;
    Ok(Take::Taken)
}

/// Keeps the outcome of the key's last wake in its row. A failure here is logged only: the
/// wake itself has happened (or not) already.
async fn record(pool: &AnyPool, key_id: &str, outcome: Outcome, refusal: Option<&str>) {
    let written = sqlx::query(
        "UPDATE keys SET last_wake_at = $2, last_wake_outcome = $3, last_wake_refusal = $4 \
         WHERE id = $1",
    )
    .bind(key_id)
    .bind(clock::now_string())
    .bind(outcome.as_str())
    .bind(refusal)
    .execute(pool)
    .await;
    if let Err(error) = written {
        tracing::warn!(%key_id, %error, "cannot record a wake-up's outcome");
    }
}

async fn send(pool: &AnyPool, waker: &Waker, key_id: &str, target: PushTarget) {
    let kind = target.provider.as_str();
    let outcome = match tokio::time::timeout(SEND_DEADLINE, waker.providers.wake(&target)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(PushError::Failed("no answer within the deadline".into())),
    };
    match outcome {
        Ok(()) => {
            tracing::info!(%key_id, provider = kind, "wake-up sent");
            record(pool, key_id, Outcome::Sent, None).await;
        }
        Err(error) => {
            // The provider's refusal, never the target (a token or a URL).
            tracing::warn!(%key_id, provider = kind, %error, "wake-up failed");
            record(pool, key_id, Outcome::Failed, Some(refusal_class(&error))).await;
            match &error {
                PushError::Unregistered(_) => {
                    let dropped =
                        sqlx::query("DELETE FROM push_targets WHERE key_id = $1 AND target = $2")
                            .bind(key_id)
                            .bind(&target.target)
                            .execute(pool)
                            .await;
                    if let Err(error) = dropped {
                        tracing::warn!(%key_id, %error, "cannot drop an unregistered push target");
                    }
                }
                // The provider's wait holds the key on every node, not only this one.
                PushError::Throttled { retry_after, .. } => {
                    let until = now_ms().saturating_add(millis(*retry_after));
                    let held = sqlx::query(
                        "UPDATE keys SET wake_due_at = $2 WHERE id = $1 \
                         AND (wake_due_at IS NULL OR wake_due_at < $2)",
                    )
                    .bind(key_id)
                    .bind(until)
                    .execute(pool)
                    .await;
                    if let Err(error) = held {
                        tracing::warn!(%key_id, %error, "cannot hold a throttled key");
                    }
                }
                _ => {}
            }
        }
    }
}

/// The key's stored push target.
pub async fn target_of(pool: &AnyPool, key_id: &str) -> Result<Option<PushTarget>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT provider, target, environment, wake_id FROM push_targets WHERE key_id = $1",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let (provider, target, environment, wake): (String, String, Option<String>, String) = (
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    );
    // The columns were checked when stored; a row that does not read is skipped, not sent.
    let (Some(provider), Some(wake)) = (ProviderKind::parse(&provider), WakeId::from_hex(&wake))
    else {
        return Ok(None);
    };
    Ok(Some(PushTarget {
        provider,
        target,
        environment: environment.as_deref().and_then(ApnsEnvironment::parse),
        wake,
    }))
}
