//! Limits and timeouts.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The relay's limits. Every field has a default ([`Config::default`]); override with struct
/// update syntax: `Config { max_tunnels: 10, ..Config::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest message (after reassembly of fragments) either side may send, in bytes. A larger
    /// one closes both sockets with 1009 (message too big). Default 64 KiB: a caBLE message is
    /// one encrypted CTAP request or response, a few KiB at most.
    pub max_message_size: usize,
    /// Most binary messages a tunnel carries, both directions together. The next one closes
    /// both sockets with 1008 (policy violation) and is not forwarded. Default 1024 (one
    /// hybrid sign-in takes about six).
    pub max_messages_per_tunnel: u64,
    /// Most a tunnel lives, counted from the phone's `new` request, waiting time included.
    /// Then both sockets are closed with 1008. Default 10 minutes.
    pub tunnel_lifetime: Duration,
    /// How long a `new` tunnel waits for its browser; then the phone's socket is closed with
    /// 1008 and the tunnel forgotten. Default 60 s.
    pub join_timeout: Duration,
    /// Most tunnels open at once (waiting or joined) on this node. A `new` beyond it is
    /// answered 503. Default 1000.
    pub max_tunnels: usize,
    /// Most messages the phone may send before its browser has joined; they are held and
    /// delivered when the browser joins (counted in the tunnel's message limit). One more
    /// closes the phone's socket with 1008. Default 4 (a caBLE phone sends nothing before the
    /// browser's handshake message).
    pub max_pending_messages: usize,
    /// How long a client may take to send its request headers, and how long an answered
    /// upgrade may take to complete. Default 10 s.
    pub handshake_timeout: Duration,
    /// How long closing a socket may take (sending the close frame, letting the peer answer
    /// and hang up) before the connection is dropped. Default 2 s.
    pub close_grace: Duration,
    /// Most websockets (caBLE tunnel sockets and pairing connections together) open at once
    /// from one client address (an IPv4 address, an IPv6 /64; see `client_ip_header`). One
    /// more is answered 429 before any upgrade. Default 64.
    pub max_connections_per_ip: usize,
    /// Most new pairing mailboxes (neither attached on this node nor holding a push target)
    /// one client address may open per `new_mailbox_window`; one more is closed with 1008
    /// after its attach. Default 30.
    pub new_mailboxes_per_ip: u32,
    /// The window of `new_mailboxes_per_ip`. Default 10 minutes.
    pub new_mailbox_window: Duration,
    /// Most push wake-ups the node sends per `push_window`, all mailboxes together, besides
    /// the one push per mailbox per 3 s; beyond it WAKE gets WAKE_RESULT 4. Default 600.
    pub push_budget: u32,
    /// The window of `push_budget`. Default 60 s.
    pub push_window: Duration,
    /// Most push wake-ups one mailbox gets per hour, besides the one push per mailbox per
    /// 3 s; beyond it WAKE gets WAKE_RESULT 4 until the hour (from the first of them) ends.
    /// Default [`MAILBOX_WAKES_PER_HOUR`].
    pub mailbox_wakes_per_hour: u32,
    /// Longest push target (FCM token, APNs token, webhook URL) PUSH_REGISTER may store, in
    /// bytes. Default 1024.
    pub max_push_target_len: usize,
    /// A request header naming the client's address, set by a reverse proxy in front of the
    /// relay (e.g. `X-Real-IP`, which nginx sets from `$remote_addr`); the per-address limits
    /// count that address instead of the TCP peer's. Only for a proxy that overwrites the
    /// header: clients can write it too. Default none (the TCP peer).
    pub client_ip_header: Option<String>,
}

/// The default of [`Config::mailbox_wakes_per_hour`]: a push every minute on average is far
/// more than anyone signs in, and bounds what a relay client holding a bridge's keys (or a
/// revoked bridge whose DELETE has not arrived) can make the phone's push provider deliver.
pub const MAILBOX_WAKES_PER_HOUR: u32 = 60;

/// The window of [`Config::mailbox_wakes_per_hour`].
pub const MAILBOX_WAKE_WINDOW: Duration = Duration::from_secs(3600);

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            max_messages_per_tunnel: 1024,
            tunnel_lifetime: Duration::from_secs(10 * 60),
            join_timeout: Duration::from_secs(60),
            max_tunnels: 1000,
            max_pending_messages: 4,
            handshake_timeout: Duration::from_secs(10),
            close_grace: Duration::from_secs(2),
            max_connections_per_ip: 64,
            new_mailboxes_per_ip: 30,
            new_mailbox_window: Duration::from_secs(10 * 60),
            push_budget: 600,
            push_window: Duration::from_secs(60),
            mailbox_wakes_per_hour: MAILBOX_WAKES_PER_HOUR,
            max_push_target_len: 1024,
            client_ip_header: None,
        }
    }
}

/// The websocket read buffer of every relay socket (caBLE tunnels and pairing connections).
///
/// tungstenite allocates it per socket for the socket's life and zero-fills it before each
/// read, so all of it is resident: 8 KiB made a pairing connection ≈ 14.6 KiB, 1 KiB ≈ 7.8 KiB
/// (docs/relay.md §8). It bounds only how much one system call reads: a larger frame still
/// arrives whole, the buffer growing to the frame (at most the socket's message limit), read
/// 1 KiB per call. caBLE messages are one Noise handshake message (about a hundred bytes) or
/// one encrypted CTAP request or response (hundreds of bytes to a few KiB), so a larger
/// buffer saves a few reads per tunnel at most.
pub(crate) const READ_BUFFER: usize = 1024;

impl Config {
    /// The websocket settings every relay socket gets: messages and frames bounded by
    /// `max_message_size`, small buffers (a tunnel carries few, small messages).
    pub(crate) fn websocket(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_write_buffer_size(self.max_message_size.saturating_mul(2).max(64 * 1024))
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}
