//! # pocketkey-relay: a caBLE v2 tunnel server an organisation can host itself
//!
//! In the FIDO hybrid transport ("use a phone or tablet", DESIGN.md §5) the phone and the
//! browser never connect to each other: both connect to a *tunnel server*, which joins their
//! two websockets and forwards the (Noise-encrypted) messages between them. This crate is such
//! a server. It never parses, logs or stores the messages; all it keeps is routing data, for
//! as long as a tunnel is open.
//!
//! ## Protocol
//!
//! 1. The phone opens `GET /cable/new/<TUNNEL ID>` (32 hex digits) as a websocket with
//!    subprotocol `fido.cable`. The relay answers `101 Switching Protocols` with
//!    `Sec-WebSocket-Protocol: fido.cable` and `X-caBLE-Routing-ID: <6 hex digits>`, the
//!    3 random bytes it chose for this tunnel. The phone then advertises the routing id over
//!    BLE and waits.
//! 2. The browser opens `GET /cable/connect/<ROUTING ID>/<TUNNEL ID>`, also with `fido.cable`.
//! 3. The relay forwards binary messages both ways, opaque. When either side closes, the
//!    other side's socket is closed with the same close frame.
//!
//! Hex in paths is accepted in either case; the relay writes upper case. `GET /healthz`
//! answers `200 ok` (for load balancers).
//!
//! ## Statuses (always before any upgrade)
//!
//! | request | status |
//! |---|---|
//! | path neither `/cable/new/…`, `/cable/connect/…` nor `/healthz` | 404 |
//! | `/cable/new/…` or `/cable/connect/…` with malformed ids or extra segments | 400 |
//! | a method other than GET | 405 (`Allow: GET`) |
//! | not a websocket upgrade (HTTP/1.0, no `Host`, no `Connection: upgrade` / `Upgrade: websocket`, missing or malformed `Sec-WebSocket-Key`, missing `Sec-WebSocket-Version`) | 400 |
//! | `Sec-WebSocket-Version` other than 13 | 426 (`Sec-WebSocket-Version: 13`), as RFC 6455 §4.2.2 asks |
//! | `fido.cable` missing from `Sec-WebSocket-Protocol` | 400: RFC 6455 lets a server refuse a handshake it cannot serve, and a caBLE client would fail a 101 without the subprotocol anyway |
//! | `new` with a tunnel id that is already open (waiting or joined) | 409 Conflict |
//! | `new` beyond `max_tunnels` open tunnels, or while shutting down | 503 |
//! | `connect` with an unknown routing id / tunnel id pair (never opened, or closed, expired) | 404 |
//! | `connect` to a tunnel a browser has already joined | 410 Gone: the tunnel's one join is used up; 409 is kept for the phone's conflict |
//!
//! ## Limits and close codes
//!
//! All in [`Config`] (defaults there). Over `max_message_size`: both sockets closed with 1009.
//! A text message: 1002 (protocol error: caBLE is binary). Over `max_messages_per_tunnel`
//! (both directions together), `tunnel_lifetime` (counted from `new`), `join_timeout` (no
//! browser in time) or `max_pending_messages` (phone messages held until the browser joins):
//! 1008. A side that disconnects without a close frame: 1001 to the other. Shutdown: 1001.
//! A close frame from one side goes to the other unchanged.
//!
//! ## Pairing mailboxes (docs/pairing-protocol.md §3, authoritative)
//!
//! `GET /pair/v1/<hex M>` with subprotocol `pocketkey.pair.v1` opens a websocket to the
//! mailbox `M` of one pairing ([`pairing`]). Before any upgrade the relay refuses: 400
//! (malformed path, a bad websocket handshake as above, or the old `X-PocketKey-Token` header;
//! 426 for another websocket version), 405 (not GET), 410 (`M` was deleted: tombstone), 429
//! (`max_connections_per_ip` websockets open from this client address), 503 (shutting down,
//! `max_connections`, the store unavailable). The slot is reserved before the 101 and held
//! until the connection ends. After the upgrade the relay sends CHALLENGE (a fresh 32-byte
//! nonce) and accepts only an ATTACH signed by the attach key of the role it names, whose two
//! public keys hash to `M` (the core's `verify_attach`), within `handshake_timeout`; anything
//! else is closed with 4003 and never joins the mailbox. An attach to a mailbox this node has
//! no connection of and no push target for counts against its address's
//! `new_mailboxes_per_ip` (beyond: close 1008). Then:
//!
//! - one connection per role; a newer attach replaces the older (close 4001);
//! - PEER `present`/`absent` right after attach and whenever the other role arrives (also as
//!   a replacement) or leaves;
//! - DATA frames go to the other role's connection unread; with no peer the relay answers
//!   ERROR `peer_absent` and keeps nothing;
//! - WAKE (bridge): WAKE_RESULT `0` if the phone is attached, else a content-free push through
//!   the registered target's provider, carrying the wake id registered with it (`1` sent, `2`
//!   no target, `3` provider failed, `4` one push per mailbox per 3 s, the mailbox's
//!   `mailbox_wakes_per_hour` or the node's `push_budget` spent); PUSH_REGISTER /
//!   PUSH_UNREGISTER (phone): ACK or ERROR `bad_push_target` (no wake id, a provider this
//!   relay lacks, a webhook URL no `--webhook-allow` entry admits, longer than
//!   `max_push_target_len`, or the store full);
//!   DELETE (either): tombstone, push target dropped, ACK to the sender, 4010 to both;
//! - bounds ([`PairingLimits`]): frames over 16 KiB close with 1009, text with 1002; 50
//!   frames/s (burst 100) then ERROR `rate_limited`, persistent abuse 1008; a peer whose write
//!   queue (64 frames) is full is closed with 1008; pings every 30 s, and a connection silent
//!   for 75 s (no pong either) is closed with 1001 so that a vanished phone is not "present".
//!
//! Push targets and tombstones live behind the [`MailboxStore`] trait, bounded by
//! [`StoreLimits`] (tombstones expire): SQLite on a thread of its own in the `pocketkey-relay`
//! program unless `--memory` (its `--help` says where the file goes), memory for an embedded
//! [`Services::default`];
//! the providers behind [`PushProvider`] ([`push`]: webhook, FCM HTTP v1, APNs HTTP/2).
//!
//! ## Deployment
//!
//! The relay speaks plain `ws://` only. Phones and browsers require `wss://`, so TLS ends at
//! a reverse proxy in front of it (nginx, Caddy, a cloud load balancer), which must pass the
//! upgrade through (`Upgrade`, `Connection`, `Sec-WebSocket-*` request headers and the
//! `X-caBLE-Routing-ID` response header; nginx and Caddy pass response headers unchanged)
//! and must not time out idle websockets before `tunnel_lifetime` (nginx:
//! `proxy_read_timeout 600s;` — its default of 60 s cuts waiting tunnels). The default
//! listen address is `127.0.0.1:8080`: loopback, so that an unproxied relay is not exposed
//! by accident. Logs then show the proxy's address as the peer, and so would the per-address
//! limits count every client as the proxy: behind a proxy set `client_ip_header`
//! (`--client-ip-header X-Real-IP` with nginx's `proxy_set_header X-Real-IP $remote_addr;`).
//!
//! ## Structure and the choice of stack
//!
//! - [`edge`]: the HTTP/1.1 edge — checks requests and answers them.
//! - [`registry`]: the routing state behind the [`TunnelRegistry`] trait ([`MemoryRegistry`]
//!   for one node; several nodes could share one through Redis later).
//! - `tunnel`: the task that owns a tunnel from `new` to its end; [`pump`]: the forwarding
//!   loop and the close rules.
//!
//! Built on tokio, hyper 1 (HTTP/1.1 server with upgrades) and tokio-tungstenite (websocket
//! framing on the upgraded connection), not axum: every refusal must be an exact HTTP status
//! decided *before* the upgrade by asynchronous registry calls, which a plain hyper service
//! expresses directly (tokio-tungstenite's own accept callback is synchronous), and the pump
//! needs tungstenite's own errors (a capacity error becomes 1009) that axum's websocket type
//! hides behind its own error type. Axum would add a router and tower layers for two routes.

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
pub use registry::{ClaimError, MemoryRegistry, RegisterError, TunnelRegistry};

/// State shared by the edge and the tunnel tasks of one node.
pub(crate) struct Shared {
    pub config: Config,
    pub registry: Arc<dyn TunnelRegistry>,
    pub rendezvous: tunnel::Rendezvous,
    /// One permit per open tunnel, `max_tunnels` in all.
    pub slots: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// Pairing mailboxes: live connections, routing state, push, bounds.
    pub hub: pairing::Hub,
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
        self.shared.hub.connections()
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
        hub: pairing::Hub::default(),
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
