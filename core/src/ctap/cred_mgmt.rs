//! authenticatorCredentialManagement (0x0A, and its prototype 0x41; CTAP 2.1 §6.8): request
//! and response.

use ciborium::value::Value;

use super::cbor::{as_uint, decode, encode, int, MapBuilder, MapReader};
use super::shared::{
    bytes, credential_descriptor, descriptor_id, hash32, text, PinUvAuth, UserEntity, UserInfo,
};
use super::status::{CtapError, CtapResult};

/// Integer keys of the request map (CTAP 2.1 §6.8).
pub mod keys {
    pub const SUB_COMMAND: i64 = 0x01;
    pub const SUB_COMMAND_PARAMS: i64 = 0x02;
    pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x03;
    pub const PIN_UV_AUTH_PARAM: i64 = 0x04;
    /// Keys of the subCommandParams map.
    pub mod params {
        pub const RP_ID_HASH: i64 = 0x01;
        pub const CREDENTIAL_ID: i64 = 0x02;
        pub const USER: i64 = 0x03;
    }
}

/// Integer keys of the response map (CTAP 2.1 §6.8).
pub mod response_keys {
    pub const EXISTING_RESIDENT_CREDENTIALS_COUNT: i64 = 0x01;
    pub const MAX_POSSIBLE_REMAINING_RESIDENT_CREDENTIALS_COUNT: i64 = 0x02;
    pub const RP: i64 = 0x03;
    pub const RP_ID_HASH: i64 = 0x04;
    pub const TOTAL_RPS: i64 = 0x05;
    pub const USER: i64 = 0x06;
    pub const CREDENTIAL_ID: i64 = 0x07;
    pub const PUBLIC_KEY: i64 = 0x08;
    pub const TOTAL_CREDENTIALS: i64 = 0x09;
    pub const CRED_PROTECT: i64 = 0x0A;
    pub const LARGE_BLOB_KEY: i64 = 0x0B;
}

/// authenticatorCredentialManagement's subcommands, with their parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum SubCommand {
    GetCredsMetadata,
    EnumerateRpsBegin,
    EnumerateRpsGetNextRp,
    EnumerateCredentialsBegin {
        rp_id_hash: [u8; 32],
    },
    EnumerateCredentialsGetNextCredential,
    DeleteCredential {
        credential_id: Vec<u8>,
    },
    UpdateUserInformation {
        credential_id: Vec<u8>,
        user: UserEntity,
    },
}

impl SubCommand {
    /// Whether the command needs a pinUvAuthParam (all but the two "GetNext" continuations).
    pub fn needs_auth(&self) -> bool {
        !matches!(
            self,
            Self::EnumerateRpsGetNextRp | Self::EnumerateCredentialsGetNextCredential
        )
    }
}

/// authenticatorCredentialManagement's parameters.
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
        let pm = || -> CtapResult<MapReader> {
            MapReader::new(params.clone().ok_or(CtapError::MissingParameter)?)
        };
        let sub_command = match sub {
            0x01 => SubCommand::GetCredsMetadata,
            0x02 => SubCommand::EnumerateRpsBegin,
            0x03 => SubCommand::EnumerateRpsGetNextRp,
            0x04 => SubCommand::EnumerateCredentialsBegin {
                rp_id_hash: hash32(pm()?.require(k::params::RP_ID_HASH)?)?,
            },
            0x05 => SubCommand::EnumerateCredentialsGetNextCredential,
            0x06 => SubCommand::DeleteCredential {
                credential_id: descriptor_id(pm()?.require(k::params::CREDENTIAL_ID)?)?,
            },
            0x07 => {
                let mut p = pm()?;
                SubCommand::UpdateUserInformation {
                    credential_id: descriptor_id(p.require(k::params::CREDENTIAL_ID)?)?,
                    user: UserEntity::parse(p.require(k::params::USER)?)?,
                }
            }
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

/// authenticatorCredentialManagement's response; each subcommand fills its own members.
#[derive(Debug, Clone, Default)]
pub struct Response {
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

impl Response {
    pub fn to_value(&self) -> Value {
        use response_keys as k;
        MapBuilder::new()
            .put_opt(
                int(k::EXISTING_RESIDENT_CREDENTIALS_COUNT),
                self.existing_resident_credentials_count,
            )
            .put_opt(
                int(k::MAX_POSSIBLE_REMAINING_RESIDENT_CREDENTIALS_COUNT),
                self.max_possible_remaining_resident_credentials_count,
            )
            .put_opt(
                int(k::RP),
                self.rp.clone().map(|(id, name)| {
                    MapBuilder::new()
                        .put(text("id"), text(id))
                        .put_opt(text("name"), name.map(text))
                        .build()
                }),
            )
            .put_opt(
                int(k::RP_ID_HASH),
                self.rp_id_hash.map(|h| bytes(h.to_vec())),
            )
            .put_opt(int(k::TOTAL_RPS), self.total_rps)
            .put_opt(int(k::USER), self.user.as_ref().map(|u| u.to_value(true)))
            .put_opt(
                int(k::CREDENTIAL_ID),
                self.credential_id.as_deref().map(credential_descriptor),
            )
            .put_opt(int(k::PUBLIC_KEY), self.public_key.clone())
            .put_opt(int(k::TOTAL_CREDENTIALS), self.total_credentials)
            .put_opt(int(k::CRED_PROTECT), self.cred_protect)
            .put_opt(
                int(k::LARGE_BLOB_KEY),
                self.large_blob_key.clone().map(bytes),
            )
            .build()
    }
}
