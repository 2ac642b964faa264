//! Routing state: which tunnel ids are open, under which routing id, and whether a browser has
//! joined them. This is all the relay stores.
//!
//! The state sits behind [`TunnelRegistry`] so that several relay nodes can share it:
//! [`MemoryRegistry`] serves one node, `crate::RedisState` several (docs/relay.md §7), where
//! the record also names the node that holds the tunnel's phone. The sockets themselves never
//! leave the node that accepted them: a browser joining on another node is joined to the phone
//! through Redis (`crate::remote_tunnel`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use thiserror::Error;

use crate::ids::{RoutingId, TunnelId};

/// A boxed, `Send` future: keeps [`TunnelRegistry`] object-safe (`Arc<dyn TunnelRegistry>`).
pub type RegistryFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a tunnel could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegisterError {
    /// A tunnel with this id is already open (waiting or joined): HTTP 409.
    #[error("a tunnel with this id is already open")]
    Exists,
    /// The backing store failed: HTTP 503.
    #[error("tunnel registry unavailable: {0}")]
    Unavailable(String),
}

/// Why a tunnel could not be claimed by a browser.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClaimError {
    /// No open tunnel has this (routing id, tunnel id) pair: HTTP 404.
    #[error("no such tunnel")]
    NotFound,
    /// The tunnel exists but a browser has already joined it: HTTP 410.
    #[error("the tunnel has already been joined")]
    AlreadyJoined,
    /// The backing store failed: HTTP 503.
    #[error("tunnel registry unavailable: {0}")]
    Unavailable(String),
}

/// Why a tunnel could not be removed: only a backing store can fail (the tunnel is closed
/// anyway; a shared store expires the record after its `ttl`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("tunnel registry unavailable: {0}")]
pub struct RemoveError(pub String);

/// The routing table of open tunnels.
///
/// Each open tunnel is owned by the task holding its phone socket: that task calls
/// [`register`](Self::register) before the phone's upgrade is answered and
/// [`remove`](Self::remove) when the tunnel ends, whatever the reason. Browsers'
/// requests call [`claim`](Self::claim).
pub trait TunnelRegistry: Send + Sync + 'static {
    /// Records a new waiting tunnel and assigns its routing id.
    ///
    /// `ttl` is the most the tunnel can live; a shared store should expire the record after it,
    /// so that a crashed node's tunnels do not stay registered.
    fn register(
        &self,
        tunnel: TunnelId,
        ttl: Duration,
    ) -> RegistryFuture<'_, Result<RoutingId, RegisterError>>;

    /// Marks a waiting tunnel as joined by a browser. Succeeds once per tunnel.
    fn claim(
        &self,
        routing: RoutingId,
        tunnel: TunnelId,
    ) -> RegistryFuture<'_, Result<(), ClaimError>>;

    /// Forgets a tunnel, if it is still registered under this routing id (a later tunnel
    /// with the same id is left alone). Idempotent.
    fn remove(
        &self,
        routing: RoutingId,
        tunnel: TunnelId,
    ) -> RegistryFuture<'_, Result<(), RemoveError>>;
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    routing: RoutingId,
    joined: bool,
}

/// The registry of a single node: a map in memory.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    tunnels: Mutex<HashMap<TunnelId, Entry>>,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many tunnels are registered (waiting or joined).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no tunnel is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TunnelId, Entry>> {
        // The map is consistent after every statement; a panic elsewhere cannot corrupt it.
        self.tunnels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn register_now(&self, tunnel: TunnelId) -> Result<RoutingId, RegisterError> {
        let mut tunnels = self.lock();
        if tunnels.contains_key(&tunnel) {
            return Err(RegisterError::Exists);
        }
        let routing = RoutingId::random();
        tunnels.insert(
            tunnel,
            Entry {
                routing,
                joined: false,
            },
        );
        Ok(routing)
    }

    fn claim_now(&self, routing: RoutingId, tunnel: TunnelId) -> Result<(), ClaimError> {
        match self.lock().get_mut(&tunnel) {
            Some(entry) if entry.routing == routing => {
                if entry.joined {
                    Err(ClaimError::AlreadyJoined)
                } else {
                    entry.joined = true;
                    Ok(())
                }
            }
            _ => Err(ClaimError::NotFound),
        }
    }

    fn remove_now(&self, routing: RoutingId, tunnel: TunnelId) {
        let mut tunnels = self.lock();
        if tunnels.get(&tunnel).is_some_and(|e| e.routing == routing) {
            tunnels.remove(&tunnel);
        }
    }
}

impl TunnelRegistry for MemoryRegistry {
    fn register(
        &self,
        tunnel: TunnelId,
        _ttl: Duration,
    ) -> RegistryFuture<'_, Result<RoutingId, RegisterError>> {
        // The owning task removes the entry when the tunnel ends; nothing outlives a process.
        let result = self.register_now(tunnel);
        Box::pin(std::future::ready(result))
    }

    fn claim(
        &self,
        routing: RoutingId,
        tunnel: TunnelId,
    ) -> RegistryFuture<'_, Result<(), ClaimError>> {
        let result = self.claim_now(routing, tunnel);
        Box::pin(std::future::ready(result))
    }

    fn remove(
        &self,
        routing: RoutingId,
        tunnel: TunnelId,
    ) -> RegistryFuture<'_, Result<(), RemoveError>> {
        self.remove_now(routing, tunnel);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn block<T>(future: RegistryFuture<'_, T>) -> T {
        // The in-memory futures are ready at once.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut future = future;
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("in-memory registry future pending"),
        }
    }

    #[test]
    fn register_claim_remove() {
        let registry = MemoryRegistry::new();
        let tunnel = TunnelId([7; 16]);
        let routing = block(registry.register(tunnel, TTL)).unwrap();
        assert_eq!(
            block(registry.register(tunnel, TTL)),
            Err(RegisterError::Exists)
        );
        assert_eq!(registry.len(), 1);

        let wrong = RoutingId([routing.0[0] ^ 1, routing.0[1], routing.0[2]]);
        assert_eq!(
            block(registry.claim(wrong, tunnel)),
            Err(ClaimError::NotFound)
        );
        assert_eq!(
            block(registry.claim(routing, TunnelId([8; 16]))),
            Err(ClaimError::NotFound)
        );
        assert_eq!(block(registry.claim(routing, tunnel)), Ok(()));
        assert_eq!(
            block(registry.claim(routing, tunnel)),
            Err(ClaimError::AlreadyJoined)
        );

        // A remove under another routing id leaves the entry alone.
        block(registry.remove(wrong, tunnel)).unwrap();
        assert_eq!(registry.len(), 1);
        block(registry.remove(routing, tunnel)).unwrap();
        assert!(registry.is_empty());
        block(registry.remove(routing, tunnel)).unwrap();
        assert_eq!(
            block(registry.claim(routing, tunnel)),
            Err(ClaimError::NotFound)
        );

        // The id is free again.
        assert!(block(registry.register(tunnel, TTL)).is_ok());
    }
}
