//! The websocket opening handshake (RFC 6455 §4.2.1) as an extractor, checked before any
//! other refusal of a routed request but its path, and the 101 that answers it.

use std::marker::PhantomData;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::Reject;
use pocketkey_core::pairing::mailbox::SUBPROTOCOL as PAIR_SUBPROTOCOL;

/// The websocket subprotocol of caBLE v2 tunnels.
pub const SUBPROTOCOL: &str = "fido.cable";
/// The response header carrying the routing id of a new tunnel.
pub const ROUTING_ID_HEADER: &str = "x-cable-routing-id";

/// The subprotocol a route requires.
pub(super) trait Subprotocol: Send + Sync + 'static {
    const NAME: &'static str;
}

/// caBLE v2 tunnels (`fido.cable`).
pub(super) struct Cable;
/// Pairing mailboxes (`pocketkey.pair.v1`).
pub(super) struct Pair;

impl Subprotocol for Cable {
    const NAME: &'static str = SUBPROTOCOL;
}

impl Subprotocol for Pair {
    const NAME: &'static str = PAIR_SUBPROTOCOL;
}

/// A valid opening handshake offering the subprotocol `P`: the `Sec-WebSocket-Accept` value
/// and the connection's upgrade, which completes once the 101 is sent.
pub(super) struct Handshake<P> {
    pub accept: String,
    pub on_upgrade: OnUpgrade,
    protocol: PhantomData<P>,
}

impl<S: Send + Sync, P: Subprotocol> FromRequestParts<S> for Handshake<P> {
    type Rejection = Reject;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Reject> {
        let accept = check_handshake(parts.version, &parts.headers, P::NAME)?;
        // hyper puts the upgrade in the request of any `Connection: upgrade` it reads.
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or(Reject::new(
            StatusCode::BAD_REQUEST,
            "not a websocket upgrade request",
        ))?;
        Ok(Self {
            accept,
            on_upgrade,
            protocol: PhantomData,
        })
    }
}

impl<P: Subprotocol> Handshake<P> {
    /// The 101 answering the handshake, naming the subprotocol.
    pub(super) fn switching_protocols(&self) -> Response<Body> {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&self.accept).expect("base64 is a valid header value"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(P::NAME),
        );
        response
    }
}

/// Checks a websocket opening handshake (RFC 6455 §4.2.1) offering `subprotocol`; returns the
/// `Sec-WebSocket-Accept` value.
pub(super) fn check_handshake(
    version: Version,
    headers: &HeaderMap,
    subprotocol: &'static str,
) -> Result<String, Reject> {
    let bad = |reason| Reject::new(StatusCode::BAD_REQUEST, reason);
    if version < Version::HTTP_11 {
        return Err(bad("a websocket upgrade needs HTTP/1.1"));
    }
    if !headers.contains_key(header::HOST) {
        return Err(bad("missing Host header"));
    }
    if !has_token(headers, &header::CONNECTION, |t| {
        t.eq_ignore_ascii_case("upgrade")
    }) || !has_token(headers, &header::UPGRADE, |t| {
        t.eq_ignore_ascii_case("websocket")
    }) {
        return Err(bad("not a websocket upgrade request"));
    }
    match headers.get(header::SEC_WEBSOCKET_VERSION) {
        None => return Err(bad("missing Sec-WebSocket-Version")),
        Some(version) if version.as_bytes() != b"13" => {
            return Err(Reject::new(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported websocket version (13 only)",
            ))
        }
        Some(_) => {}
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) if is_websocket_key(key.as_bytes()) => key,
        _ => return Err(bad("missing or malformed Sec-WebSocket-Key")),
    };
    if !has_token(headers, &header::SEC_WEBSOCKET_PROTOCOL, |t| {
        t == subprotocol
    }) {
        return Err(bad(if subprotocol == SUBPROTOCOL {
            "the fido.cable subprotocol is required"
        } else {
            "the pocketkey.pair.v1 subprotocol is required"
        }));
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// Whether a comma-separated list header (any of its occurrences) has a matching token.
fn has_token(
    headers: &HeaderMap,
    name: &header::HeaderName,
    matches: impl Fn(&str) -> bool,
) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| matches(token.trim()))
}

/// A base64-encoded 16-byte value: 22 base64 digits and `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const GOOD: &[(&str, &str)] = &[
        ("host", "relay.example"),
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "other, fido.cable"),
    ];

    fn without(name: &str) -> HeaderMap {
        let pairs: Vec<_> = GOOD.iter().copied().filter(|(n, _)| *n != name).collect();
        headers(&pairs)
    }

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut map = without(name);
        map.insert(name, HeaderValue::from_static(value));
        map
    }

    #[test]
    fn accepts_a_good_handshake() {
        // The sample of RFC 6455 §1.3.
        assert_eq!(
            check_handshake(Version::HTTP_11, &headers(GOOD), SUBPROTOCOL),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string())
        );
    }

    #[test]
    fn refuses_bad_handshakes() {
        let status = |version, map: &HeaderMap| {
            check_handshake(version, map, SUBPROTOCOL)
                .unwrap_err()
                .status
        };
        assert_eq!(
            status(Version::HTTP_10, &headers(GOOD)),
            StatusCode::BAD_REQUEST
        );
        for name in [
            "host",
            "connection",
            "upgrade",
            "sec-websocket-version",
            "sec-websocket-key",
            "sec-websocket-protocol",
        ] {
            assert_eq!(
                status(Version::HTTP_11, &without(name)),
                StatusCode::BAD_REQUEST,
                "{name}"
            );
        }
        assert_eq!(
            status(Version::HTTP_11, &with("sec-websocket-version", "8")),
            StatusCode::UPGRADE_REQUIRED
        );
        assert_eq!(
            status(Version::HTTP_11, &with("sec-websocket-key", "short==")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(
                Version::HTTP_11,
                &with("sec-websocket-protocol", "fido.cable.v3")
            ),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(
                Version::HTTP_11,
                &with("sec-websocket-protocol", "FIDO.CABLE")
            ),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(Version::HTTP_11, &with("upgrade", "h2c")),
            StatusCode::BAD_REQUEST
        );
    }
}
