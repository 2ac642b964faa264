//! Typed CTAP2 requests, parsed defensively from CBOR.
//!
//! Every integer map key of a request lives in [`keys`]; handlers only see these structs.
//! Unknown keys are ignored (CTAP 2.1 §8 "authenticators MUST ignore unknown keys"); a field
//! of the wrong type is CTAP2_ERR_CBOR_UNEXPECTED_TYPE, a missing required one
//! CTAP2_ERR_MISSING_PARAMETER.

use ciborium::value::Value;

use super::cbor::{as_array, as_bool, as_bytes, as_text, as_uint, decode, MapReader};
use super::status::{CtapError, CtapResult};

/// Integer keys of request maps, in one place.
pub mod keys {
    pub mod make_credential {
        pub const CLIENT_DATA_HASH: i64 = 0x01;
        pub const RP: i64 = 0x02;
        pub const USER: i64 = 0x03;
        pub const PUB_KEY_CRED_PARAMS: i64 = 0x04;
        pub const EXCLUDE_LIST: i64 = 0x05;
        pub const EXTENSIONS: i64 = 0x06;
        pub const OPTIONS: i64 = 0x07;
        pub const PIN_UV_AUTH_PARAM: i64 = 0x08;
        pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x09;
        pub const ENTERPRISE_ATTESTATION: i64 = 0x0A;
        /// CTAP 2.2: the platform's attestation format preference, most preferred first.
        pub const ATTESTATION_FORMATS_PREFERENCE: i64 = 0x0B;
    }
    pub mod get_assertion {
        pub const RP_ID: i64 = 0x01;
        pub const CLIENT_DATA_HASH: i64 = 0x02;
        pub const ALLOW_LIST: i64 = 0x03;
        pub const EXTENSIONS: i64 = 0x04;
        pub const OPTIONS: i64 = 0x05;
        pub const PIN_UV_AUTH_PARAM: i64 = 0x06;
        pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x07;
    }
    pub mod client_pin {
        pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x01;
        pub const SUB_COMMAND: i64 = 0x02;
        pub const KEY_AGREEMENT: i64 = 0x03;
        pub const PIN_UV_AUTH_PARAM: i64 = 0x04;
        pub const NEW_PIN_ENC: i64 = 0x05;
        pub const PIN_HASH_ENC: i64 = 0x06;
        pub const PERMISSIONS: i64 = 0x09;
        pub const RP_ID: i64 = 0x0A;
    }
    pub mod cred_mgmt {
        pub const SUB_COMMAND: i64 = 0x01;
        pub const SUB_COMMAND_PARAMS: i64 = 0x02;
        pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x03;
        pub const PIN_UV_AUTH_PARAM: i64 = 0x04;
        pub mod params {
            pub const RP_ID_HASH: i64 = 0x01;
            pub const CREDENTIAL_ID: i64 = 0x02;
            pub const USER: i64 = 0x03;
        }
    }
    pub mod config {
        pub const SUB_COMMAND: i64 = 0x01;
        pub const SUB_COMMAND_PARAMS: i64 = 0x02;
        pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x03;
        pub const PIN_UV_AUTH_PARAM: i64 = 0x04;
        pub mod set_min_pin_length {
            pub const NEW_MIN_PIN_LENGTH: i64 = 0x01;
            pub const MIN_PIN_LENGTH_RP_IDS: i64 = 0x02;
            pub const FORCE_CHANGE_PIN: i64 = 0x03;
        }
    }
    pub mod large_blobs {
        pub const GET: i64 = 0x01;
        pub const SET: i64 = 0x02;
        pub const OFFSET: i64 = 0x03;
        pub const LENGTH: i64 = 0x04;
        pub const PIN_UV_AUTH_PARAM: i64 = 0x05;
        pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x06;
    }
    pub mod hmac_secret {
        pub const KEY_AGREEMENT: i64 = 0x01;
        pub const SALT_ENC: i64 = 0x02;
        pub const SALT_AUTH: i64 = 0x03;
        pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x04;
    }
}

