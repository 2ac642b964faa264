//! The browser's `FIDO:/` QR code: scheme, digits, CBOR map, validated.
//!
//! `FIDO:/` (scheme in any case) + [`super::digits`] of a CBOR map:
//!
//! | key | value | here |
//! |---|---|---|
//! | 0 | compressed P-256 public key, 33 bytes, on the curve: the browser's static key | required |
//! | 1 | 16-byte secret: the root of every derived key | required |
//! | 2 | number of assigned tunnel domains the browser knows | optional |
//! | 3 | timestamp (seconds since the epoch) | optional |
//! | 4 | whether the browser supports linking | optional |
//! | 5 | request type hint: `"ga"` (sign in), `"mc"` (register), others kept as text | optional |
//! | 6 | a boolean in some browsers' codes, an array in others': both kept | optional |
//!
//! Keys that are not one of these (other integers, text, …) are ignored, so newer browsers can
//! add fields. Everything else that is wrong is a [`QrError`] naming the fault.
//!
//! Parsing checks form only; [`QrCode::check_fresh`] then compares the timestamp with the
//! phone's clock (passed in), so that a photo of an old code does not start a session.

use std::fmt;

use ciborium::value::{Integer, Value};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::PublicKey;
use thiserror::Error;
use zeroize::Zeroizing;

use super::digits::{self, DigitsError};
use super::keys::SECRET_LEN;

/// The oldest a code may be by its timestamp (key 3). WebAuthn Level 3 recommends ceremony
/// timeouts of 5 to 10 minutes ("Recommended Range for Ceremony Timeouts"), and a browser shows
/// a code only while its ceremony runs: a code older than the longest recommended ceremony is a
/// photo or a screenshot, not a browser waiting for this phone.
pub const MAX_CODE_AGE_SECS: u64 = 600;
/// How far ahead of the phone's clock a code's timestamp may be: only clock error puts it
/// there, and a computer or phone clock that is off by more than this needs fixing anyway.
pub const MAX_CODE_AHEAD_SECS: u64 = 600;

/// The URL scheme and path prefix, as browsers write it (matched case-insensitively).
pub const SCHEME: &str = "FIDO:/";
/// The most digits a QR code can hold (version 40, numeric mode, lowest error correction).
pub const MAX_DIGITS: usize = 7089;
/// Nesting limit for the CBOR (the map holds an array at most).
const MAX_CBOR_DEPTH: usize = 8;
/// Length of a compressed SEC1 P-256 point.
pub const COMPRESSED_KEY_LEN: usize = 33;

/// What the browser hints it will ask for (key 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestType {
    /// `"ga"`: getAssertion, signing in.
    GetAssertion,
    /// `"mc"`: makeCredential, registering.
    MakeCredential,
    /// Any other text (newer request types), kept as written.
    Other(String),
}

impl RequestType {
    pub fn as_str(&self) -> &str {
        match self {
            Self::GetAssertion => "ga",
            Self::MakeCredential => "mc",
            Self::Other(s) => s,
        }
    }
    fn from_text(s: String) -> Self {
        match s.as_str() {
            "ga" => Self::GetAssertion,
            "mc" => Self::MakeCredential,
            _ => Self::Other(s),
        }
    }
}

/// Key 6, whose value is a boolean in some browsers' codes and an array in others'.
#[derive(Debug, Clone, PartialEq)]
pub enum Key6 {
    Flag(bool),
    List(Vec<Value>),
}

/// A parsed, validated QR code. Valid by construction: the public key is on the curve.
#[derive(Clone, PartialEq)]
pub struct QrCode {
    /// Key 0: the browser's static Noise key (the initiator's `s` in KNpsk0).
    pub public_key: PublicKey,
    /// Key 1: the shared secret (EID key, tunnel id and PSK derive from it).
    pub secret: Zeroizing<[u8; SECRET_LEN]>,
    /// Key 2: how many assigned tunnel domains the browser knows.
    pub known_domains: Option<u64>,
    /// Key 3: when the code was made (seconds since the epoch), as the browser's clock says.
    pub timestamp: Option<i64>,
    /// Key 4: whether the browser supports linking (state-assisted transactions).
    pub supports_linking: Option<bool>,
    /// Key 5: the request type hint.
    pub request_type: Option<RequestType>,
    /// Key 6, kept in whichever form it came.
    pub key6: Option<Key6>,
}

