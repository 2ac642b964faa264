//! The relay's shared state in Redis (`pocketkey-relay --redis redis://HOST:PORT[/DB]`): what
//! lets several nodes behind one load balancer serve any client. docs/relay.md §7 is the
//! design: the keys, their lifetimes, why pub/sub, and what happens when Redis goes away.
//!
//! [`RedisState`] implements the three state interfaces of a node — [`TunnelRegistry`],
//! [`MailboxStore`], [`SharedLimits`] — with one Lua script per operation that must be atomic,
//! and carries the mailbox frames between nodes ([`crate::pairing`] asks it where a peer
//! is and hands it what the peer must get). Sockets stay on the node that accepted them.
//!
//! Every call goes through one multiplexed connection (redis-rs's tokio `ConnectionManager`,
//! which reconnects by itself); each node also holds one subscriber connection, to the
//! channel named after the node, re-established in a loop while Redis is away.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use pocketkey_core::pairing::mailbox::MailboxId;
use pocketkey_core::pairing::relay::{ApnsEnvironment, PushProvider, PushTarget, WakeId};
use pocketkey_core::pairing::Role;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tracing::{info, warn};

use crate::ids::{RoutingId, TunnelId};
use crate::limits::{Budget, SharedLimits};
use crate::mailbox_store::{MailboxStore, SetOutcome, StoreError, StoreLimits};
use crate::registry::{ClaimError, RegisterError, RegistryFuture, RemoveError, TunnelRegistry};

/// How long one Redis call (or a connection attempt) may take before the request it serves
/// is refused as "unavailable": short, because a client waits behind it.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Every key and channel starts with this.
const PREFIX: &str = "pk:";

/// `register`: refuses an id already open; records routing id and owning node, expiring with
/// the tunnel's lifetime so that a dead node's tunnels go by themselves.
static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'n', ARGV[2], 'j', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1",
    )
});

/// `claim`: 0 no such (routing, tunnel) pair, 2 already joined, else 1 and the owning node.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('HMGET', KEYS[1], 'r', 'n', 'j')
if not t[1] or t[1] ~= ARGV[1] then return {0, ''} end
if t[3] == '1' then return {2, ''} end
redis.call('HSET', KEYS[1], 'j', '1')
return {1, t[2]}",
    )
});

/// `remove`: only the tunnel registered under this routing id.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'r') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1",
    )
});

/// `set_push_target` (KEYS: tombstone, target, target count; ARGV: JSON or '' to forget,
/// the most targets).
static SET_TARGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 'revoked' end
local existed = redis.call('EXISTS', KEYS[2]) == 1
if ARGV[1] == '' then
  if existed then redis.call('DEL', KEYS[2]); redis.call('DECR', KEYS[3]) end
  return 'done'
end
if not existed and tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[2]) then
  return 'full'
end
redis.call('SET', KEYS[2], ARGV[1])
if not existed then redis.call('INCR', KEYS[3]) end
return 'done'",
    )
});

/// `tombstone` (KEYS as above; ARGV: lifetime in ms): the first tombstone's time stands.
static TOMBSTONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('DEL', KEYS[2]) == 1 then redis.call('DECR', KEYS[3]) end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1",
    )
});

/// A fixed window counter: the first event sets the count with the window as its lifetime;
/// a full window is not counted further. One script, so two nodes cannot both pass the last
/// place (INCR then EXPIRE as two calls could also leave a counter without expiry).
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return 0 end
if n == 0 then redis.call('SET', KEYS[1], '1', 'PX', ARGV[2]) else redis.call('INCR', KEYS[1]) end
return 1",
    )
});

/// A connection's attach (KEYS: its presence, the other role's; ARGV: node/conn, lifetime):
/// the presence it replaces and the other role's.
static ATTACH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {old or '', redis.call('GET', KEYS[2]) or ''}",
    )
});

/// A connection's end: forgets its presence if still its own; the other role's presence
/// ('' none), or nil when it had been replaced.
static DETACH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return redis.call('GET', KEYS[2]) or ''",
    )
});

/// Keeps a live connection's presence (sets it again after Redis lost it, unless another
/// connection took the role meanwhile).
static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1",
    )
});

/// Sends a message to the node holding a role of a mailbox (KEYS: its presence; ARGV: the
/// message, this node). -1: nobody holds the role; -2: this node does (per Redis); else how
/// many subscribers got it, 0 meaning that node is gone: its stale presence is dropped.
static ROUTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local loc = redis.call('GET', KEYS[1])
if not loc then return -1 end
local node = string.match(loc, '^([^/]+)/')
if node == ARGV[2] then return -2 end
local n = redis.call('PUBLISH', 'pk:node:' .. node, ARGV[1])
if n == 0 then redis.call('DEL', KEYS[1]) end
return n",
    )
});

