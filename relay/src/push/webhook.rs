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
}

impl WebhookProvider {
    /// A provider accepting URLs that start with one of `allowed` (e.g. `https://wake.example/`
    /// or `http://127.0.0.1:`). Prefixes should end with `/` or `:` so that
    /// `https://wake.example.evil` does not match `https://wake.example`.
    pub fn new(allowed: Vec<String>) -> Self {
        Self {
            allowed,
            timeout: Duration::from_secs(10),
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
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.parse::<hyper::Uri>().is_err()
        {
            return Err(PushError::BadTarget("not an http(s) URL".into()));
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
            let response = http::send(
                Request {
                    method: hyper::Method::POST,
                    url: target.target.clone(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: Self::body(mailbox),
                    version: HttpVersion::Http1,
                },
                self.timeout,
            )
            .await
            .map_err(PushError::Failed)?;
            if response.status.is_success() {
                Ok(())
            } else {
                Err(PushError::Failed(format!(
                    "webhook answered {}",
                    response.status
                )))
            }
        })
    }
}
