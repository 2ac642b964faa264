//! Push wake-up (docs/pairing-protocol.md §3.3): when a bridge sends WAKE and the phone is not
//! attached, the relay sends a content-free notification (the version and the wake id the
//! phone registered with the target, never the mailbox id) through the target's provider.
//!
//! Providers sit behind the [`PushProvider`] trait: [`WebhookProvider`] (self-hosting and
//! tests), [`FcmProvider`] (FCM HTTP v1) and [`ApnsProvider`] (APNs over HTTP/2, token auth).
//! [`PushService`] picks the provider for a target and rate-limits wakes per mailbox.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pocketkey_core::pairing::mailbox::MailboxId;
use pocketkey_core::pairing::relay::{PushProvider as ProviderKind, PushTarget};

pub mod apns;
pub mod fcm;
pub mod http;
mod token;
mod webhook;

pub use apns::{ApnsConfig, ApnsProvider};
pub use fcm::{FcmAuth, FcmConfig, FcmCredentials, FcmProvider};
pub use http::HttpError;
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
    /// and the relay drops it.
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

/// Why a provider's configuration cannot be used (found when the relay starts).
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
    /// Checks a target at registration (PUSH_REGISTER); `Err` answers ERROR `bad_push_target`.
    fn check_target(&self, target: &PushTarget) -> Result<(), PushError>;

    /// Sends the content-free wake-up carrying `target.wake` to `target`.
    fn wake<'a>(&'a self, target: &'a PushTarget) -> PushFuture<'a, Result<(), PushError>>;
}

/// The providers of a relay and the per-mailbox wake rate limit.
pub struct PushService {
    webhook: Option<Arc<dyn PushProvider>>,
    fcm: Option<Arc<dyn PushProvider>>,
    apns: Option<Arc<dyn PushProvider>>,
    interval: Duration,
    last: Mutex<HashMap<MailboxId, Instant>>,
    /// Targets a provider throttled, by (provider, target), and when they may be tried again.
    held: Mutex<HashMap<(&'static str, String), Instant>>,
}

impl Default for PushService {
    /// No provider: every target is refused, every wake finds no target.
    fn default() -> Self {
        Self::new(None, None, None)
    }
}

impl PushService {
    /// Providers by kind (`None`: targets of that kind are refused); one push per mailbox per
    /// 3 s.
    pub fn new(
        webhook: Option<Arc<dyn PushProvider>>,
        fcm: Option<Arc<dyn PushProvider>>,
        apns: Option<Arc<dyn PushProvider>>,
    ) -> Self {
        Self {
            webhook,
            fcm,
            apns,
            interval: Duration::from_secs(3),
            last: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Changes the per-mailbox interval between pushes (default 3 s).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    fn provider(&self, kind: ProviderKind) -> Result<&Arc<dyn PushProvider>, PushError> {
        match kind {
            ProviderKind::Webhook => self.webhook.as_ref(),
            ProviderKind::Fcm => self.fcm.as_ref(),
            ProviderKind::Apns => self.apns.as_ref(),
        }
        .ok_or_else(|| {
            PushError::BadTarget(format!("this relay has no {} provider", kind.as_str()))
        })
    }

    /// Checks a target at registration.
    pub fn check_target(&self, target: &PushTarget) -> Result<(), PushError> {
        self.provider(target.provider)?.check_target(target)
    }

    /// The least time between two pushes of one mailbox.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Takes the mailbox's push slot: false if a push went out less than the interval ago.
    pub fn try_acquire(&self, mailbox: MailboxId) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() > 10_000 {
            let interval = self.interval;
            last.retain(|_, at| now.duration_since(*at) < interval);
        }
        match last.get(&mailbox) {
            Some(at) if now.duration_since(*at) < self.interval => false,
            _ => {
                last.insert(mailbox, now);
                true
            }
        }
    }

    /// Sends the wake-up through the target's provider (no rate limit here: see
    /// [`try_acquire`](Self::try_acquire)).
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

pub(crate) use pocketkey_core::clock::unix_now;
