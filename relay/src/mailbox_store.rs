//! The pairing mailboxes' routing state behind the [`MailboxStore`] trait: push targets and
//! tombstones of revoked mailboxes (docs/pairing-protocol.md §3.1, §3.4). Live connections
//! stay in the node's memory; everything here could be shared by several nodes through an
//! existing engine (Redis, SQL) instead of [`MemoryMailboxStore`].

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

    #[test]
    fn tombstone_drops_the_push_target_and_refuses_new_ones() {
        let store = MemoryMailboxStore::new();
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
}
