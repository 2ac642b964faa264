//! Limits that hold across connections: per client address (connections open at once, new
//! mailboxes per window), the pairing connections of the node, the node's push budget.
//!
//! Every open websocket holds a [`ConnSlot`]: reserved before the edge answers 101 (so that
//! concurrent requests cannot all pass a check and overshoot the cap) and released when the
//! connection's task drops it, whatever way it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The address a per-client limit counts against: an IPv4 address, or the /64 prefix of an
/// IPv6 address (one subscriber usually holds a whole /64, so counting single IPv6 addresses
/// would count nothing). IPv4-mapped IPv6 addresses count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

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

/// At most `limit` events per key in each fixed window of `window` (the first event of a key
/// opens its window). Keys whose window has passed are swept when the map grows large, so its
/// size stays bounded by the keys active within one window.
#[derive(Debug)]
pub(crate) struct WindowCounter<K> {
    limit: u32,
    window: Duration,
    counts: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: std::hash::Hash + Eq + Copy> WindowCounter<K> {
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `key`; false (not counted) when its window is full.
    pub(crate) fn take(&self, key: K) -> bool {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= 4096 {
            let window = self.window;
            counts.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = counts.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return false;
        }
        entry.1 += 1;
        true
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
}
