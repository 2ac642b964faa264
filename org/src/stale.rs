//! The stale-key policy: "suspend active keys not seen for N days" (off by default), kept in
//! `org.stale_suspend_days` and applied by [`sweep`], which `serve` runs at start and then
//! every [`SWEEP_EVERY`].
//!
//! Safe on several server nodes at once: each key is suspended by the lifecycle's one
//! conditional `UPDATE` (still `active`, still not seen since the cutoff), so whichever node
//! gets there first suspends it and audits it (actor [`ACTOR`]); the others change nothing.

use std::time::Duration;

use sqlx::{AnyPool, Row};

use crate::lifecycle::{self, Action, Cause, Change};
use crate::org::{self, OrgError};
use crate::{audit, clock};

/// How the audit log names the policy when it suspends a key.
pub const ACTOR: &str = "policy:stale";
/// How often `serve` applies the policy.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// The longest period the policy takes, in days (as `api-key create --expires-in-days`).
pub const MAX_DAYS: u16 = 3650;

/// The policy's period in days; `None` when off.
pub async fn load(pool: &AnyPool) -> Result<Option<u16>, OrgError> {
    let row = sqlx::query("SELECT stale_suspend_days FROM org WHERE id = 1")
        .fetch_optional(pool)
        .await?
        .ok_or(OrgError::Missing)?;
    let days: Option<i64> = row.try_get(0)?;
    // Only `set` writes it, within 1..=MAX_DAYS; anything else reads as off.
    Ok(days
        .and_then(|d| u16::try_from(d).ok())
        .filter(|d| (1..=MAX_DAYS).contains(d)))
}

/// Turns the policy on (`Some(days)`, 1 to [`MAX_DAYS`]) or off (`None`), audited as
/// `policy.stale_keys`.
pub async fn set(pool: &AnyPool, days: Option<u16>, actor: &str) -> Result<(), OrgError> {
    if days.is_some_and(|d| !(1..=MAX_DAYS).contains(&d)) {
        return Err(OrgError::Other(format!(
            "the stale-key period must be 1 to {MAX_DAYS} days (0 turns the policy off)"
        )));
    }
    org::load(pool).await?;
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE org SET stale_suspend_days = $1 WHERE id = 1")
        .bind(days.map(i64::from))
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        actor,
        "policy.stale_keys",
        "org",
        serde_json::json!({ "suspend_unseen_days": days }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Applies the policy once: suspends each active key whose last sign-in (else activation)
/// is more than the policy's days ago. Returns how many this call suspended.
pub async fn sweep(pool: &AnyPool) -> Result<u64, OrgError> {
    let Some(days) = load(pool).await? else {
        return Ok(0);
    };
    let cutoff = clock::format(clock::now() - time::Duration::days(i64::from(days)));
    let ids: Vec<String> = sqlx::query(
        "SELECT id FROM keys WHERE status = 'active' \
         AND COALESCE(last_seen_at, activated_at, created_at) < $1 ORDER BY created_at, id",
    )
    .bind(&cutoff)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    let reason = format!("not seen for {days} days (stale-key policy)");
    let mut suspended = 0;
    for id in ids {
        // One transaction per key: a key seen meanwhile, or suspended by another node, is
        // left as it is by the conditional update.
        let mut tx = pool.begin().await?;
        let change = Change {
            action: Action::Suspend,
            actor: ACTOR,
            reason: Some(&reason),
            cause: Cause::Policy,
        };
        if lifecycle::suspend_if_unseen(&mut tx, &id, &cutoff, &change).await? {
            suspended += 1;
        }
        tx.commit().await?;
    }
    Ok(suspended)
}

/// `serve`'s periodic task: [`sweep`] every [`SWEEP_EVERY`]; a failure is logged and the
/// next round tries again.
pub async fn run(pool: AnyPool) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    // The first tick is immediate; `serve` has swept once already before listening.
    every.tick().await;
    loop {
        every.tick().await;
        log(sweep(&pool).await);
        if let Err(error) = crate::registrations::expire_due(&pool).await {
            tracing::warn!(%error, "expired registrations not marked");
        }
    }
}

/// Logs a sweep's outcome.
pub fn log(outcome: Result<u64, OrgError>) {
    match outcome {
        Ok(0) => {}
        Ok(n) => tracing::info!(suspended = n, "stale-key policy applied"),
        Err(error) => tracing::warn!(%error, "stale-key policy not applied"),
    }
}
