//! Request and response pieces several commands share: entities, credential descriptors,
//! options, pinUvAuth fields, and the success envelope.

use ciborium::value::Value;

use super::cbor::{as_array, as_bool, as_bytes, as_text, as_uint, encode, MapBuilder, MapReader};
use super::status::{CtapError, CtapResult};

/// Longest user/RP strings we keep (CTAP 2.1 §6.1.2: authenticators may truncate to 64 bytes).
pub const MAX_STRING_BYTES: usize = 64;
/// WebAuthn user handles are at most 64 bytes.
pub const MAX_USER_ID_BYTES: usize = 64;

pub(crate) fn bytes(b: Vec<u8>) -> Value {
    Value::Bytes(b)
}

pub(crate) fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate_utf8(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

pub(crate) fn opt_text(v: Option<Value>) -> CtapResult<Option<String>> {
    v.map(|v| as_text(v).map(|s| truncate_utf8(s, MAX_STRING_BYTES)))
        .transpose()
}

/// An array of text strings (attestation format preferences, minPinLength RP IDs).
pub(crate) fn text_list(v: Value) -> CtapResult<Vec<String>> {
    as_array(v)?.into_iter().map(as_text).collect()
}

/// The `icon` member of an RP or user entity: a URL string in CTAP 2.0 (WebAuthn Level 1's
/// PublicKeyCredentialEntity), gone from CTAP 2.1 but still sent by 2.0-era platforms. Its
/// value is not kept; its type is checked like `name`'s, so a non-text icon is
/// CTAP2_ERR_CBOR_UNEXPECTED_TYPE rather than silently accepted.
fn check_icon(m: &mut MapReader) -> CtapResult<()> {
    opt_text(m.take_text("icon")).map(drop)
}

/// A 32-byte hash field (clientDataHash, rpIdHash).
pub(crate) fn hash32(v: Value) -> CtapResult<[u8; 32]> {
    as_bytes(v)?
        .try_into()
        .map_err(|_| CtapError::InvalidLength)
}

/// PublicKeyCredentialRpEntity.
#[derive(Debug, Clone, PartialEq)]
pub struct RpEntity {
    pub id: String,
    pub name: Option<String>,
}

impl RpEntity {
    pub(crate) fn parse(v: Value) -> CtapResult<Self> {
        let mut m = MapReader::new(v)?;
        let id = as_text(m.take_text("id").ok_or(CtapError::MissingParameter)?)?;
        let name = opt_text(m.take_text("name"))?;
        check_icon(&mut m)?;
        Ok(Self { id, name })
    }
}

/// PublicKeyCredentialUserEntity.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEntity {
    pub id: Vec<u8>,
    pub name: Option<String>,
    pub display_name: Option<String>,
}

impl UserEntity {
    pub fn parse(v: Value) -> CtapResult<Self> {
        let mut m = MapReader::new(v)?;
        let id = as_bytes(m.take_text("id").ok_or(CtapError::MissingParameter)?)?;
        if id.len() > MAX_USER_ID_BYTES {
            return Err(CtapError::InvalidLength);
        }
        let name = opt_text(m.take_text("name"))?;
        let display_name = opt_text(m.take_text("displayName"))?;
        check_icon(&mut m)?;
        Ok(Self {
            id,
            name,
            display_name,
        })
    }
}

/// PublicKeyCredentialDescriptor of type "public-key" (others are skipped by the lists).
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialDescriptor {
    pub id: Vec<u8>,
}

/// Parses an allowList/excludeList, keeping only "public-key" entries.
pub(crate) fn credential_list(v: Value) -> CtapResult<Vec<CredentialDescriptor>> {
    let mut out = Vec::new();
    for item in as_array(v)? {
        let mut m = MapReader::new(item)?;
        let ty = as_text(m.take_text("type").ok_or(CtapError::MissingParameter)?)?;
        let id = as_bytes(m.take_text("id").ok_or(CtapError::MissingParameter)?)?;
        if let Some(t) = m.take_text("transports") {
            as_array(t)?;
        }
        if ty == "public-key" {
            out.push(CredentialDescriptor { id });
        }
    }
    Ok(out)
}

/// Credential ID from a PublicKeyCredentialDescriptor map.
pub(crate) fn descriptor_id(v: Value) -> CtapResult<Vec<u8>> {
    let mut m = MapReader::new(v)?;
    as_bytes(m.take_text("id").ok_or(CtapError::MissingParameter)?)
}

/// A PublicKeyCredentialDescriptor as returned to the platform.
pub fn credential_descriptor(id: &[u8]) -> Value {
    MapBuilder::new()
        .put(text("id"), bytes(id.to_vec()))
        .put(text("type"), text("public-key"))
        .build()
}

/// The `options` map: each present key maps to a boolean.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Options {
    pub rk: Option<bool>,
    pub up: Option<bool>,
    pub uv: Option<bool>,
}

impl Options {
    pub(crate) fn parse(v: Value) -> CtapResult<Self> {
        let mut m = MapReader::new(v)?;
        let mut opt = |name: &str| m.take_text(name).map(as_bool).transpose();
        let rk = opt("rk")?;
        let up = opt("up")?;
        let uv = opt("uv")?;
        // Other options (unknown to us) must still be booleans.
        for (k, v) in m.into_entries() {
            as_text(k)?;
            as_bool(v)?;
        }
        Ok(Self { rk, up, uv })
    }
}

/// PIN/UV auth fields shared by several commands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PinUvAuth {
    pub param: Option<Vec<u8>>,
    pub protocol: Option<u64>,
}

impl PinUvAuth {
    pub(crate) fn take(m: &mut MapReader, param_key: i64, protocol_key: i64) -> CtapResult<Self> {
        Ok(Self {
            param: m.take(param_key).map(as_bytes).transpose()?,
            protocol: m.take(protocol_key).map(as_uint).transpose()?,
        })
    }
}

/// A PublicKeyCredentialUserEntity as returned to the platform.
#[derive(Debug, Clone, Default)]
pub struct UserInfo {
    pub id: Vec<u8>,
    pub name: Option<String>,
    pub display_name: Option<String>,
}

impl UserInfo {
    pub fn to_value(&self, with_names: bool) -> Value {
        let mut m = MapBuilder::new().put(text("id"), bytes(self.id.clone()));
        if with_names {
            m = m
                .put_opt(text("name"), self.name.clone().map(text))
                .put_opt(text("displayName"), self.display_name.clone().map(text));
        }
        m.build()
    }
}

/// Status byte 0x00 followed by the canonical encoding of `value`.
pub fn ok_with(value: Value) -> Vec<u8> {
    let mut out = vec![0x00];
    out.extend(encode(value));
    out
}
