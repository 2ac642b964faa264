//! The providers' HTTP client, on reqwest with rustls (ring, the workspace's TLS provider):
//! HTTP/1.1 for FCM and webhooks, HTTP/2 for APNs (Apple requires it), each over a pool of kept
//! connections. The TLS configuration is built here: the webpki roots or given ones (tests,
//! private endpoints), and ALPN naming only the version spoken, so that an HTTP/2 origin that
//! does not negotiate `h2` fails the handshake instead of being spoken to in the wrong
//! version. `http://` URLs speak HTTP/2 by prior knowledge ("h2c"), for local test endpoints.
//!
//! No redirect is followed (a webhook's allow-list is checked on the URL requested) and no
//! proxy from the environment is used. Errors never carry the URL: an APNs URL holds the
//! device token.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

pub use reqwest::{Method, StatusCode};

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL: {0}")]
    BadUrl(url::ParseError),
    #[error("URL scheme must be http or https")]
    Scheme,
    #[error("URL without host")]
    NoHost,
    #[error("connect {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("TLS with {host}: {reason}")]
    Tls { host: String, reason: String },
    /// The exchange failed after the connection (reqwest's error chain says how).
    #[error("{0}")]
    Http(String),
    /// The response body could not be read, or is over 64 KiB.
    #[error("response body: {0}")]
    Body(String),
    #[error("timed out")]
    TimedOut,
}

/// Which HTTP version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    Http2,
}

/// A request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub version: HttpVersion,
}

impl Request {
    /// A POST of `body` with `headers`.
    pub fn post(
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        version: HttpVersion,
    ) -> Self {
        Self {
            method: Method::POST,
            url,
            headers,
            body,
            version,
        }
    }
}

/// A response (body bounded to 64 KiB).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub body: Vec<u8>,
    /// The `Retry-After` header, as a wait from now (RFC 9110 §10.2.3: delay-seconds or an
    /// HTTP-date); `None` when absent or unreadable.
    pub retry_after: Option<Duration>,
}

impl Response {
    /// Why a push endpoint (`who`) refused: its status and the start of its answer.
    pub fn refusal(&self, who: &str) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(200)]);
        if body.trim().is_empty() {
            format!("{who} answered {}", self.status)
        } else {
            format!("{who} answered {}: {}", self.status, body.trim())
        }
    }
}

const MAX_BODY: usize = 64 * 1024;

/// The push providers' HTTP client: one reqwest client per HTTP version, sharing the roots.
#[derive(Clone)]
pub struct Client {
    http1: reqwest::Client,
    http2: reqwest::Client,
    roots: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl Default for Client {
    /// Trusting the webpki roots (Mozilla's).
    fn default() -> Self {
        Self::with_roots(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
    }
}

/// The rustls configuration for one HTTP version: ring, safe defaults, `roots`, and ALPN
/// offering that version only (reqwest leaves a preconfigured ALPN list as it is).
fn tls(roots: Arc<rustls::RootCertStore>, version: HttpVersion) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![match version {
        HttpVersion::Http1 => b"http/1.1".to_vec(),
        HttpVersion::Http2 => b"h2".to_vec(),
    }];
    config
}

fn reqwest_client(roots: Arc<rustls::RootCertStore>, version: HttpVersion) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls(roots, version))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        // A kept connection the provider closed while idle is not reused after this.
        .pool_idle_timeout(Duration::from_secs(60));
    let builder = match version {
        HttpVersion::Http1 => builder.http1_only(),
        HttpVersion::Http2 => builder.http2_prior_knowledge(),
    };
    // Building fails only for a TLS backend reqwest was not compiled with: rustls is.
    builder.build().expect("reqwest is built with rustls")
}

impl Client {
    /// Trusting only `roots` (tests, private endpoints).
    pub fn with_roots(roots: rustls::RootCertStore) -> Self {
        let count = roots.len();
        let roots = Arc::new(roots);
        Self {
            http1: reqwest_client(roots.clone(), HttpVersion::Http1),
            http2: reqwest_client(roots, HttpVersion::Http2),
            roots: count,
        }
    }

    /// Sends a request within `timeout`. HTTP/2 requests reuse the origin's open connection,
    /// and are sent once more on a new connection if that one broke under them.
    pub async fn send(&self, request: Request, timeout: Duration) -> Result<Response, HttpError> {
        tokio::time::timeout(timeout, self.send_now(request))
            .await
            .map_err(|_| HttpError::TimedOut)?
    }

    async fn send_now(&self, request: Request) -> Result<Response, HttpError> {
        let url = url::Url::parse(&request.url).map_err(HttpError::BadUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::Scheme);
        }
        let host = url.host_str().ok_or(HttpError::NoHost)?.to_string();
        let attempts = match request.version {
            HttpVersion::Http1 => 1,
            HttpVersion::Http2 => 2,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.exchange(&url, &request).await {
                Ok(response) => return read(response).await,
                Err(error) if attempt < attempts && !error.is_connect() => {
                    tracing::debug!(error = %chain(&error), %host, "HTTP/2 connection broke; resending");
                }
                Err(error) => return Err(classify(&error, host)),
            }
        }
    }

    async fn exchange(
        &self,
        url: &url::Url,
        request: &Request,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let client = match request.version {
            HttpVersion::Http1 => &self.http1,
            HttpVersion::Http2 => &self.http2,
        };
        let mut builder = client
            .request(request.method.clone(), url.clone())
            .body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder.send().await
    }
}

/// An error's text with its causes, without the URL (it may hold a device token).
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether a rustls error is among the causes. An I/O error's own `source` is its inner
/// error's source (skipping the inner error itself), and the connector nests I/O errors, so
/// each is opened through `get_ref`.
fn is_tls(error: &reqwest::Error) -> bool {
    error.source().is_some_and(has_tls)
}

fn has_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.is::<rustls::Error>() {
        return true;
    }
    let inner = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|inner| has_tls(inner));
    inner || error.source().is_some_and(has_tls)
}

fn classify(error: &reqwest::Error, host: String) -> HttpError {
    let error_without_url = reqwest_error_text(error);
    if is_tls(error) {
        HttpError::Tls {
            host,
            reason: error_without_url,
        }
    } else if error.is_connect() {
        HttpError::Connect {
            host,
            reason: error_without_url,
        }
    } else {
        HttpError::Http(error_without_url)
    }
}

fn reqwest_error_text(error: &reqwest::Error) -> String {
    // `without_url` needs an owned error; the chain is rebuilt from a clone of its text.
    let text = chain(error);
    match error.url() {
        Some(url) => text.replace(&format!(" for url ({url})"), ""),
        None => text,
    }
}

async fn read(mut response: reqwest::Response) -> Result<Response, HttpError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HttpError::Body(reqwest_error_text(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(HttpError::Body("over 64 KiB".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        body,
        retry_after,
    })
}

/// `Retry-After`'s value as a wait from now: delay-seconds, or an HTTP-date (a date already
/// past is no wait).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
