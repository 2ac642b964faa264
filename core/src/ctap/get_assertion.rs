//! authenticatorGetAssertion (0x02, CTAP 2.1 §6.2): request and response. The response is
//! also authenticatorGetNextAssertion's (0x08, §6.3), which has no parameters.

use ciborium::value::Value;

use super::cbor::{as_bool, as_bytes, as_text, as_uint, decode, int, MapBuilder, MapReader};
use super::shared::{
    bytes, credential_descriptor, credential_list, hash32, CredentialDescriptor, Options,
    PinUvAuth, UserInfo,
};
use super::status::{CtapError, CtapResult};

/// Integer keys of the request map (CTAP 2.1 §6.2).
pub mod keys {
    pub const RP_ID: i64 = 0x01;
    pub const CLIENT_DATA_HASH: i64 = 0x02;
    pub const ALLOW_LIST: i64 = 0x03;
    pub const EXTENSIONS: i64 = 0x04;
    pub const OPTIONS: i64 = 0x05;
    pub const PIN_UV_AUTH_PARAM: i64 = 0x06;
    pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x07;
}

/// Integer keys of the hmac-secret extension input (CTAP 2.1 §12.5).
pub mod hmac_secret_keys {
    pub const KEY_AGREEMENT: i64 = 0x01;
    pub const SALT_ENC: i64 = 0x02;
    pub const SALT_AUTH: i64 = 0x03;
    pub const PIN_UV_AUTH_PROTOCOL: i64 = 0x04;
}

/// Integer keys of the response map (CTAP 2.1 §6.2).
pub mod response_keys {
    pub const CREDENTIAL: i64 = 0x01;
    pub const AUTH_DATA: i64 = 0x02;
    pub const SIGNATURE: i64 = 0x03;
    pub const USER: i64 = 0x04;
    pub const NUMBER_OF_CREDENTIALS: i64 = 0x05;
    pub const USER_SELECTED: i64 = 0x06;
    pub const LARGE_BLOB_KEY: i64 = 0x07;
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
        use hmac_secret_keys as k;
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

/// The extension inputs of getAssertion this authenticator knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extensions {
    pub hmac_secret: Option<HmacSecretInput>,
    pub cred_blob: bool,
    pub large_blob_key: bool,
}

impl Extensions {
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
            // CTAP 2.1 §12.3: the only valid value is true.
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

/// authenticatorGetAssertion's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub rp_id: String,
    pub client_data_hash: [u8; 32],
    pub allow_list: Vec<CredentialDescriptor>,
    pub extensions: Extensions,
    pub options: Options,
    pub pin_uv_auth: PinUvAuth,
}

impl Request {
    /// Parses the CBOR parameters (the bytes after the command byte).
    pub fn parse(bytes: &[u8]) -> CtapResult<Self> {
        use keys as k;
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
            .map(Extensions::parse)
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

/// authenticatorGetAssertion's and authenticatorGetNextAssertion's response.
#[derive(Debug, Clone)]
pub struct Response {
    pub credential_id: Vec<u8>,
    pub auth_data: Vec<u8>,
    pub signature: Vec<u8>,
    /// Present for discoverable credentials; names only when the user was verified.
    pub user: Option<(UserInfo, bool)>,
    pub number_of_credentials: Option<u64>,
    pub user_selected: bool,
    pub large_blob_key: Option<Vec<u8>>,
}

impl Response {
    pub fn to_value(&self) -> Value {
        use response_keys as k;
        MapBuilder::new()
            .put(
                int(k::CREDENTIAL),
                credential_descriptor(&self.credential_id),
            )
            .put(int(k::AUTH_DATA), bytes(self.auth_data.clone()))
            .put(int(k::SIGNATURE), bytes(self.signature.clone()))
            .put_opt(
                int(k::USER),
                self.user.as_ref().map(|(u, names)| u.to_value(*names)),
            )
            .put_opt(int(k::NUMBER_OF_CREDENTIALS), self.number_of_credentials)
            .put_opt(int(k::USER_SELECTED), self.user_selected.then_some(true))
            .put_opt(
                int(k::LARGE_BLOB_KEY),
                self.large_blob_key.clone().map(bytes),
            )
            .build()
    }
}
