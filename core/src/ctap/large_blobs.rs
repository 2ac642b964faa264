//! authenticatorLargeBlobs (0x0C, CTAP 2.1 §6.10): request and response.

use ciborium::value::Value;

use super::cbor::{as_bytes, as_uint, decode, int, MapBuilder, MapReader};
use super::shared::{bytes, PinUvAuth};
use super::status::CtapResult;

/// Integer keys of the request map (CTAP 2.1 §6.10.2).
pub mod keys {
    pub const GET: i64 = 0x01;
    pub const SET: i64 = 0x02;
    pub const OFFSET: i64 = 0x03;
    pub const LENGTH: i64 = 0x04;
    pub const PIN_UV_AUTH_PARAM: i64 = 0x05;
    pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x06;
}

/// Integer keys of the response map (CTAP 2.1 §6.10.2).
pub mod response_keys {
    pub const CONFIG: i64 = 0x01;
}

/// authenticatorLargeBlobs' parameters: a read (`get`) or a write (`set`) at `offset`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub get: Option<u64>,
    pub set: Option<Vec<u8>>,
    pub offset: u64,
    pub length: Option<u64>,
    pub pin_uv_auth: PinUvAuth,
}

impl Request {
    /// Parses the CBOR parameters (the bytes after the command byte).
    pub fn parse(bytes: &[u8]) -> CtapResult<Self> {
        use keys as k;
        let mut m = MapReader::new(decode(bytes)?)?;
        Ok(Self {
            get: m.take(k::GET).map(as_uint).transpose()?,
            set: m.take(k::SET).map(as_bytes).transpose()?,
            offset: as_uint(m.require(k::OFFSET)?)?,
            length: m.take(k::LENGTH).map(as_uint).transpose()?,
            pin_uv_auth: PinUvAuth::take(&mut m, k::PIN_UV_AUTH_PARAM, k::PIN_UV_AUTH_PROTOCOL)?,
        })
    }
}

/// The response to a read: one fragment of the serialized large-blob array.
#[derive(Debug, Clone)]
pub struct Response {
    pub config: Vec<u8>,
}

impl Response {
    pub fn to_value(&self) -> Value {
        MapBuilder::new()
            .put(int(response_keys::CONFIG), bytes(self.config.clone()))
            .build()
    }
}
