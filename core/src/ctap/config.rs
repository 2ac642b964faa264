//! authenticatorConfig (0x0D, CTAP 2.1 §6.11): request. A success carries no response map.

use ciborium::value::Value;

use super::cbor::{as_bool, as_uint, decode, encode, MapReader};
use super::shared::{text_list, PinUvAuth};
use super::status::{CtapError, CtapResult};

/// Integer keys of the request map (CTAP 2.1 §6.11).
pub mod keys {
    pub const SUB_COMMAND: i64 = 0x01;
    pub const SUB_COMMAND_PARAMS: i64 = 0x02;
    pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x03;
    pub const PIN_UV_AUTH_PARAM: i64 = 0x04;
    /// Keys of setMinPINLength's subCommandParams (CTAP 2.1 §6.11.4).
    pub mod set_min_pin_length {
        pub const NEW_MIN_PIN_LENGTH: i64 = 0x01;
        pub const MIN_PIN_LENGTH_RP_IDS: i64 = 0x02;
        pub const FORCE_CHANGE_PIN: i64 = 0x03;
    }
}

/// authenticatorConfig's subcommands, with their parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum SubCommand {
    EnableEnterpriseAttestation,
    ToggleAlwaysUv,
    SetMinPinLength {
        new_min_pin_length: Option<u64>,
        rp_ids: Option<Vec<String>>,
        force_change_pin: bool,
    },
}

/// authenticatorConfig's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub sub_command: SubCommand,
    pub sub_command_byte: u8,
    /// The raw CBOR bytes of subCommandParams, as the pinUvAuthParam covers them.
    pub params_bytes: Vec<u8>,
    pub pin_uv_auth: PinUvAuth,
}

impl Request {
    /// Parses the CBOR parameters (the bytes after the command byte).
    pub fn parse(bytes: &[u8]) -> CtapResult<Self> {
        use keys as k;
        let mut m = MapReader::new(decode(bytes)?)?;
        let sub = as_uint(m.require(k::SUB_COMMAND)?)?;
        let params = m.take(k::SUB_COMMAND_PARAMS);
        let params_bytes = params.clone().map(encode).unwrap_or_default();
        let pin_uv_auth = PinUvAuth::take(&mut m, k::PIN_UV_AUTH_PARAM, k::PIN_UV_AUTH_PROTOCOL)?;
        let sub_command = match sub {
            0x01 => SubCommand::EnableEnterpriseAttestation,
            0x02 => SubCommand::ToggleAlwaysUv,
            0x03 => {
                use k::set_min_pin_length as p;
                let mut pm = MapReader::new(params.unwrap_or(Value::Map(vec![])))?;
                let new_min_pin_length = pm.take(p::NEW_MIN_PIN_LENGTH).map(as_uint).transpose()?;
                let rp_ids = pm
                    .take(p::MIN_PIN_LENGTH_RP_IDS)
                    .map(text_list)
                    .transpose()?;
                let force_change_pin = pm
                    .take(p::FORCE_CHANGE_PIN)
                    .map(as_bool)
                    .transpose()?
                    .unwrap_or(false);
                SubCommand::SetMinPinLength {
                    new_min_pin_length,
                    rp_ids,
                    force_change_pin,
                }
            }
            // 0xFF vendorPrototype and anything else: not supported.
            _ => return Err(CtapError::InvalidSubcommand),
        };
        Ok(Self {
            sub_command,
            sub_command_byte: sub as u8,
            params_bytes,
            pin_uv_auth,
        })
    }
}
