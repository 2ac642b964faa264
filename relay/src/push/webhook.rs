//! The webhook provider: `POST <url>` with `{"v":1,"mailbox":"<hex M>"}`; any 2xx is success.
//! Only URLs under configured prefixes are accepted (the relay must not be made to POST to
//! arbitrary hosts).

use std::time::Duration;

use pocketkey_core::pairing::mailbox::MailboxId;
use pocketkey_core::pairing::relay::PushTarget;

use super::http::{self, HttpVersion, Request};
use super::{PushError, PushFuture, PushProvider};

/// POSTs wake-ups to URLs under its allowed prefixes.
#[derive(Debug, Clone)]
pub struct WebhookProvider {
    allowed: Vec<String>,
    timeout: Duration,
    client: std::sync::Arc<http::Client>,
}

impl WebhookProvider {
    /// Uses this HTTP client (e.g. one trusting other TLS roots).
    pub fn with_client(mut self, client: http::Client) -> Self {
        self.client = std::sync::Arc::new(client);
        self
    }

    /// A provider accepting URLs that start with one of `allowed` (e.g. `https://wake.example/`
    /// or `http://127.0.0.1:8080/`). Prefixes should end with `/` (after the host and port) so
    /// that `https://wake.example.evil` does not match `https://wake.example`; URLs with
    /// userinfo (`@` in the authority) are refused.
    pub fn new(allowed: Vec<String>) -> Self {
        Self {
            allowed,
            timeout: Duration::from_secs(10),
            client: Default::default(),
        }
    }

    /// The body posted for a mailbox.
    pub fn body(mailbox: MailboxId) -> Vec<u8> {
        serde_json::json!({"v": 1, "mailbox": mailbox.to_hex()})
            .to_string()
            .into_bytes()
    }
}

impl PushProvider for WebhookProvider {
    fn check_target(&self, target: &PushTarget) -> Result<(), PushError> {
        let url = &target.target;
        let uri = url
            .parse::<hyper::Uri>()
            .map_err(|_| PushError::BadTarget("not an http(s) URL".into()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(PushError::BadTarget("not an http(s) URL".into()));
        }
        // Userinfo would let `http://allowed.example:1@elsewhere/` pass a prefix check.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(PushError::BadTarget("userinfo is not allowed".into()));
        }
        if !self.allowed.iter().any(|prefix| url.starts_with(prefix)) {
            return Err(PushError::BadTarget(
                "URL not under an allowed prefix".into(),
            ));
        }
        Ok(())
    }

    fn wake<'a>(
        &'a self,
        target: &'a PushTarget,
        mailbox: MailboxId,
    ) -> PushFuture<'a, Result<(), PushError>> {
        Box::pin(async move {
            self.check_target(target)?;
            let request = Request::post(
                target.target.clone(),
                vec![("content-type".into(), "application/json".into())],
                Self::body(mailbox),
                HttpVersion::Http1,
            );
            let response = self
                .client
                .send(request, self.timeout)
                .await
                .map_err(PushError::Failed)?;
            if !response.status.is_success() {
                return Err(PushError::Failed(response.refusal("webhook")));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pocketkey_core::pairing::relay::PushProvider as Kind;

    fn target(url: &str) -> PushTarget {
        PushTarget {
            provider: Kind::Webhook,
            target: url.into(),
            environment: None,
        }
    }

    #[test]
    fn only_urls_under_the_prefixes() {
        let hook = WebhookProvider::new(vec![
            "https://wake.example/".into(),
            "http://127.0.0.1:".into(),
        ]);
        for ok in ["https://wake.example/x", "http://127.0.0.1:9/w"] {
            assert!(hook.check_target(&target(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "https://wake.example.evil/x",
            "http://127.0.0.1:80@evil.example/",
            "ftp://wake.example/",
            "http://10.0.0.1/",
            "not a url",
        ] {
            assert!(hook.check_target(&target(bad)).is_err(), "{bad}");
        }
    }
}
