//! The two identifiers a caBLE v2 tunnel server routes by, and the request paths that carry them.
//!
//! - The **tunnel id** (16 bytes) is derived by both the phone and the browser from the QR
//!   secret (HKDF, docs/hybrid.md "Protocol facts"). It travels as 32 hex digits in both paths.
//! - The **routing id** (3 bytes) is chosen by the relay when the phone opens its tunnel; the
//!   phone puts it in its BLE advert, so the browser can name it (6 hex digits) in its
//!   `connect` path.
//!
//! Hex in paths is accepted in either case; the relay writes upper case (as the phone side in
//! `pocketkey-core` does).

use std::fmt;

/// A caBLE v2 tunnel id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelId(pub [u8; 16]);

/// A routing id assigned by the relay to a tunnel.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutingId(pub [u8; 3]);

impl TunnelId {
    /// Parses exactly 32 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        decode_hex(text).map(Self)
    }

    /// The first 4 bytes in hex: enough to tell tunnels apart in logs without writing the whole
    /// id (which, with the routing id, is all a `connect` needs) into them.
    pub fn short(&self) -> String {
        upper_hex(&self.0[..4])
    }
}

impl RoutingId {
    /// Parses exactly 6 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        decode_hex(text).map(Self)
    }

    /// Three bytes from the operating system's random source.
    pub fn random() -> Self {
        use rand_core::{OsRng, RngCore};
        let mut bytes = [0u8; 3];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Display for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&upper_hex(&self.0))
    }
}

impl fmt::Debug for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TunnelId({}…)", self.short())
    }
}

impl fmt::Display for RoutingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&upper_hex(&self.0))
    }
}

impl fmt::Debug for RoutingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoutingId({self})")
    }
}

/// What a request path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /cable/new/<TUNNEL ID>`: a phone opens a tunnel and waits.
    New(TunnelId),
    /// `GET /cable/connect/<ROUTING ID>/<TUNNEL ID>`: a browser joins a waiting tunnel.
    Connect(RoutingId, TunnelId),
    /// `GET /healthz`: liveness for load balancers (plain HTTP, no websocket).
    Health,
}

/// Why a path is not a [`Route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// Not a path this server serves (HTTP 404).
    Unknown,
    /// A `/cable/new/` or `/cable/connect/` path whose ids are malformed (HTTP 400).
    Malformed(&'static str),
}

/// Parses a request path (without the query).
pub fn parse_route(path: &str) -> Result<Route, RouteError> {
    if path == "/healthz" {
        return Ok(Route::Health);
    }
    if let Some(rest) = path.strip_prefix("/cable/new/") {
        return TunnelId::from_hex(rest)
            .map(Route::New)
            .ok_or(RouteError::Malformed("tunnel id must be 32 hex digits"));
    }
    if let Some(rest) = path.strip_prefix("/cable/connect/") {
        let (routing, tunnel) = rest.split_once('/').ok_or(RouteError::Malformed(
            "expected /cable/connect/<routing id>/<tunnel id>",
        ))?;
        let routing = RoutingId::from_hex(routing)
            .ok_or(RouteError::Malformed("routing id must be 6 hex digits"))?;
        let tunnel = TunnelId::from_hex(tunnel)
            .ok_or(RouteError::Malformed("tunnel id must be 32 hex digits"))?;
        return Ok(Route::Connect(routing, tunnel));
    }
    Err(RouteError::Unknown)
}

fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUNNEL: &str = "00112233445566778899AABBCCDDEEFF";

    #[test]
    fn hex_round_trip_either_case() {
        let id = TunnelId::from_hex(TUNNEL).unwrap();
        assert_eq!(id.to_string(), TUNNEL);
        assert_eq!(TunnelId::from_hex(&TUNNEL.to_lowercase()), Some(id));
        assert_eq!(id.short(), "00112233");
        let routing = RoutingId::from_hex("0aFf10").unwrap();
        assert_eq!(routing.0, [0x0a, 0xff, 0x10]);
        assert_eq!(routing.to_string(), "0AFF10");
    }

    #[test]
    fn hex_rejects_wrong_lengths_and_digits() {
        assert_eq!(TunnelId::from_hex(&TUNNEL[1..]), None);
        assert_eq!(TunnelId::from_hex(&format!("{TUNNEL}0")), None);
        assert_eq!(TunnelId::from_hex(&TUNNEL.replace('F', "G")), None);
        assert_eq!(RoutingId::from_hex("+12345"), None);
        assert_eq!(RoutingId::from_hex(""), None);
        // Multi-byte characters must not be split into "digits".
        assert_eq!(RoutingId::from_hex("ééé"), None);
    }

    #[test]
    fn routes() {
        let tunnel = TunnelId::from_hex(TUNNEL).unwrap();
        let routing = RoutingId([1, 2, 3]);
        assert_eq!(
            parse_route(&format!("/cable/new/{TUNNEL}")),
            Ok(Route::New(tunnel))
        );
        assert_eq!(
            parse_route(&format!("/cable/connect/010203/{TUNNEL}")),
            Ok(Route::Connect(routing, tunnel))
        );
        assert_eq!(parse_route("/healthz"), Ok(Route::Health));
        for unknown in [
            "/",
            "/cable",
            "/cable/new",
            "/cable/other/x",
            "/favicon.ico",
        ] {
            assert_eq!(parse_route(unknown), Err(RouteError::Unknown), "{unknown}");
        }
        for malformed in [
            "/cable/new/".to_string(),
            "/cable/new/xyz".to_string(),
            format!("/cable/new/{TUNNEL}/"),
            format!("/cable/connect/{TUNNEL}"),
            format!("/cable/connect/0102/{TUNNEL}"),
            format!("/cable/connect/010203/{TUNNEL}/extra"),
            "/cable/connect/010203/".to_string(),
        ] {
            assert!(
                matches!(parse_route(&malformed), Err(RouteError::Malformed(_))),
                "{malformed}"
            );
        }
    }

    #[test]
    fn random_routing_ids_vary() {
        let ids: std::collections::HashSet<_> = (0..32).map(|_| RoutingId::random()).collect();
        assert!(ids.len() > 1);
    }
}
