//! The one HTTP/1.1 exchange the organisation client needs: a JSON request, a JSON answer,
//! over TCP (`http://` on loopback only) or TLS ([`crate::tls`]). One request per connection
//! (`Connection: close`), bounded in size and time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::OrgClientError;

/// Deadline for connecting, and for each read or write.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (an activation answer is a few KiB).
const MAX_RESPONSE: u64 = 1024 * 1024;

/// Whether `url` may be used without TLS: only a server on this machine.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn network(e: impl std::fmt::Display) -> OrgClientError {
    OrgClientError::Network(e.to_string())
}

/// Sends `method path` with a JSON `body` to the server at `base` (scheme, host, port and a
/// path prefix); returns the status and the body.
pub fn exchange(
    base: &Url,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), OrgClientError> {
    match base.scheme() {
        "https" => {}
        "http" if is_loopback(base) => {}
        _ => {
            return Err(OrgClientError::InvalidLink(
                "the server must be reached over https".into(),
            ))
        }
    }
    let host = base
        .host_str()
        .ok_or_else(|| OrgClientError::InvalidLink("no host".into()))?;
    let port = base
        .port_or_known_default()
        .ok_or_else(|| OrgClientError::InvalidLink("no port".into()))?;
    let addr = (host, port);
    let tcp = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .map_err(network)?
        .find_map(|a| TcpStream::connect_timeout(&a, TIMEOUT).ok())
        .ok_or_else(|| network(format!("cannot connect to {host}:{port}")))?;
    tcp.set_read_timeout(Some(TIMEOUT)).map_err(network)?;
    tcp.set_write_timeout(Some(TIMEOUT)).map_err(network)?;
    let prefix = base.path().trim_end_matches('/');
    let authority = match base.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut head = format!(
        "{method} {prefix}{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Accept: application/json\r\nUser-Agent: pocketkey\r\n"
    );
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body.unwrap_or_default());
    let raw = match base.scheme() {
        "https" => {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| OrgClientError::InvalidLink(e.to_string()))?;
            let config = crate::tls::client_config(&[]).map_err(network)?;
            let conn = rustls::ClientConnection::new(Arc::clone(&config), name).map_err(network)?;
            round_trip(rustls::StreamOwned::new(conn, tcp), &request)?
        }
        _ => round_trip(tcp, &request)?,
    };
    parse_response(&raw)
}

fn round_trip(mut stream: impl Read + Write, request: &[u8]) -> Result<Vec<u8>, OrgClientError> {
    stream.write_all(request).map_err(network)?;
    stream.flush().map_err(network)?;
    let mut raw = Vec::new();
    let read = stream.take(MAX_RESPONSE + 1).read_to_end(&mut raw);
    match read {
        Ok(_) => {}
        // A TLS peer that closes without close_notify: the body is still complete if its
        // length says so, which parse_response checks.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(network(e)),
    }
    if raw.len() as u64 > MAX_RESPONSE {
        return Err(OrgClientError::Protocol(
            "the server's answer is too large".into(),
        ));
    }
    Ok(raw)
}

fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), OrgClientError> {
    let bad = |why: &str| OrgClientError::Protocol(format!("bad HTTP answer: {why}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers not UTF-8"))?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if name == "content-length" {
            length = Some(value.trim().parse::<usize>().map_err(|_| bad("length"))?);
        } else if name == "transfer-encoding" {
            return Err(bad("chunked answers are not expected"));
        }
    }
    match length {
        Some(n) if n > body.len() => Err(bad("truncated body")),
        Some(n) => Ok((status, body[..n].to_vec())),
        None => Ok((status, body.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_by_length_and_truncation_is_an_error() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(raw).unwrap(), (200, b"{}".to_vec()));
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}";
        assert!(matches!(
            parse_response(cut),
            Err(OrgClientError::Protocol(_))
        ));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let remote = Url::parse("http://example.com/").unwrap();
        assert!(matches!(
            exchange(&remote, "GET", "/x", None),
            Err(OrgClientError::InvalidLink(_))
        ));
        assert!(is_loopback(&Url::parse("http://127.0.0.1:1/").unwrap()));
        assert!(is_loopback(&Url::parse("http://[::1]:1/").unwrap()));
    }
}
