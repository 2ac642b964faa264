//! The forwarding loop of a joined tunnel, and how a tunnel ends.
//!
//! Messages are forwarded as opaque binary payloads: the relay never parses them. Each
//! direction runs on its own (a slow reader stalls only the messages sent to it); the first
//! direction to end, the lifetime deadline or the relay's shutdown ends the tunnel, and both
//! sockets are then closed with the frame that [`End`] calls for.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

/// The two ends of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The authenticator, which opened the tunnel with `new`.
    Phone,
    /// The client, which joined it with `connect`.
    Browser,
}

impl Side {
    pub(crate) fn other(self) -> Self {
        match self {
            Side::Phone => Side::Browser,
            Side::Browser => Side::Phone,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Phone => "phone",
            Side::Browser => "browser",
        })
    }
}

/// Why a tunnel ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// A side sent a close frame; the other side gets the same frame.
    Closed { by: Side, frame: Option<CloseFrame> },
    /// A side's connection ended without a close frame (or failed); the other side gets 1001.
    Gone { by: Side, detail: String },
    /// A side sent a message over the size limit: 1009 to both.
    TooBig { by: Side },
    /// A side sent a text message (caBLE is binary): 1002 to both.
    Text { by: Side },
    /// A side broke the websocket protocol: 1002 to both.
    Protocol { by: Side, detail: String },
    /// The tunnel's message limit was reached: 1008 to both.
    MessageLimit,
    /// The phone sent more messages than may wait for the browser: 1008.
    PendingLimit,
    /// No browser joined in time: 1008 to the phone.
    JoinTimeout,
    /// The tunnel's lifetime is over: 1008 to both.
    Lifetime,
    /// The browser's upgrade, answered with 101, did not complete: 1001 to the phone.
    BrowserUpgradeFailed(String),
    /// The phone's upgrade, answered with 101, did not complete (no socket to close).
    PhoneUpgradeFailed(String),
    /// The relay is shutting down: 1001 to both.
    Shutdown,
}

/// What to do with one socket when its tunnel ends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Closing {
    /// Send this close frame (`None`: a close frame without a status code).
    Send(Option<CloseFrame>),
    /// The peer closed: flush the automatic close reply.
    Acknowledge,
    /// The connection is already gone.
    Nothing,
}

impl End {
    /// How the socket of `side` is closed.
    pub(crate) fn close_frame_for(&self, side: Side) -> Closing {
        let frame = |code, reason: &'static str| {
            Closing::Send(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            }))
        };
        match self {
            End::Closed { by, .. } if *by == side => Closing::Acknowledge,
            End::Closed { frame, .. } => Closing::Send(frame.clone()),
            End::Gone { by, .. } if *by == side => Closing::Nothing,
            End::Gone { .. } | End::BrowserUpgradeFailed(_) => {
                frame(CloseCode::Away, "peer disconnected")
            }
            End::PhoneUpgradeFailed(_) => Closing::Nothing,
            End::TooBig { .. } => frame(CloseCode::Size, "message too big"),
            End::Text { .. } => frame(CloseCode::Protocol, "text messages are not allowed"),
            End::Protocol { .. } => frame(CloseCode::Protocol, "protocol error"),
            End::MessageLimit => frame(CloseCode::Policy, "message limit reached"),
            End::PendingLimit => frame(CloseCode::Policy, "too many messages before join"),
            End::JoinTimeout => frame(CloseCode::Policy, "no peer joined in time"),
            End::Lifetime => frame(CloseCode::Policy, "tunnel lifetime exceeded"),
            End::Shutdown => frame(CloseCode::Away, "relay shutting down"),
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Closed {
                by,
                frame: Some(frame),
            } => write!(f, "{by} closed ({})", u16::from(frame.code)),
            End::Closed { by, frame: None } => write!(f, "{by} closed"),
            End::Gone { by, detail } => write!(f, "{by} disconnected ({detail})"),
            End::TooBig { by } => write!(f, "{by} sent a message over the size limit"),
            End::Text { by } => write!(f, "{by} sent a text message"),
            End::Protocol { by, detail } => write!(f, "{by} protocol error ({detail})"),
            End::MessageLimit => f.write_str("message limit reached"),
            End::PendingLimit => f.write_str("too many messages before join"),
            End::JoinTimeout => f.write_str("no browser joined in time"),
            End::Lifetime => f.write_str("lifetime exceeded"),
            End::BrowserUpgradeFailed(e) => write!(f, "browser upgrade failed ({e})"),
            End::PhoneUpgradeFailed(e) => write!(f, "phone upgrade failed ({e})"),
            End::Shutdown => f.write_str("relay shutting down"),
        }
    }
}

