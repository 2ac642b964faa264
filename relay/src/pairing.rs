//! Pairing mailboxes (docs/pairing-protocol.md §3): `GET /pair/v1/<hex M>` joins one bridge
//! connection and one phone connection of a pairing and forwards their DATA frames, opaque.
//!
//! The edge checks the path, the tombstone and the connection caps before upgrading; this
//! module then sends the CHALLENGE, accepts nothing but a valid ATTACH before the deadline
//! (`verify_attach`: a signature by the role's attach key over the nonce, close 4003
//! otherwise), applies the per-address budget of new mailboxes, and runs the attached
//! connection: one per role per mailbox (a
//! newer one replaces the older, closed with 4001), PEER presence, WAKE through the
//! [`PushService`], PUSH_REGISTER / PUSH_UNREGISTER, DELETE (tombstone, 4010 to both), and the
//! bounds (frame size, rate, write queue). The relay queues nothing for an absent peer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use pocketkey_core::pairing::mailbox::{verify_attach, MailboxId, NONCE_LEN};
use pocketkey_core::pairing::relay::{
    close_code, frame_type, PushTarget, RelayErrorCode, RelayFrame, RelayFrameError, WakeResult,
    MAX_RELAY_FRAME,
};
use pocketkey_core::pairing::Role;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::READ_BUFFER;
use crate::limits::ConnSlot;
use crate::mailbox_store::{SetOutcome, StoreError};
use crate::push::PushError;
use crate::redis_state::{kind, NodeMessage, Routed};
use crate::Shared;

/// Bounds of pairing connections (docs/pairing-protocol.md §3.2 defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingLimits {
    /// Frames per second a connection may send (token bucket rate). Default 50.
    pub frames_per_sec: u32,
    /// Token bucket size. Default 100.
    pub burst: u32,
    /// Frames dropped for the rate in a row before the connection is closed with 1008.
    /// Default 200.
    pub max_dropped: u32,
    /// Frames waiting to be written to a connection; one more closes it with 1008. Default 64.
    pub write_queue: usize,
    /// Websocket ping interval. Default 30 s.
    pub ping_interval: Duration,
    /// A connection from which nothing arrives this long (not even the pong to our pings) is
    /// closed with 1001, so that a phone gone without a TCP close does not stay "present"
    /// (which would answer WAKE with "already attached"). Default 75 s (2.5 ping intervals).
    pub silence_timeout: Duration,
    /// Most pairing connections on this node, counted from the edge's answer (reserved
    /// before the upgrade, so concurrent attaches cannot overshoot it; more: 503). Default
    /// 10 000.
    pub max_connections: usize,
}

impl Default for PairingLimits {
    fn default() -> Self {
        Self {
            frames_per_sec: 50,
            burst: 100,
            max_dropped: 200,
            write_queue: 64,
            ping_interval: Duration::from_secs(30),
            silence_timeout: Duration::from_secs(75),
            max_connections: 10_000,
        }
    }
}

/// Websocket settings of a pairing connection: the relay's small read buffer
/// ([`READ_BUFFER`], most of the memory of an idle connection), frames up to
/// `MAX_RELAY_FRAME`.
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(MAX_RELAY_FRAME))
        .max_frame_size(Some(MAX_RELAY_FRAME))
}

/// What the writer of a connection sends.
enum Out {
    Frame(Vec<u8>),
    Close(u16, &'static str),
}

/// Closes a connection from outside (replacement, revocation, overflow, shutdown).
struct Kill {
    code: AtomicU16,
    token: CancellationToken,
}

impl Kill {
    fn new() -> Self {
        Self {
            code: AtomicU16::new(1000),
            token: CancellationToken::new(),
        }
    }
    fn fire(&self, code: u16) {
        if !self.token.is_cancelled() {
            self.code.store(code, Ordering::Relaxed);
            self.token.cancel();
        }
    }
}

#[derive(Clone)]
struct Conn {
    id: u64,
    tx: mpsc::Sender<Out>,
    kill: Arc<Kill>,
}

impl Conn {
    /// Queues a frame; a full queue closes the connection with 1008 (a slow reader).
    fn send(&self, frame: &RelayFrame) {
        self.send_encoded(frame.encode());
    }