/// Longest user/RP strings we keep (CTAP 2.1 §6.1.2: authenticators may truncate to 64 bytes).
pub const MAX_STRING_BYTES: usize = 64;
/// WebAuthn user handles are at most 64 bytes.
pub const MAX_USER_ID_BYTES: usize = 64;

fn truncate_utf8(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn opt_text(v: Option<Value>) -> CtapResult<Option<String>> {
    v.map(|v| as_text(v).map(|s| truncate_utf8(s, MAX_STRING_BYTES)))
        .transpose()
}

/// The `icon` member of an RP or user entity: a URL string in CTAP 2.0 (WebAuthn Level 1's
/// PublicKeyCredentialEntity), gone from CTAP 2.1 but still sent by 2.0-era platforms. Its
/// value is not kept; its type is checked like `name`'s, so a non-text icon is
/// CTAP2_ERR_CBOR_UNEXPECTED_TYPE rather than silently accepted.
fn check_icon(m: &mut MapReader) -> CtapResult<()> {
    opt_text(m.take_text("icon")).map(drop)
}

/// A 32-byte hash field (clientDataHash, rpIdHash).
fn hash32(v: Value) -> CtapResult<[u8; 32]> {
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
    fn parse(v: Value) -> CtapResult<Self> {
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
fn credential_list(v: Value) -> CtapResult<Vec<CredentialDescriptor>> {
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

/// The `options` map: each present key maps to a boolean.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Options {
    pub rk: Option<bool>,
    pub up: Option<bool>,
    pub uv: Option<bool>,
}

impl Options {
    fn parse(v: Value) -> CtapResult<Self> {
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
    fn take(m: &mut MapReader, param_key: i64, protocol_key: i64) -> CtapResult<Self> {
        Ok(Self {
            param: m.take(param_key).map(as_bytes).transpose()?,
            protocol: m.take(protocol_key).map(as_uint).transpose()?,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MakeCredentialExtensions {
    pub cred_protect: Option<u8>,
    pub hmac_secret: bool,
    pub cred_blob: Option<Vec<u8>>,
    pub large_blob_key: bool,
    pub min_pin_length: bool,
}

impl MakeCredentialExtensions {
    fn parse(v: Value) -> CtapResult<Self> {
        let mut m = MapReader::new(v)?;
        let cred_protect = m
            .take_text("credProtect")
            .map(|v| as_uint(v).map(|n| u8::try_from(n).unwrap_or(0)))
            .transpose()?;
        let hmac_secret = m
            .take_text("hmac-secret")
            .map(as_bool)
            .transpose()?
            .unwrap_or(false);
        let cred_blob = m.take_text("credBlob").map(as_bytes).transpose()?;
        let large_blob_key = match m.take_text("largeBlobKey").map(as_bool).transpose()? {
            // CTAP 2.1 §12.3: the only valid value is true.
            Some(false) => return Err(CtapError::InvalidOption),
            Some(true) => true,
            None => false,
        };
        let min_pin_length = m
            .take_text("minPinLength")
            .map(as_bool)
            .transpose()?
            .unwrap_or(false);
        Ok(Self {
            cred_protect,
            hmac_secret,
            cred_blob,
            large_blob_key,
            min_pin_length,
        })
    }
}

/// authenticatorMakeCredential (0x01).
#[derive(Debug, Clone, PartialEq)]
pub struct MakeCredentialRequest {
    pub client_data_hash: [u8; 32],
    pub rp: RpEntity,
    pub user: UserEntity,
    /// COSE algorithm ids of "public-key" parameters, in the RP's order of preference.
    pub algorithms: Vec<i64>,
    pub exclude_list: Vec<CredentialDescriptor>,
    pub extensions: MakeCredentialExtensions,
    pub options: Options,
    pub pin_uv_auth: PinUvAuth,
    pub enterprise_attestation: Option<u64>,
    pub attestation_formats_preference: Option<Vec<String>>,
}

impl MakeCredentialRequest {
    pub fn parse(bytes: &[u8]) -> CtapResult<Self> {
        use keys::make_credential as k;
        let mut m = MapReader::new(decode(bytes)?)?;
        let client_data_hash = hash32(m.require(k::CLIENT_DATA_HASH)?)?;
        let rp = RpEntity::parse(m.require(k::RP)?)?;
        let user = UserEntity::parse(m.require(k::USER)?)?;
        let mut algorithms = Vec::new();
        for p in as_array(m.require(k::PUB_KEY_CRED_PARAMS)?)? {
            let mut pm = MapReader::new(p)?;
            let alg = pm.take_text("alg").ok_or(CtapError::MissingParameter)?;
            let ty = as_text(pm.take_text("type").ok_or(CtapError::MissingParameter)?)?;
            let alg = i64::try_from(super::cbor::as_int(alg)?)
                .map_err(|_| CtapError::CborUnexpectedType)?;
            if ty == "public-key" {
                algorithms.push(alg);
            }
        }
        let exclude_list = m
            .take(k::EXCLUDE_LIST)
            .map(credential_list)
            .transpose()?
            .unwrap_or_default();
        let extensions = m
            .take(k::EXTENSIONS)
            .map(MakeCredentialExtensions::parse)
            .transpose()?
            .unwrap_or_default();
        let options = m
            .take(k::OPTIONS)
            .map(Options::parse)
            .transpose()?
            .unwrap_or_default();
        let pin_uv_auth = PinUvAuth::take(&mut m, k::PIN_UV_AUTH_PARAM, k::PIN_UV_AUTH_PROTOCOL)?;
        let enterprise_attestation = m.take(k::ENTERPRISE_ATTESTATION).map(as_uint).transpose()?;
        let attestation_formats_preference = m
            .take(k::ATTESTATION_FORMATS_PREFERENCE)
            .map(|v| {
                as_array(v)?
                    .into_iter()
                    .map(as_text)
                    .collect::<CtapResult<Vec<_>>>()
            })
            .transpose()?;
        Ok(Self {
            client_data_hash,
            rp,
            user,
            algorithms,
            exclude_list,
            extensions,
            options,
            pin_uv_auth,
            enterprise_attestation,
            attestation_formats_preference,
        })
    }
}

/// The hmac-secret input of getAssertion (CTAP 2.1 §12.5).
#[derive(Debug, Clone, PartialEq)]
pub struct HmacSecretInput {
    pub key_agreement: Value,
    pub salt_enc: Vec<u8>,
    pub salt_auth: Vec<u8>,
    pub protocol: u64,
}

impl HmacSecretInput {
    fn parse(v: Value) -> CtapResult<Self> {
        use keys::hmac_secret as k;
        let mut m = MapReader::new(v)?;
        let key_agreement = m.require(k::KEY_AGREEMENT)?;
        let salt_enc = as_bytes(m.require(k::SALT_ENC)?)?;
        let salt_auth = as_bytes(m.require(k::SALT_AUTH)?)?;
        // Absent means protocol 1 (CTAP 2.0 platforms).
        let protocol = m
            .take(k::PIN_UV_AUTH_PROTOCOL)
            .map(as_uint)
            .transpose()?
            .unwrap_or(1);
        Ok(Self {
            key_agreement,
            salt_enc,
            salt_auth,
            protocol,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GetAssertionExtensions {
    pub hmac_secret: Option<HmacSecretInput>,
    pub cred_blob: bool,
    pub large_blob_key: bool,
}

impl GetAssertionExtensions {
    fn parse(v: Value) -> CtapResult<Self> {
        let mut m = MapReader::new(v)?;
        let hmac_secret = m
            .take_text("hmac-secret")
            .map(HmacSecretInput::parse)
            .transpose()?;
        let cred_blob = m
            .take_text("credBlob")
            .map(as_bool)
            .transpose()?
            .unwrap_or(false);
        let large_blob_key = match m.take_text("largeBlobKey").map(as_bool).transpose()? {
            Some(false) => return Err(CtapError::InvalidOption),
            Some(true) => true,
            None => false,
        };
        Ok(Self {
            hmac_secret,
            cred_blob,
            large_blob_key,
        })
    }
}

/// authenticatorGetAssertion (0x02).
#[derive(Debug, Clone, PartialEq)]
pub struct GetAssertionRequest {
    pub rp_id: String,
    pub client_data_hash: [u8; 32],
    pub allow_list: Vec<CredentialDescriptor>,
    pub extensions: GetAssertionExtensions,
    pub options: Options,
    pub pin_uv_auth: PinUvAuth,
}

impl GetAssertionRequest {
    pub fn parse(bytes: &[u8]) -> CtapResult<Self> {
        use keys::get_assertion as k;
        let mut m = MapReader::new(decode(bytes)?)?;
        let rp_id = as_text(m.require(k::RP_ID)?)?;
        let client_data_hash = hash32(m.require(k::CLIENT_DATA_HASH)?)?;
        let allow_list = m
            .take(k::ALLOW_LIST)
            .map(credential_list)
            .transpose()?
            .unwrap_or_default();
        let extensions = m
            .take(k::EXTENSIONS)
            .map(GetAssertionExtensions::parse)
            .transpose()?
            .unwrap_or_default();
        let options = m
            .take(k::OPTIONS)
            .map(Options::parse)
            .transpose()?
            .unwrap_or_default();
        let pin_uv_auth = PinUvAuth::take(&mut m, k::PIN_UV_AUTH_PARAM, k::PIN_UV_AUTH_PROTOCOL)?;
        Ok(Self {
            rp_id,
            client_data_hash,
            allow_list,
            extensions,
            options,
            pin_uv_auth,
        })
    }
}

/// authenticatorClientPIN (0x06) subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPinSubCommand {
    GetPinRetries = 0x01,
    GetKeyAgreement = 0x02,
    SetPin = 0x03,
    ChangePin = 0x04,
    GetPinToken = 0x05,
    GetPinUvAuthTokenUsingUvWithPermissions = 0x06,
    GetUvRetries = 0x07,
    GetPinUvAuthTokenUsingPinWithPermissions = 0x09,
}

impl ClientPinSubCommand {
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

#[derive(Debug, Clone, PartialEq)]
pub struct ClientPinRequest {
    pub protocol: Option<u64>,
    pub sub_command: ClientPinSubCommand,
    pub key_agreement: Option<Value>,
    pub pin_uv_auth_param: Option<Vec<u8>>,
    pub new_pin_enc: Option<Vec<u8>>,
    pub pin_hash_enc: Option<Vec<u8>>,
    pub permissions: Option<u64>,
    pub rp_id: Option<String>,
}

impl ClientPinRequest {
    pub fn parse(bytes: &[u8]) -> CtapResult<Self> {
        use keys::client_pin as k;
        let mut m = MapReader::new(decode(bytes)?)?;
        let protocol = m.take(k::PIN_UV_AUTH_PROTOCOL).map(as_uint).transpose()?;
        let sub_command = ClientPinSubCommand::from_u64(as_uint(m.require(k::SUB_COMMAND)?)?)
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

/// authenticatorCredentialManagement (0x0A, alias 0x41) subcommands.
#[derive(Debug, Clone, PartialEq)]
pub enum CredMgmtSubCommand {
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

impl CredMgmtSubCommand {
    /// Whether the command needs a pinUvAuthParam (all but the two "GetNext" continuations).
    pub fn needs_auth(&self) -> bool {
        !matches!(
            self,
            Self::EnumerateRpsGetNextRp | Self::EnumerateCredentialsGetNextCredential
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CredMgmtRequest {
    pub sub_command: CredMgmtSubCommand,
    pub sub_command_byte: u8,
    /// The raw CBOR bytes of subCommandParams, as the pinUvAuthParam covers them.
    pub params_bytes: Vec<u8>,
    pub pin_uv_auth: PinUvAuth,
}

/// Credential ID from a PublicKeyCredentialDescriptor map.
fn descriptor_id(v: Value) -> CtapResult<Vec<u8>> {
    let mut m = MapReader::new(v)?;
    as_bytes(m.take_text("id").ok_or(CtapError::MissingParameter)?)
}

impl CredMgmtRequest {
    pub fn parse(bytes: &[u8]) -> CtapResult<Self> {
        use keys::cred_mgmt as k;
        let mut m = MapReader::new(decode(bytes)?)?;
        let sub = as_uint(m.require(k::SUB_COMMAND)?)?;
        let params = m.take(k::SUB_COMMAND_PARAMS);
        let params_bytes = params.clone().map(super::cbor::encode).unwrap_or_default();
        let pin_uv_auth = PinUvAuth::take(&mut m, k::PIN_UV_AUTH_PARAM, k::PIN_UV_AUTH_PROTOCOL)?;
        let pm = || -> CtapResult<MapReader> {
            MapReader::new(params.clone().ok_or(CtapError::MissingParameter)?)
        };
        let sub_command = match sub {
            0x01 => CredMgmtSubCommand::GetCredsMetadata,
            0x02 => CredMgmtSubCommand::EnumerateRpsBegin,
            0x03 => CredMgmtSubCommand::EnumerateRpsGetNextRp,
            0x04 => CredMgmtSubCommand::EnumerateCredentialsBegin {
                rp_id_hash: hash32(pm()?.require(k::params::RP_ID_HASH)?)?,
            },
            0x05 => CredMgmtSubCommand::EnumerateCredentialsGetNextCredential,
            0x06 => CredMgmtSubCommand::DeleteCredential {
                credential_id: descriptor_id(pm()?.require(k::params::CREDENTIAL_ID)?)?,
            },
            0x07 => {
                let mut p = pm()?;
                CredMgmtSubCommand::UpdateUserInformation {
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

/// authenticatorConfig (0x0D) subcommands.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigSubCommand {
    EnableEnterpriseAttestation,
    ToggleAlwaysUv,
    SetMinPinLength {
        new_min_pin_length: Option<u64>,
        rp_ids: Option<Vec<String>>,
        force_change_pin: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRequest {
    pub sub_command: ConfigSubCommand,
    pub sub_command_byte: u8,
    pub params_bytes: Vec<u8>,
    pub pin_uv_auth: PinUvAuth,
}

impl ConfigRequest {
    pub fn parse(bytes: &[u8]) -> CtapResult<Self> {
        use keys::config as k;
        let mut m = MapReader::new(decode(bytes)?)?;
        let sub = as_uint(m.require(k::SUB_COMMAND)?)?;
        let params = m.take(k::SUB_COMMAND_PARAMS);
        let params_bytes = params.clone().map(super::cbor::encode).unwrap_or_default();
        let pin_uv_auth = PinUvAuth::take(&mut m, k::PIN_UV_AUTH_PARAM, k::PIN_UV_AUTH_PROTOCOL)?;
        let sub_command = match sub {
            0x01 => ConfigSubCommand::EnableEnterpriseAttestation,
            0x02 => ConfigSubCommand::ToggleAlwaysUv,
            0x03 => {
                use k::set_min_pin_length as p;
                let mut pm = match params {
                    Some(v) => MapReader::new(v)?,
                    None => MapReader::new(Value::Map(vec![]))?,
                };
                let new_min_pin_length = pm.take(p::NEW_MIN_PIN_LENGTH).map(as_uint).transpose()?;
                let rp_ids = pm
                    .take(p::MIN_PIN_LENGTH_RP_IDS)
                    .map(|v| {
                        as_array(v)?
                            .into_iter()
                            .map(as_text)
                            .collect::<CtapResult<Vec<_>>>()
                    })
                    .transpose()?;
                let force_change_pin = pm
                    .take(p::FORCE_CHANGE_PIN)
                    .map(as_bool)
                    .transpose()?
                    .unwrap_or(false);
                ConfigSubCommand::SetMinPinLength {
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

/// authenticatorLargeBlobs (0x0C).
#[derive(Debug, Clone, PartialEq)]
pub struct LargeBlobsRequest {
    pub get: Option<u64>,
    pub set: Option<Vec<u8>>,
    pub offset: u64,
    pub length: Option<u64>,
    pub pin_uv_auth: PinUvAuth,
}

impl LargeBlobsRequest {
    pub fn parse(bytes: &[u8]) -> CtapResult<Self> {
        use keys::large_blobs as k;
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
