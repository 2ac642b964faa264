//! CTAP2 responses as a platform and a relying party read them: the status byte, then
//! authenticatorMakeCredential's and authenticatorGetAssertion's response maps (CTAP 2.1 §6.1,
//! §6.2) and the authenticator data inside them (WebAuthn §6.1).

use ciborium::value::Value;

use crate::cbor::{as_bytes, as_int, as_str, get, get_text, take_canonical};
use crate::cose::PublicKey;
use crate::sha256;

/// authenticatorData flag bits (WebAuthn §6.1).
pub mod flags {
    pub const UP: u8 = 0x01;
    pub const UV: u8 = 0x04;
    pub const AT: u8 = 0x40;
    pub const ED: u8 = 0x80;
}

/// Splits a CTAP2 response into its status and body: `Err(status)` for an error, which must
/// be a lone byte; `Ok(Value::Null)` for a success without data; otherwise the body, which
/// must be CTAP2-canonical CBOR (decodes, keys in canonical order, re-encodes to identical
/// bytes) with nothing after it.
pub fn decode_response(response: &[u8]) -> Result<Value, u8> {
    let (&status, body) = response.split_first().expect("empty CTAP2 response");
    if status != crate::status::OK {
        assert!(
            body.is_empty(),
            "error 0x{status:02x} with a body: {response:02x?}"
        );
        return Err(status);
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let mut rest = body;
    let value = take_canonical(&mut rest);
    assert!(rest.is_empty(), "trailing bytes after the response map");
    Ok(value)
}

/// Authenticator data (WebAuthn §6.1), with its attested credential data and extension
/// outputs when the flags say they are there.
#[derive(Debug)]
pub struct AuthData {
    pub rp_id_hash: [u8; 32],
    pub flags: u8,
    pub sign_count: u32,
    pub aaguid: Option<[u8; 16]>,
    pub credential_id: Option<Vec<u8>>,
    pub public_key: Option<PublicKey>,
    pub extensions: Option<Value>,
}

impl AuthData {
    pub fn parse(b: &[u8]) -> Self {
        assert!(b.len() >= 37, "authData too short");
        let flags = b[32];
        let mut rest = &b[37..];
        let (mut aaguid, mut credential_id, mut public_key, mut extensions) =
            (None, None, None, None);
        if flags & flags::AT != 0 {
            aaguid = Some(rest[..16].try_into().unwrap());
            let len = u16::from_be_bytes([rest[16], rest[17]]) as usize;
            credential_id = Some(rest[18..18 + len].to_vec());
            rest = &rest[18 + len..];
            public_key = Some(PublicKey::from_cose(&take_canonical(&mut rest)));
        }
        if flags & flags::ED != 0 {
            extensions = Some(take_canonical(&mut rest));
        }
        assert!(rest.is_empty(), "trailing bytes in authData");
        Self {
            rp_id_hash: b[..32].try_into().unwrap(),
            flags,
            sign_count: u32::from_be_bytes(b[33..37].try_into().unwrap()),
            aaguid,
            credential_id,
            public_key,
            extensions,
        }
    }

    pub fn up(&self) -> bool {
        self.flags & flags::UP != 0
    }

    pub fn uv(&self) -> bool {
        self.flags & flags::UV != 0
    }
}

/// authenticatorMakeCredential's response (CTAP 2.1 §6.1).
#[derive(Debug)]
pub struct Registration {
    pub fmt: String,
    pub auth_data: Vec<u8>,
    pub att_stmt: Value,
    pub parsed: AuthData,
    pub large_blob_key: Option<Vec<u8>>,
}

impl Registration {
    pub fn parse(v: &Value) -> Self {
        let auth_data = as_bytes(get(v, 2).expect("authData"));
        Self {
            fmt: as_str(get(v, 1).expect("fmt")).to_string(),
            parsed: AuthData::parse(&auth_data),
            auth_data,
            att_stmt: get(v, 3).expect("attStmt").clone(),
            large_blob_key: get(v, 5).map(as_bytes),
        }
    }

    /// The new credential's ID.
    pub fn id(&self) -> Vec<u8> {
        self.parsed.credential_id.clone().unwrap()
    }

    /// The new credential's public key.
    pub fn key(&self) -> &PublicKey {
        self.parsed.public_key.as_ref().unwrap()
    }

    /// Packed self attestation (WebAuthn §8.2): alg is the credential's, no x5c, and sig
    /// verifies over authData ‖ clientDataHash with the credential public key.
    pub fn verify_self_attestation(&self, client_data_hash: &[u8]) {
        assert_eq!(self.fmt, "packed");
        assert!(
            get_text(&self.att_stmt, "x5c").is_none(),
            "self attestation carries no x5c"
        );
        assert_eq!(
            as_int(get_text(&self.att_stmt, "alg").expect("alg")),
            self.key().alg() as i128
        );
        let sig = as_bytes(get_text(&self.att_stmt, "sig").expect("sig"));
        let signed = [&self.auth_data[..], client_data_hash].concat();
        assert!(
            self.key().verify(&signed, &sig),
            "attestation signature does not verify"
        );
    }
}

/// authenticatorGetAssertion's (and authenticatorGetNextAssertion's) response (CTAP 2.1 §6.2).
#[derive(Debug)]
pub struct Assertion {
    pub credential_id: Vec<u8>,
    pub auth_data: Vec<u8>,
    pub parsed: AuthData,
    pub signature: Vec<u8>,
    pub user: Option<Value>,
    pub number_of_credentials: Option<i128>,
    pub user_selected: bool,
}

impl Assertion {
    pub fn parse(v: &Value) -> Self {
        let cred = get(v, 1).expect("credential");
        assert_eq!(as_str(get_text(cred, "type").expect("type")), "public-key");
        let auth_data = as_bytes(get(v, 2).expect("authData"));
        Self {
            credential_id: as_bytes(get_text(cred, "id").expect("id")),
            parsed: AuthData::parse(&auth_data),
            auth_data,
            signature: as_bytes(get(v, 3).expect("signature")),
            user: get(v, 4).cloned(),
            number_of_credentials: get(v, 5).map(as_int),
            user_selected: match get(v, 6) {
                None => false,
                Some(Value::Bool(true)) => true,
                Some(other) => panic!("userSelected must be true when present, got {other:?}"),
            },
        }
    }

    /// The assertion signature verifies over authData ‖ clientDataHash, for the right RP.
    pub fn verify(&self, key: &PublicKey, rp_id: &str, client_data_hash: &[u8]) {
        assert_eq!(self.parsed.rp_id_hash, sha256(rp_id.as_bytes()), "rpIdHash");
        assert!(
            self.parsed.aaguid.is_none(),
            "assertions carry no attested credential data"
        );
        let signed = [&self.auth_data[..], client_data_hash].concat();
        assert!(
            key.verify(&signed, &self.signature),
            "assertion signature does not verify"
        );
    }

    pub fn user_name(&self) -> Option<String> {
        self.user
            .as_ref()
            .and_then(|u| get_text(u, "name"))
            .map(|n| as_str(n).to_string())
    }

    pub fn user_id(&self) -> Option<Vec<u8>> {
        self.user
            .as_ref()
            .map(|u| as_bytes(get_text(u, "id").expect("user.id")))
    }
}

/// An option of getInfo's options map (key 4): `Some(value)`, or `None` when absent.
pub fn info_option(info: &Value, name: &str) -> Option<bool> {
    get_text(get(info, 4).expect("options"), name).map(|v| match v {
        Value::Bool(b) => *b,
        other => panic!("option {name} is not a boolean: {other:?}"),
    })
}
