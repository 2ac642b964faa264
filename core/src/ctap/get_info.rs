//! authenticatorGetInfo (0x04, CTAP 2.1 §6.4): response. The command has no parameters.

use ciborium::value::Value;

use super::cbor::{int, MapBuilder};
use super::shared::{bytes, text};

/// Integer keys of the response map (CTAP 2.1 §6.4).
pub mod response_keys {
    pub const VERSIONS: i64 = 0x01;
    pub const EXTENSIONS: i64 = 0x02;
    pub const AAGUID: i64 = 0x03;
    pub const OPTIONS: i64 = 0x04;
    pub const MAX_MSG_SIZE: i64 = 0x05;
    pub const PIN_UV_AUTH_PROTOCOLS: i64 = 0x06;
    pub const MAX_CREDENTIAL_COUNT_IN_LIST: i64 = 0x07;
    pub const MAX_CREDENTIAL_ID_LENGTH: i64 = 0x08;
    pub const TRANSPORTS: i64 = 0x09;
    pub const ALGORITHMS: i64 = 0x0A;
    pub const MAX_SERIALIZED_LARGE_BLOB_ARRAY: i64 = 0x0B;
    pub const FORCE_PIN_CHANGE: i64 = 0x0C;
    pub const MIN_PIN_LENGTH: i64 = 0x0D;
    pub const FIRMWARE_VERSION: i64 = 0x0E;
    pub const MAX_CRED_BLOB_LENGTH: i64 = 0x0F;
    pub const MAX_RP_IDS_FOR_SET_MIN_PIN_LENGTH: i64 = 0x10;
    pub const PREFERRED_PLATFORM_UV_ATTEMPTS: i64 = 0x11;
    pub const UV_MODALITY: i64 = 0x12;
    pub const REMAINING_DISCOVERABLE_CREDENTIALS: i64 = 0x14;
}

/// authenticatorGetInfo's response.
#[derive(Debug, Clone)]
pub struct Response {
    pub versions: Vec<&'static str>,
    pub extensions: Vec<&'static str>,
    pub aaguid: [u8; 16],
    pub options: Vec<(&'static str, bool)>,
    pub max_msg_size: u64,
    pub pin_uv_auth_protocols: Vec<u64>,
    pub max_credential_count_in_list: u64,
    pub max_credential_id_length: u64,
    pub transports: Vec<&'static str>,
    pub algorithms: Vec<i64>,
    pub max_serialized_large_blob_array: u64,
    pub force_pin_change: bool,
    pub min_pin_length: u64,
    pub firmware_version: u64,
    pub max_cred_blob_length: u64,
    pub max_rp_ids_for_set_min_pin_length: u64,
    /// Only with built-in user verification (both describe getPinUvAuthTokenUsingUv…).
    pub preferred_platform_uv_attempts: Option<u64>,
    pub uv_modality: Option<u64>,
    pub remaining_discoverable_credentials: u64,
}

impl Response {
    pub fn to_value(&self) -> Value {
        use response_keys as k;
        let texts = |v: &[&'static str]| Value::Array(v.iter().map(|s| text(*s)).collect());
        let options = self
            .options
            .iter()
            .map(|(k, v)| (text(*k), Value::Bool(*v)))
            .collect();
        let protocols = self
            .pin_uv_auth_protocols
            .iter()
            .map(|p| (*p).into())
            .collect();
        let algorithms = self
            .algorithms
            .iter()
            .map(|a| {
                MapBuilder::new()
                    .put(text("alg"), int(*a))
                    .put(text("type"), text("public-key"))
                    .build()
            })
            .collect();
        MapBuilder::new()
            .put(int(k::VERSIONS), texts(&self.versions))
            .put(int(k::EXTENSIONS), texts(&self.extensions))
            .put(int(k::AAGUID), bytes(self.aaguid.to_vec()))
            .put(int(k::OPTIONS), Value::Map(options))
            .put(int(k::MAX_MSG_SIZE), self.max_msg_size)
            .put(int(k::PIN_UV_AUTH_PROTOCOLS), Value::Array(protocols))
            .put(
                int(k::MAX_CREDENTIAL_COUNT_IN_LIST),
                self.max_credential_count_in_list,
            )
            .put(
                int(k::MAX_CREDENTIAL_ID_LENGTH),
                self.max_credential_id_length,
            )
            .put(int(k::TRANSPORTS), texts(&self.transports))
            .put(int(k::ALGORITHMS), Value::Array(algorithms))
            .put(
                int(k::MAX_SERIALIZED_LARGE_BLOB_ARRAY),
                self.max_serialized_large_blob_array,
            )
            .put(int(k::FORCE_PIN_CHANGE), self.force_pin_change)
            .put(int(k::MIN_PIN_LENGTH), self.min_pin_length)
            .put(int(k::FIRMWARE_VERSION), self.firmware_version)
            .put(int(k::MAX_CRED_BLOB_LENGTH), self.max_cred_blob_length)
            .put(
                int(k::MAX_RP_IDS_FOR_SET_MIN_PIN_LENGTH),
                self.max_rp_ids_for_set_min_pin_length,
            )
            .put_opt(
                int(k::PREFERRED_PLATFORM_UV_ATTEMPTS),
                self.preferred_platform_uv_attempts,
            )
            .put_opt(int(k::UV_MODALITY), self.uv_modality)
            .put(
                int(k::REMAINING_DISCOVERABLE_CREDENTIALS),
                self.remaining_discoverable_credentials,
            )
            .build()
    }
}