    fn send_encoded(&self, frame: Vec<u8>) {
        match self.tx.try_send(Out::Frame(frame)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.kill.fire(1008),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

#[derive(Default)]
struct Slots {
    bridge: Option<Conn>,
    phone: Option<Conn>,
}

impl Slots {
    fn get(&mut self, role: Role) -> &mut Option<Conn> {
        match role {
            Role::Bridge => &mut self.bridge,
            Role::Phone => &mut self.phone,
        }
    }
}

/// The attached connections of this node's pairing mailboxes, one per role per mailbox.
#[derive(Default)]
pub(crate) struct LiveMailboxes {
    mailboxes: Mutex<HashMap<MailboxId, Slots>>,
    next_id: AtomicU64,
    connections: AtomicU64,
}

impl LiveMailboxes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MailboxId, Slots>> {
        self.mailboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attached connections on this node.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed) as usize
    }

    /// Installs a connection; replaces (4001) an older one of the same role; tells the other
    /// role's connection on this node that it arrived. Whether that one is here (the caller
    /// tells the new connection who is present, on any node).
    fn attach(&self, mailbox: MailboxId, role: Role, conn: Conn) -> bool {
        let mut map = self.lock();
        let slots = map.entry(mailbox).or_default();
        if let Some(old) = slots.get(role).replace(conn.clone()) {
            old.kill.fire(close_code::REPLACED);
        }
        let other = slots.get(role.other()).clone();
        if let Some(other) = &other {
            other.send(&RelayFrame::Peer { present: true });
        }
        other.is_some()
    }

    /// What another node sends about this node's connections (`crate::redis_state`).
    pub(crate) fn deliver(&self, message: NodeMessage) {
        use crate::redis_state::kind;
        let mut map = self.lock();
        let Some(slots) = map.get_mut(&message.mailbox) else {
            return;
        };
        let slot = slots.get(message.role);
        let Some(conn) = slot
            .as_ref()
            .filter(|c| message.conn == 0 || c.id == message.conn)
            .cloned()
        else {
            return;
        };
        let code = || {
            <[u8; 2]>::try_from(message.payload.as_slice())
                .map(u16::from_be_bytes)
                .unwrap_or(1008)
        };
        match message.kind {
            kind::FRAME => conn.send_encoded(message.payload),
            // Replaced on another node: gone from here at once, so that its own end does not
            // tell the peer "absent" after the newer connection's "present".
            kind::EVICT => {
                *slot = None;
                if slots.bridge.is_none() && slots.phone.is_none() {
                    map.remove(&message.mailbox);
                }
                conn.kill.fire(code());
            }
            kind::CLOSE => {
                drop(map);
                self.close_all(message.mailbox, code(), 0);
            }
            _ => {}
        }
    }

    /// Removes a connection if it is still the current one of its role; tells the peer.
    fn detach(&self, mailbox: MailboxId, role: Role, id: u64) {
        let mut map = self.lock();
        let Some(slots) = map.get_mut(&mailbox) else {
            return;
        };
        if slots.get(role).as_ref().is_some_and(|c| c.id == id) {
            *slots.get(role) = None;
            if let Some(other) = slots.get(role.other()) {
                other.send(&RelayFrame::Peer { present: false });
            }
        }
        if slots.bridge.is_none() && slots.phone.is_none() {
            map.remove(&mailbox);
        }
    }

    /// Every attached connection of this node: mailbox, role, connection id.
    fn attached(&self) -> Vec<(MailboxId, Role, u64)> {
        let map = self.lock();
        let mut all = Vec::with_capacity(map.len() * 2);
        for (mailbox, slots) in map.iter() {
            for (role, conn) in [(Role::Bridge, &slots.bridge), (Role::Phone, &slots.phone)] {
                if let Some(conn) = conn {
                    all.push((*mailbox, role, conn.id));
                }
            }
        }
        all
    }

    /// Whether connection `id` is still the one of `role` here.
    fn is_current(&self, mailbox: MailboxId, role: Role, id: u64) -> bool {
        self.lock()
            .get_mut(&mailbox)
            .is_some_and(|slots| slots.get(role).as_ref().is_some_and(|c| c.id == id))
    }

    /// Whether any connection of this node is attached to `mailbox`.
    fn has(&self, mailbox: MailboxId) -> bool {
        self.lock().contains_key(&mailbox)
    }

    fn peer(&self, mailbox: MailboxId, role: Role) -> Option<Conn> {
        self.lock()
            .get_mut(&mailbox)
            .and_then(|slots| slots.get(role.other()).clone())
    }

    /// Closes every connection of a mailbox with `code` (but `except`, closed by its writer),
    /// after the frames already queued for it: a `Revoke` the deleting side routed just before
    /// its DELETE reaches the peer, which deletes its pairing only on that message and
    /// suspends it on the close alone (docs/pairing-protocol.md §3.4). A connection whose
    /// queue is full (a peer that stopped reading) is closed at once.
    fn close_all(&self, mailbox: MailboxId, code: u16, except: u64) {
        if let Some(slots) = self.lock().remove(&mailbox) {
            for conn in [slots.bridge, slots.phone].into_iter().flatten() {
                if conn.id != except && conn.tx.try_send(Out::Close(code, reason_of(code))).is_err()
                {
                    conn.kill.fire(code);
                }
            }
        }
    }
}

/// Sets the presence of every connection of this node again, after the node lost Redis and
/// found it back (`RedisState::listen`): a Redis restarted without persistence has forgotten
/// them, and without this a peer on another node would get `peer_absent` until each
/// connection's next ping (`ping_interval`). A presence another connection took meanwhile is
/// left alone (the refresh script sets only a missing or its own).
pub(crate) async fn announce_again(shared: Arc<Shared>) {
    /// Refreshes in flight at once, on the node's one multiplexed Redis connection.
    const CONCURRENT: usize = 64;
    /// Tries per presence: the call connection may reconnect a moment after the subscriber.
    const TRIES: u32 = 5;
    let Some(mesh) = shared.mesh.clone() else {
        return;
    };
    let attached = shared.live.attached();
    let count = attached.len();
    futures_util::stream::iter(attached)
        .for_each_concurrent(CONCURRENT, |(mailbox, role, id)| {
            let (mesh, shared) = (mesh.clone(), shared.clone());
            async move {
                for _ in 0..TRIES {
                    // One that ended meanwhile must not be announced present.
                    if !shared.live.is_current(mailbox, role, id) {
                        return;
                    }
                    match mesh.refresh(mailbox, role, id).await {
                        Ok(()) => return,
                        Err(e) => debug!(error = %e, "presence not announced again yet"),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .await;
    info!(
        event = "presences_announced",
        connections = count,
        "presences announced to redis again"
    );
}

/// A token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, limits: &PairingLimits) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(limits.frames_per_sec);
        self.tokens = (self.tokens + refill).min(f64::from(limits.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn error(code: RelayErrorCode, message: &str) -> RelayFrame {
    RelayFrame::Error {
        code: code as u8,
        message: message.into(),
    }
}

type Socket = tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// Sends CHALLENGE, reads the answer and checks it: the role of a valid ATTACH, else the
/// close to send (4003: a wrong proof, anything else first, or nothing before the
/// deadline; 1008: this address opened too many new mailboxes).
async fn authenticate(
    shared: &Shared,
    mailbox: MailboxId,
    socket: &mut Socket,
    client: crate::ClientKey,
) -> Result<Role, (u16, &'static str)> {
    const FORBIDDEN: (u16, &str) = (close_code::FORBIDDEN, "attach refused");
    let mut nonce = [0u8; NONCE_LEN];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let challenge = RelayFrame::Challenge(nonce).encode();
    let answer = tokio::time::timeout(shared.config.handshake_timeout, async {
        socket.send(Message::Binary(challenge.into())).await.ok()?;
        match socket.next().await? {
            Ok(Message::Binary(bytes)) => Some(bytes),
            _ => None,
        }
    })
    .await
    .map_err(|_| (close_code::FORBIDDEN, "no attach in time"))?
    .ok_or(FORBIDDEN)?;
    let role = match RelayFrame::decode(&answer) {
        Ok(RelayFrame::Attach(proof)) => verify_attach(mailbox, &nonce, &proof).ok(),
        _ => None,
    }
    .ok_or(FORBIDDEN)?;
    // A mailbox nobody is attached to and with no push target is new to this relay: minting
    // them is free, so each address gets a budget of them.
    if !attached_anywhere(shared, mailbox).await {
        let known = matches!(shared.mailboxes.push_target(mailbox).await, Ok(Some(_)));
        if !known {
            let budget = crate::Budget::NewMailboxes(client);
            let config = &shared.config;
            let taken = shared
                .limits
                .take(
                    budget,
                    config.new_mailboxes_per_ip,
                    config.new_mailbox_window,
                )
                .await;
            match taken {
                Ok(true) => {}
                Ok(false) => return Err((1008, "too many new mailboxes from this address")),
                Err(e) => {
                    warn!(error = %e, "relay state unavailable");
                    return Err((1011, "relay state unavailable"));
                }
            }
        }
    }
    Ok(role)
}

/// Whether a connection of this node or (with Redis) of any node is attached to `mailbox`.
async fn attached_anywhere(shared: &Shared, mailbox: MailboxId) -> bool {
    if shared.live.has(mailbox) {
        return true;
    }
    let Some(mesh) = &shared.mesh else {
        return false;
    };
    for role in [Role::Bridge, Role::Phone] {
        if matches!(mesh.present(mailbox, role).await, Ok(true)) {
            return true;
        }
    }
    false
}

/// Whether the other role of `mailbox` is attached (here, or with Redis on another node).
async fn peer_present(shared: &Shared, mailbox: MailboxId, role: Role) -> Result<bool, StoreError> {
    if shared.live.peer(mailbox, role).is_some() {
        return Ok(true);
    }
    match &shared.mesh {
        Some(mesh) => mesh.present_alive(mailbox, role.other()).await,
        None => Ok(false),
    }
}

/// Runs one connection from its upgrade to its end.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mailbox: MailboxId,
    on_upgrade: OnUpgrade,
    peer_addr: std::net::SocketAddr,
    slot: ConnSlot,
) {
    let upgraded = match tokio::time::timeout(shared.config.handshake_timeout, on_upgrade).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(e)) => return debug!(%peer_addr, error = %e, "upgrade failed"),
        Err(_) => return debug!(%peer_addr, "upgrade timed out"),
    };
    let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        Some(websocket_config()),
    )
    .await;
    let role = match authenticate(&shared, mailbox, &mut socket, slot.client()).await {
        Ok(role) => role,
        Err((code, reason)) => {
            info!(event = "attach_refused", mailbox = %short(&mailbox), peer = %peer_addr, code, reason, "attach refused");
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            let grace = shared.config.close_grace;
            let _ = tokio::time::timeout(grace, socket.close(Some(frame))).await;
            return;
        }
    };
    let (mut sink, mut stream) = socket.split();
    let limits = shared.pairing_limits.clone();
    let live = &shared.live;
    let (tx, mut rx) = mpsc::channel::<Out>(limits.write_queue);
    let kill = Arc::new(Kill::new());
    // From 1: 0 names no connection (`close_all`'s `except`, "the current one" between nodes).
    let id = live.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let conn = Conn {
        id,
        tx,
        kill: kill.clone(),
    };
    live.connections.fetch_add(1, Ordering::Relaxed);
    let mut present = live.attach(mailbox, role, conn.clone());
    if let Some(mesh) = &shared.mesh {
        let peer = RelayFrame::Peer { present: true }.encode();
        match mesh
            .attach(mailbox, role, id, close_code::REPLACED, &peer)
            .await
        {
            Ok(remote) => present |= remote,
            Err(e) => {
                // Cross-node work needs Redis: refuse the attach rather than half-join it.
                warn!(error = %e, "relay state unavailable");
                let _ = conn
                    .tx
                    .try_send(Out::Close(1011, "relay state unavailable"));
            }
        }
    }
    conn.send(&RelayFrame::Peer { present });
    // A DELETE between the edge's tombstone check and now (on another connection or node).
    if matches!(shared.mailboxes.is_tombstoned(mailbox).await, Ok(true)) {
        kill.fire(close_code::REVOKED);
    }
    info!(event = "attached", mailbox = %short(&mailbox), role = role.as_str(), peer = %peer_addr, "mailbox attached");

    // The writer: queued frames in order, then a close (queued or from outside), pings.
    let shutdown = shared.shutdown.clone();
    let writer_kill = kill.clone();
    let writer_mesh = shared.mesh.clone();
    let close_grace = shared.config.close_grace;
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(limits.ping_interval);
        ping.tick().await;
        let close = loop {
            tokio::select! {
                biased;
                out = rx.recv() => match out {
                    Some(Out::Frame(bytes)) => {
                        // A reader that stops reading blocks this send; a kill (its queue
                        // overflowing, a replacement, shutdown) must still end the connection.
                        tokio::select! {
                            sent = sink.send(Message::Binary(bytes.into())) => {
                                if sent.is_err() {
                                    break None;
                                }
                            }
                            () = writer_kill.token.cancelled() => {
                                let code = writer_kill.code.load(Ordering::Relaxed);
                                break Some((code, reason_of(code)));
                            }
                            () = shutdown.cancelled() => break Some((1001, "relay shutting down")),
                        }
                    }
                    Some(Out::Close(code, reason)) => break Some((code, reason)),
                    None => break Some((1000, "")),
                },
                () = writer_kill.token.cancelled() => {
                    let code = writer_kill.code.load(Ordering::Relaxed);
                    break Some((code, reason_of(code)));
                }
                () = shutdown.cancelled() => break Some((1001, "relay shutting down")),
                _ = ping.tick() => {
                    if let Some(mesh) = writer_mesh.clone() {
                        tokio::spawn(async move {
                            if let Err(e) = mesh.refresh(mailbox, role, id).await {
                                debug!(error = %e, "presence not refreshed");
                            }
                        });
                    }
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break None;
                    }
                }
            }
        };
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(close_grace, sink.send(Message::Close(Some(frame)))).await;
            let _ = tokio::time::timeout(close_grace, sink.close()).await;
        }
        writer_kill.token.cancel();
    });