/// What one node sends another about a mailbox (the first byte of a message on the node's
/// channel; then the mailbox, the addressed role, the connection id or 0 for the current
/// one, and the payload).
pub(crate) mod kind {
    /// Deliver the payload (an encoded relay frame) to the role's connection.
    pub const FRAME: u8 = 1;
    /// Close the connection with the code in the payload at once (it was replaced).
    pub const EVICT: u8 = 2;
    /// Close the mailbox's connections with the code in the payload after what they have
    /// queued (the mailbox was deleted).
    pub const CLOSE: u8 = 3;
    /// caBLE (`crate::remote_tunnel`; the id is the tunnel id): a browser on the sending node
    /// (named in the payload) joins the tunnel.
    pub const TUNNEL_JOIN: u8 = 4;
    /// caBLE: one message for the socket of the tunnel on the receiving node.
    pub const TUNNEL_DATA: u8 = 5;
    /// caBLE: the other half ended; the payload is the close frame for this node's socket.
    pub const TUNNEL_CLOSE: u8 = 6;
    /// Nothing to do: sent only to learn whether the node holding a role is still there.
    pub const PROBE: u8 = 7;
}

/// A message between nodes, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeMessage {
    pub kind: u8,
    pub mailbox: MailboxId,
    pub role: Role,
    pub conn: u64,
    pub payload: Vec<u8>,
}

impl NodeMessage {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(26 + self.payload.len());
        out.push(self.kind);
        out.extend_from_slice(&self.mailbox.0);
        out.push(role_byte(self.role));
        out.extend_from_slice(&self.conn.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 26 {
            return None;
        }
        let role = match bytes[17] {
            b'b' => Role::Bridge,
            b'p' => Role::Phone,
            _ => return None,
        };
        Some(Self {
            kind: bytes[0],
            mailbox: MailboxId(bytes[1..17].try_into().ok()?),
            role,
            conn: u64::from_be_bytes(bytes[18..26].try_into().ok()?),
            payload: bytes[26..].to_vec(),
        })
    }
}

fn role_byte(role: Role) -> u8 {
    match role {
        Role::Bridge => b'b',
        Role::Phone => b'p',
    }
}

/// Where a connection is: `<node>/<connection id>`.
fn location(node: &str, conn: u64) -> String {
    format!("{node}/{conn}")
}

fn parse_location(value: &str) -> Option<(&str, u64)> {
    let (node, conn) = value.split_once('/')?;
    Some((node, conn.parse().ok()?))
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError(format!("redis: {error}"))
}

/// Where a message for a role went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routed {
    /// Published to the node holding the role.
    Sent,
    /// No node holds it (or the one that did is gone).
    Absent,
    /// This node holds it per Redis (the caller looked locally first: it just left).
    Here,
}

