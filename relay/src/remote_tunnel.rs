//! A caBLE tunnel whose two sockets are on two nodes (docs/relay.md §7): the phone's `new` on
//! one, the browser's `connect` on another. Each node runs the half it holds: its socket on
//! one side, the other node's channel in Redis on the other, with the tunnel's rules (message
//! limit, lifetime, close frames) applied as in [`crate::pump`].
//!
//! Between the nodes: the browser's node sends JOIN (naming itself) to the node that owns the
//! tunnel (the registry says which) before it answers 101, then both send DATA (one message)
//! and, once, CLOSE (the close frame the other socket gets, as [`End::close_frame_for`] says).
//! What arrives for a tunnel waits in its bounded inbox here; a full inbox ends the tunnel.
//! Each half also checks every [`PEER_CHECK`] that the other node still listens, so that a
//! node that dies without a word does not leave the surviving socket open until its lifetime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pocketkey_core::pairing::mailbox::MailboxId;
use pocketkey_core::pairing::Role;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tracing::{info, warn};

use crate::ids::TunnelId;
use crate::pump::{self, classify, Closing, Counters, End, Incoming, Side};
use crate::redis_state::{kind, NodeMessage, RedisState};
use crate::tunnel::Socket;
use crate::Shared;

/// Messages that may wait for a tunnel's socket; one more ends the tunnel (a socket that
/// does not read, or a flood).
const INBOX: usize = 64;

/// How often a half asks whether the other half's node is still there. A node that dies
/// (SIGKILL, a crash) sends no close; its subscription ends with its Redis connection, so a
/// PUBLISH to its channel reaches nobody.
const PEER_CHECK: Duration = Duration::from_secs(1);

/// Unanswered checks in a row that end the half (1001): more than one, so that the other
/// node's subscriber reconnecting after a Redis blip (its first retry after 0.1 s) does not
/// end a live tunnel.
const PEER_MISSES: u32 = 2;

/// What the other node sent for a tunnel.
#[derive(Debug)]
pub(crate) enum FromNode {
    Data(Bytes),
    /// The other half ended; this socket gets this close frame.
    Close(Option<CloseFrame>),
}

/// The inboxes of this node's tunnel halves whose other half is on another node.
#[derive(Default)]
pub(crate) struct Inboxes {
    tunnels: Mutex<HashMap<TunnelId, mpsc::Sender<FromNode>>>,
}

impl Inboxes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TunnelId, mpsc::Sender<FromNode>>> {
        self.tunnels.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn open(&self, tunnel: TunnelId) -> mpsc::Receiver<FromNode> {
        let (tx, rx) = mpsc::channel(INBOX);
        self.lock().insert(tunnel, tx);
        rx
    }

    pub(crate) fn close_now(&self, tunnel: &TunnelId) {
        self.lock().remove(tunnel);
    }

    /// Hands a message to the tunnel's half; a full inbox drops the half's sender, which
    /// ends it.
    fn deliver(&self, tunnel: TunnelId, message: FromNode) {
        let mut tunnels = self.lock();
        if let Some(tx) = tunnels.get(&tunnel) {
            if tx.try_send(message).is_err() {
                tunnels.remove(&tunnel);
            }
        }
    }
}

fn message(kind: u8, tunnel: TunnelId, to: Side, payload: Vec<u8>) -> NodeMessage {
    NodeMessage {
        kind,
        mailbox: MailboxId(tunnel.0),
        // The side that gets it, for the logs of a curious operator.
        role: match to {
            Side::Phone => Role::Phone,
            Side::Browser => Role::Bridge,
        },
        conn: 0,
        payload,
    }
}

/// JOIN, from the browser's node to the tunnel's: whether that node got it (false: it is
/// gone).
pub(crate) async fn send_join(
    mesh: &RedisState,
    owner: &str,
    tunnel: TunnelId,
) -> Result<bool, crate::StoreError> {
    let join = message(
        kind::TUNNEL_JOIN,
        tunnel,
        Side::Phone,
        mesh.node().as_bytes().to_vec(),
    );
    mesh.publish_to(owner, &join).await
}

