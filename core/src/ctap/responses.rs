//! Typed CTAP2 responses and their CTAP2-canonical encoding. Integer keys live here only.

use ciborium::value::Value;

use super::cbor::{encode, int, MapBuilder};

fn bytes(b: Vec<u8>) -> Value {
    Value::Bytes(b)
}
fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// authenticatorGetInfo response (CTAP 2.1 §6.4).
#[derive(Debug, Clone)]
pub struct GetInfoResponse {
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

impl GetInfoResponse {
    pub fn to_value(&self) -> Value {
        let texts = |v: &[&'static str]| Value::Array(v.iter().map(|s| text(*s)).collect());
        MapBuilder::new()
            .put(int(0x01), texts(&self.versions))
            .put(int(0x02), texts(&self.extensions))
            .put(int(0x03), bytes(self.aaguid.to_vec()))
            .put(
                int(0x04),
                Value::Map(
                    self.options
                        .iter()
                        .map(|(k, v)| (text(*k), Value::Bool(*v)))
                        .collect(),
                ),
            )
            .put(int(0x05), self.max_msg_size)
            .put(
                int(0x06),
                Value::Array(
                    self.pin_uv_auth_protocols
                        .iter()
                        .map(|p| (*p).into())
                        .collect(),
                ),
            )
            .put(int(0x07), self.max_credential_count_in_list)
            .put(int(0x08), self.max_credential_id_length)
            .put(int(0x09), texts(&self.transports))
            .put(
                int(0x0A),
                Value::Array(
                    self.algorithms
                        .iter()
                        .map(|a| {
                            MapBuilder::new()
                                .put(text("alg"), int(*a))
                                .put(text("type"), text("public-key"))
                                .build()
                        })
                        .collect(),
                ),
            )
            .put(int(0x0B), self.max_serialized_large_blob_array)
            .put(int(0x0C), self.force_pin_change)
            .put(int(0x0D), self.min_pin_length)
            .put(int(0x0E), self.firmware_version)
            .put(int(0x0F), self.max_cred_blob_length)
            .put(int(0x10), self.max_rp_ids_for_set_min_pin_length)
            .put_opt(int(0x11), self.preferred_platform_uv_attempts)
            .put_opt(int(0x12), self.uv_modality)
            .put(int(0x14), self.remaining_discoverable_credentials)
            .build()
    }
}

/// authenticatorMakeCredential response (CTAP 2.1 §6.1).
#[derive(Debug, Clone)]
pub struct MakeCredentialResponse {
    pub fmt: &'static str,
    pub auth_data: Vec<u8>,
    pub att_stmt: Value,
    pub ep_att: bool,
    pub large_blob_key: Option<Vec<u8>>,
}

impl MakeCredentialResponse {
    pub fn to_value(&self) -> Value {
        MapBuilder::new()
            .put(int(0x01), text(self.fmt))
            .put(int(0x02), bytes(self.auth_data.clone()))
            .put(int(0x03), self.att_stmt.clone())
            .put_opt(int(0x04), self.ep_att.then_some(true))
            .put_opt(int(0x05), self.large_blob_key.clone().map(bytes))
            .build()
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

pub fn credential_descriptor(id: &[u8]) -> Value {
    MapBuilder::new()
        .put(text("id"), bytes(id.to_vec()))
        .put(text("type"), text("public-key"))
        .build()
}

/// authenticatorGetAssertion / GetNextAssertion response (CTAP 2.1 §6.2).
#[derive(Debug, Clone)]
pub struct GetAssertionResponse {
    pub credential_id: Vec<u8>,
    pub auth_data: Vec<u8>,
    pub signature: Vec<u8>,
    /// Present for discoverable credentials; names only when the user was verified.
    pub user: Option<(UserInfo, bool)>,
    pub number_of_credentials: Option<u64>,
    pub user_selected: bool,
    pub large_blob_key: Option<Vec<u8>>,
}

impl GetAssertionResponse {
    pub fn to_value(&self) -> Value {
        MapBuilder::new()
            .put(int(0x01), credential_descriptor(&self.credential_id))
            .put(int(0x02), bytes(self.auth_data.clone()))
            .put(int(0x03), bytes(self.signature.clone()))
            .put_opt(
                int(0x04),
                self.user.as_ref().map(|(u, names)| u.to_value(*names)),
            )
            .put_opt(int(0x05), self.number_of_credentials)
            .put_opt(int(0x06), self.user_selected.then_some(true))
            .put_opt(int(0x07), self.large_blob_key.clone().map(bytes))
            .build()
    }
}

/// authenticatorClientPIN response (CTAP 2.1 §6.5.5).
#[derive(Debug, Clone, Default)]
pub struct ClientPinResponse {
    pub key_agreement: Option<Value>,
    pub pin_uv_auth_token: Option<Vec<u8>>,
    pub pin_retries: Option<u64>,
    pub power_cycle_state: Option<bool>,
    pub uv_retries: Option<u64>,
}

impl ClientPinResponse {
    pub fn to_value(&self) -> Value {
        MapBuilder::new()
            .put_opt(int(0x01), self.key_agreement.clone())
            .put_opt(int(0x02), self.pin_uv_auth_token.clone().map(bytes))
            .put_opt(int(0x03), self.pin_retries)
            .put_opt(int(0x04), self.power_cycle_state)
            .put_opt(int(0x05), self.uv_retries)
            .build()
    }
}

/// authenticatorCredentialManagement response (CTAP 2.1 §6.8).
#[derive(Debug, Clone, Default)]
pub struct CredMgmtResponse {
    pub existing_resident_credentials_count: Option<u64>,
    pub max_possible_remaining_resident_credentials_count: Option<u64>,
    pub rp: Option<(String, Option<String>)>,
    pub rp_id_hash: Option<[u8; 32]>,
    pub total_rps: Option<u64>,
    pub user: Option<UserInfo>,
    pub credential_id: Option<Vec<u8>>,
    pub public_key: Option<Value>,
    pub total_credentials: Option<u64>,
    pub cred_protect: Option<u64>,
    pub large_blob_key: Option<Vec<u8>>,
}

impl CredMgmtResponse {
    pub fn to_value(&self) -> Value {
        MapBuilder::new()
            .put_opt(int(0x01), self.existing_resident_credentials_count)
            .put_opt(
                int(0x02),
                self.max_possible_remaining_resident_credentials_count,
            )
            .put_opt(
                int(0x03),
                self.rp.clone().map(|(id, name)| {
                    MapBuilder::new()
                        .put(text("id"), text(id))
                        .put_opt(text("name"), name.map(text))
                        .build()
                }),
            )
            .put_opt(int(0x04), self.rp_id_hash.map(|h| bytes(h.to_vec())))
            .put_opt(int(0x05), self.total_rps)
            .put_opt(int(0x06), self.user.as_ref().map(|u| u.to_value(true)))
            .put_opt(
                int(0x07),
                self.credential_id.as_deref().map(credential_descriptor),
            )
            .put_opt(int(0x08), self.public_key.clone())
            .put_opt(int(0x09), self.total_credentials)
            .put_opt(int(0x0A), self.cred_protect)
            .put_opt(int(0x0B), self.large_blob_key.clone().map(bytes))
            .build()
    }
}

/// authenticatorLargeBlobs get response.
pub fn large_blobs_config(fragment: Vec<u8>) -> Value {
    MapBuilder::new().put(int(0x01), bytes(fragment)).build()
}

/// Status byte 0x00 followed by the canonical encoding of `value`.
pub fn ok_with(value: Value) -> Vec<u8> {
    let mut out = vec![0x00];
    out.extend(encode(value));
    out
}
