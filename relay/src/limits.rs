//! Limits that hold across connections: per client address (connections open at once, new
//! mailboxes per window), the pairing connections of the node, the push budgets.
//!
//! The windowed budgets and the wake-up de-duplication sit behind [`SharedLimits`], so that
//! several nodes sharing a Redis count them together ([`MemoryLimits`]: one node). Open
//! connections are counted per node: they end with the node's process.
//!
//! Every open websocket holds a [`ConnSlot`]: reserved before the edge answers 101 (so that
//! concurrent requests cannot all pass a check and overshoot the cap) and released when the
//! connection's task drops it, whatever way it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pocketkey_core::pairing::mailbox::MailboxId;
use tokio::time::Instant;

use crate::mailbox_store::StoreError;
use crate::registry::RegistryFuture;

/// The address a per-client limit counts against: an IPv4 address, or the /64 prefix of an
/// IPv6 address (one subscriber usually holds a whole /64, so counting single IPv6 addresses
/// would count nothing). IPv4-mapped IPv6 addresses count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl std::fmt::Display for ClientKey {
    /// 32 hex digits (a key name in a shared store).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            // An IPv4 address as its IPv4-mapped IPv6 address (low 64 bits non-zero), an IPv6
            // prefix with its low 64 bits cleared: the two never collide.
            IpAddr::V4(v4) => Self(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(u128::from(v4.to_ipv6_mapped())),
                None => Self(u128::from(v6) & !((1u128 << 64) - 1)),
            },
        }
    }
}

/// Why a connection was refused before the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotError {
    /// This client address has `max_connections_per_ip` open (429).
    PerClient,
    /// The node has `max_connections` pairing connections open (503).
    Total,
}

/// Open websockets per client address and pairing connections of the node.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    per_client: Mutex<HashMap<ClientKey, usize>>,
    pairing: AtomicUsize,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, usize>> {
        self.per_client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pairing connections open (or reserved) on this node.
    #[cfg(test)]
    pub(crate) fn pairing(&self) -> usize {
        self.pairing.load(Ordering::SeqCst)
    }

    /// Reserves a slot for `client` (at most `per_client` at once) and, for a pairing
    /// connection, one of the node's `max_pairing` (`None`: a caBLE tunnel socket, bounded by
    /// the tunnel semaphore instead).
    pub(crate) fn reserve(
        self: &Arc<Self>,
        client: ClientKey,
        per_client: usize,
        max_pairing: Option<usize>,
    ) -> Result<ConnSlot, SlotError> {
        let mut map = self.lock();
        let open = map.get(&client).copied().unwrap_or(0);
        if open >= per_client {
            return Err(SlotError::PerClient);
        }
        if let Some(max) = max_pairing {
            self.pairing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < max).then_some(n + 1)
                })
                .map_err(|_| SlotError::Total)?;
        }
        map.insert(client, open + 1);
        Ok(ConnSlot {
            connections: Arc::clone(self),
            client,
            pairing: max_pairing.is_some(),
        })
    }
}

/// One open (or about to open) websocket; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    connections: Arc<Connections>,
    client: ClientKey,
    pairing: bool,
}

impl ConnSlot {
    pub(crate) fn client(&self) -> ClientKey {
        self.client
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut map = self.connections.lock();
        if let Some(open) = map.get_mut(&self.client) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.client);
            }
        }
        if self.pairing {
            self.connections.pairing.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A budget counted in fixed windows (the first event of a key opens its window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    /// New mailboxes opened from one client address (`new_mailboxes_per_ip`).
    NewMailboxes(ClientKey),
    /// Push wake-ups of one mailbox (`mailbox_wakes_per_hour`).
    MailboxWakes(MailboxId),
    /// Push wake-ups of all mailboxes together (`push_budget`).
    Push,
}

/// The windowed budgets and the wake-up de-duplication, counted on one node
/// ([`MemoryLimits`]) or by every node sharing a store (`RedisState`).
pub trait SharedLimits: Send + Sync + 'static {
    /// Counts one event against `budget`, at most `limit` per `window`: false (not counted)
    /// when the window is full.
    fn take(
        &self,
        budget: Budget,
        limit: u32,
        window: Duration,
    ) -> RegistryFuture<'_, Result<bool, StoreError>>;

    /// Takes the mailbox's push slot for `interval`: false if a push for it went out (on any
    /// node sharing the store) less than `interval` ago.
    fn wake_slot(
        &self,
        mailbox: MailboxId,
        interval: Duration,
    ) -> RegistryFuture<'_, Result<bool, StoreError>>;
}

