//! # pocketkey-relay: a caBLE v2 tunnel server and pairing rendezvous an organisation can host
//!
//! Two services on one HTTP/1.1 listener, both websockets that the relay forwards without
//! reading: hybrid tunnels (`/cable/new/…`, `/cable/connect/…`) joining a phone and a browser,
//! and pairing mailboxes (`/pair/v1/…`) joining a paired phone and computer, with push
//! wake-ups for a phone that is not connected. It keeps routing data only.
//!
//! The specification — routes, the HTTP status of every refusal, limits and close codes,
//! deployment behind a TLS proxy — is `docs/relay.md`.
//! Modules: [`edge`] (requests and refusals), [`registry`] (tunnel routing state), `tunnel` and
//! [`pump`] (one tunnel's task and its forwarding loop), [`pairing`] (mailboxes), [`push`]
//! (providers), [`mailbox_store`] (push targets and tombstones); limits in [`Config`] and
//! [`PairingLimits`]. [`redis_state`] puts all of that state in Redis so that several nodes
//! serve as one (docs/relay.md §7).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod config;
pub mod edge;
pub mod ids;
mod limits;
pub mod mailbox_store;
pub mod pairing;
pub mod pump;
pub mod push;
pub mod redis_state;
pub mod registry;
mod remote_tunnel;
mod tunnel;

pub use config::Config;
pub use edge::{ROUTING_ID_HEADER, SUBPROTOCOL};
pub use ids::{RoutingId, TunnelId};
pub use limits::{Budget, ClientKey, MemoryLimits, SharedLimits};
pub use mailbox_store::{
    MailboxStore, MemoryMailboxStore, SetOutcome, SqliteMailboxStore, StoreError, StoreLimits,
};
pub use pairing::PairingLimits;
pub use push::{PushError, PushProvider, PushService, WebhookProvider};
pub use redis_state::RedisState;
pub use registry::{ClaimError, MemoryRegistry, RegisterError, RemoveError, TunnelRegistry};

/// State shared by the edge and the tunnel tasks of one node.
pub(crate) struct Shared {
    pub config: Config,
    pub registry: Arc<dyn TunnelRegistry>,
    pub rendezvous: tunnel::Rendezvous,
    /// One permit per open tunnel, `max_tunnels` in all.
    pub slots: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// The attached connections of each pairing mailbox, by role.
    pub live: pairing::LiveMailboxes,
    pub mailboxes: Arc<dyn MailboxStore>,
    pub push: Arc<PushService>,
    pub pairing_limits: PairingLimits,
    /// Open websockets per client address, pairing connections of the node.
    pub connections: Arc<limits::Connections>,
    /// The windowed budgets (new mailboxes per address, pushes per mailbox and in all) and
    /// the wake-up de-duplication.
    pub limits: Arc<dyn SharedLimits>,
    /// With Redis: where other nodes' connections are, and the way to them.
    pub mesh: Option<Arc<RedisState>>,
    /// The tunnels of this node whose other socket is on another node.
    pub remote_tunnels: remote_tunnel::Inboxes,
}

/// Everything a relay node serves with besides its [`Config`]; [`Default`]: in-memory
/// routing state and budgets, no push provider, default pairing bounds.
pub struct Services {
    pub registry: Arc<dyn TunnelRegistry>,
    pub mailboxes: Arc<dyn MailboxStore>,
    pub limits: Arc<dyn SharedLimits>,
    pub push: Arc<PushService>,
    pub pairing_limits: PairingLimits,
    /// Several nodes sharing one Redis (`None`: a single node).
    pub mesh: Option<Arc<RedisState>>,
}

impl Services {
    /// Every piece of state in `redis`: routing, push targets, tombstones, budgets, and the
    /// way to connections on other nodes.
    pub fn redis(redis: Arc<RedisState>) -> Self {
        Self {
            registry: redis.clone(),
            mailboxes: redis.clone(),
            limits: redis.clone(),
            mesh: Some(redis),
            ..Self::default()
        }
    }
}

impl Default for Services {
    fn default() -> Self {
        Self {
            registry: Arc::new(MemoryRegistry::new()),
            mailboxes: Arc::new(MemoryMailboxStore::new()),
            limits: Arc::new(MemoryLimits::new()),
            push: Arc::new(PushService::default()),
            pairing_limits: PairingLimits::default(),
            mesh: None,
        }
    }
}

/// A running relay. Dropping it stops accepting connections and closes open tunnels;
/// [`shutdown`](Self::shutdown) does the same and waits until they are closed.
pub struct RelayHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl RelayHandle {
    /// The address the relay listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many tunnels are open (waiting for a browser or joined).
    pub fn open_tunnels(&self) -> usize {
        self.shared.config.max_tunnels - self.shared.slots.available_permits()
    }

    /// How many pairing-mailbox connections are attached.
    pub fn attached_connections(&self) -> usize {
        self.shared.live.connections()
    }

    /// Stops accepting, closes every tunnel (1001 to both sides) and waits until all
    /// connections are done (each close takes at most about twice `close_grace`).
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

/// Serves the relay on `listener` with an in-memory registry, on the current tokio runtime.
pub fn serve(listener: TcpListener, config: Config) -> io::Result<RelayHandle> {
    serve_with_registry(listener, config, Arc::new(MemoryRegistry::new()))
}

/// Serves the relay on `listener` with the given routing state.
pub fn serve_with_registry(
    listener: TcpListener,
    config: Config,
    registry: Arc<dyn TunnelRegistry>,
) -> io::Result<RelayHandle> {
    serve_with(
        listener,
        config,
        Services {
            registry,
            ..Services::default()
        },
    )
}

/// Serves the relay on `listener` with the given routing state, push providers and bounds.
pub fn serve_with(
    listener: TcpListener,
    config: Config,
    services: Services,
) -> io::Result<RelayHandle> {
    let Services {
        registry,
        mailboxes,
        limits,
        push,
        pairing_limits,
        mesh,
    } = services;
    let local_addr = listener.local_addr()?;
    let max_tunnels = config.max_tunnels.min(Semaphore::MAX_PERMITS);
    let shared = Arc::new(Shared {
        config: Config {
            max_tunnels,
            ..config
        },
        connections: Arc::default(),
        limits,
        registry,
        rendezvous: tunnel::Rendezvous::default(),
        slots: Arc::new(Semaphore::new(max_tunnels)),
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        live: pairing::LiveMailboxes::default(),
        mailboxes,
        push,
        pairing_limits,
        mesh,
        remote_tunnels: remote_tunnel::Inboxes::default(),
    });
    if let Some(mesh) = shared.mesh.clone() {
        let live = Arc::downgrade(&shared);
        let again = live.clone();
        let stop = shared.shutdown.clone();
        tokio::spawn(mesh.listen(
            move |message| {
                if let Some(shared) = live.upgrade() {
                    if message.kind >= redis_state::kind::TUNNEL_JOIN {
                        remote_tunnel::deliver(&shared, message);
                    } else {
                        shared.live.deliver(message);
                    }
                }
            },
            move || {
                if let Some(shared) = again.upgrade() {
                    tokio::spawn(pairing::announce_again(shared));
                }
            },
            stop,
        ));
    }
    let accept = tokio::spawn(edge::accept_loop(listener, shared.clone()));
    Ok(RelayHandle {
        local_addr,
        shared,
        accept: Some(accept),
    })
}
