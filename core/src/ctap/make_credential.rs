//! authenticatorMakeCredential (0x01, CTAP 2.1 §6.1): request and response.

use ciborium::value::Value;

use super::cbor::{as_array, as_bool, as_bytes, as_int, as_text, as_uint, decode, int};
use super::cbor::{MapBuilder, MapReader};
use super::shared::{
    bytes, credential_list, hash32, text, text_list, CredentialDescriptor, Options, PinUvAuth,
    RpEntity, UserEntity,
};
use super::status::{CtapError, CtapResult};

/// Integer keys of the request map (CTAP 2.1 §6.1).
pub mod keys {
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

/// Integer keys of the response map (CTAP 2.1 §6.1).
pub mod response_keys {
    pub const FMT: i64 = 0x01;
    pub const AUTH_DATA: i64 = 0x02;
    pub const ATT_STMT: i64 = 0x03;
    pub const EP_ATT: i64 = 0x04;
    pub const LARGE_BLOB_KEY: i64 = 0x05;
}

/// The extension inputs of makeCredential this authenticator knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extensions {
    pub cred_protect: Option<u8>,
    pub hmac_secret: bool,
    pub cred_blob: Option<Vec<u8>>,
    pub large_blob_key: bool,
    pub min_pin_length: bool,
}

impl Extensions {
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

/// authenticatorMakeCredential's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub client_data_hash: [u8; 32],
    pub rp: RpEntity,
    pub user: UserEntity,
    /// COSE algorithm ids of "public-key" parameters, in the RP's order of preference.
    pub algorithms: Vec<i64>,
    pub exclude_list: Vec<CredentialDescriptor>,
    pub extensions: Extensions,
    pub options: Options,
    pub pin_uv_auth: PinUvAuth,
    pub enterprise_attestation: Option<u64>,
    pub attestation_formats_preference: Option<Vec<String>>,
}

impl Request {
    /// Parses the CBOR parameters (the bytes after the command byte).
    pub fn parse(bytes: &[u8]) -> CtapResult<Self> {
        use keys as k;
        let mut m = MapReader::new(decode(bytes)?)?;
        let client_data_hash = hash32(m.require(k::CLIENT_DATA_HASH)?)?;
        let rp = RpEntity::parse(m.require(k::RP)?)?;
        let user = UserEntity::parse(m.require(k::USER)?)?;
        let mut algorithms = Vec::new();
        for p in as_array(m.require(k::PUB_KEY_CRED_PARAMS)?)? {
            let mut pm = MapReader::new(p)?;
            let alg = pm.take_text("alg").ok_or(CtapError::MissingParameter)?;
            let ty = as_text(pm.take_text("type").ok_or(CtapError::MissingParameter)?)?;
            let alg = i64::try_from(as_int(alg)?).map_err(|_| CtapError::CborUnexpectedType)?;
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
            .map(Extensions::parse)
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
            .map(text_list)
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

/// authenticatorMakeCredential's response.
#[derive(Debug, Clone)]
pub struct Response {
    pub fmt: &'static str,
    pub auth_data: Vec<u8>,
    pub att_stmt: Value,
    pub ep_att: bool,
    pub large_blob_key: Option<Vec<u8>>,
}

impl Response {
    pub fn to_value(&self) -> Value {
        use response_keys as k;
        MapBuilder::new()
            .put(int(k::FMT), text(self.fmt))
            .put(int(k::AUTH_DATA), bytes(self.auth_data.clone()))
            .put(int(k::ATT_STMT), self.att_stmt.clone())
            .put_opt(int(k::EP_ATT), self.ep_att.then_some(true))
            .put_opt(
                int(k::LARGE_BLOB_KEY),
                self.large_blob_key.clone().map(bytes),
            )
            .build()
    }
}