    let mut bucket = Bucket {
        tokens: f64::from(limits.burst),
        at: Instant::now(),
    };
    let mut dropped = 0u32;
    let end = loop {
        let message = tokio::select! {
            () = kill.token.cancelled() => break "closed",
            message = tokio::time::timeout(limits.silence_timeout, stream.next()) => match message {
                Ok(message) => message,
                Err(_) => {
                    kill.fire(1001);
                    break "silent";
                }
            },
        };
        let bytes = match message {
            None => break "disconnected",
            Some(Err(WsError::Capacity(_))) => {
                let _ = conn.tx.try_send(Out::Close(1009, "frame too large"));
                kill.fire(1009);
                break "too large";
            }
            Some(Err(_)) => break "disconnected",
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Text(_))) => {
                kill.fire(1002);
                break "text message";
            }
            Some(Ok(Message::Close(_))) => break "closed by client",
            Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings itself
        };
        if !bucket.take(&limits) {
            dropped += 1;
            if dropped > limits.max_dropped {
                kill.fire(1008);
                break "rate abuse";
            }
            conn.send(&error(RelayErrorCode::RateLimited, "rate limited"));
            continue;
        }
        dropped = 0;
        let frame = match RelayFrame::decode(&bytes) {
            Ok(frame) => frame,
            Err(RelayFrameError::TooLarge(_)) => {
                kill.fire(1009);
                break "too large";
            }
            // A target this relay cannot store as it is (e.g. a phone from before wake ids).
            Err(RelayFrameError::PushTarget(e)) => {
                conn.send(&error(RelayErrorCode::BadPushTarget, &e.to_string()));
                continue;
            }
            Err(_) => {
                conn.send(&error(RelayErrorCode::Malformed, "malformed frame"));
                continue;
            }
        };
        if handle_frame(&shared, mailbox, role, &conn, frame).await {
            break "revoked";
        }
    };
    live.detach(mailbox, role, id);
    live.connections.fetch_sub(1, Ordering::Relaxed);
    if let Some(mesh) = &shared.mesh {
        let absent = RelayFrame::Peer { present: false }.encode();
        if let Err(e) = mesh.detach(mailbox, role, id, &absent).await {
            // Its presence expires by itself.
            warn!(error = %e, "relay state unavailable");
        }
    }
    // Let the writer finish (it ends on a queued close or a kill).
    if end != "revoked" {
        kill.token.cancel();
    }
    let _ = writer.await;
    info!(event = "detached", mailbox = %short(&mailbox), role = role.as_str(), reason = end, "mailbox detached");
}

