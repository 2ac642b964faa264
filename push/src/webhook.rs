//! The webhook provider: `POST <url>` with `{"v":1,"w":"<hex wake id>"}`; any 2xx is success.
//! Only URLs an allow-list entry admits are accepted (the relay must not be made to POST to
//! arbitrary hosts): each entry is a URL, and a target must have its scheme, host and port
//! exactly, and a path under the entry's path on a segment boundary.

use std::time::Duration;

use pocketkey_core::pairing::relay::{PushTarget, WakeId};
use url::Url;

use crate::http::{self, HttpVersion, Request};
use crate::{PushError, PushFuture, PushProvider};

/// One `--webhook-allow` entry: scheme, host, port (the scheme's default when not written)
/// and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedWebhook {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

/// Why an allow-list entry or a target is not a usable webhook URL (each names the text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("{0:?} is not a URL ({1})")]
    NotUrl(String, url::ParseError),
    #[error("{0:?} is not an http(s) URL")]
    NotHttp(String),
    #[error("{0:?} has no host")]
    NoHost(String),
    #[error("{0:?} has userinfo")]
    Userinfo(String),
    #[error("{0:?} has an empty port: write the port")]
    EmptyPort(String),
    #[error("{0:?} has a query or fragment")]
    QueryOrFragment(String),
}

fn parse_http_url(text: &str) -> Result<Url, WebhookUrlError> {
    let url = Url::parse(text).map_err(|e| WebhookUrlError::NotUrl(text.into(), e))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WebhookUrlError::NotHttp(text.into()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(WebhookUrlError::NoHost(text.into()));
    }
    // Userinfo would let `http://allowed.example:1@elsewhere/` look like an allowed host.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookUrlError::Userinfo(text.into()));
    }
    Ok(url)
}

impl AllowedWebhook {
    /// Parses an entry such as `https://wake.example.org` or `http://127.0.0.1:8080/hooks/`:
    /// an http(s) URL with a host, without userinfo, query or fragment.
    pub fn parse(text: &str) -> Result<Self, WebhookUrlError> {
        let url = parse_http_url(text)?;
        // `http://127.0.0.1:` reads as "any port" to a person and as port 80 to a URL
        // parser: refuse it rather than pick one meaning silently.
        let authority = text.split_once("://").map_or("", |(_, rest)| {
            rest.split(['/', '?', '#']).next().unwrap_or("")
        });
        if authority.ends_with(':') {
            return Err(WebhookUrlError::EmptyPort(text.into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(WebhookUrlError::QueryOrFragment(text.into()));
        }
        Ok(Self {
            scheme: url.scheme().to_string(),
            host: url.host_str().unwrap_or_default().to_string(),
            port: url.port_or_known_default().unwrap_or_default(),
            path: url.path().to_string(),
        })
    }

    /// Whether this entry admits `url`: same scheme, host and port; its path equal to the
    /// entry's or below it (`/hooks` admits `/hooks` and `/hooks/x`, not `/hooksx`).
    fn admits(&self, url: &Url) -> bool {
        let path = url.path();
        let under = path == self.path
            || (self.path.ends_with('/') && path.starts_with(&self.path))
            || path
                .strip_prefix(&self.path)
                .is_some_and(|rest| rest.starts_with('/'));
        url.scheme() == self.scheme
            && url.host_str() == Some(self.host.as_str())
            && url.port_or_known_default() == Some(self.port)
            && under
    }
}

/// POSTs wake-ups to URLs its allow-list admits.
#[derive(Debug, Clone)]
pub struct WebhookProvider {
    allowed: Vec<AllowedWebhook>,
    timeout: Duration,
    client: std::sync::Arc<http::Client>,
}

impl WebhookProvider {
    /// Uses this HTTP client (e.g. one trusting other TLS roots).
    pub fn with_client(mut self, client: http::Client) -> Self {
        self.client = std::sync::Arc::new(client);
        self
    }

    /// A provider accepting URLs that the entries admit (see [`AllowedWebhook::parse`]);
    /// `Err` names the first entry that is not a URL.
    pub fn new(allowed: Vec<String>) -> Result<Self, WebhookUrlError> {
        let allowed = allowed
            .iter()
            .map(|entry| AllowedWebhook::parse(entry))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            allowed,
            timeout: Duration::from_secs(10),
            client: Default::default(),
        })
    }

