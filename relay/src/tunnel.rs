//! The life of one tunnel, owned by one task from the phone's upgrade to the last close:
//! wait for a browser (holding what the phone sends meanwhile), hand both sockets to the pump,
//! then forget the tunnel and log how it ended.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tracing::{info, warn};

use crate::ids::{RoutingId, TunnelId};
use crate::limits::ConnSlot;
use crate::pump::{self, classify, Counters, End, Incoming, Side};
use crate::Shared;

/// A relay websocket: an upgraded HTTP/1.1 connection.
pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// A browser joining a waiting tunnel.
pub(crate) enum Join {
    /// On this node: its upgrade, answered 101 by the edge.
    Local {
        on_upgrade: OnUpgrade,
        peer: SocketAddr,
        /// The browser's connection slot, held as long as the tunnel.
        slot: ConnSlot,
    },
    /// On another node (with Redis): its name, and the inbox of what it sends.
    Remote {
        node: String,
        inbox: tokio::sync::mpsc::Receiver<crate::remote_tunnel::FromNode>,
    },
}

/// The tunnels of this node waiting for their browser, each with the way to hand it over.
/// The node-local half of the routing state (sockets cannot be shared between nodes).
#[derive(Default)]
pub(crate) struct Rendezvous {
    waiting: Mutex<HashMap<TunnelId, oneshot::Sender<Join>>>,
}

impl Rendezvous {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TunnelId, oneshot::Sender<Join>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn insert(&self, tunnel: TunnelId, joins: oneshot::Sender<Join>) {
        self.lock().insert(tunnel, joins);
    }

    /// Takes the hand-over of a waiting tunnel (at most once).
    pub(crate) fn take(&self, tunnel: &TunnelId) -> Option<oneshot::Sender<Join>> {
        self.lock().remove(tunnel)
    }
}

/// A tunnel the edge has registered and answered 101 for.
pub(crate) struct NewTunnel {
    pub tunnel: TunnelId,
    pub routing: RoutingId,
    pub on_upgrade: OnUpgrade,
    pub joins: oneshot::Receiver<Join>,
    /// This tunnel's slot under `max_tunnels`, released when the task ends.
    pub permit: OwnedSemaphorePermit,
    /// The phone's connection slot (per client address).
    pub slot: ConnSlot,
    pub created: Instant,
}

/// Completes an answered upgrade into a websocket.
pub(crate) async fn upgrade(shared: &Shared, on_upgrade: OnUpgrade) -> Result<Socket, String> {
    let upgraded = tokio::time::timeout(shared.config.handshake_timeout, on_upgrade)
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|error| error.to_string())?;
    Ok(WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Server,
        Some(shared.config.websocket()),
    )
    .await)
}

/// Runs a tunnel to its end, then removes it from the routing state and logs the outcome.
pub(crate) async fn run(shared: Arc<Shared>, tunnel: NewTunnel) {
    let NewTunnel {
        tunnel: id,
        routing,
        on_upgrade,
        joins,
        permit,
        slot,
        created,
    } = tunnel;
    let counters = Counters::default();
    let end = lifecycle(
        &shared,
        (id, routing, created),
        on_upgrade,
        joins,
        &counters,
    )
    .await;

    withdraw(&shared, id, routing).await;
    drop(permit);
    drop(slot);

    let totals = counters.totals();
    info!(
        event = "closed",
        tunnel = %id.short(),
        routing_id = %routing,
        reason = %end,
        phone_to_browser_messages = totals.phone_messages,
        phone_to_browser_bytes = totals.phone_bytes,
        browser_to_phone_messages = totals.browser_messages,
        browser_to_phone_bytes = totals.browser_bytes,
        duration_ms = created.elapsed().as_millis() as u64,
        "tunnel closed"
    );
}

/// Forgets a tunnel: no browser can join it any more. Idempotent.
async fn withdraw(shared: &Shared, id: TunnelId, routing: RoutingId) {
    shared.rendezvous.take(&id);
    if let Err(error) = shared.registry.remove(routing, id).await {
        warn!(
            tunnel = %id.short(),
            routing_id = %routing,
            %error,
            "tunnel registry remove failed"
        );
    }
}

async fn lifecycle(
    shared: &Shared,
    (id, routing, created): (TunnelId, RoutingId, Instant),
    on_upgrade: OnUpgrade,
    mut joins: oneshot::Receiver<Join>,
    counters: &Counters,
) -> End {
    let config = &shared.config;
    let lifetime_end = created + config.tunnel_lifetime;
    let join_end = (created + config.join_timeout).min(lifetime_end);

    let mut phone = match upgrade(shared, on_upgrade).await {
        Ok(socket) => socket,
        Err(error) => return End::PhoneUpgradeFailed(error),
    };

    // Wait for the browser, reading the phone meanwhile (to notice it leave).
    let mut pending = Vec::new();
    let waited: Result<Join, End> = loop {
        tokio::select! {
            join = &mut joins => {
                break join.map_err(|_| End::BrowserUpgradeFailed("join abandoned".into()));
            }
            item = phone.next() => match classify(Side::Phone, item) {
                Incoming::Data(data) => {
                    if pending.len() >= config.max_pending_messages {
                        break Err(End::PendingLimit);
                    }
                    if !counters.admit(Side::Phone, data.len(), config.max_messages_per_tunnel) {
                        break Err(End::MessageLimit);
                    }
                    pending.push(data);
                }
                Incoming::Skip => {}
                Incoming::End(end) => break Err(end),
            },
            () = tokio::time::sleep_until(join_end) => {
                break Err(if join_end < lifetime_end { End::JoinTimeout } else { End::Lifetime });
            }
            () = shared.shutdown.cancelled() => break Err(End::Shutdown),
        }
    };
    let join = match waited {
        Ok(join) => join,
        Err(end) => {
            // Withdraw before the (possibly slow) close, so that a browser arriving meanwhile
            // gets 404 rather than a socket about to close.
            drop(joins);
            withdraw(shared, id, routing).await;
            pump::close(phone, end.close_frame_for(Side::Phone), config.close_grace).await;
            return end;
        }
    };

    let (on_upgrade, peer, slot) = match join {
        Join::Local {
            on_upgrade,
            peer,
            slot,
        } => (on_upgrade, peer, slot),
        Join::Remote { node, inbox } => {
            info!(
                event = "joined",
                tunnel = %id.short(),
                routing_id = %routing,
                browser_node = %node,
                waited_ms = created.elapsed().as_millis() as u64,
                pending_messages = pending.len(),
                "tunnel joined from another node"
            );
            return crate::remote_tunnel::pump(
                shared,
                phone,
                Side::Phone,
                &node,
                id,
                inbox,
                pending,
                counters,
                lifetime_end,
            )
            .await;
        }
    };
    // The browser's slot is held until the tunnel ends.
    let _browser_slot = slot;
    let browser = match upgrade(shared, on_upgrade).await {
        Ok(socket) => socket,
        Err(error) => {
            let end = End::BrowserUpgradeFailed(error);
            pump::close(phone, end.close_frame_for(Side::Phone), config.close_grace).await;
            return end;
        }
    };
    info!(
        event = "joined",
        tunnel = %id.short(),
        routing_id = %routing,
        browser = %peer,
        waited_ms = created.elapsed().as_millis() as u64,
        pending_messages = pending.len(),
        "tunnel joined"
    );

    pump::pump(
        phone,
        browser,
        pending,
        counters,
        config.max_messages_per_tunnel,
        lifetime_end,
        &shared.shutdown,
        config.close_grace,
    )
    .await
}
