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
}

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
        }
    }
}

impl Config {
    /// The websocket settings every relay socket gets: messages and frames bounded by
    /// `max_message_size`, small buffers (a tunnel carries few, small messages).
    pub(crate) fn websocket(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(0)
            .max_write_buffer_size(self.max_message_size.saturating_mul(2).max(64 * 1024))
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}
