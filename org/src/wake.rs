//! Wake-ups to the phones (docs/org.md, "Wake-ups"): a revocation, suspension or resumption,
//! and a new registration job, reach the phone by a data-less push, after which the phone
//! fetches its status and jobs over HTTPS (`/api/v1/device/sync`). The push carries only the
//! version and the wake id the phone registered (`push_targets.rs`), as the relay's do.
//!
//! A change that calls for a wake writes a row in `push_wakes` in its own transaction
//! ([`owe`]), so only committed changes wake anyone, and every path that changes a key (REST,
//! console, SCIM, all through `lifecycle::change_key`) is covered. The sender ([`run`]) takes
//! the rows when told (after a commit on this node) or at its next look (another node's
//! commits, a key held by the rate limit), at most one wake per key per [`Waker::interval`].
//! Each send is spawned with a deadline: nothing waits for a provider, and a failure is logged
//! (never the token) and counted, never an error for the admin.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pocketkey_core::pairing::relay::{
    ApnsEnvironment, PushProvider as ProviderKind, PushTarget, WakeId,
};
use pocketkey_push::{Interval, Providers, PushError};
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::Notify;

use crate::{clock, secret};

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

/// The server's push providers, the per-key rate limit and the sender's counters.
pub struct Waker {
    providers: Providers,
    per_key: Interval<String>,
    notify: Notify,
    sent: AtomicU64,
    failed: AtomicU64,
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waker")
            .field("providers", &self.providers)
            .field("sent", &self.sent())
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

impl Waker {
    /// `providers`; at most one wake per key per `interval`.
    pub fn new(providers: Providers, interval: Duration) -> Self {
        Self {
            providers,
            per_key: Interval::new(interval),
            notify: Notify::new(),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
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

    /// Wakes delivered to a provider.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Wakes a provider refused or that failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
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
    loop {
        if let Err(error) = look(&pool, &waker).await {
            tracing::warn!(%error, "wake-ups: cannot read the owed wakes");
        }
        tokio::select! {
            () = waker.notify.notified() => {}
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

/// Sends the wakes owed now: each key's rows are taken (deleted) at once, by one node.
async fn look(pool: &AnyPool, waker: &Arc<Waker>) -> Result<(), sqlx::Error> {
    let keys: Vec<String> = sqlx::query("SELECT DISTINCT key_id FROM push_wakes LIMIT $1")
        .bind(BATCH)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    for key_id in keys {
        // Held by the rate limit: the rows stay for a later look, so the change still wakes.
        if !waker.per_key.try_acquire(key_id.clone()) {
            continue;
        }
        let taken = sqlx::query("DELETE FROM push_wakes WHERE key_id = $1")
            .bind(&key_id)
            .execute(pool)
            .await?
            .rows_affected();
        if taken == 0 {
            continue; // another node took them
        }
        let Some(target) = target_of(pool, &key_id).await? else {
            tracing::debug!(%key_id, "wake-up owed, but the phone registered no push target");
            continue;
        };
        let (pool, waker) = (pool.clone(), waker.clone());
        tokio::spawn(async move { send(&pool, &waker, &key_id, target).await });
    }
    Ok(())
}

async fn send(pool: &AnyPool, waker: &Waker, key_id: &str, target: PushTarget) {
    let kind = target.provider.as_str();
    let outcome = match tokio::time::timeout(SEND_DEADLINE, waker.providers.wake(&target)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(PushError::Failed("no answer within the deadline".into())),
    };
    match outcome {
        Ok(()) => {
            waker.sent.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%key_id, provider = kind, "wake-up sent");
        }
        Err(error) => {
            waker.failed.fetch_add(1, Ordering::Relaxed);
            // The provider's refusal, never the target (a token or a URL).
            tracing::warn!(%key_id, provider = kind, %error, "wake-up failed");
            if matches!(error, PushError::Unregistered(_)) {
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
