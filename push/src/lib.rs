//! Push wake-ups (docs/pairing-protocol.md §3.3): a content-free notification (a version and
//! the wake id the phone registered with its target, nothing else) sent through the target's
//! provider, so that a phone that is not connected comes back and fetches what waits for it.
//! The relay sends them for a bridge's WAKE, the organisation server after a revocation or a
//! new job (docs/org.md).
//!
//! Providers sit behind the [`PushProvider`] trait: [`WebhookProvider`] (self-hosting and
//! tests), [`FcmProvider`] (FCM HTTP v1) and [`ApnsProvider`] (APNs over HTTP/2, token auth),
//! all on one HTTP client ([`http::Client`], reqwest with rustls). [`Providers`] picks the
//! provider for a target and holds back a target its provider throttled; [`Interval`] is a
//! per-key least time between two pushes. [`ProviderOptions`] are the command-line options
//! both servers take.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pocketkey_core::pairing::relay::{PushProvider as ProviderKind, PushTarget};

pub mod apns;
pub mod fcm;
pub mod http;
mod options;
mod token;
mod webhook;

pub use apns::{ApnsConfig, ApnsProvider};
pub use fcm::{FcmAuth, FcmConfig, FcmCredentials, FcmProvider};
pub use http::HttpError;
pub use options::ProviderOptions;
pub use webhook::{AllowedWebhook, WebhookProvider, WebhookUrlError};

pub type PushFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a push was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The target is not acceptable for this provider (or the provider is not configured).
    #[error("bad push target: {0}")]
    BadTarget(String),
    /// The provider could not be reached or refused the notification.
    #[error("push provider failed: {0}")]
    Failed(String),
    /// The provider says the token is not (or no longer) valid: FCM UNREGISTERED or
    /// INVALID_ARGUMENT, APNs 410 Unregistered or 400 BadDeviceToken. The target is useless
    /// and its holder drops it.
    #[error("push target no longer valid: {0}")]
    Unregistered(String),
    /// The provider asks for fewer requests (429): nothing goes to this target before
    /// `retry_after` has passed.
    #[error("push provider throttled ({reason}); retry in {}s", retry_after.as_secs())]
    Throttled {
        retry_after: Duration,
        reason: String,
    },
}

/// How long a target is left alone after a 429 that says nothing of when to retry: FCM's
/// QUOTA_EXCEEDED asks for a backoff starting at one minute
/// (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode); APNs names no wait for
/// TooManyRequests, so the same is used.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

impl PushError {
    /// The error for a 429 answer, waiting what the provider's `Retry-After` asks.
    pub(crate) fn throttled(response: &http::Response, who: &str) -> Self {
        Self::Throttled {
            retry_after: response.retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
            reason: response.refusal(who),
        }
    }
}

/// Why a provider's configuration cannot be used (found when the server starts).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("APNs key is not a PKCS#8 P-256 private key: {0}")]
    ApnsKey(p256::pkcs8::Error),
    #[error("credentials: {0}")]
    FcmCredentials(serde_json::Error),
    #[error("credentials: no {0}")]
    FcmCredentialField(&'static str),
    #[error("service-account key: {0}")]
    FcmKey(rsa::pkcs8::Error),
}

/// One push provider.
pub trait PushProvider: Send + Sync + 'static {
    /// Checks a target at registration.
    fn check_target(&self, target: &PushTarget) -> Result<(), PushError>;

    /// Sends the content-free wake-up carrying `target.wake` to `target`.
    fn wake<'a>(&'a self, target: &'a PushTarget) -> PushFuture<'a, Result<(), PushError>>;
}

/// A server's providers by kind, and the targets a provider throttled.
pub struct Providers {
    webhook: Option<Arc<dyn PushProvider>>,
    fcm: Option<Arc<dyn PushProvider>>,
    apns: Option<Arc<dyn PushProvider>>,
    /// Targets a provider throttled, by (provider, target), and when they may be tried again.
    held: Mutex<HashMap<(&'static str, String), Instant>>,
}

impl Default for Providers {
    /// No provider: every target is refused.
    fn default() -> Self {
        Self::new(None, None, None)
    }
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("webhook", &self.webhook.is_some())
            .field("fcm", &self.fcm.is_some())
            .field("apns", &self.apns.is_some())
            .finish_non_exhaustive()
    }
}

impl Providers {
    /// Providers by kind (`None`: targets of that kind are refused).
    pub fn new(
        webhook: Option<Arc<dyn PushProvider>>,
        fcm: Option<Arc<dyn PushProvider>>,
        apns: Option<Arc<dyn PushProvider>>,
    ) -> Self {
        Self {
            webhook,
            fcm,
            apns,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any provider is configured.
    pub fn any(&self) -> bool {
        self.webhook.is_some() || self.fcm.is_some() || self.apns.is_some()
    }

    fn provider(&self, kind: ProviderKind) -> Result<&Arc<dyn PushProvider>, PushError> {
        match kind {
            ProviderKind::Webhook => self.webhook.as_ref(),
            ProviderKind::Fcm => self.fcm.as_ref(),
            ProviderKind::Apns => self.apns.as_ref(),
        }
        .ok_or_else(|| {
            PushError::BadTarget(format!("this server has no {} provider", kind.as_str()))
        })
    }

    /// Checks a target at registration.
    pub fn check_target(&self, target: &PushTarget) -> Result<(), PushError> {
        self.provider(target.provider)?.check_target(target)
    }

    /// Sends the wake-up through the target's provider (no per-key rate limit here: see
    /// [`Interval`]).
    ///
    /// A target its provider throttled gets nothing before the provider's Retry-After: the wake
    /// is answered [`PushError::Throttled`] with the time left, and no request goes out.
    pub async fn wake(&self, target: &PushTarget) -> Result<(), PushError> {
        let provider = self.provider(target.provider)?.clone();
        let key = (target.provider.as_str(), target.target.clone());
        if let Some(left) = self.held_for(&key) {
            return Err(PushError::Throttled {
                retry_after: left,
                reason: "held after the provider's 429".into(),
            });
        }
        let result = provider.wake(target).await;
        if let Err(PushError::Throttled { retry_after, .. }) = &result {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if held.len() > 10_000 {
                held.retain(|_, until| *until > now);
            }
            held.insert(key, now + *retry_after);
        }
        result
    }

    /// How long `key` is still held after a 429, if it is.
    fn held_for(&self, key: &(&'static str, String)) -> Option<Duration> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let until = *held.get(key)?;
        match until.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                held.remove(key);
                None
            }
        }
    }
}

/// At most one push per key per interval (a mailbox at the relay, a device key at the
/// organisation server): a burst of events wakes the phone once, and it fetches everything.
#[derive(Debug)]
pub struct Interval<K> {
    interval: Duration,
    last: Mutex<HashMap<K, Instant>>,
}

impl<K: Eq + Hash> Interval<K> {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The least time between two pushes of one key.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Takes the key's push slot: false if a push went out less than the interval ago.
    pub fn try_acquire(&self, key: K) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() > 10_000 {
            let interval = self.interval;
            last.retain(|_, at| now.duration_since(*at) < interval);
        }
        match last.get(&key) {
            Some(at) if now.duration_since(*at) < self.interval => false,
            _ => {
                last.insert(key, now);
                true
            }
        }
    }
}

pub(crate) use pocketkey_core::clock::unix_now;
