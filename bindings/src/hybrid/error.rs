//! How a hybrid session ends badly, as the apps see it: the runtime's `pocketkey_net::hybrid`
//! errors, variant for variant. Every message is a sentence an app can show as it is; the
//! `detail` fields are for logs, and never carry key material.

use pocketkey_net::hybrid;

/// What a session was waiting for when it timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum HybridWait {
    /// Opening the websocket to the tunnel server.
    TunnelServer,
    /// The browser's handshake, after the advert started (the user may not be near the computer,
    /// or Bluetooth is off there).
    Browser,
    /// The browser's next message, after the handshake.
    BrowserMessage,
}

impl std::fmt::Display for HybridWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TunnelServer => "the tunnel server",
            Self::Browser => "the browser to connect",
            Self::BrowserMessage => "the browser's next message",
        })
    }
}

/// Why a hybrid session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi::export(Display)]
pub enum HybridError {
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
    /// The Advertiser could not start the Bluetooth advert.
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
    TimedOut { waiting_for: HybridWait },
    /// `HybridSession.cancel()`.
    #[error("The session was cancelled")]
    Cancelled,
    /// A bug or an engine state the app cannot fix.
    #[error("Something went wrong inside the security key")]
    Internal { detail: String },
}

#[uniffi::export]
impl HybridError {
    /// The sentence to show the user (the same as the error's string form).
    pub fn user_message(&self) -> String {
        self.to_string()
    }
}

/// Every runtime error keeps its variant and fields: the runtime's sentences are the same.
impl From<hybrid::Error> for HybridError {
    fn from(e: hybrid::Error) -> Self {
        use hybrid::Error as E;
        match e {
            E::InvalidQrCode { detail } => Self::InvalidQrCode { detail },
            E::ExpiredQrCode { detail } => Self::ExpiredQrCode { detail },
            E::QrCodeClockMismatch { detail } => Self::QrCodeClockMismatch { detail },
            E::InvalidOptions { detail } => Self::InvalidOptions { detail },
            E::TunnelUnreachable { detail } => Self::TunnelUnreachable { detail },
            E::TunnelRefused { status } => Self::TunnelRefused { status },
            E::TunnelProtocol { detail } => Self::TunnelProtocol { detail },
            E::TunnelClosed { detail } => Self::TunnelClosed { detail },
            E::AdvertiserFailed { reason } => Self::AdvertiserFailed { reason },
            E::HandshakeFailed { detail } => Self::HandshakeFailed { detail },
            E::TransportFailed { detail } => Self::TransportFailed { detail },
            E::TimedOut { waiting_for } => Self::TimedOut {
                waiting_for: waiting_for.into(),
            },
            E::Cancelled => Self::Cancelled,
            E::Internal { detail } => Self::Internal { detail },
        }
    }
}

impl From<hybrid::Wait> for HybridWait {
    fn from(w: hybrid::Wait) -> Self {
        match w {
            hybrid::Wait::TunnelServer => Self::TunnelServer,
            hybrid::Wait::Browser => Self::Browser,
            hybrid::Wait::BrowserMessage => Self::BrowserMessage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exported sentences are the runtime's, variant for variant.
    #[test]
    fn every_runtime_error_reads_the_same_here() {
        let detail = || "d".to_string();
        let all = [
            hybrid::Error::InvalidQrCode { detail: detail() },
            hybrid::Error::ExpiredQrCode { detail: detail() },
            hybrid::Error::QrCodeClockMismatch { detail: detail() },
            hybrid::Error::InvalidOptions { detail: detail() },
            hybrid::Error::TunnelUnreachable { detail: detail() },
            hybrid::Error::TunnelRefused { status: 503 },
            hybrid::Error::TunnelProtocol { detail: detail() },
            hybrid::Error::TunnelClosed { detail: detail() },
            hybrid::Error::AdvertiserFailed { reason: detail() },
            hybrid::Error::HandshakeFailed { detail: detail() },
            hybrid::Error::TransportFailed { detail: detail() },
            hybrid::Error::TimedOut {
                waiting_for: hybrid::Wait::TunnelServer,
            },
            hybrid::Error::TimedOut {
                waiting_for: hybrid::Wait::Browser,
            },
            hybrid::Error::TimedOut {
                waiting_for: hybrid::Wait::BrowserMessage,
            },
            hybrid::Error::Cancelled,
            hybrid::Error::Internal { detail: detail() },
        ];
        for e in all {
            assert_eq!(
                HybridError::from(e.clone()).user_message(),
                e.user_message()
            );
        }
    }
}
