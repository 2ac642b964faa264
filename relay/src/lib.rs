//! # pocketkey-relay: a caBLE v2 tunnel server and pairing rendezvous an organisation can host
//!
//! Two services on one HTTP/1.1 listener, both websockets that the relay forwards without
//! reading: hybrid tunnels (`/cable/new/…`, `/cable/connect/…`) joining a phone and a browser,
//! and pairing mailboxes (`/pair/v1/…`) joining a paired phone and computer, with push
//! wake-ups for a phone that is not connected. It keeps routing data only.
//!
//! The specification — routes, the HTTP status of every refusal, limits and close codes,
//! deployment behind a TLS proxy, and why hyper rather than axum — is `docs/relay.md`.
//! Modules: [`edge`] (requests and refusals), [`registry`] (tunnel routing state), `tunnel` and
//! [`pump`] (one tunnel's task and its forwarding loop), [`pairing`] (mailboxes), [`push`]
//! (providers), [`mailbox_store`] (push targets and tombstones); limits in [`Config`] and
//! [`PairingLimits`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use pocketkey_core::pairing::mailbox::MailboxId;
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
pub mod registry;
mod tunnel;

pub use config::Config;
pub use edge::{ROUTING_ID_HEADER, SUBPROTOCOL};
pub use ids::{RoutingId, TunnelId};
pub use limits::ClientKey;
pub use mailbox_store::{
    MailboxStore, MemoryMailboxStore, SetOutcome, SqliteMailboxStore, StoreError, StoreLimits,
};
pub use pairing::PairingLimits;
pub use push::{PushError, PushProvider, PushService, WebhookProvider};
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
    /// New mailboxes per client address per window.
    pub new_mailboxes: limits::WindowCounter<ClientKey>,
    /// The node's push budget per window.
    pub push_budget: limits::WindowCounter<()>,
    /// Each mailbox's push budget per hour.
    pub mailbox_wakes: limits::WindowCounter<MailboxId>,
}

/// Everything a relay node serves with besides its [`Config`]; [`Default`]: in-memory
/// routing state, no push provider, default pairing bounds.
pub struct Services {
    pub registry: Arc<dyn TunnelRegistry>,
    pub mailboxes: Arc<dyn MailboxStore>,
    pub push: Arc<PushService>,
    pub pairing_limits: PairingLimits,
}

impl Default for Services {
    fn default() -> Self {
        Self {
            registry: Arc::new(MemoryRegistry::new()),
            mailboxes: Arc::new(MemoryMailboxStore::new()),
            push: Arc::new(PushService::default()),
            pairing_limits: PairingLimits::default(),
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
        push,
        pairing_limits,
    } = services;
    let local_addr = listener.local_addr()?;
    let max_tunnels = config.max_tunnels.min(Semaphore::MAX_PERMITS);
    let new_mailboxes =
        limits::WindowCounter::new(config.new_mailboxes_per_ip, config.new_mailbox_window);
    let push_budget = limits::WindowCounter::new(config.push_budget, config.push_window);
    let mailbox_wakes =
        limits::WindowCounter::new(config.mailbox_wakes_per_hour, config::MAILBOX_WAKE_WINDOW);
    let shared = Arc::new(Shared {
        config: Config {
            max_tunnels,
            ..config
        },
        connections: Arc::default(),
        new_mailboxes,
        push_budget,
        mailbox_wakes,
        registry,
        rendezvous: tunnel::Rendezvous::default(),
        slots: Arc::new(Semaphore::new(max_tunnels)),
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        live: pairing::LiveMailboxes::default(),
        mailboxes,
        push,
        pairing_limits,
    });
    let accept = tokio::spawn(edge::accept_loop(listener, shared.clone()));
    Ok(RelayHandle {
        local_addr,
        shared,
        accept: Some(accept),
    })
}