/// A message from another node about a tunnel of this one.
pub(crate) fn deliver(shared: &Arc<Shared>, message: NodeMessage) {
    let tunnel = TunnelId(message.mailbox.0);
    match message.kind {
        kind::TUNNEL_JOIN => {
            let node = String::from_utf8_lossy(&message.payload).into_owned();
            let inbox = shared.remote_tunnels.open(tunnel);
            let joined = shared.rendezvous.take(&tunnel).is_some_and(|joins| {
                joins
                    .send(crate::tunnel::Join::Remote {
                        node: node.clone(),
                        inbox,
                    })
                    .is_ok()
            });
            if !joined {
                // The phone left meanwhile: the browser's node closes its socket.
                shared.remote_tunnels.close_now(&tunnel);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let frame = End::Gone {
                        by: Side::Phone,
                        detail: String::new(),
                    }
                    .close_frame_for(Side::Browser);
                    tell_close(&shared, &node, tunnel, Side::Browser, &frame).await;
                });
            }
        }
        kind::TUNNEL_DATA => shared
            .remote_tunnels
            .deliver(tunnel, FromNode::Data(Bytes::from(message.payload))),
        kind::TUNNEL_CLOSE => shared
            .remote_tunnels
            .deliver(tunnel, FromNode::Close(decode_close(&message.payload))),
        _ => {}
    }
}

/// A close frame between nodes: `[0]` none, `[1, code (2 bytes), reason…]`.
fn encode_close(frame: &Option<CloseFrame>) -> Vec<u8> {
    match frame {
        None => vec![0],
        Some(frame) => {
            let mut out = vec![1];
            out.extend_from_slice(&u16::from(frame.code).to_be_bytes());
            out.extend_from_slice(frame.reason.as_bytes());
            out
        }
    }
}

fn decode_close(payload: &[u8]) -> Option<CloseFrame> {
    match payload {
        [1, hi, lo, reason @ ..] => Some(CloseFrame {
            code: CloseCode::from(u16::from_be_bytes([*hi, *lo])),
            reason: String::from_utf8_lossy(reason).into_owned().into(),
        }),
        _ => None,
    }
}

async fn tell_close(shared: &Shared, node: &str, tunnel: TunnelId, to: Side, closing: &Closing) {
    let frame = match closing {
        Closing::Send(frame) => frame.clone(),
        // The other side is not told "acknowledge" or "nothing": it gets a plain going-away.
        Closing::Acknowledge | Closing::Nothing => Some(CloseFrame {
            code: CloseCode::Away,
            reason: "peer disconnected".into(),
        }),
    };
    let Some(mesh) = &shared.mesh else {
        return;
    };
    let close = message(kind::TUNNEL_CLOSE, tunnel, to, encode_close(&frame));
    if let Err(error) = mesh.publish_to(node, &close).await {
        warn!(tunnel = %tunnel.short(), %error, "cannot tell the other node the tunnel ended");
    }
}