    /// The URL a target is posted to: the checked, normalized form (so that what was checked
    /// is what is requested, whatever another URL parser would make of the original text).
    fn admitted(&self, target: &PushTarget) -> Result<Url, PushError> {
        let url =
            parse_http_url(&target.target).map_err(|e| PushError::BadTarget(e.to_string()))?;
        if url.fragment().is_some() {
            return Err(PushError::BadTarget("fragments are not allowed".into()));
        }
        if !self.allowed.iter().any(|entry| entry.admits(&url)) {
            return Err(PushError::BadTarget(
                "URL not admitted by --webhook-allow".into(),
            ));
        }
        Ok(url)
    }

    /// The body posted for a wake id.
    pub fn body(wake: WakeId) -> Vec<u8> {
        serde_json::json!({"v": 1, "w": wake.to_hex()})
            .to_string()
            .into_bytes()
    }
}

impl PushProvider for WebhookProvider {
    fn check_target(&self, target: &PushTarget) -> Result<(), PushError> {
        self.admitted(target).map(|_| ())
    }

    fn wake<'a>(&'a self, target: &'a PushTarget) -> PushFuture<'a, Result<(), PushError>> {
        Box::pin(async move {
            let url = self.admitted(target)?;
            let request = Request::post(
                url.to_string(),
                vec![("content-type".into(), "application/json".into())],
                Self::body(target.wake),
                HttpVersion::Http1,
            );
            let response = self
                .client
                .send(request, self.timeout)
                .await
                .map_err(|e| PushError::Failed(e.to_string()))?;
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
            wake: pocketkey_core::pairing::relay::WakeId([1; 16]),
        }
    }

    #[test]
    fn only_urls_an_entry_admits() {
        let hook = WebhookProvider::new(vec![
            "https://wake.example.org".into(),
            "http://127.0.0.1:8080/hooks".into(),
            "https://push.example/a/".into(),
        ])
        .unwrap();
        for ok in [
            "https://wake.example.org/",
            "https://wake.example.org/x?y=1",
            "https://WAKE.example.org:443/x",
            "http://127.0.0.1:8080/hooks",
            "http://127.0.0.1:8080/hooks/one",
            "https://push.example/a/b",
        ] {
            assert!(hook.check_target(&target(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "https://wake.example.org.evil.net/x",
            "https://wake.example.org:444/",
            "http://wake.example.org/",
            "https://evil.net/https://wake.example.org/",
            "https://user@wake.example.org/",
            "https://wake.example.org:443@evil.net/",
            "http://127.0.0.1:8081/hooks",
            "http://127.0.0.1:80/hooks",
            "http://127.0.0.1:8080/hooksx",
            "http://127.0.0.1:8080/",
            "https://push.example/ab",
            "ftp://wake.example.org/",
            "http://10.0.0.1/",
            "not a url",
        ] {
            assert!(hook.check_target(&target(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_must_be_urls() {
        use WebhookUrlError::*;
        let not_url = |text: &str| NotUrl(text.into(), url::ParseError::RelativeUrlWithoutBase);
        for (bad, why) in [
            ("http://127.0.0.1:", EmptyPort("http://127.0.0.1:".into())),
            ("wake.example.org", not_url("wake.example.org")),
            ("/hooks", not_url("/hooks")),
            (
                "ftp://wake.example.org/",
                NotHttp("ftp://wake.example.org/".into()),
            ),
            (
                "https://user:pw@wake.example.org/",
                Userinfo("https://user:pw@wake.example.org/".into()),
            ),
            (
                "https://wake.example.org/?q",
                QueryOrFragment("https://wake.example.org/?q".into()),
            ),
            ("", not_url("")),
        ] {
            assert_eq!(
                WebhookProvider::new(vec![bad.into()]).unwrap_err(),
                why,
                "{bad}"
            );
        }
    }
}