/// Message and byte counts of a tunnel, per direction. Shared by both directions of the pump.
#[derive(Debug, Default)]
pub struct Counters {
    total: AtomicU64,
    phone_messages: AtomicU64,
    phone_bytes: AtomicU64,
    browser_messages: AtomicU64,
    browser_bytes: AtomicU64,
}

/// A snapshot of [`Counters`], for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Messages and bytes the phone sent to the browser.
    pub phone_messages: u64,
    pub phone_bytes: u64,
    /// Messages and bytes the browser sent to the phone.
    pub browser_messages: u64,
    pub browser_bytes: u64,
}

impl Counters {
    /// Counts one message of `len` bytes from `from`, unless that would exceed `limit`
    /// messages in all. Returns whether it was counted (may be forwarded).
    pub(crate) fn admit(&self, from: Side, len: usize, limit: u64) -> bool {
        let admitted = self
            .total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            let (messages, bytes) = match from {
                Side::Phone => (&self.phone_messages, &self.phone_bytes),
                Side::Browser => (&self.browser_messages, &self.browser_bytes),
            };
            messages.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(len as u64, Ordering::Relaxed);
        }
        admitted
    }

    pub(crate) fn totals(&self) -> Totals {
        Totals {
            phone_messages: self.phone_messages.load(Ordering::Relaxed),
            phone_bytes: self.phone_bytes.load(Ordering::Relaxed),
            browser_messages: self.browser_messages.load(Ordering::Relaxed),
            browser_bytes: self.browser_bytes.load(Ordering::Relaxed),
        }
    }
}

/// What one read from a socket means for the tunnel.
pub(crate) enum Incoming {
    Data(Bytes),
    /// A control message the websocket layer handles (ping, pong): nothing to forward.
    Skip,
    End(End),
}

/// Interprets the next item of a socket's stream.
pub(crate) fn classify(from: Side, item: Option<Result<Message, WsError>>) -> Incoming {
    let gone = |detail: &str| {
        Incoming::End(End::Gone {
            by: from,
            detail: detail.to_string(),
        })
    };
    match item {
        None => gone("connection closed"),
        Some(Ok(Message::Binary(data))) => Incoming::Data(data),
        Some(Ok(Message::Text(_))) => Incoming::End(End::Text { by: from }),
        Some(Ok(Message::Close(frame))) => Incoming::End(End::Closed { by: from, frame }),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Incoming::Skip,
        Some(Err(WsError::Capacity(_))) => Incoming::End(End::TooBig { by: from }),
        Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
            gone("no close frame")
        }
        Some(Err(WsError::Protocol(error))) => Incoming::End(End::Protocol {
            by: from,
            detail: error.to_string(),
        }),
        Some(Err(WsError::Utf8(_))) => Incoming::End(End::Protocol {
            by: from,
            detail: "invalid UTF-8".to_string(),
        }),
        Some(Err(WsError::Io(error))) => gone(&error.to_string()),
        Some(Err(error)) => gone(&error.to_string()),
    }
}

/// Forwards binary messages from one socket to the other until something ends the tunnel.
async fn forward<S>(
    from: Side,
    source: &mut SplitStream<WebSocketStream<S>>,
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    counters: &Counters,
    max_messages: u64,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match classify(from, source.next().await) {
            Incoming::Data(data) => {
                if !counters.admit(from, data.len(), max_messages) {
                    return End::MessageLimit;
                }
                if let Err(error) = sink.send(Message::Binary(data)).await {
                    return End::Gone {
                        by: from.other(),
                        detail: error.to_string(),
                    };
                }
            }
            Incoming::Skip => {}
            Incoming::End(end) => return end,
        }
    }
}