/// The first 4 bytes of a mailbox id, for logs: enough to follow one pairing's events, not
/// the whole (stable) pairing id.
fn short(mailbox: &MailboxId) -> String {
    mailbox.to_hex()[..8].to_string()
}

fn reason_of(code: u16) -> &'static str {
    match code {
        close_code::REPLACED => "replaced",
        close_code::REVOKED => "revoked",
        1002 => "text messages are not allowed",
        1008 => "policy violation",
        1009 => "frame too large",
        1001 => "going away",
        _ => "",
    }
}

/// Forgets a push target its provider called invalid, unless the phone has registered another
/// one meanwhile; the next WAKE then answers NoPushTarget instead of pushing into the void.
async fn drop_dead_target(shared: &Arc<Shared>, mailbox: MailboxId, dead: &PushTarget) {
    match shared.mailboxes.push_target(mailbox).await {
        Ok(Some(current)) if current == *dead => {
            if let Err(e) = shared.mailboxes.set_push_target(mailbox, None).await {
                warn!(error = %e, "mailbox store unavailable");
            }
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "mailbox store unavailable"),
    }
}

/// Takes a push wake-up for `mailbox` from every budget in turn: its push slot (on this node,
/// then across nodes), its hourly budget, the push budget of all mailboxes.
async fn wake_allowed(shared: &Shared, mailbox: MailboxId) -> Result<bool, StoreError> {
    use crate::Budget;
    let config = &shared.config;
    Ok(shared.push.try_acquire(mailbox)
        && shared
            .limits
            .wake_slot(mailbox, shared.push.interval())
            .await?
        && shared
            .limits
            .take(
                Budget::MailboxWakes(mailbox),
                config.mailbox_wakes_per_hour,
                crate::config::MAILBOX_WAKE_WINDOW,
            )
            .await?
        && shared
            .limits
            .take(Budget::Push, config.push_budget, config.push_window)
            .await?)
}