/// The shared state of the nodes using one Redis.
pub struct RedisState {
    conn: ConnectionManager,
    client: redis::Client,
    /// This node's name: random per process, so a restarted node never receives what was
    /// meant for its predecessor's connections.
    node: String,
    limits: StoreLimits,
    /// How long a connection's presence lasts without a refresh (a dead node's go by
    /// themselves).
    presence_ttl: Duration,
    /// The subscription made at [`connect`](Self::connect), for the node's listener task.
    first_subscription: Mutex<Option<redis::aio::PubSub>>,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl RedisState {
    /// Connects to `url` (`redis://HOST:PORT[/DB]`) and subscribes to this node's channel.
    /// `presence_ttl` should outlast the pairing ping interval (connections refresh their
    /// presence at each ping).
    pub async fn connect(
        url: &str,
        limits: StoreLimits,
        presence_ttl: Duration,
    ) -> Result<Arc<Self>, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        let mut node = [0u8; 6];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut node);
        let node: String = node.iter().map(|b| format!("{b:02x}")).collect();
        let state = Self {
            conn,
            client,
            node,
            limits,
            presence_ttl,
            first_subscription: Mutex::new(None),
        };
        let subscription = state.subscribe().await?;
        *state
            .first_subscription
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(subscription);
        Ok(Arc::new(state))
    }

    /// This node's name in Redis.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn channel(&self) -> String {
        format!("{PREFIX}node:{}", self.node)
    }

    async fn subscribe(&self) -> Result<redis::aio::PubSub, StoreError> {
        let mut pubsub = tokio::time::timeout(CALL_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| unavailable("connection timed out"))?
            .map_err(unavailable)?;
        tokio::time::timeout(CALL_TIMEOUT, pubsub.subscribe(self.channel()))
            .await
            .map_err(|_| unavailable("subscribe timed out"))?
            .map_err(unavailable)?;
        Ok(pubsub)
    }

    /// Receives the messages of other nodes for this node's connections until `stop`,
    /// subscribing again (backing off up to 2 s) whenever Redis goes away, and then calling
    /// `resubscribed`: the Redis that came back may have lost everything (a restart without
    /// persistence), so the node's connections must announce themselves again.
    pub(crate) async fn listen(
        self: Arc<Self>,
        deliver: impl Fn(NodeMessage),
        resubscribed: impl Fn(),
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        let mut subscription = self
            .first_subscription
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        loop {
            let pubsub = match subscription.take() {
                Some(pubsub) => pubsub,
                None => {
                    let again = tokio::select! {
                        () = stop.cancelled() => return,
                        again = self.subscribe() => again,
                    };
                    match again {
                        Ok(pubsub) => {
                            info!(event = "redis_subscribed", node = %self.node, "listening to other nodes again");
                            backoff = Duration::from_millis(100);
                            resubscribed();
                            pubsub
                        }
                        Err(error) => {
                            warn!(%error, "cannot subscribe to the node channel");
                            tokio::select! {
                                () = stop.cancelled() => return,
                                () = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                            continue;
                        }
                    }
                }
            };
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    message = messages.next() => match message {
                        Some(message) => match NodeMessage::decode(message.get_payload_bytes()) {
                            Some(message) => deliver(message),
                            None => warn!("malformed message from another node"),
                        },
                        None => {
                            warn!(event = "redis_lost", node = %self.node, "lost the node channel");
                            break;
                        }
                    },
                }
            }
        }
    }

    fn key(&self, what: &str, id: impl std::fmt::Display) -> String {
        format!("{PREFIX}{what}:{id}")
    }

    fn presence_key(&self, mailbox: MailboxId, role: Role) -> String {
        format!(
            "{PREFIX}at:{}:{}",
            mailbox.to_hex(),
            char::from(role_byte(role))
        )
    }

    fn ttl_ms(duration: Duration) -> u64 {
        (duration.as_millis() as u64).max(1)
    }

    /// Records a connection's attach; tells the node of a replaced connection to close it
    /// (4001). Whether the other role is attached on another node (it is told so).
    pub(crate) async fn attach(
        &self,
        mailbox: MailboxId,
        role: Role,
        conn: u64,
        replaced_code: u16,
        peer_present: &[u8],
    ) -> Result<bool, StoreError> {
        let own = location(&self.node, conn);
        let (old, other): (String, String) = ATTACH
            .key(self.presence_key(mailbox, role))
            .key(self.presence_key(mailbox, role.other()))
            .arg(&own)
            .arg(Self::ttl_ms(self.presence_ttl))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if let Some((node, id)) = parse_location(&old) {
            if node != self.node {
                let evict = NodeMessage {
                    kind: kind::EVICT,
                    mailbox,
                    role,
                    conn: id,
                    payload: replaced_code.to_be_bytes().to_vec(),
                };
                self.publish(node, &evict).await?;
            }
        }
        match parse_location(&other) {
            Some((node, id)) if node != self.node => {
                let present = NodeMessage {
                    kind: kind::FRAME,
                    mailbox,
                    role: role.other(),
                    conn: id,
                    payload: peer_present.to_vec(),
                };
                Ok(self.route(mailbox, role.other(), &present).await? == Routed::Sent)
            }
            _ => Ok(false),
        }
    }

    /// Keeps a connection's presence alive (called at each ping).
    pub(crate) async fn refresh(
        &self,
        mailbox: MailboxId,
        role: Role,
        conn: u64,
    ) -> Result<(), StoreError> {
        REFRESH
            .key(self.presence_key(mailbox, role))
            .arg(location(&self.node, conn))
            .arg(Self::ttl_ms(self.presence_ttl))
            .invoke_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    /// Forgets a connection's presence if it is still the current one; tells the other
    /// role's node (`peer_absent`: the encoded PEER frame).
    pub(crate) async fn detach(
        &self,
        mailbox: MailboxId,
        role: Role,
        conn: u64,
        peer_absent: &[u8],
    ) -> Result<(), StoreError> {
        let other: Option<String> = DETACH
            .key(self.presence_key(mailbox, role))
            .key(self.presence_key(mailbox, role.other()))
            .arg(location(&self.node, conn))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if let Some((node, id)) = other.as_deref().and_then(parse_location) {
            if node != self.node {
                let absent = NodeMessage {
                    kind: kind::FRAME,
                    mailbox,
                    role: role.other(),
                    conn: id,
                    payload: peer_absent.to_vec(),
                };
                self.publish(node, &absent).await?;
            }
        }
        Ok(())
    }

    /// Whether a connection of `role` is attached on a node that is still there (a node
    /// killed without detaching leaves its presences behind until they expire: a probe to it
    /// finds no subscriber, and drops them).
    pub(crate) async fn present_alive(
        &self,
        mailbox: MailboxId,
        role: Role,
    ) -> Result<bool, StoreError> {
        let probe = NodeMessage {
            kind: kind::PROBE,
            mailbox,
            role,
            conn: 0,
            payload: Vec::new(),
        };
        Ok(self.route(mailbox, role, &probe).await? == Routed::Sent)
    }

    /// Whether a connection of `role` is attached on any node.
    pub(crate) async fn present(&self, mailbox: MailboxId, role: Role) -> Result<bool, StoreError> {
        redis::cmd("EXISTS")
            .arg(self.presence_key(mailbox, role))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    /// Sends `message` to the node holding `role` of `mailbox`, if another node does.
    pub(crate) async fn route(
        &self,
        mailbox: MailboxId,
        role: Role,
        message: &NodeMessage,
    ) -> Result<Routed, StoreError> {
        let n: i64 = ROUTE
            .key(self.presence_key(mailbox, role))
            .arg(message.encode())
            .arg(&self.node)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(match n {
            -2 => Routed::Here,
            n if n > 0 => Routed::Sent,
            _ => Routed::Absent,
        })
    }

    async fn publish(&self, node: &str, message: &NodeMessage) -> Result<(), StoreError> {
        self.publish_to(node, message).await.map(|_| ())
    }

    /// Sends `message` to `node`: whether that node got it (false: it is gone).
    pub(crate) async fn publish_to(
        &self,
        node: &str,
        message: &NodeMessage,
    ) -> Result<bool, StoreError> {
        redis::cmd("PUBLISH")
            .arg(format!("{PREFIX}node:{node}"))
            .arg(message.encode())
            .query_async::<i64>(&mut self.conn.clone())
            .await
            .map(|receivers| receivers > 0)
            .map_err(unavailable)
    }

    /// The node a claimed tunnel's phone is on.
    pub(crate) async fn claim_on(
        &self,
        routing: RoutingId,
        tunnel: TunnelId,
    ) -> Result<String, ClaimError> {
        let (status, node): (i64, String) = CLAIM
            .key(self.key("tun", tunnel))
            .arg(routing.to_string())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| ClaimError::Unavailable(e.to_string()))?;
        match status {
            1 => Ok(node),
            2 => Err(ClaimError::AlreadyJoined),
            _ => Err(ClaimError::NotFound),
        }
    }
}

