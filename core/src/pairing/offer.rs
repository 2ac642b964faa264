//! The bridge's pairing offer: a fresh static key pair and one-time secret behind one QR code.
//!
//! An offer lives in memory only and is good for one handshake: starting the bridge's
//! first-contact session ([`super::session::Session::bridge_first_contact`]) consumes it, so a
//! used QR code cannot pair again, whatever the outcome. It also expires after
//! [`OFFER_LIFETIME_SECS`]; the bridge then shows a new one.

use p256::SecretKey;
use rand_core::OsRng;

use super::mailbox::MailboxKeys;
use super::url::{PairingSecret, PairingUrl, UrlError, UrlPolicy};

/// How long a QR code may be used, in seconds.
pub const OFFER_LIFETIME_SECS: u64 = 600;

/// One pairing QR code's secrets.
pub struct PairingOffer {
    static_key: SecretKey,
    url: PairingUrl,
    created_at: u64,
}

impl std::fmt::Debug for PairingOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingOffer")
            .field("name", &self.url.name)
            .field("relay_url", &self.url.relay_url)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl PairingOffer {
    /// A new offer for `relay_url` and this computer's `name`, at `now` (Unix seconds).
    pub fn generate(
        relay_url: &str,
        name: &str,
        policy: UrlPolicy,
        now: u64,
    ) -> Result<Self, UrlError> {
        Self::from_parts(
            SecretKey::random(&mut OsRng),
            PairingSecret::generate(),
            relay_url,
            name,
            policy,
            now,
        )
    }

    /// An offer from given parts (tests and known-answer vectors).
    pub fn from_parts(
        static_key: SecretKey,
        secret: PairingSecret,
        relay_url: &str,
        name: &str,
        policy: UrlPolicy,
        now: u64,
    ) -> Result<Self, UrlError> {
        let url = PairingUrl::new(static_key.public_key(), secret, relay_url, name, policy)?;
        Ok(Self {
            static_key,
            url,
            created_at: now,
        })
    }

    /// What the QR code shows.
    pub fn url(&self) -> &PairingUrl {
        &self.url
    }

    /// The rendezvous mailbox the bridge waits on.
    pub fn mailbox(&self) -> MailboxKeys {
        MailboxKeys::rendezvous(&self.url.bridge_key, &self.url.secret)
    }

    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// Whether the offer is too old to use at `now` (Unix seconds; a clock that went back
    /// counts as expired too, which only costs a new QR code).
    pub fn is_expired(&self, now: u64) -> bool {
        now < self.created_at || now - self.created_at >= OFFER_LIFETIME_SECS
    }

    pub(crate) fn into_parts(self) -> (SecretKey, PairingUrl) {
        (self.static_key, self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_fresh_and_expire() {
        let a = PairingOffer::generate("wss://r", "pc", UrlPolicy::Strict, 1000).unwrap();
        let b = PairingOffer::generate("wss://r", "pc", UrlPolicy::Strict, 1000).unwrap();
        assert_ne!(a.url().bridge_key, b.url().bridge_key);
        assert_ne!(a.url().secret, b.url().secret);
        assert_ne!(a.mailbox().id(), b.mailbox().id());
        assert!(!a.is_expired(1000));
        assert!(!a.is_expired(1000 + OFFER_LIFETIME_SECS - 1));
        assert!(a.is_expired(1000 + OFFER_LIFETIME_SECS));
        assert!(a.is_expired(999));
        let shown = format!("{a:?}");
        assert!(!shown.contains(&crate::pairing::encoding::b64u_encode(
            a.url().secret.expose()
        )));
        // The phone derives the same rendezvous from the URL text.
        let parsed = PairingUrl::parse(&a.url().to_url_string()).unwrap();
        assert_eq!(
            MailboxKeys::rendezvous(&parsed.bridge_key, &parsed.secret).id(),
            a.mailbox().id()
        );
    }
}
