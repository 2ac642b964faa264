//! The pairing URL the bridge shows as a QR code (docs/pairing-protocol.md §2):
//!
//! ```text
//! pocketkey://pair?v=1&k=<b64u bridge key>&s=<b64u secret>&r=<relay URL>&n=<computer name>
//! ```
//!
//! [`PairingUrl::parse`] checks form only (scheme, version, lengths, a valid P-256 point, a
//! relay URL of an allowed kind, a displayable name). Authenticity is the handshake's job:
//! `k` and `s` feed it and `n` and `r` are bound in its prologue.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::PublicKey;
use thiserror::Error;
use zeroize::Zeroizing;

use super::encoding::{b64u_decode, b64u_encode, percent_decode, percent_encode};

/// The URL's scheme.
pub const SCHEME: &str = "pocketkey";
/// The URL's host.
pub const HOST: &str = "pair";
/// The protocol version this build speaks (`v`).
pub const VERSION: u32 = 1;
/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 1024;
/// The shortest one-time secret.
pub const MIN_SECRET_LEN: usize = 16;
/// The longest one-time secret (and the length bridges generate).
pub const MAX_SECRET_LEN: usize = 32;
/// The longest name (computer or phone), in UTF-8 bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The longest relay URL, in bytes.
pub const MAX_RELAY_URL_LEN: usize = 256;
/// A compressed P-256 public key.
pub const KEY_LEN: usize = 33;