/// Handles one frame from a client; true when the connection must end (DELETE).
async fn handle_frame(
    shared: &Arc<Shared>,
    mailbox: MailboxId,
    role: Role,
    conn: &Conn,
    frame: RelayFrame,
) -> bool {
    match frame {
        RelayFrame::Data(bytes) => match shared.live.peer(mailbox, role) {
            Some(peer) => peer.send(&RelayFrame::Data(bytes)),
            None => match &shared.mesh {
                None => conn.send(&error(RelayErrorCode::PeerAbsent, "peer absent")),
                Some(mesh) => {
                    let message = NodeMessage {
                        kind: kind::FRAME,
                        mailbox,
                        role: role.other(),
                        conn: 0,
                        payload: RelayFrame::Data(bytes).encode(),
                    };
                    match mesh.route(mailbox, role.other(), &message).await {
                        Ok(Routed::Sent) => {}
                        Ok(Routed::Absent | Routed::Here) => {
                            conn.send(&error(RelayErrorCode::PeerAbsent, "peer absent"))
                        }
                        Err(e) => {
                            warn!(error = %e, "relay state unavailable");
                            conn.send(&error(
                                RelayErrorCode::PeerAbsent,
                                "peer on another node; relay state unavailable",
                            ));
                        }
                    }
                }
            },
        },
        RelayFrame::Wake if role == Role::Bridge => {
            match peer_present(shared, mailbox, role).await {
                Ok(true) => {
                    conn.send(&RelayFrame::WakeResult(WakeResult::AlreadyAttached));
                    return false;
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(error = %e, "relay state unavailable");
                    conn.send(&RelayFrame::WakeResult(WakeResult::ProviderFailed));
                    return false;
                }
            }
            let target = match shared.mailboxes.push_target(mailbox).await {
                Ok(Some(target)) => target,
                Ok(None) => {
                    conn.send(&RelayFrame::WakeResult(WakeResult::NoPushTarget));
                    return false;
                }
                Err(e) => {
                    warn!(error = %e, "mailbox store unavailable");
                    conn.send(&RelayFrame::WakeResult(WakeResult::ProviderFailed));
                    return false;
                }
            };
            // One push per 3 s, then the mailbox's hourly budget, then the node's.
            match wake_allowed(shared, mailbox).await {
                Ok(true) => {}
                Ok(false) => {
                    conn.send(&RelayFrame::WakeResult(WakeResult::RateLimited));
                    return false;
                }
                Err(e) => {
                    warn!(error = %e, "relay state unavailable");
                    conn.send(&RelayFrame::WakeResult(WakeResult::ProviderFailed));
                    return false;
                }
            }
            let shared = shared.clone();
            let conn = conn.clone();
            shared.tasks.clone().spawn(async move {
                let result = match shared.push.wake(&target).await {
                    Ok(()) => {
                        info!(event = "push", mailbox = %short(&mailbox), provider = target.provider.as_str(), "push sent");
                        WakeResult::PushSent
                    }
                    Err(e @ PushError::Throttled { .. }) => {
                        warn!(event = "push_throttled", mailbox = %short(&mailbox), provider = target.provider.as_str(), error = %e, "push held back");
                        WakeResult::RateLimited
                    }
                    Err(e @ PushError::Unregistered(_)) => {
                        warn!(event = "push_target_dropped", mailbox = %short(&mailbox), provider = target.provider.as_str(), error = %e, "push target dropped");
                        drop_dead_target(&shared, mailbox, &target).await;
                        WakeResult::ProviderFailed
                    }
                    Err(e) => {
                        warn!(event = "push_failed", mailbox = %short(&mailbox), provider = target.provider.as_str(), error = %e, "push failed");
                        WakeResult::ProviderFailed
                    }
                };
                conn.send(&RelayFrame::WakeResult(result));
            });
        }
        RelayFrame::PushRegister(target) if role == Role::Phone => {
            if target.target.len() > shared.config.max_push_target_len {
                conn.send(&error(
                    RelayErrorCode::BadPushTarget,
                    "push target too long",
                ));
                return false;
            }
            if let Err(e) = shared.push.check_target(&target) {
                conn.send(&error(RelayErrorCode::BadPushTarget, &e.to_string()));
                return false;
            }
            match shared
                .mailboxes
                .set_push_target(mailbox, Some(target))
                .await
            {
                Ok(SetOutcome::Done) => conn.send(&RelayFrame::Ack(frame_type::PUSH_REGISTER)),
                Ok(SetOutcome::Revoked) => return revoke_self(conn),
                // The relay's own trouble, not the target's: the phone registers it again later.
                Ok(SetOutcome::Full) => {
                    warn!("mailbox store full: push target refused");
                    conn.send(&error(RelayErrorCode::Unavailable, "relay store full"));
                }
                Err(e) => {
                    warn!(error = %e, "mailbox store unavailable");
                    conn.send(&error(RelayErrorCode::Unavailable, "store unavailable"));
                }
            }
        }
        RelayFrame::PushUnregister if role == Role::Phone => {
            match shared.mailboxes.set_push_target(mailbox, None).await {
                Ok(SetOutcome::Done | SetOutcome::Full) => {
                    conn.send(&RelayFrame::Ack(frame_type::PUSH_UNREGISTER))
                }
                Ok(SetOutcome::Revoked) => return revoke_self(conn),
                Err(e) => {
                    warn!(error = %e, "mailbox store unavailable");
                    conn.send(&error(RelayErrorCode::Unavailable, "store unavailable"));
                }
            }
        }
        RelayFrame::Delete => {
            if let Err(e) = shared.mailboxes.tombstone(mailbox).await {
                warn!(error = %e, "mailbox store unavailable");
                conn.send(&error(RelayErrorCode::Unavailable, "store unavailable"));
                return false;
            }
            info!(event = "revoked", mailbox = %short(&mailbox), by = role.as_str(), "mailbox revoked");
            // ACK first to the sender, then 4010 to both.
            let _ = conn
                .tx
                .try_send(Out::Frame(RelayFrame::Ack(frame_type::DELETE).encode()));
            let _ = conn.tx.try_send(Out::Close(close_code::REVOKED, "revoked"));
            shared.live.close_all(mailbox, close_code::REVOKED, conn.id);
            if let Some(mesh) = &shared.mesh {
                let close = NodeMessage {
                    kind: kind::CLOSE,
                    mailbox,
                    role: role.other(),
                    conn: 0,
                    payload: close_code::REVOKED.to_be_bytes().to_vec(),
                };
                if let Err(e) = mesh.route(mailbox, role.other(), &close).await {
                    // The peer learns of the tombstone at its next attach.
                    warn!(error = %e, "relay state unavailable");
                }
            }
            return true;
        }
        RelayFrame::Attach(_) => {
            conn.send(&error(RelayErrorCode::Malformed, "already attached"));
        }
        RelayFrame::Wake | RelayFrame::PushRegister(_) | RelayFrame::PushUnregister => {
            conn.send(&error(
                RelayErrorCode::NotAllowedForRole,
                "not allowed for this role",
            ));
        }
        // Relay → client types from a client.
        RelayFrame::Peer { .. }
        | RelayFrame::WakeResult(_)
        | RelayFrame::Error { .. }
        | RelayFrame::Ack(_)
        | RelayFrame::Challenge(_) => {
            conn.send(&error(RelayErrorCode::Malformed, "unknown frame type"));
        }
    }
    false
}

/// The mailbox was deleted meanwhile (another node): close with 4010.
fn revoke_self(conn: &Conn) -> bool {
    let _ = conn.tx.try_send(Out::Close(close_code::REVOKED, "revoked"));
    true
}
