//! A minimal HTTP client for the push providers: one request per connection, HTTP/1.1 or
//! HTTP/2, over TLS (rustls, webpki roots; ALPN) for `https://` and plain TCP for `http://`
//! (HTTP/2 then by prior knowledge, "h2c": for local test endpoints only).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

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

/// A response (body bounded to 64 KiB).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

const MAX_BODY: usize = 64 * 1024;

/// Sends one request on a new connection, within `timeout`.
pub async fn send(request: Request, timeout: Duration) -> Result<Response, String> {
    tokio::time::timeout(timeout, send_now(request))
        .await
        .map_err(|_| "timed out".to_string())?
}

async fn send_now(request: Request) -> Result<Response, String> {
    let uri: Uri = request.url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("URL scheme must be http or https".into()),
    };
    let host = uri.host().ok_or("URL without host")?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host_bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = TcpStream::connect((host_bare.as_str(), port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if https {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        config.alpn_protocols = vec![match request.version {
            HttpVersion::Http1 => b"http/1.1".to_vec(),
            HttpVersion::Http2 => b"h2".to_vec(),
        }];
        let name = rustls::pki_types::ServerName::try_from(host_bare.clone())
            .map_err(|e| format!("bad server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        exchange(tls, uri, request).await
    } else {
        exchange(tcp, uri, request).await
    }
}

async fn exchange<S>(stream: S, uri: Uri, request: Request) -> Result<Response, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let authority = uri.authority().ok_or("URL without host")?.clone();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut builder = hyper::Request::builder().method(request.method);
    builder = match request.version {
        // HTTP/1.1: origin-form target and a Host header.
        HttpVersion::Http1 => builder.uri(path).header("host", authority.as_str()),
        // HTTP/2: absolute URI (hyper derives :scheme and :authority from it).
        HttpVersion::Http2 => builder.uri(uri.clone()),
    };
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let http_request = builder
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|e| e.to_string())?;
    let io = TokioIo::new(stream);
    let response = match request.version {
        HttpVersion::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender
                .send_request(http_request)
                .await
                .map_err(|e| e.to_string())?
        }
        HttpVersion::Http2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender
                .send_request(http_request)
                .await
                .map_err(|e| e.to_string())?
        }
    };
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Response { status, body })
}
