//! How a hybrid session ends badly. Every message is a sentence an app can show as it is; the
//! `detail` fields are for logs and the command line, and never carry key material.

/// What a session was waiting for when it timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Opening the websocket to the tunnel server.
    TunnelServer,
    /// The browser's handshake, after the advert started (the user may not be near the computer,
    /// or Bluetooth is off there).
    Browser,
    /// The browser's next message, after the handshake.
    BrowserMessage,
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TunnelServer => "the tunnel server",
            Self::Browser => "the browser to connect",
            Self::BrowserMessage => "the browser's next message",
        })
    }
}

/// Why a hybrid session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The scanned text is not a valid `FIDO:/` code (the detail names the fault).
    #[error("This is not a valid passkey QR code")]
    InvalidQrCode { detail: String },
    /// The code's timestamp is too old: a photo or an old screenshot, not a browser waiting
    /// now (`pocketkey_core::hybrid::qr::MAX_CODE_AGE_SECS`).
    #[error("This code has expired: show a new one in the browser")]
    ExpiredQrCode { detail: String },
    /// The code's timestamp is ahead of this phone's clock by more than any clock error.
    #[error("This code's time does not match this phone's clock: check the date and time")]
    QrCodeClockMismatch { detail: String },
    /// The tunnel URL override or the tunnel server id cannot be used.
    #[error("The tunnel server setting is not valid")]
    InvalidOptions { detail: String },
    /// DNS, TCP or TLS failed before the tunnel server answered.
    #[error("The tunnel server could not be reached: check the phone's internet connection")]
    TunnelUnreachable { detail: String },
    /// The tunnel server answered with an HTTP status instead of opening the tunnel.
    #[error("The tunnel server refused the connection (HTTP {status})")]
    TunnelRefused { status: u16 },
    /// The tunnel server opened the websocket but broke the protocol (no routing id, text
    /// messages, oversized messages…).
    #[error("The tunnel server did not follow the hybrid protocol")]
    TunnelProtocol { detail: String },
    /// The tunnel closed before the browser ended the session.
    #[error("The connection to the browser was lost")]
    TunnelClosed { detail: String },
    /// The AdvertSender could not start the Bluetooth advert.
    #[error("Bluetooth advertising could not start")]
    AdvertiserFailed { reason: String },
    /// The browser's handshake did not authenticate: another QR code, a wrong or tampered
    /// advert, or tampered handshake bytes.
    #[error("The browser could not be verified: scan the QR code again")]
    HandshakeFailed { detail: String },
    /// A message after the handshake did not decrypt (tampered, replayed, reordered) or broke
    /// the protocol.
    #[error("A message from the browser was damaged or out of order")]
    TransportFailed { detail: String },
    #[error("Timed out waiting for {waiting_for}")]
    TimedOut { waiting_for: Wait },
    /// `SessionHandle.cancel()`.
    #[error("The session was cancelled")]
    Cancelled,
    /// A bug or an engine state the app cannot fix.
    #[error("Something went wrong inside the security key")]
    Internal { detail: String },
}

impl Error {
    /// The sentence to show the user (the same as the error's string form).
    pub fn user_message(&self) -> String {
        self.to_string()
    }

    /// The technical detail, for logs and the command line.
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::InvalidQrCode { detail }
            | Self::ExpiredQrCode { detail }
            | Self::QrCodeClockMismatch { detail }
            | Self::InvalidOptions { detail }
            | Self::TunnelUnreachable { detail }
            | Self::TunnelProtocol { detail }
            | Self::TunnelClosed { detail }
            | Self::HandshakeFailed { detail }
            | Self::TransportFailed { detail }
            | Self::Internal { detail } => Some(detail.clone()),
            Self::AdvertiserFailed { reason } => Some(reason.clone()),
            Self::TunnelRefused { .. } | Self::TimedOut { .. } | Self::Cancelled => None,
        }
    }

    /// The sentence followed by the detail, for the command line and logs.
    pub fn describe(&self) -> String {
        match self.detail() {
            Some(detail) if !detail.is_empty() => format!("{self} ({detail})"),
            _ => self.to_string(),
        }
    }
}