/// Why a pairing URL (or one of its fields) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    #[error("the URL is {0} bytes, more than {MAX_URL_LEN}")]
    TooLong(usize),
    #[error("not a PocketKey pairing URL (pocketkey://pair?…)")]
    NotPairingUrl,
    #[error("pairing URL version {0:?} is not supported by this app (it knows {VERSION})")]
    UnsupportedVersion(String),
    #[error("the pairing URL lacks `{0}`")]
    Missing(&'static str),
    #[error("the pairing URL has `{0}` more than once")]
    Duplicate(&'static str),
    #[error("`{0}` is empty")]
    Empty(&'static str),
    #[error("`{0}` is not valid percent-encoded UTF-8")]
    BadEncoding(&'static str),
    #[error("`{0}` is not unpadded base64url")]
    BadBase64(&'static str),
    #[error("`k` is not a compressed P-256 public key")]
    BadKey,
    #[error("the secret is {0} bytes; it must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN}")]
    SecretLength(usize),
    #[error("relay URL: {0}")]
    BadRelay(#[from] RelayUrlError),
    #[error("name: {0}")]
    BadName(#[from] NameError),
}

/// Why a relay URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RelayUrlError {
    #[error("longer than {MAX_RELAY_URL_LEN} bytes")]
    TooLong,
    #[error("not a wss:// (or loopback ws://) URL")]
    Scheme,
    #[error("ws:// is allowed only for a loopback host")]
    Insecure,
    #[error("no host")]
    NoHost,
    #[error("user info, query or fragment, white space or control characters")]
    Form,
}

/// Why a display name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("empty")]
    Empty,
    #[error("longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error("has leading or trailing white space")]
    Whitespace,
    #[error("has control, invisible formatting (zero-width, bidirectional…) or line separator characters")]
    Control,
}

/// Which relay URLs are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlPolicy {
    /// `wss://` anywhere, `ws://` only to a loopback host.
    #[default]
    Strict,
    /// `ws://` to any host too (developer mode: a relay on the LAN or an emulator's host).
    AllowInsecureRelay,
}

/// Checks a display name (the URL's `n`, a phone's `Hello` name, a rename).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if name.trim() != name {
        return Err(NameError::Whitespace);
    }
    if name
        .chars()
        .any(|c| c.is_control() || is_format(c) || is_separator(c))
    {
        return Err(NameError::Control);
    }
    Ok(())
}

/// Unicode General_Category Cf, "format" characters (UCD 15.1 `DerivedGeneralCategory.txt`,
/// unchanged in 16.0): invisible in a name, and able to make one name look like another —
/// zero-width characters and joiners, bidirectional marks, embeddings, overrides and isolates
/// (U+061C, U+200E/F, U+202A–E, U+2066–9), word joiners, the byte order mark, tags.
const FORMAT: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether `c` is a format character (General_Category Cf).
fn is_format(c: char) -> bool {
    FORMAT
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// Line and paragraph separators (General_Category Zl, Zp): a line break inside a name.
fn is_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// Checks a relay base URL: `wss://host[:port][/path]` (or `ws://` per `policy`).
pub fn validate_relay_url(url: &str, policy: UrlPolicy) -> Result<(), RelayUrlError> {
    if url.len() > MAX_RELAY_URL_LEN {
        return Err(RelayUrlError::TooLong);
    }
    if url
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '@' | '\\'))
    {
        return Err(RelayUrlError::Form);
    }
    let lower = url.to_ascii_lowercase();
    let (secure, rest) = if let Some(rest) = lower.strip_prefix("wss://") {
        (true, rest)
    } else if let Some(rest) = lower.strip_prefix("ws://") {
        (false, rest)
    } else {
        return Err(RelayUrlError::Scheme);
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        // An IPv6 literal: up to the closing bracket.
        match bracketed.split_once(']') {
            Some((inner, port)) if port.is_empty() || port.starts_with(':') => inner,
            _ => return Err(RelayUrlError::Form),
        }
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(RelayUrlError::NoHost);
    }
    if !secure && policy == UrlPolicy::Strict && !is_loopback(host) {
        return Err(RelayUrlError::Insecure);
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The one-time pairing secret (16..=32 bytes), zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingSecret(Zeroizing<Vec<u8>>);

impl PairingSecret {
    pub fn new(bytes: &[u8]) -> Result<Self, UrlError> {
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
            return Err(UrlError::SecretLength(bytes.len()));
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// A fresh 32-byte secret from the operating system.
    pub fn generate() -> Self {
        use rand_core::{OsRng, RngCore};
        let mut bytes = Zeroizing::new(vec![0u8; MAX_SECRET_LEN]);
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for PairingSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairingSecret({} bytes)", self.0.len())
    }
}

/// A parsed, form-checked pairing URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingUrl {
    /// The bridge's static key for this offer (`k`).
    pub bridge_key: PublicKey,
    /// The one-time secret (`s`).
    pub secret: PairingSecret,
    /// The relay's base URL (`r`, percent-decoded).
    pub relay_url: String,
    /// The computer's name (`n`, percent-decoded).
    pub name: String,
}

/// SEC1 compressed form of a P-256 key.
pub fn compressed(key: &PublicKey) -> [u8; KEY_LEN] {
    key.to_encoded_point(true)
        .as_bytes()
        .try_into()
        .expect("a compressed P-256 point is 33 bytes")
}

/// A P-256 key from its compressed form (the only form the pairing protocol writes).
pub fn parse_compressed(bytes: &[u8]) -> Option<PublicKey> {
    if bytes.len() != KEY_LEN || !matches!(bytes[0], 0x02 | 0x03) {
        return None;
    }
    PublicKey::from_sec1_bytes(bytes).ok()
}

impl PairingUrl {
    /// Builds one, checking the fields as [`PairingUrl::parse`] would (strict relay policy
    /// unless `policy` says otherwise).
    pub fn new(
        bridge_key: PublicKey,
        secret: PairingSecret,
        relay_url: &str,
        name: &str,
        policy: UrlPolicy,
    ) -> Result<Self, UrlError> {
        validate_relay_url(relay_url, policy)?;
        validate_name(name)?;
        Self {
            bridge_key,
            secret,
            relay_url: relay_url.to_string(),
            name: name.to_string(),
        }
        .within_max_len()
    }

    /// Refuses a URL whose own encoding ([`PairingUrl::to_url_string`]) is longer than
    /// [`MAX_URL_LEN`]: the builder never makes one, and a parsed one (fields written raw,
    /// unescaped, so shorter than their encoding) would not parse again once re-encoded.
    fn within_max_len(self) -> Result<Self, UrlError> {
        let len = self.to_url_string().len();
        if len > MAX_URL_LEN {
            return Err(UrlError::TooLong(len));
        }
        Ok(self)
    }

    /// Parses with the [`UrlPolicy::Strict`] relay policy.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        Self::parse_with(text, UrlPolicy::Strict)
    }

    pub fn parse_with(text: &str, policy: UrlPolicy) -> Result<Self, UrlError> {
        if text.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong(text.len()));
        }
        let query = split_prefix(text).ok_or(UrlError::NotPairingUrl)?;
        let mut fields: [Option<&str>; 5] = [None; 5];
        const NAMES: [&str; 5] = ["v", "k", "s", "r", "n"];
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(index) = NAMES.iter().position(|n| *n == key) else {
                continue; // unknown parameters are ignored
            };
            if fields[index].replace(value).is_some() {
                return Err(UrlError::Duplicate(NAMES[index]));
            }
        }
        let get = |index: usize| -> Result<String, UrlError> {
            let raw = fields[index].ok_or(UrlError::Missing(NAMES[index]))?;
            if raw.is_empty() {
                return Err(UrlError::Empty(NAMES[index]));
            }
            percent_decode(raw).ok_or(UrlError::BadEncoding(NAMES[index]))
        };
        let version = get(0)?;
        if version != VERSION.to_string() {
            return Err(UrlError::UnsupportedVersion(version));
        }
        let key = b64u_decode(&get(1)?).ok_or(UrlError::BadBase64("k"))?;
        let bridge_key = parse_compressed(&key).ok_or(UrlError::BadKey)?;
        let secret = Zeroizing::new(b64u_decode(&get(2)?).ok_or(UrlError::BadBase64("s"))?);
        let secret = PairingSecret::new(&secret)?;
        let relay_url = get(3)?;
        validate_relay_url(&relay_url, policy)?;
        let name = get(4)?;
        validate_name(&name)?;
        Self {
            bridge_key,
            secret,
            relay_url,
            name,
        }
        .within_max_len()
    }

    /// The URL text, fields in the order `v k s r n`.
    pub fn to_url_string(&self) -> String {
        format!(
            "{SCHEME}://{HOST}?v={VERSION}&k={}&s={}&r={}&n={}",
            b64u_encode(&compressed(&self.bridge_key)),
            b64u_encode(self.secret.expose()),
            percent_encode(&self.relay_url),
            percent_encode(&self.name),
        )
    }
}