/// The local half of a tunnel whose other side is on `node`: forwards until something ends
/// it, tells the other node how (unless it told us), closes the socket. `pending`: messages
/// the phone sent before the join (already counted).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn pump(
    shared: &Shared,
    socket: Socket,
    side: Side,
    node: &str,
    tunnel: TunnelId,
    mut inbox: mpsc::Receiver<FromNode>,
    pending: Vec<Bytes>,
    counters: &Counters,
    deadline: Instant,
) -> End {
    let Some(mesh) = shared.mesh.as_deref() else {
        return End::Gone {
            by: side.other(),
            detail: "no redis".into(),
        };
    };
    let config = &shared.config;
    let (mut tx, mut rx) = socket.split();
    let gone = |detail: String| End::Gone {
        by: side.other(),
        detail,
    };
    let send = |data: Bytes| {
        let data = message(kind::TUNNEL_DATA, tunnel, side.other(), data.to_vec());
        async move {
            match mesh.publish_to(node, &data).await {
                Ok(true) => None,
                Ok(false) => Some(gone("its node is gone".into())),
                Err(error) => Some(gone(error.to_string())),
            }
        }
    };
    let mut told = false;
    let run = async {
        for data in pending {
            if let Some(end) = send(data).await {
                return end;
            }
        }
        let mut check = tokio::time::interval(PEER_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut misses = 0;
        loop {
            tokio::select! {
                _ = check.tick() => {
                    let probe = message(kind::PROBE, tunnel, side.other(), Vec::new());
                    match mesh.publish_to(node, &probe).await {
                        Ok(true) => misses = 0,
                        Ok(false) => {
                            misses += 1;
                            if misses >= PEER_MISSES {
                                return gone("its node is gone".into());
                            }
                        }
                        // Redis away: the next message across fails and ends the tunnel;
                        // a check alone does not.
                        Err(_) => {}
                    }
                }
                item = rx.next() => match classify(side, item) {
                    Incoming::Data(data) => {
                        if !counters.admit(side, data.len(), config.max_messages_per_tunnel) {
                            return End::MessageLimit;
                        }
                        if let Some(end) = send(data).await {
                            return end;
                        }
                    }
                    Incoming::Skip => {}
                    Incoming::End(end) => return end,
                },
                received = inbox.recv() => match received {
                    Some(FromNode::Data(data)) => {
                        if !counters.admit(side.other(), data.len(), config.max_messages_per_tunnel) {
                            return End::MessageLimit;
                        }
                        if let Err(error) = tx.send(Message::Binary(data)).await {
                            return End::Gone { by: side, detail: error.to_string() };
                        }
                    }
                    Some(FromNode::Close(frame)) => {
                        told = true;
                        return End::Closed { by: side.other(), frame };
                    }
                    None => return gone("too many messages waiting".into()),
                },
            }
        }
    };
    let end = tokio::select! {
        end = run => end,
        () = tokio::time::sleep_until(deadline) => End::Lifetime,
        () = shared.shutdown.cancelled() => End::Shutdown,
    };
    shared.remote_tunnels.close_now(&tunnel);
    if !told {
        let closing = end.close_frame_for(side.other());
        tell_close(shared, node, tunnel, side.other(), &closing).await;
    }
    let socket = rx.reunite(tx).expect("halves of one socket");
    pump::close(socket, end.close_frame_for(side), config.close_grace).await;
    end
}

/// The browser's half on this node, for a tunnel whose phone is on `node`: from the upgrade
/// to the end.
pub(crate) async fn run_browser(
    shared: Arc<Shared>,
    node: String,
    tunnel: TunnelId,
    on_upgrade: hyper::upgrade::OnUpgrade,
    inbox: mpsc::Receiver<FromNode>,
    slot: crate::limits::ConnSlot,
) {
    let counters = Counters::default();
    let deadline = Instant::now() + shared.config.tunnel_lifetime;
    let end = match crate::tunnel::upgrade(&shared, on_upgrade).await {
        Ok(browser) => {
            pump(
                &shared,
                browser,
                Side::Browser,
                &node,
                tunnel,
                inbox,
                Vec::new(),
                &counters,
                deadline,
            )
            .await
        }
        Err(error) => {
            shared.remote_tunnels.close_now(&tunnel);
            let end = End::BrowserUpgradeFailed(error);
            tell_close(
                &shared,
                &node,
                tunnel,
                Side::Phone,
                &end.close_frame_for(Side::Phone),
            )
            .await;
            end
        }
    };
    drop(slot);
    let totals = counters.totals();
    info!(
        event = "closed",
        tunnel = %tunnel.short(),
        phone_node = %node,
        reason = %end,
        phone_to_browser_messages = totals.phone_messages,
        browser_to_phone_messages = totals.browser_messages,
        "tunnel half closed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frames_cross_unchanged() {
        let frame = Some(CloseFrame {
            code: CloseCode::Size,
            reason: "message too big".into(),
        });
        assert_eq!(decode_close(&encode_close(&frame)), frame);
        assert_eq!(decode_close(&encode_close(&None)), None);
    }
}
