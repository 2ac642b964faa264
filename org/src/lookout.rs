//! The loop of the server's background senders (wake-ups, posts to Graph): look for work in
//! the database when this node says it committed some, and at the latest every few seconds
//! for work another node committed. Nothing is kept in memory between looks, so any node may
//! do any of it (docs/org.md, "Databases: SQLite or PostgreSQL").

use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;

/// Runs `look` now, then whenever `told` is notified, and at the latest every `every`. A look
/// that fails is logged with `failure` and tried again at the next turn. Runs until the
/// process ends.
pub async fn run<F, Fut>(told: &Notify, every: Duration, failure: &str, mut look: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), sqlx::Error>>,
{
    loop {
        if let Err(error) = look().await {
            tracing::warn!(%error, "{failure}");
        }
        tokio::select! {
            () = told.notified() => {}
            () = tokio::time::sleep(every) => {}
        }
    }
}