impl TunnelRegistry for RedisState {
    fn register(
        &self,
        tunnel: TunnelId,
        ttl: Duration,
    ) -> RegistryFuture<'_, Result<RoutingId, RegisterError>> {
        Box::pin(async move {
            let routing = RoutingId::random();
            let created: i64 = REGISTER
                .key(self.key("tun", tunnel))
                .arg(routing.to_string())
                .arg(&self.node)
                .arg(Self::ttl_ms(ttl))
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(|e| RegisterError::Unavailable(e.to_string()))?;
            if created == 1 {
                Ok(routing)
            } else {
                Err(RegisterError::Exists)
            }
        })
    }

    fn claim(
        &self,
        routing: RoutingId,
        tunnel: TunnelId,
    ) -> RegistryFuture<'_, Result<(), ClaimError>> {
        Box::pin(async move { self.claim_on(routing, tunnel).await.map(|_| ()) })
    }

    fn remove(
        &self,
        routing: RoutingId,
        tunnel: TunnelId,
    ) -> RegistryFuture<'_, Result<(), RemoveError>> {
        Box::pin(async move {
            REMOVE
                .key(self.key("tun", tunnel))
                .arg(routing.to_string())
                .invoke_async::<()>(&mut self.conn.clone())
                .await
                .map_err(|e| RemoveError(e.to_string()))
        })
    }
}

/// A push target as stored: `{"p": provider, "t": target, "e": environment, "w": wake id}`.
fn encode_target(target: &PushTarget) -> String {
    serde_json::json!({
        "p": target.provider.as_str(),
        "t": target.target,
        "e": target.environment.map(|e| e.as_str()),
        "w": target.wake.0.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    })
    .to_string()
}

