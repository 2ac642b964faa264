//! authenticatorClientPIN (0x06, CTAP 2.1 §6.5): request and response.

use ciborium::value::Value;

use super::cbor::{as_bytes, as_text, as_uint, decode, int, MapBuilder, MapReader};
use super::shared::bytes;
use super::status::{CtapError, CtapResult};

/// Integer keys of the request map (CTAP 2.1 §6.5.4).
pub mod keys {
    pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x01;
    pub const SUB_COMMAND: i64 = 0x02;
    pub const KEY_AGREEMENT: i64 = 0x03;
    pub const PIN_UV_AUTH_PARAM: i64 = 0x04;
    pub const NEW_PIN_ENC: i64 = 0x05;
    pub const PIN_HASH_ENC: i64 = 0x06;
    pub const PERMISSIONS: i64 = 0x09;
    pub const RP_ID: i64 = 0x0A;
}

/// Integer keys of the response map (CTAP 2.1 §6.5.5).
pub mod response_keys {
    pub const KEY_AGREEMENT: i64 = 0x01;
    pub const PIN_UV_AUTH_TOKEN: i64 = 0x02;
    pub const PIN_RETRIES: i64 = 0x03;
    pub const POWER_CYCLE_STATE: i64 = 0x04;
    pub const UV_RETRIES: i64 = 0x05;
}

/// authenticatorClientPIN's subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubCommand {
    GetPinRetries = 0x01,
    GetKeyAgreement = 0x02,
    SetPin = 0x03,
    ChangePin = 0x04,
    GetPinToken = 0x05,
    GetPinUvAuthTokenUsingUvWithPermissions = 0x06,
    GetUvRetries = 0x07,
    GetPinUvAuthTokenUsingPinWithPermissions = 0x09,
}

impl SubCommand {
    fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            0x01 => Self::GetPinRetries,
            0x02 => Self::GetKeyAgreement,
            0x03 => Self::SetPin,
            0x04 => Self::ChangePin,
            0x05 => Self::GetPinToken,
            0x06 => Self::GetPinUvAuthTokenUsingUvWithPermissions,
            0x07 => Self::GetUvRetries,
            0x09 => Self::GetPinUvAuthTokenUsingPinWithPermissions,
            _ => return None,
        })
    }
}

/// authenticatorClientPIN's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub protocol: Option<u64>,
    pub sub_command: SubCommand,
    pub key_agreement: Option<Value>,
    pub pin_uv_auth_param: Option<Vec<u8>>,
    pub new_pin_enc: Option<Vec<u8>>,
    pub pin_hash_enc: Option<Vec<u8>>,
    pub permissions: Option<u64>,
    pub rp_id: Option<String>,
}

impl Request {
    /// Parses the CBOR parameters (the bytes after the command byte).
    pub fn parse(bytes: &[u8]) -> CtapResult<Self> {
        use keys as k;
        let mut m = MapReader::new(decode(bytes)?)?;
        let protocol = m.take(k::PIN_UV_AUTH_PROTOCOL).map(as_uint).transpose()?;
        let sub_command = SubCommand::from_u64(as_uint(m.require(k::SUB_COMMAND)?)?)
            .ok_or(CtapError::InvalidSubcommand)?;
        Ok(Self {
            protocol,
            sub_command,
            key_agreement: m.take(k::KEY_AGREEMENT),
            pin_uv_auth_param: m.take(k::PIN_UV_AUTH_PARAM).map(as_bytes).transpose()?,
            new_pin_enc: m.take(k::NEW_PIN_ENC).map(as_bytes).transpose()?,
            pin_hash_enc: m.take(k::PIN_HASH_ENC).map(as_bytes).transpose()?,
            permissions: m.take(k::PERMISSIONS).map(as_uint).transpose()?,
            rp_id: m.take(k::RP_ID).map(as_text).transpose()?,
        })
    }
}

/// authenticatorClientPIN's response.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub key_agreement: Option<Value>,
    pub pin_uv_auth_token: Option<Vec<u8>>,
    pub pin_retries: Option<u64>,
    pub power_cycle_state: Option<bool>,
    pub uv_retries: Option<u64>,
}

impl Response {
    pub fn to_value(&self) -> Value {
        use response_keys as k;
        MapBuilder::new()
            .put_opt(int(k::KEY_AGREEMENT), self.key_agreement.clone())
            .put_opt(
                int(k::PIN_UV_AUTH_TOKEN),
                self.pin_uv_auth_token.clone().map(bytes),
            )
            .put_opt(int(k::PIN_RETRIES), self.pin_retries)
            .put_opt(int(k::POWER_CYCLE_STATE), self.power_cycle_state)
            .put_opt(int(k::UV_RETRIES), self.uv_retries)
            .build()
    }
}
