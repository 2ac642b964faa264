//! A minimal HTTP client for the push providers: HTTP/1.1 (one request per connection) or
//! HTTP/2 (one connection per origin, kept open and reused, as APNs asks), over TLS (rustls;
//! webpki roots or given ones; ALPN) for `https://` and plain TCP for `http://` (HTTP/2 then by
//! prior knowledge, "h2c": for local test endpoints only).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL: {0}")]
    BadUrl(#[from] hyper::http::uri::InvalidUri),
    #[error("URL scheme must be http or https")]
    Scheme,
    #[error("URL without host")]
    NoHost,
    #[error("connect {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("{0}")]
    TlsConfig(rustls::Error),
    #[error("bad server name: {0}")]
    ServerName(rustls::pki_types::InvalidDnsNameError),
    #[error("TLS with {host}: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("{0} does not speak HTTP/2")]
    NoHttp2(String),
    /// The connection or the exchange failed (hyper's own error says which).
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
    /// The response body could not be read, or is over 64 KiB.
    #[error("{0}")]
    Body(Box<dyn std::error::Error + Send + Sync>),
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
    pub body: Bytes,
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

type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// The push providers' HTTP client.
pub struct Client {
    roots: Arc<rustls::RootCertStore>,
    h2: tokio::sync::Mutex<HashMap<String, H2Sender>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("roots", &self.roots.len())
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

impl Client {
    /// Trusting only `roots` (tests, private endpoints).
    pub fn with_roots(roots: rustls::RootCertStore) -> Self {
        Self {
            roots: Arc::new(roots),
            h2: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Sends a request within `timeout`. HTTP/2 requests reuse the origin's open connection
    /// (one retry on a new connection if it broke).
    pub async fn send(&self, request: Request, timeout: Duration) -> Result<Response, HttpError> {
        tokio::time::timeout(timeout, self.send_now(request))
            .await
            .map_err(|_| HttpError::TimedOut)?
    }

    async fn send_now(&self, request: Request) -> Result<Response, HttpError> {
        if request.version == HttpVersion::Http1 {
            return send_now(&self.roots, request).await;
        }
        let uri: Uri = request.url.parse()?;
        let origin = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        for attempt in 0..2 {
            let mut sender = {
                let mut cache = self.h2.lock().await;
                match cache.get(&origin) {
                    Some(sender) if attempt == 0 && !sender.is_closed() => sender.clone(),
                    _ => {
                        let sender = connect_h2(&self.roots, &uri).await?;
                        cache.insert(origin.clone(), sender.clone());
                        sender
                    }
                }
            };
            let http_request = build(&uri, &request)?;
            match sender.send_request(http_request).await {
                Ok(response) => return read(response).await,
                Err(error) if attempt == 0 => {
                    tracing::debug!(%error, %origin, "HTTP/2 connection broke; reconnecting");
                }
                Err(error) => return Err(error.into()),
            }
        }
        unreachable!("the loop returns")
    }
}

/// Opens a TCP (and TLS for https) connection to the URL's host.
async fn connect(
    roots: &Arc<rustls::RootCertStore>,
    uri: &Uri,
    version: HttpVersion,
) -> Result<Box<dyn Io>, HttpError> {
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(HttpError::Scheme),
    };
    let host = uri.host().ok_or(HttpError::NoHost)?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host_bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = TcpStream::connect((host_bare.as_str(), port))
        .await
        .map_err(|source| HttpError::Connect {
            host: host.clone(),
            port,
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    if !https {
        return Ok(Box::new(tcp));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(HttpError::TlsConfig)?
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    config.alpn_protocols = vec![match version {
        HttpVersion::Http1 => b"http/1.1".to_vec(),
        HttpVersion::Http2 => b"h2".to_vec(),
    }];
    let name = rustls::pki_types::ServerName::try_from(host_bare.clone())
        .map_err(HttpError::ServerName)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|source| HttpError::Tls {
            host: host.clone(),
            source,
        })?;
    if version == HttpVersion::Http2 && tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(HttpError::NoHttp2(host));
    }
    Ok(Box::new(tls))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

async fn connect_h2(roots: &Arc<rustls::RootCertStore>, uri: &Uri) -> Result<H2Sender, HttpError> {
    let io = connect(roots, uri, HttpVersion::Http2).await?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

fn build(uri: &Uri, request: &Request) -> Result<hyper::Request<Full<Bytes>>, HttpError> {
    let authority = uri.authority().ok_or(HttpError::NoHost)?.clone();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut builder = hyper::Request::builder().method(request.method.clone());
    builder = match request.version {
        // HTTP/1.1: origin-form target and a Host header.
        HttpVersion::Http1 => builder.uri(path).header("host", authority.as_str()),
        // HTTP/2: absolute URI (hyper derives :scheme and :authority from it).
        HttpVersion::Http2 => builder.uri(uri.clone()),
    };
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    Ok(builder.body(Full::new(Bytes::from(request.body.clone())))?)
}

async fn read(response: hyper::Response<hyper::body::Incoming>) -> Result<Response, HttpError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(HttpError::Body)?
        .to_bytes();
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

/// HTTP/1.1: one request on a new connection.
async fn send_now(
    roots: &Arc<rustls::RootCertStore>,
    request: Request,
) -> Result<Response, HttpError> {
    let uri: Uri = request.url.parse()?;
    let io = connect(roots, &uri, HttpVersion::Http1).await?;
    let http_request = build(&uri, &request)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(http_request).await?;
    read(response).await
}