fn decode_target(text: &str) -> Result<PushTarget, StoreError> {
    let bad = || StoreError("malformed push target in redis".into());
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| bad())?;
    let provider = value["p"]
        .as_str()
        .and_then(PushProvider::parse)
        .ok_or_else(bad)?;
    let target = value["t"].as_str().ok_or_else(bad)?.to_string();
    let environment = value["e"].as_str().and_then(ApnsEnvironment::parse);
    let wake = value["w"].as_str().ok_or_else(bad)?;
    let mut id = [0u8; 16];
    if wake.len() != 32 || !wake.is_ascii() {
        return Err(bad());
    }
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&wake[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(PushTarget {
        provider,
        target,
        environment,
        wake: WakeId(id),
    })
}

impl RedisState {
    fn target_keys(&self, mailbox: MailboxId) -> [String; 3] {
        [
            self.key("tomb", mailbox.to_hex()),
            self.key("push", mailbox.to_hex()),
            format!("{PREFIX}push-count"),
        ]
    }
}

impl MailboxStore for RedisState {
    fn is_tombstoned(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            redis::cmd("EXISTS")
                .arg(self.key("tomb", mailbox.to_hex()))
                .query_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)
        })
    }

    fn tombstone(&self, mailbox: MailboxId) -> RegistryFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let [tomb, push, count] = self.target_keys(mailbox);
            TOMBSTONE
                .key(tomb)
                .key(push)
                .key(count)
                .arg(Self::ttl_ms(self.limits.tombstone_ttl))
                .invoke_async::<()>(&mut self.conn.clone())
                .await
                .map_err(unavailable)
        })
    }

    fn push_target(
        &self,
        mailbox: MailboxId,
    ) -> RegistryFuture<'_, Result<Option<PushTarget>, StoreError>> {
        Box::pin(async move {
            let text: Option<String> = redis::cmd("GET")
                .arg(self.key("push", mailbox.to_hex()))
                .query_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            text.as_deref().map(decode_target).transpose()
        })
    }

    fn set_push_target(
        &self,
        mailbox: MailboxId,
        target: Option<PushTarget>,
    ) -> RegistryFuture<'_, Result<SetOutcome, StoreError>> {
        Box::pin(async move {
            let [tomb, push, count] = self.target_keys(mailbox);
            let value = target.as_ref().map(encode_target).unwrap_or_default();
            let outcome: String = SET_TARGET
                .key(tomb)
                .key(push)
                .key(count)
                .arg(value)
                .arg(self.limits.max_push_targets)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            Ok(match outcome.as_str() {
                "revoked" => SetOutcome::Revoked,
                "full" => SetOutcome::Full,
                _ => SetOutcome::Done,
            })
        })
    }
}

impl SharedLimits for RedisState {
    fn take(
        &self,
        budget: Budget,
        limit: u32,
        window: Duration,
    ) -> RegistryFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let key = match budget {
                Budget::NewMailboxes(client) => self.key("rl:new", client),
                Budget::MailboxWakes(mailbox) => self.key("rl:wakes", mailbox.to_hex()),
                Budget::Push => format!("{PREFIX}rl:push"),
            };
            let taken: i64 = TAKE
                .key(key)
                .arg(limit)
                .arg(Self::ttl_ms(window))
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            Ok(taken == 1)
        })
    }

    fn wake_slot(
        &self,
        mailbox: MailboxId,
        interval: Duration,
    ) -> RegistryFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(self.key("wake", mailbox.to_hex()))
                .arg("1")
                .arg("NX")
                .arg("PX")
                .arg(Self::ttl_ms(interval))
                .query_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            Ok(set.is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_messages_round_trip() {
        let message = NodeMessage {
            kind: kind::FRAME,
            mailbox: MailboxId([9; 16]),
            role: Role::Phone,
            conn: 77,
            payload: vec![1, 2, 3],
        };
        assert_eq!(NodeMessage::decode(&message.encode()), Some(message));
        assert_eq!(NodeMessage::decode(&[1; 10]), None);
    }

    #[test]
    fn push_targets_round_trip() {
        let target = PushTarget {
            provider: PushProvider::Apns,
            target: "abcd".into(),
            environment: Some(ApnsEnvironment::Sandbox),
            wake: WakeId([0xa5; 16]),
        };
        assert_eq!(decode_target(&encode_target(&target)).unwrap(), target);
        assert!(decode_target("{\"p\":\"webhook\"}").is_err());
    }

    #[test]
    fn locations_parse() {
        assert_eq!(parse_location("ab12/7"), Some(("ab12", 7)));
        assert_eq!(parse_location(""), None);
        assert_eq!(parse_location("ab12/x"), None);
    }
}