/// The budgets of a single node, in memory. Keys whose window has passed are swept when the
/// map grows large, so its size stays bounded by the keys active within one window.
#[derive(Debug, Default)]
pub struct MemoryLimits {
    counts: Mutex<HashMap<Budget, (Instant, Duration, u32)>>,
}

impl MemoryLimits {
    /// No event counted yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn take_now(&self, budget: Budget, limit: u32, window: Duration) -> bool {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= 4096 {
            counts.retain(|_, (start, window, _)| now.duration_since(*start) < *window);
        }
        let entry = counts.entry(budget).or_insert((now, window, 0));
        if now.duration_since(entry.0) >= entry.1 {
            *entry = (now, window, 0);
        }
        if entry.2 >= limit {
            return false;
        }
        entry.2 += 1;
        true
    }
}

impl SharedLimits for MemoryLimits {
    fn take(
        &self,
        budget: Budget,
        limit: u32,
        window: Duration,
    ) -> RegistryFuture<'_, Result<bool, StoreError>> {
        let taken = self.take_now(budget, limit, window);
        Box::pin(std::future::ready(Ok(taken)))
    }

    fn wake_slot(
        &self,
        _mailbox: MailboxId,
        _interval: Duration,
    ) -> RegistryFuture<'_, Result<bool, StoreError>> {
        // One node: its `PushService::try_acquire` has already de-duplicated.
        Box::pin(std::future::ready(Ok(true)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ClientKey::of(v4), ClientKey::of(mapped));
        assert_ne!(
            ClientKey::of("0.0.0.1".parse().unwrap()),
            ClientKey::of("::1".parse().unwrap())
        );
    }

    #[test]
    fn slots_are_counted_per_client_and_freed_on_drop() {
        let connections = Arc::new(Connections::default());
        let one = ClientKey::of("127.0.0.2".parse().unwrap());
        let two = ClientKey::of("127.0.0.3".parse().unwrap());
        let a = connections.reserve(one, 2, Some(3)).unwrap();
        let _b = connections.reserve(one, 2, Some(3)).unwrap();
        assert_eq!(
            connections.reserve(one, 2, Some(3)).unwrap_err(),
            SlotError::PerClient
        );
        let _c = connections.reserve(two, 2, Some(3)).unwrap();
        assert_eq!(
            connections.reserve(two, 2, Some(3)).unwrap_err(),
            SlotError::Total
        );
        // A tunnel socket does not count against the pairing total.
        let _d = connections.reserve(two, 2, None).unwrap();
        drop(a);
        assert_eq!(connections.pairing(), 2);
        connections.reserve(one, 2, Some(3)).unwrap();
    }

    #[test]
    fn budgets_are_counted_per_key_in_windows() {
        let limits = MemoryLimits::new();
        let key = Budget::NewMailboxes(ClientKey::of("127.0.0.2".parse().unwrap()));
        let hour = Duration::from_secs(3600);
        assert!(limits.take_now(key, 2, hour));
        assert!(limits.take_now(key, 2, hour));
        assert!(!limits.take_now(key, 2, hour));
        assert!(limits.take_now(Budget::Push, 1, hour));
        assert!(!limits.take_now(Budget::Push, 1, hour));
        // A passed window starts afresh.
        assert!(limits.take_now(Budget::MailboxWakes(MailboxId([1; 16])), 1, Duration::ZERO));
        assert!(limits.take_now(Budget::MailboxWakes(MailboxId([1; 16])), 1, Duration::ZERO));
    }
}