impl std::fmt::Display for PairingUrl {
    /// The full URL, secret included: show it only as the QR code / the `pair:` line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_url_string())
    }
}

/// The query of a `pocketkey://pair[/]?…` URL (scheme and host in any case; no fragment).
fn split_prefix(text: &str) -> Option<&str> {
    let (scheme, rest) = text.split_once("://")?;
    if !scheme.eq_ignore_ascii_case(SCHEME) || text.contains('#') {
        return None;
    }
    let (authority_path, query) = rest.split_once('?')?;
    let host = authority_path.strip_suffix('/').unwrap_or(authority_path);
    host.eq_ignore_ascii_case(HOST).then_some(query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::SecretKey;
    use proptest::prelude::*;

    fn key() -> PublicKey {
        SecretKey::from_slice(&[0x11; 32]).unwrap().public_key()
    }

    fn sample() -> PairingUrl {
        PairingUrl::new(
            key(),
            PairingSecret::new(&[0xab; 32]).unwrap(),
            "wss://relay.example.com/pk",
            "Anna's laptop (work) — é",
            UrlPolicy::Strict,
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_shape() {
        let url = sample();
        let text = url.to_url_string();
        assert!(text.starts_with("pocketkey://pair?v=1&k="), "{text}");
        assert!(text.contains("&r=wss%3A%2F%2Frelay.example.com%2Fpk&n=Anna%27s%20laptop"));
        assert_eq!(PairingUrl::parse(&text).unwrap(), url);
        assert!(!format!("{:?}", url.secret).contains("ab"));
    }

    #[test]
    fn lenient_forms() {
        let text = sample().to_url_string();
        let upper = text.replacen("pocketkey://pair?", "POCKETKEY://Pair/?", 1);
        assert_eq!(PairingUrl::parse(&upper).unwrap(), sample());
        let extra = format!("{text}&future=1&&x");
        assert_eq!(PairingUrl::parse(&extra).unwrap(), sample());
        let plus = text.replace("%20", "+");
        assert_eq!(PairingUrl::parse(&plus).unwrap(), sample());
    }

    fn with(field: &str, value: &str) -> String {
        let url = sample();
        let mut parts = vec![
            ("v", "1".to_string()),
            ("k", b64u_encode(&compressed(&url.bridge_key))),
            ("s", b64u_encode(url.secret.expose())),
            ("r", percent_encode(&url.relay_url)),
            ("n", percent_encode(&url.name)),
        ];
        parts.retain(|(k, _)| *k != field);
        if !value.is_empty() || field == "n" {
            parts.push((field_static(field), value.to_string()));
        }
        let query: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("pocketkey://pair?{}", query.join("&"))
    }

    fn field_static(field: &str) -> &'static str {
        ["v", "k", "s", "r", "n"]
            .into_iter()
            .find(|f| *f == field)
            .unwrap()
    }

    #[test]
    fn refusals() {
        let p = |t: &str| PairingUrl::parse(t).unwrap_err();
        assert_eq!(p("https://pair?v=1"), UrlError::NotPairingUrl);
        assert_eq!(p("pocketkey://other?v=1"), UrlError::NotPairingUrl);
        assert_eq!(p(&format!("{}#frag", sample())), UrlError::NotPairingUrl);
        assert_eq!(p(&with("v", "2")), UrlError::UnsupportedVersion("2".into()));
        assert_eq!(p(&with("k", "")), UrlError::Missing("k"));
        assert_eq!(p(&with("n", "")), UrlError::Empty("n"));
        assert_eq!(p(&format!("{}&v=1", sample())), UrlError::Duplicate("v"));
        assert_eq!(p(&with("k", "AAAA")), UrlError::BadKey);
        assert_eq!(p(&with("k", "a+b")), UrlError::BadBase64("k"));
        let uncompressed = b64u_encode(key().to_encoded_point(false).as_bytes());
        assert_eq!(p(&with("k", &uncompressed)), UrlError::BadKey);
        // 0x02 followed by an x-coordinate that is not on the curve (x = 5 is not: 5³-15+b has
        // no square root mod p... checked by the parser, whichever way it goes).
        let mut off_curve = [0xffu8; 33];
        off_curve[0] = 0x02;
        assert_eq!(p(&with("k", &b64u_encode(&off_curve))), UrlError::BadKey);
        assert_eq!(
            p(&with("s", &b64u_encode(&[1; 15]))),
            UrlError::SecretLength(15)
        );
        assert_eq!(
            p(&with("s", &b64u_encode(&[1; 33]))),
            UrlError::SecretLength(33)
        );
        assert!(PairingUrl::parse(&with("s", &b64u_encode(&[1; 16]))).is_ok());
        assert_eq!(p(&with("n", "%ZZ")), UrlError::BadEncoding("n"));
        assert_eq!(
            p(&with("n", "a%0Ab")),
            UrlError::BadName(NameError::Control)
        );
        assert_eq!(
            p(&with("n", "%E2%80%AEevil")),
            UrlError::BadName(NameError::Control)
        );
        assert_eq!(
            p(&with("n", "%20a")),
            UrlError::BadName(NameError::Whitespace)
        );
        assert_eq!(
            p(&with("n", &"x".repeat(65))),
            UrlError::BadName(NameError::TooLong)
        );
        assert!(PairingUrl::parse(&with("n", &"é".repeat(32))).is_ok());
        assert_eq!(
            p(&with("r", "https%3A%2F%2Fa")),
            UrlError::BadRelay(RelayUrlError::Scheme)
        );
        assert_eq!(
            p(&format!(
                "{}{}",
                sample(),
                "&x=".to_string() + &"a".repeat(1024)
            )),
            UrlError::TooLong(sample().to_url_string().len() + 1027)
        );
    }

    /// Caught by the `pairing_url` fuzz target's round-trip check (on a hand-made input, kept as
    /// its seed `regress_encoding_over_max_len`): fields written raw (unescaped UTF-8) are
    /// shorter than their percent-encoding, so a URL under the limit could re-encode over it and
    /// then not parse again; such a URL is refused like the builder refuses it.
    #[test]
    fn a_url_whose_encoding_is_too_long_is_refused() {
        let url = sample();
        let relay = format!("wss://{}", "é".repeat(125));
        let name = "é".repeat(32);
        let raw = format!(
            "pocketkey://pair?v=1&k={}&s={}&r={relay}&n={name}",
            b64u_encode(&compressed(&url.bridge_key)),
            b64u_encode(url.secret.expose()),
        );
        assert!(raw.len() <= MAX_URL_LEN, "{}", raw.len());
        let encoded_len = raw.len() + 2 * (relay.len() - "wss".len()) + 2 * name.len();
        assert!(encoded_len > MAX_URL_LEN);
        assert_eq!(
            PairingUrl::parse(&raw).unwrap_err(),
            UrlError::TooLong(encoded_len)
        );
        assert_eq!(
            PairingUrl::new(url.bridge_key, url.secret, &relay, &name, UrlPolicy::Strict)
                .unwrap_err(),
            UrlError::TooLong(encoded_len)
        );
        // Raw UTF-8 whose encoding fits is still accepted, and round-trips.
        let short = format!(
            "pocketkey://pair?v=1&k={}&s={}&r=wss://relay.example/é&n=Ordinateur d'Élodie",
            b64u_encode(&compressed(&sample().bridge_key)),
            b64u_encode(sample().secret.expose()),
        );
        let parsed = PairingUrl::parse(&short).unwrap();
        assert_eq!(PairingUrl::parse(&parsed.to_url_string()).unwrap(), parsed);
    }

    #[test]
    fn relay_urls() {
        let ok = |u: &str| validate_relay_url(u, UrlPolicy::Strict);
        assert_eq!(ok("wss://relay.example"), Ok(()));
        assert_eq!(ok("WSS://relay.example:8443/base/"), Ok(()));
        assert_eq!(ok("ws://127.0.0.1:8080"), Ok(()));
        assert_eq!(ok("ws://localhost/x"), Ok(()));
        assert_eq!(ok("ws://[::1]:80"), Ok(()));
        assert_eq!(ok("ws://192.168.1.2:80"), Err(RelayUrlError::Insecure));
        assert_eq!(
            validate_relay_url("ws://192.168.1.2:80", UrlPolicy::AllowInsecureRelay),
            Ok(())
        );
        assert_eq!(ok("wss://"), Err(RelayUrlError::NoHost));
        assert_eq!(ok("wss://:443"), Err(RelayUrlError::NoHost));
        assert_eq!(ok("wss://u@relay"), Err(RelayUrlError::Form));
        assert_eq!(ok("wss://relay/?q"), Err(RelayUrlError::Form));
        assert_eq!(ok("wss://relay/#f"), Err(RelayUrlError::Form));
        assert_eq!(ok("wss://re lay"), Err(RelayUrlError::Form));
        assert_eq!(ok("wss://[::1"), Err(RelayUrlError::Form));
        assert_eq!(ok("http://relay"), Err(RelayUrlError::Scheme));
        assert_eq!(
            ok(&format!("wss://{}", "a".repeat(251))),
            Err(RelayUrlError::TooLong)
        );
    }

    #[test]
    fn builder_checks_fields() {
        let build = |relay: &str, name: &str| {
            PairingUrl::new(
                key(),
                PairingSecret::generate(),
                relay,
                name,
                UrlPolicy::Strict,
            )
        };
        assert!(build("wss://r", "pc").is_ok());
        assert_eq!(
            build("ws://10.0.0.1", "pc").unwrap_err(),
            UrlError::BadRelay(RelayUrlError::Insecure)
        );
        assert_eq!(
            build("wss://r", "").unwrap_err(),
            UrlError::BadName(NameError::Empty)
        );
        assert_eq!(PairingSecret::generate().expose().len(), MAX_SECRET_LEN);
    }

    /// Every character the issue named, and every other format character, anywhere in a name.
    #[test]
    fn names_with_invisible_or_bidirectional_characters_are_refused() {
        let named = [
            '\u{061C}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{2060}',
            '\u{2061}',
            '\u{2062}',
            '\u{2063}',
            '\u{2064}',
            '\u{FEFF}',
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{180E}',
            '\u{00AD}',
            '\u{2028}',
            '\u{2029}',
            '\u{E0041}',
        ];
        let every_format = FORMAT.iter().flat_map(|&(first, last)| first..=last);
        for c in named.into_iter().chain(every_format) {
            assert_eq!(
                validate_name(&format!("Lap{c}top")),
                Err(NameError::Control),
                "U+{:04X}",
                c as u32
            );
            // At either end (U+2028/9 are white space too: refused either way).
            for name in [format!("{c}Laptop"), format!("Laptop{c}")] {
                assert!(validate_name(&name).is_err(), "U+{:04X}", c as u32);
            }
        }
        // Through the URL: U+061C and U+200B percent-encoded.
        let url = |n: &str| {
            format!(
                "pocketkey://pair?v=1&k={}&s={}&r=wss%3A%2F%2Fr&n={n}",
                b64u_encode(&compressed(&key())),
                b64u_encode(&[1; 32])
            )
        };
        assert!(PairingUrl::parse(&url("Laptop")).is_ok());
        for n in ["Lap%D8%9Ctop", "Lap%E2%80%8Btop"] {
            assert_eq!(
                PairingUrl::parse(&url(n)),
                Err(UrlError::BadName(NameError::Control))
            );
        }
        // What people write stays accepted: accents, other scripts, emoji without joiners.
        for name in [
            "Anna’s MacBook",
            "ноутбук",
            "حاسوب العمل",
            "仕事のPC",
            "Work 💻",
        ] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    proptest! {
        #[test]
        fn a_format_character_anywhere_is_refused(
            before in "[a-zA-Z0-9 ]{0,20}",
            after in "[a-zA-Z0-9 ]{0,20}",
            range in 0..FORMAT.len(),
            offset in 0u32..0x80,
        ) {
            let (first, last) = FORMAT[range];
            let c = char::from_u32(first as u32 + offset % (last as u32 - first as u32 + 1)).unwrap();
            let name = format!("x{before}{c}{after}x");
            prop_assert_eq!(validate_name(&name), Err(NameError::Control));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,300}") {
            let _ = PairingUrl::parse(&text);
        }

        #[test]
        fn parse_never_panics_near_valid(
            text in "pocketkey://pair\\?(v=1|k=[A-Za-z0-9_-]{0,50}|s=[A-Za-z0-9_-]{0,50}|r=[a-z%0-9:/.]{0,40}|n=[a-z%0-9+]{0,20}|&){0,12}"
        ) {
            let _ = PairingUrl::parse(&text);
        }

        #[test]
        fn names_round_trip(name in "\\PC{1,20}", secret in proptest::collection::vec(any::<u8>(), 16..=32)) {
            if validate_name(&name).is_ok() {
                let url = PairingUrl::new(
                    key(),
                    PairingSecret::new(&secret).unwrap(),
                    "wss://relay.example",
                    &name,
                    UrlPolicy::Strict,
                ).unwrap();
                prop_assert_eq!(PairingUrl::parse(&url.to_url_string()).unwrap(), url);
            }
        }
    }
}
