//! A running hybrid session as the apps see it: the options they start it with, the handle
//! they wait on or cancel, and how it went. Each wraps its `pocketkey_net::hybrid` twin.

use std::time::Duration;

use pocketkey_net::hybrid;

use super::error::HybridError;

/// Tunable parts of a hybrid session. `Default` (and the foreign languages' defaults) are what
/// a phone should use.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HybridOptions {
    /// Replaces `wss://<domain of the advert's tunnel server id>` (tests, self-hosting):
    /// `ws://HOST:PORT` or `wss://HOST[:PORT][/prefix]`; the phone connects to
    /// `<tunnel_url>/cable/new/<TUNNEL ID>`. The browser still finds the tunnel server from
    /// `domain_id`.
    #[uniffi(default = None)]
    pub tunnel_url: Option<String>,
    /// The tunnel server id written into the advert: 0 `cable.ua5v.com` (every browser knows
    /// it), 1 `cable.auth.com`, 256.. hashed names (a self-hosted server must be reachable
    /// under the name its id hashes to).
    #[uniffi(default = 0)]
    pub domain_id: u16,
    /// Reaching the tunnel server (TCP, TLS, websocket upgrade).
    #[uniffi(default = 10000)]
    pub connect_timeout_ms: u64,
    /// From the start of the advert to the browser's handshake.
    #[uniffi(default = 120000)]
    pub browser_timeout_ms: u64,
    /// Between browser messages after the handshake (not counting the time the user takes to
    /// approve, which the approval timeout bounds).
    #[uniffi(default = 60000)]
    pub message_timeout_ms: u64,
    /// DER certificates to trust besides the Mozilla roots, for a self-hosted tunnel server
    /// behind a private certificate authority.
    #[uniffi(default = [])]
    pub trusted_certificates: Vec<Vec<u8>>,
}

impl Default for HybridOptions {
    fn default() -> Self {
        hybrid::Options::default().into()
    }
}

impl From<hybrid::Options> for HybridOptions {
    fn from(o: hybrid::Options) -> Self {
        Self {
            tunnel_url: o.tunnel_url,
            domain_id: o.domain_id,
            connect_timeout_ms: o.connect_timeout_ms,
            browser_timeout_ms: o.browser_timeout_ms,
            message_timeout_ms: o.message_timeout_ms,
            trusted_certificates: o.trusted_certificates,
        }
    }
}

impl From<HybridOptions> for hybrid::Options {
    fn from(o: HybridOptions) -> Self {
        Self {
            tunnel_url: o.tunnel_url,
            domain_id: o.domain_id,
            connect_timeout_ms: o.connect_timeout_ms,
            browser_timeout_ms: o.browser_timeout_ms,
            message_timeout_ms: o.message_timeout_ms,
            trusted_certificates: o.trusted_certificates,
        }
    }
}

/// How a session that the browser ended went.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HybridOutcome {
    /// CTAP requests the browser sent (getInfo, makeCredential, getAssertion…).
    pub requests: u32,
}

impl From<hybrid::Outcome> for HybridOutcome {
    fn from(o: hybrid::Outcome) -> Self {
        Self {
            requests: o.requests,
        }
    }
}

/// A running hybrid session (one scanned QR code). It runs on its own thread from
/// `start_hybrid` on; `wait` blocks until it ends, `cancel` ends it early. Dropping the handle
/// does not stop the session (it ends by itself: shutdown, error or timeout).
#[derive(uniffi::Object)]
pub struct HybridSession {
    inner: hybrid::SessionHandle,
}

impl std::fmt::Debug for HybridSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridSession")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl From<hybrid::SessionHandle> for HybridSession {
    fn from(inner: hybrid::SessionHandle) -> Self {
        Self { inner }
    }
}

fn finished(r: Result<hybrid::Outcome, hybrid::Error>) -> Result<HybridOutcome, HybridError> {
    r.map(HybridOutcome::from).map_err(HybridError::from)
}

#[uniffi::export]
impl HybridSession {
    /// Blocks until the session ends: `HybridOutcome` after the browser's shutdown, the
    /// `HybridError` otherwise. May be called again (and from several threads): same answer.
    pub fn wait(&self) -> Result<HybridOutcome, HybridError> {
        finished(self.inner.wait())
    }

    /// Ends the session soon (at once, or within tens of milliseconds, or the time left to
    /// reach the tunnel server while connecting to it): the advert stops, a pending approval is cancelled, the tunnel closes,
    /// and `wait` returns `Cancelled` — unless the session had already ended.
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Whether `wait` would return at once.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

impl HybridSession {
    /// [`HybridSession::wait`] for at most `timeout`; `None` if still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<HybridOutcome, HybridError>> {
        self.inner.wait_timeout(timeout).map(finished)
    }
}