impl fmt::Debug for QrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QrCode")
            .field("public_key", &hex(&self.compressed_public_key()))
            .field("secret", &"..")
            .field("known_domains", &self.known_domains)
            .field("timestamp", &self.timestamp)
            .field("supports_linking", &self.supports_linking)
            .field("request_type", &self.request_type)
            .field("key6", &self.key6)
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every way a scanned code can fail to be a hybrid QR code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QrError {
    #[error("not a FIDO hybrid code: it does not start with {SCHEME}")]
    NotFido,
    #[error("{digits} digits is more than any QR code holds ({MAX_DIGITS})")]
    TooLong { digits: usize },
    #[error("bad digits: {0}")]
    Digits(#[from] DigitsError),
    #[error("the payload is not valid CBOR: {0}")]
    Cbor(String),
    #[error("{0} bytes follow the CBOR map")]
    TrailingBytes(usize),
    #[error("the payload is CBOR but not a map")]
    NotAMap,
    #[error("key {0} appears more than once")]
    DuplicateKey(u8),
    #[error("key {key} ({name}) is missing")]
    Missing { key: u8, name: &'static str },
    #[error("key {key} ({name}) should be {expected}")]
    WrongType {
        key: u8,
        name: &'static str,
        expected: &'static str,
    },
    #[error("key {key} ({name}) should be {expected} bytes, is {actual}")]
    WrongLength {
        key: u8,
        name: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("key {key} ({name}) is out of range")]
    OutOfRange { key: u8, name: &'static str },
    #[error(
        "the public key is not a compressed point (first byte {0:#04x}, expected 0x02 or 0x03)"
    )]
    NotCompressed(u8),
    #[error("the public key is not a point on the P-256 curve")]
    NotOnCurve,
    /// The timestamp is more than [`MAX_CODE_AGE_SECS`] behind the phone's clock.
    #[error("the code was made {age_secs} s ago, more than {MAX_CODE_AGE_SECS} s")]
    Expired { age_secs: u64 },
    /// The timestamp is more than [`MAX_CODE_AHEAD_SECS`] ahead of the phone's clock.
    #[error("the code's time is {ahead_secs} s ahead of this phone's clock, more than {MAX_CODE_AHEAD_SECS} s")]
    FromTheFuture { ahead_secs: u64 },
}

const NAMES: [&str; 7] = [
    "public key",
    "secret",
    "known tunnel domains",
    "timestamp",
    "supports linking",
    "request type",
    "key 6",
];

fn wrong_type(key: u8, expected: &'static str) -> QrError {
    QrError::WrongType {
        key,
        name: NAMES[usize::from(key)],
        expected,
    }
}

fn bytes_of(key: u8, value: Value, len: usize) -> Result<Vec<u8>, QrError> {
    let Value::Bytes(bytes) = value else {
        return Err(wrong_type(key, "a byte string"));
    };
    if bytes.len() != len {
        return Err(QrError::WrongLength {
            key,
            name: NAMES[usize::from(key)],
            expected: len,
            actual: bytes.len(),
        });
    }
    Ok(bytes)
}

fn integer_of(key: u8, value: Value, expected: &'static str) -> Result<i128, QrError> {
    match value {
        Value::Integer(i) => Ok(i128::from(i)),
        _ => Err(wrong_type(key, expected)),
    }
}

fn bool_of(key: u8, value: Value) -> Result<bool, QrError> {
    match value {
        Value::Bool(b) => Ok(b),
        _ => Err(wrong_type(key, "a boolean")),
    }
}

/// Checks a compressed SEC1 point and decodes it.
pub fn parse_public_key(bytes: &[u8]) -> Result<PublicKey, QrError> {
    if bytes.len() != COMPRESSED_KEY_LEN {
        return Err(QrError::WrongLength {
            key: 0,
            name: NAMES[0],
            expected: COMPRESSED_KEY_LEN,
            actual: bytes.len(),
        });
    }
    if !matches!(bytes[0], 0x02 | 0x03) {
        return Err(QrError::NotCompressed(bytes[0]));
    }
    PublicKey::from_sec1_bytes(bytes).map_err(|_| QrError::NotOnCurve)
}

impl QrCode {
    /// A code with the two required fields and nothing else (for test initiators and tools).
    pub fn new(public_key: PublicKey, secret: [u8; SECRET_LEN]) -> Self {
        Self {
            public_key,
            secret: Zeroizing::new(secret),
            known_domains: None,
            timestamp: None,
            supports_linking: None,
            request_type: None,
            key6: None,
        }
    }

    /// Whether the code is recent by its timestamp, at `now` (Unix seconds, the phone's clock):
    /// at most [`MAX_CODE_AGE_SECS`] old and [`MAX_CODE_AHEAD_SECS`] ahead. A code without a
    /// timestamp (it is optional) passes.
    pub fn check_fresh(&self, now: u64) -> Result<(), QrError> {
        let Some(timestamp) = self.timestamp else {
            return Ok(());
        };
        let behind = i128::from(now) - i128::from(timestamp);
        let secs = |d: i128| u64::try_from(d.unsigned_abs()).unwrap_or(u64::MAX);
        if behind > i128::from(MAX_CODE_AGE_SECS) {
            return Err(QrError::Expired {
                age_secs: secs(behind),
            });
        }
        if -behind > i128::from(MAX_CODE_AHEAD_SECS) {
            return Err(QrError::FromTheFuture {
                ahead_secs: secs(behind),
            });
        }
        Ok(())
    }

    /// Parses scanned text: `FIDO:/` + digits. Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, QrError> {
        let text = text.trim();
        let digits = match text.get(..SCHEME.len()) {
            Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => &text[SCHEME.len()..],
            _ => return Err(QrError::NotFido),
        };
        if digits.len() > MAX_DIGITS {
            return Err(QrError::TooLong {
                digits: digits.len(),
            });
        }
        Self::from_cbor(&digits::decode(digits)?)
    }

    /// Parses the CBOR payload (after the digits are decoded).
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, QrError> {
        let mut reader = bytes;
        let value: Value =
            ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_CBOR_DEPTH)
                .map_err(|e| QrError::Cbor(e.to_string()))?;
        if !reader.is_empty() {
            return Err(QrError::TrailingBytes(reader.len()));
        }
        let Value::Map(entries) = value else {
            return Err(QrError::NotAMap);
        };

        let mut fields: [Option<Value>; 7] = Default::default();
        for (key, value) in entries {
            let Value::Integer(key) = key else { continue };
            let Ok(key) = u8::try_from(i128::from(key)) else {
                continue;
            };
            let Some(slot) = fields.get_mut(usize::from(key)) else {
                continue;
            };
            if slot.replace(value).is_some() {
                return Err(QrError::DuplicateKey(key));
            }
        }
        let [f0, f1, f2, f3, f4, f5, f6] = fields;

        let public_key = parse_public_key(&bytes_of(
            0,
            f0.ok_or(QrError::Missing {
                key: 0,
                name: NAMES[0],
            })?,
            COMPRESSED_KEY_LEN,
        )?)?;
        let secret: [u8; SECRET_LEN] = bytes_of(
            1,
            f1.ok_or(QrError::Missing {
                key: 1,
                name: NAMES[1],
            })?,
            SECRET_LEN,
        )?
        .try_into()
        .expect("length checked");
        let mut code = Self::new(public_key, secret);

        if let Some(v) = f2 {
            let n = integer_of(2, v, "an unsigned integer")?;
            code.known_domains =
                Some(u64::try_from(n).map_err(|_| wrong_type(2, "an unsigned integer"))?);
        }
        if let Some(v) = f3 {
            let t = integer_of(3, v, "an integer")?;
            code.timestamp = Some(i64::try_from(t).map_err(|_| QrError::OutOfRange {
                key: 3,
                name: NAMES[3],
            })?);
        }
        if let Some(v) = f4 {
            code.supports_linking = Some(bool_of(4, v)?);
        }
        if let Some(v) = f5 {
            let Value::Text(s) = v else {
                return Err(wrong_type(5, "a text string"));
            };
            code.request_type = Some(RequestType::from_text(s));
        }
        if let Some(v) = f6 {
            code.key6 = Some(match v {
                Value::Bool(b) => Key6::Flag(b),
                Value::Array(items) => Key6::List(items),
                _ => return Err(wrong_type(6, "a boolean or an array")),
            });
        }
        Ok(code)
    }

    /// The browser's key as the QR code carries it (compressed SEC1, 33 bytes).
    pub fn compressed_public_key(&self) -> [u8; COMPRESSED_KEY_LEN] {
        self.public_key
            .to_encoded_point(true)
            .as_bytes()
            .try_into()
            .expect("a compressed P-256 point is 33 bytes")
    }

    /// The CBOR payload, CTAP2-canonical (for test initiators and tools).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut map = vec![
            (
                Value::from(0),
                Value::Bytes(self.compressed_public_key().to_vec()),
            ),
            (Value::from(1), Value::Bytes(self.secret.to_vec())),
        ];
        if let Some(n) = self.known_domains {
            map.push((Value::from(2), Value::Integer(Integer::from(n))));
        }
        if let Some(t) = self.timestamp {
            map.push((Value::from(3), Value::Integer(Integer::from(t))));
        }
        if let Some(b) = self.supports_linking {
            map.push((Value::from(4), Value::Bool(b)));
        }
        if let Some(r) = &self.request_type {
            map.push((Value::from(5), Value::Text(r.as_str().to_string())));
        }
        match &self.key6 {
            Some(Key6::Flag(b)) => map.push((Value::from(6), Value::Bool(*b))),
            Some(Key6::List(items)) => map.push((Value::from(6), Value::Array(items.clone()))),
            None => {}
        }
        crate::ctap::cbor::encode(Value::Map(map))
    }

    /// The text a browser would put in its QR code: `FIDO:/` + digits.
    pub fn to_url(&self) -> String {
        format!("{SCHEME}{}", digits::encode(&self.to_cbor()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stamped(timestamp: Option<i64>) -> QrCode {
        let key = p256::SecretKey::from_slice(&[7; 32]).unwrap().public_key();
        let mut code = QrCode::new(key, [1; SECRET_LEN]);
        code.timestamp = timestamp;
        code
    }

    #[test]
    fn freshness_against_fixed_clocks() {
        let now = 1_700_000_000u64;
        let at = |t: i64| stamped(Some(t)).check_fresh(now);
        let n = now as i64;
        assert_eq!(at(n), Ok(()));
        assert_eq!(at(n - 600), Ok(()), "10 minutes old: the longest ceremony");
        assert_eq!(at(n - 601), Err(QrError::Expired { age_secs: 601 }));
        assert_eq!(at(n - 86_400), Err(QrError::Expired { age_secs: 86_400 }));
        assert_eq!(at(n + 600), Ok(()), "clock skew");
        assert_eq!(at(n + 601), Err(QrError::FromTheFuture { ahead_secs: 601 }));
        // Extremes neither overflow nor pass.
        assert!(matches!(at(i64::MIN), Err(QrError::Expired { .. })));
        assert!(matches!(at(i64::MAX), Err(QrError::FromTheFuture { .. })));
        assert_eq!(
            stamped(Some(0)).check_fresh(u64::MAX),
            Err(QrError::Expired { age_secs: u64::MAX })
        );
        // No timestamp: accepted at any time.
        assert_eq!(stamped(None).check_fresh(now), Ok(()));
        assert_eq!(stamped(None).check_fresh(0), Ok(()));
        // A browser's code (Chrome's vector, timestamp 0x6356217b = 2022-10-24) is fresh then,
        // expired a day later; parsing alone never looks at the time.
        let chrome = stamped(Some(0x6356217b));
        assert_eq!(chrome.check_fresh(0x6356217b + 30), Ok(()));
        assert!(matches!(
            chrome.check_fresh(0x6356217b + 86_400),
            Err(QrError::Expired { .. })
        ));
        assert_eq!(
            QrCode::parse(&chrome.to_url()).unwrap().timestamp,
            Some(0x6356217b)
        );
    }

    fn key() -> PublicKey {
        p256::SecretKey::from_slice(&[0x11; 32])
            .unwrap()
            .public_key()
    }

    fn cbor(map: Vec<(Value, Value)>) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(&Value::Map(map), &mut out).unwrap();
        out
    }

    fn base() -> Vec<(Value, Value)> {
        let code = QrCode::new(key(), [0x22; 16]);
        vec![
            (
                Value::from(0),
                Value::Bytes(code.compressed_public_key().to_vec()),
            ),
            (Value::from(1), Value::Bytes(vec![0x22; 16])),
        ]
    }

    fn with(key: i64, value: Value) -> Vec<u8> {
        let mut map = base();
        map.push((Value::from(key), value));
        cbor(map)
    }

    #[test]
    fn round_trip_with_every_field() {
        let mut code = QrCode::new(key(), [7; 16]);
        code.known_domains = Some(2);
        code.timestamp = Some(1_700_000_000);
        code.supports_linking = Some(true);
        code.request_type = Some(RequestType::MakeCredential);
        code.key6 = Some(Key6::List(vec![Value::Text("x".into())]));
        let url = code.to_url();
        assert!(url.starts_with("FIDO:/"));
        assert_eq!(QrCode::parse(&url).unwrap(), code);
        assert_eq!(
            QrCode::parse(&url.replacen("FIDO", "fido", 1)).unwrap(),
            code
        );
        assert_eq!(QrCode::parse(&format!("  {url}\n")).unwrap(), code);
    }

    #[test]
    fn optional_fields_absent() {
        let code = QrCode::from_cbor(&cbor(base())).unwrap();
        assert_eq!(code.known_domains, None);
        assert_eq!(code.request_type, None);
        assert_eq!(code.key6, None);
        assert!(
            !format!("{code:?}").contains("2222"),
            "Debug must not show the secret"
        );
    }

    #[test]
    fn key6_both_forms() {
        assert_eq!(
            QrCode::from_cbor(&with(6, Value::Bool(true))).unwrap().key6,
            Some(Key6::Flag(true))
        );
        assert_eq!(
            QrCode::from_cbor(&with(6, Value::Array(vec![Value::from(1)])))
                .unwrap()
                .key6,
            Some(Key6::List(vec![Value::from(1)]))
        );
        assert_eq!(
            QrCode::from_cbor(&with(6, Value::from(1))),
            Err(QrError::WrongType {
                key: 6,
                name: "key 6",
                expected: "a boolean or an array"
            })
        );
    }

    #[test]
    fn request_types() {
        let rt = |s: &str| {
            QrCode::from_cbor(&with(5, Value::Text(s.into())))
                .unwrap()
                .request_type
        };
        assert_eq!(rt("ga"), Some(RequestType::GetAssertion));
        assert_eq!(rt("mc"), Some(RequestType::MakeCredential));
        assert_eq!(rt("dc"), Some(RequestType::Other("dc".into())));
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let mut map = base();
        map.push((Value::from(7), Value::Null));
        map.push((Value::from(-1), Value::Null));
        map.push((Value::from(1000), Value::Null));
        map.push((Value::Text("future".into()), Value::Array(vec![])));
        assert!(QrCode::from_cbor(&cbor(map)).is_ok());
    }

    #[test]
    fn typed_errors() {
        assert_eq!(QrCode::parse("https://example.com"), Err(QrError::NotFido));
        assert_eq!(QrCode::parse("FIDO:"), Err(QrError::NotFido));
        assert_eq!(QrCode::parse("FIDÖ:/1"), Err(QrError::NotFido));
        assert!(matches!(
            QrCode::parse("FIDO:/12x"),
            Err(QrError::Digits(DigitsError::NotADigit { .. }))
        ));
        assert!(matches!(
            QrCode::parse(&format!("FIDO:/{}", "0".repeat(7100))),
            Err(QrError::TooLong { .. })
        ));
        assert!(matches!(QrCode::parse("FIDO:/"), Err(QrError::Cbor(_))));
        assert_eq!(QrCode::from_cbor(&[0x01]), Err(QrError::NotAMap));
        assert!(matches!(QrCode::from_cbor(&[0xa1]), Err(QrError::Cbor(_))));
        let mut trailing = cbor(base());
        trailing.push(0);
        assert_eq!(QrCode::from_cbor(&trailing), Err(QrError::TrailingBytes(1)));

        assert_eq!(
            QrCode::from_cbor(&cbor(vec![base()[1].clone()])),
            Err(QrError::Missing {
                key: 0,
                name: "public key"
            })
        );
        assert_eq!(
            QrCode::from_cbor(&cbor(vec![base()[0].clone()])),
            Err(QrError::Missing {
                key: 1,
                name: "secret"
            })
        );
        let mut dup = base();
        dup.push(base()[1].clone());
        assert_eq!(QrCode::from_cbor(&cbor(dup)), Err(QrError::DuplicateKey(1)));

        let mut short_secret = base();
        short_secret[1].1 = Value::Bytes(vec![0; 15]);
        assert_eq!(
            QrCode::from_cbor(&cbor(short_secret)),
            Err(QrError::WrongLength {
                key: 1,
                name: "secret",
                expected: 16,
                actual: 15
            })
        );
        let mut text_key = base();
        text_key[0].1 = Value::Text("key".into());
        assert!(matches!(
            QrCode::from_cbor(&cbor(text_key)),
            Err(QrError::WrongType { key: 0, .. })
        ));

        let uncompressed = key().to_encoded_point(false).as_bytes().to_vec();
        let mut long_key = base();
        long_key[0].1 = Value::Bytes(uncompressed);
        assert!(matches!(
            QrCode::from_cbor(&cbor(long_key)),
            Err(QrError::WrongLength {
                key: 0,
                actual: 65,
                ..
            })
        ));
        let mut bad_prefix = base();
        bad_prefix[0].1 = Value::Bytes(vec![0x04; 33]);
        assert_eq!(
            QrCode::from_cbor(&cbor(bad_prefix)),
            Err(QrError::NotCompressed(0x04))
        );
        // x = 1 is not the x-coordinate of any P-256 point (1 - 3 + b is a non-residue mod p).
        let mut off_curve = base();
        let mut x = vec![0x02];
        x.extend_from_slice(&[0; 31]);
        x.push(1);
        off_curve[0].1 = Value::Bytes(x);
        assert_eq!(
            QrCode::from_cbor(&cbor(off_curve)),
            Err(QrError::NotOnCurve)
        );

        assert!(matches!(
            QrCode::from_cbor(&with(2, Value::from(-1))),
            Err(QrError::WrongType { key: 2, .. })
        ));
        assert!(matches!(
            QrCode::from_cbor(&with(2, Value::Text("2".into()))),
            Err(QrError::WrongType { key: 2, .. })
        ));
        assert_eq!(
            QrCode::from_cbor(&with(3, Value::from(-5)))
                .unwrap()
                .timestamp,
            Some(-5)
        );
        assert_eq!(
            QrCode::from_cbor(&with(3, Value::Integer(Integer::from(u64::MAX)))),
            Err(QrError::OutOfRange {
                key: 3,
                name: "timestamp"
            })
        );
        assert!(matches!(
            QrCode::from_cbor(&with(4, Value::from(1))),
            Err(QrError::WrongType { key: 4, .. })
        ));
        assert!(matches!(
            QrCode::from_cbor(&with(5, Value::Bytes(b"ga".to_vec()))),
            Err(QrError::WrongType { key: 5, .. })
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut bytes = vec![0xa1, 0x06];
        bytes.extend(std::iter::repeat_n(0x81, 10_000));
        bytes.push(0x00);
        assert!(matches!(QrCode::from_cbor(&bytes), Err(QrError::Cbor(_))));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,120}") {
            let _ = QrCode::parse(&s);
        }

        #[test]
        fn parse_fido_digits_never_panics(s in "[0-9]{0,300}") {
            let _ = QrCode::parse(&format!("FIDO:/{s}"));
        }

        #[test]
        fn from_cbor_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = QrCode::from_cbor(&bytes);
        }

        #[test]
        fn mutated_valid_payloads_never_panic(index in 0usize..60, byte in any::<u8>()) {
            let mut payload = QrCode::new(key(), [3; 16]).to_cbor();
            let i = index % payload.len();
            payload[i] = byte;
            let _ = QrCode::from_cbor(&payload);
        }
    }
}
