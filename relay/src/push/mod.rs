//! Push wake-up glue (docs/pairing-protocol.md §3.3): when a bridge sends WAKE and the phone is
//! not attached, the relay sends a content-free notification through the target's provider.
//! The providers and their HTTP client are the `pocketkey-push` crate (re-exported here); what
//! is the relay's own is [`PushService`]: the providers it was started with and the
//! per-mailbox least interval between two wakes.

use std::sync::Arc;
use std::time::Duration;

use pocketkey_core::pairing::mailbox::MailboxId;
use pocketkey_core::pairing::relay::PushTarget;

pub use pocketkey_push::{
    apns, fcm, http, AllowedWebhook, ApnsConfig, ApnsProvider, ConfigError, FcmAuth, FcmConfig,
    FcmCredentials, FcmProvider, HttpError, Interval, ProviderOptions, Providers, PushError,
    PushFuture, PushProvider, WebhookProvider, WebhookUrlError, DEFAULT_RETRY_AFTER,
};

/// The providers of a relay and the per-mailbox wake rate limit.
pub struct PushService {
    providers: Providers,
    per_mailbox: Interval<MailboxId>,
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
        Self::with_providers(Providers::new(webhook, fcm, apns))
    }

    /// These providers; one push per mailbox per 3 s.
    pub fn with_providers(providers: Providers) -> Self {
        Self {
            providers,
            per_mailbox: Interval::new(Duration::from_secs(3)),
        }
    }

    /// Changes the per-mailbox interval between pushes (default 3 s).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.per_mailbox = Interval::new(interval);
        self
    }

    /// Checks a target at registration (PUSH_REGISTER); `Err` answers ERROR `bad_push_target`.
    pub fn check_target(&self, target: &PushTarget) -> Result<(), PushError> {
        self.providers.check_target(target)
    }

    /// The least time between two pushes of one mailbox.
    pub fn interval(&self) -> Duration {
        self.per_mailbox.interval()
    }

    /// Takes the mailbox's push slot: false if a push went out less than the interval ago.
    pub fn try_acquire(&self, mailbox: MailboxId) -> bool {
        self.per_mailbox.try_acquire(mailbox)
    }

    /// Sends the wake-up through the target's provider (no rate limit here: see
    /// [`try_acquire`](Self::try_acquire)); a target its provider throttled gets nothing
    /// before the provider's Retry-After.
    pub async fn wake(&self, target: &PushTarget) -> Result<(), PushError> {
        self.providers.wake(target).await
    }
}