/// Runs a joined tunnel until it ends, then closes both sockets. `pending` are the phone's
/// messages that arrived before the browser joined (already counted).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn pump<S>(
    phone: WebSocketStream<S>,
    browser: WebSocketStream<S>,
    pending: Vec<Bytes>,
    counters: &Counters,
    max_messages: u64,
    deadline: Instant,
    shutdown: &CancellationToken,
    close_grace: Duration,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut phone_tx, mut phone_rx) = phone.split();
    let (mut browser_tx, mut browser_rx) = browser.split();

    let run = async {
        for data in pending {
            if let Err(error) = browser_tx.send(Message::Binary(data)).await {
                return End::Gone {
                    by: Side::Browser,
                    detail: error.to_string(),
                };
            }
        }
        tokio::select! {
            end = forward(Side::Phone, &mut phone_rx, &mut browser_tx, counters, max_messages) => end,
            end = forward(Side::Browser, &mut browser_rx, &mut phone_tx, counters, max_messages) => end,
        }
    };
    let end = tokio::select! {
        end = run => end,
        () = tokio::time::sleep_until(deadline) => End::Lifetime,
        () = shutdown.cancelled() => End::Shutdown,
    };

    let phone = phone_rx.reunite(phone_tx).expect("halves of one socket");
    let browser = browser_rx
        .reunite(browser_tx)
        .expect("halves of one socket");
    tokio::join!(
        close(phone, end.close_frame_for(Side::Phone), close_grace),
        close(browser, end.close_frame_for(Side::Browser), close_grace),
    );
    end
}

/// Closes one socket: sends or acknowledges the close frame, then half-closes the connection
/// and reads (and discards) what the peer still sends until it hangs up, so that unread
/// input does not turn the close into a reset. Takes at most about twice `grace`.
pub(crate) async fn close<S>(mut socket: WebSocketStream<S>, closing: Closing, grace: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match closing {
        Closing::Send(frame) => {
            let _ = tokio::time::timeout(grace, socket.send(Message::Close(frame))).await;
        }
        Closing::Acknowledge => {
            let _ = tokio::time::timeout(grace, socket.flush()).await;
        }
        Closing::Nothing => {}
    }
    let mut io = socket.into_inner();
    let _ = tokio::time::timeout(grace, async {
        let _ = io.shutdown().await;
        let mut sink = [0u8; 4096];
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_stop_at_the_limit() {
        let counters = Counters::default();
        assert!(counters.admit(Side::Phone, 10, 3));
        assert!(counters.admit(Side::Browser, 5, 3));
        assert!(counters.admit(Side::Browser, 7, 3));
        assert!(!counters.admit(Side::Phone, 1, 3));
        assert_eq!(
            counters.totals(),
            Totals {
                phone_messages: 1,
                phone_bytes: 10,
                browser_messages: 2,
                browser_bytes: 12,
            }
        );
    }

    #[test]
    fn close_frames() {
        let code = |end: &End, side| match end.close_frame_for(side) {
            Closing::Send(Some(frame)) => Some(u16::from(frame.code)),
            _ => None,
        };
        let by_browser = End::Closed {
            by: Side::Browser,
            frame: Some(CloseFrame {
                code: CloseCode::Normal,
                reason: Utf8Bytes::from_static("bye"),
            }),
        };
        assert_eq!(
            by_browser.close_frame_for(Side::Browser),
            Closing::Acknowledge
        );
        assert_eq!(code(&by_browser, Side::Phone), Some(1000));
        let gone = End::Gone {
            by: Side::Phone,
            detail: String::new(),
        };
        assert_eq!(gone.close_frame_for(Side::Phone), Closing::Nothing);
        assert_eq!(code(&gone, Side::Browser), Some(1001));
        assert_eq!(
            code(&End::TooBig { by: Side::Phone }, Side::Browser),
            Some(1009)
        );
        assert_eq!(
            code(&End::Text { by: Side::Phone }, Side::Phone),
            Some(1002)
        );
        assert_eq!(code(&End::MessageLimit, Side::Phone), Some(1008));
        assert_eq!(code(&End::Lifetime, Side::Browser), Some(1008));
        assert_eq!(code(&End::JoinTimeout, Side::Phone), Some(1008));
        assert_eq!(code(&End::Shutdown, Side::Phone), Some(1001));
    }
}
