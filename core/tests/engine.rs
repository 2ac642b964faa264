//! Engine-level tests: real CTAP2 and U2F requests through `Authenticator::process_cbor` and
//! `process_u2f`, a scripted Approver, and a platform side written here from the CTAP 2.1
//! text (§6.5.6 PIN/UV auth protocol 1, §6.5.7 protocol 2) with the RustCrypto crates, not
//! with the engine's own `pin` module, so that the two sides are independent.
//!
//! Every CTAP2 response goes through `decode_response`, which checks that a success carries
//! CTAP2-canonical CBOR (decodes, keys in canonical order, re-encodes to identical bytes) and
//! that an error is a lone status byte.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ciborium::value::{Integer, Value};
use p256::ecdsa::signature::Verifier;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use pocketkey_core::approver::{ApprovalOutcome, ApprovalRequest, Approver, Operation, Requester};
use pocketkey_core::authenticator::{Authenticator, Config, RequestContext};
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::store::Store;

// ---- status codes (CTAP 2.1 §8.2), written out here rather than taken from the engine -------

const INVALID_COMMAND: u8 = 0x01;
const INVALID_LENGTH: u8 = 0x03;
const CBOR_UNEXPECTED_TYPE: u8 = 0x11;
const INVALID_CBOR: u8 = 0x12;
const MISSING_PARAMETER: u8 = 0x14;
const CREDENTIAL_EXCLUDED: u8 = 0x19;
const OPERATION_DENIED: u8 = 0x27;
const KEEPALIVE_CANCEL: u8 = 0x2D;
const NO_CREDENTIALS: u8 = 0x2E;
const USER_ACTION_TIMEOUT: u8 = 0x2F;
const NOT_ALLOWED: u8 = 0x30;
const PIN_INVALID: u8 = 0x31;
const PIN_BLOCKED: u8 = 0x32;
const PIN_AUTH_INVALID: u8 = 0x33;
const PIN_AUTH_BLOCKED: u8 = 0x34;
const PIN_NOT_SET: u8 = 0x35;
const PUAT_REQUIRED: u8 = 0x36;
const PIN_POLICY_VIOLATION: u8 = 0x37;
const UV_BLOCKED: u8 = 0x3C;
const UV_INVALID: u8 = 0x3F;

const CMD_MAKE_CREDENTIAL: u8 = 0x01;
const CMD_GET_ASSERTION: u8 = 0x02;
const CMD_GET_INFO: u8 = 0x04;
const CMD_CLIENT_PIN: u8 = 0x06;
const CMD_RESET: u8 = 0x07;
const CMD_GET_NEXT_ASSERTION: u8 = 0x08;
const CMD_CRED_MGMT_PREVIEW: u8 = 0x41;

const PERM_MC: u64 = 0x01;
const PERM_GA: u64 = 0x02;
const PERM_CM: u64 = 0x04;

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

const ES256: i64 = -7;
const EDDSA: i64 = -8;

// ---- the scripted approver ------------------------------------------------------------------

#[derive(Default)]
struct Script {
    queue: VecDeque<ApprovalOutcome>,
    seen: Vec<ApprovalRequest>,
}

/// Answers approvals from a queue of outcomes and records every request it was shown. An
/// approval the test did not script is a test failure.
struct ScriptedApprover {
    can_verify: bool,
    script: Arc<Mutex<Script>>,
}

impl Approver for ScriptedApprover {
    fn can_verify_user(&self) -> bool {
        self.can_verify
    }

    fn approve(&mut self, request: &ApprovalRequest, _cancel: &CancelToken) -> ApprovalOutcome {
        let mut script = self.script.lock().unwrap();
        script.seen.push(request.clone());
        let next = script.queue.pop_front();
        drop(script);
        next.unwrap_or_else(|| panic!("approval asked but none was scripted: {request:?}"))
    }
}

fn present() -> ApprovalOutcome {
    ApprovalOutcome::Present { account: None }
}

fn verified() -> ApprovalOutcome {
    ApprovalOutcome::Verified { account: None }
}

// ---- the key under test ---------------------------------------------------------------------

struct Key {
    auth: Authenticator,
    script: Arc<Mutex<Script>>,
    cx: RequestContext,
}

impl Key {
    /// In-memory store, built-in UV available.
    fn new() -> Self {
        Self::in_memory(true)
    }

    fn in_memory(can_verify: bool) -> Self {
        let master = MasterKey::generate();
        Self::with_store(Store::open_in_memory(&master).unwrap(), &master, can_verify)
    }

    fn with_store(store: Store, master: &MasterKey, can_verify: bool) -> Self {
        Self::with_config(store, master, can_verify, Config::default())
    }

    fn with_config(store: Store, master: &MasterKey, can_verify: bool, config: Config) -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let approver = ScriptedApprover {
            can_verify,
            script: script.clone(),
        };
        let auth = Authenticator::new(store, master, Box::new(approver), config).unwrap();
        let cx = RequestContext {
            cancel: CancelToken::new(),
            requester: Requester("Work laptop".into()),
        };
        Self { auth, script, cx }
    }

    fn queue(&self, outcomes: impl IntoIterator<Item = ApprovalOutcome>) {
        self.script.lock().unwrap().queue.extend(outcomes);
    }

    /// The approval requests shown since the last call.
    fn seen(&self) -> Vec<ApprovalRequest> {
        std::mem::take(&mut self.script.lock().unwrap().seen)
    }

    fn assert_script_used_up(&self) {
        let s = self.script.lock().unwrap();
        assert!(
            s.queue.is_empty(),
            "scripted outcomes left unused: {:?}",
            s.queue
        );
    }

    fn raw(&mut self, request: &[u8]) -> Vec<u8> {
        self.auth.process_cbor(request, &self.cx)
    }

    /// Sends `cmd ‖ CBOR(params)`; `Ok(Value::Null)` for a bare success status.
    fn call(&mut self, cmd: u8, params: Option<&Value>) -> Result<Value, u8> {
        let mut request = vec![cmd];
        if let Some(p) = params {
            ciborium::ser::into_writer(p, &mut request).unwrap();
        }
        let response = self.raw(&request);
        decode_response(&response)
    }

    fn u2f(&mut self, apdu: &[u8]) -> (Vec<u8>, u16) {
        let mut out = self.auth.process_u2f(apdu, &self.cx);
        assert!(out.len() >= 2, "U2F response without status word");
        let sw = u16::from_be_bytes([out[out.len() - 2], out[out.len() - 1]]);
        out.truncate(out.len() - 2);
        (out, sw)
    }

    fn info(&mut self) -> Value {
        self.call(CMD_GET_INFO, None).unwrap()
    }

    fn register(&mut self, mc: &MakeCred) -> Result<Registration, u8> {
        self.call(CMD_MAKE_CREDENTIAL, Some(&mc.to_cbor()))
            .map(|v| Registration::parse(&v))
    }

    fn assert(&mut self, ga: &GetAssert) -> Result<Assertion, u8> {
        self.call(CMD_GET_ASSERTION, Some(&ga.to_cbor()))
            .map(|v| Assertion::parse(&v))
    }

    fn next_assertion(&mut self) -> Result<Assertion, u8> {
        self.call(CMD_GET_NEXT_ASSERTION, None)
            .map(|v| Assertion::parse(&v))
    }
}

// ---- CBOR helpers ----------------------------------------------------------------------------

fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}
fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}
fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}
fn imap(entries: Vec<(i64, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (int(k), v)).collect())
}
fn tmap(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
}

fn get(map: &Value, key: i64) -> Option<&Value> {
    let Value::Map(m) = map else {
        panic!("not a map: {map:?}")
    };
    m.iter()
        .find(|(k, _)| matches!(k, Value::Integer(i) if i128::from(*i) == key as i128))
        .map(|(_, v)| v)
}
fn get_text<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    let Value::Map(m) = map else {
        panic!("not a map: {map:?}")
    };
    m.iter()
        .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
        .map(|(_, v)| v)
}
fn as_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        other => panic!("not bytes: {other:?}"),
    }
}
fn as_int(v: &Value) -> i128 {
    match v {
        Value::Integer(i) => i128::from(*i),
        other => panic!("not an integer: {other:?}"),
    }
}
fn as_str(v: &Value) -> &str {
    match v {
        Value::Text(t) => t,
        other => panic!("not text: {other:?}"),
    }
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

/// CTAP 2.1 §8 canonical key order: major type, then encoded length, then bytewise.
fn canonical_key_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    (a[0] >> 5)
        .cmp(&(b[0] >> 5))
        .then(a.len().cmp(&b.len()))
        .then(a.cmp(b))
}

fn check_canonical_order(v: &Value) {
    match v {
        Value::Map(entries) => {
            let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| encode(k)).collect();
            for pair in keys.windows(2) {
                assert_eq!(
                    canonical_key_order(&pair[0], &pair[1]),
                    std::cmp::Ordering::Less,
                    "map keys out of canonical order (or duplicated) in {v:?}"
                );
            }
            for (k, v) in entries {
                check_canonical_order(k);
                check_canonical_order(v);
            }
        }
        Value::Array(items) => items.iter().for_each(check_canonical_order),
        Value::Tag(_, inner) => check_canonical_order(inner),
        Value::Float(_) => panic!("floating point in a CTAP response: {v:?}"),
        _ => {}
    }
}

/// Decodes exactly one CBOR item from the front of `*input`, advancing it, and checks that
/// the item's bytes are canonical: keys ordered, and re-encoding gives identical bytes.
fn take_canonical(input: &mut &[u8]) -> Value {
    let start = *input;
    let value: Value = ciborium::de::from_reader(&mut *input).expect("valid CBOR");
    let used = &start[..start.len() - input.len()];
    check_canonical_order(&value);
    assert_eq!(
        encode(&value),
        used,
        "CBOR does not re-encode to identical bytes: {value:?}"
    );
    value
}

fn decode_response(response: &[u8]) -> Result<Value, u8> {
    let (&status, body) = response.split_first().expect("empty CTAP2 response");
    if status != 0 {
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

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b
}

// ---- requests ---------------------------------------------------------------------------------

#[derive(Clone)]
struct MakeCred {
    client_data_hash: [u8; 32],
    rp_id: String,
    rp_name: Option<String>,
    user_id: Vec<u8>,
    user_name: Option<String>,
    display_name: Option<String>,
    algs: Vec<i64>,
    exclude: Vec<Vec<u8>>,
    extensions: Vec<(&'static str, Value)>,
    rk: Option<bool>,
    uv: Option<bool>,
    pin_uv_auth: Option<(Vec<u8>, u64)>,
}

impl MakeCred {
    fn new(rp_id: &str, user: &str) -> Self {
        Self {
            client_data_hash: random32(),
            rp_id: rp_id.into(),
            rp_name: Some(format!("{rp_id} (name)")),
            user_id: sha256(user.as_bytes())[..16].to_vec(),
            user_name: Some(user.into()),
            display_name: Some(format!("{user} display")),
            algs: vec![ES256, EDDSA],
            exclude: vec![],
            extensions: vec![],
            rk: None,
            uv: None,
            pin_uv_auth: None,
        }
    }
    fn rk(mut self) -> Self {
        self.rk = Some(true);
        self
    }
    fn uv(mut self) -> Self {
        self.uv = Some(true);
        self
    }
    fn alg(mut self, alg: i64) -> Self {
        self.algs = vec![alg];
        self
    }

    fn to_cbor(&self) -> Value {
        let mut rp = vec![("id", text(&self.rp_id))];
        if let Some(n) = &self.rp_name {
            rp.push(("name", text(n)));
        }
        let mut user = vec![("id", bytes(&self.user_id))];
        if let Some(n) = &self.user_name {
            user.push(("name", text(n)));
        }
        if let Some(n) = &self.display_name {
            user.push(("displayName", text(n)));
        }
        let params = self
            .algs
            .iter()
            .map(|a| tmap(vec![("alg", int(*a)), ("type", text("public-key"))]))
            .collect();
        let mut m = vec![
            (1, bytes(&self.client_data_hash)),
            (2, tmap(rp)),
            (3, tmap(user)),
            (4, Value::Array(params)),
        ];
        if !self.exclude.is_empty() {
            m.push((5, descriptors(&self.exclude)));
        }
        if !self.extensions.is_empty() {
            m.push((6, tmap(self.extensions.clone())));
        }
        let mut options = vec![];
        if let Some(rk) = self.rk {
            options.push(("rk", Value::Bool(rk)));
        }
        if let Some(uv) = self.uv {
            options.push(("uv", Value::Bool(uv)));
        }
        if !options.is_empty() {
            m.push((7, tmap(options)));
        }
        if let Some((param, protocol)) = &self.pin_uv_auth {
            m.push((8, bytes(param)));
            m.push((9, int(*protocol as i64)));
        }
        imap(m)
    }
}

fn descriptors(ids: &[Vec<u8>]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| tmap(vec![("id", bytes(id)), ("type", text("public-key"))]))
            .collect(),
    )
}

#[derive(Clone)]
struct GetAssert {
    rp_id: String,
    client_data_hash: [u8; 32],
    allow: Vec<Vec<u8>>,
    extensions: Vec<(&'static str, Value)>,
    uv: Option<bool>,
    up: Option<bool>,
    pin_uv_auth: Option<(Vec<u8>, u64)>,
}

impl GetAssert {
    fn new(rp_id: &str) -> Self {
        Self {
            rp_id: rp_id.into(),
            client_data_hash: random32(),
            allow: vec![],
            extensions: vec![],
            uv: None,
            up: None,
            pin_uv_auth: None,
        }
    }
    fn allow(mut self, id: &[u8]) -> Self {
        self.allow.push(id.to_vec());
        self
    }
    fn uv(mut self) -> Self {
        self.uv = Some(true);
        self
    }
    fn to_cbor(&self) -> Value {
        let mut m = vec![(1, text(&self.rp_id)), (2, bytes(&self.client_data_hash))];
        if !self.allow.is_empty() {
            m.push((3, descriptors(&self.allow)));
        }
        if !self.extensions.is_empty() {
            m.push((4, tmap(self.extensions.clone())));
        }
        let mut options = vec![];
        if let Some(uv) = self.uv {
            options.push(("uv", Value::Bool(uv)));
        }
        if let Some(up) = self.up {
            options.push(("up", Value::Bool(up)));
        }
        if !options.is_empty() {
            m.push((5, tmap(options)));
        }
        if let Some((param, protocol)) = &self.pin_uv_auth {
            m.push((6, bytes(param)));
            m.push((7, int(*protocol as i64)));
        }
        imap(m)
    }
}

// ---- responses ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum PublicKey {
    Es256(p256::ecdsa::VerifyingKey),
    EdDsa(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// Reads a COSE_Key (RFC 9053 / WebAuthn §6.5.1.1) as it appears in authData.
    fn from_cose(v: &Value) -> Self {
        let kty = as_int(get(v, 1).expect("kty"));
        let alg = as_int(get(v, 3).expect("alg"));
        let crv = as_int(get(v, -1).expect("crv"));
        let x = as_bytes(get(v, -2).expect("x"));
        match (kty, alg, crv) {
            (2, -7, 1) => {
                let y = as_bytes(get(v, -3).expect("y"));
                assert_eq!((x.len(), y.len()), (32, 32));
                let sec1 = [&[0x04][..], &x, &y].concat();
                PublicKey::Es256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).expect("point on P-256"),
                )
            }
            (1, -8, 6) => {
                assert!(get(v, -3).is_none(), "OKP keys have no y");
                let x: [u8; 32] = x.try_into().expect("32-byte Ed25519 key");
                PublicKey::EdDsa(
                    ed25519_dalek::VerifyingKey::from_bytes(&x).expect("Ed25519 point"),
                )
            }
            other => panic!("unexpected COSE key (kty, alg, crv) = {other:?}"),
        }
    }

    fn alg(&self) -> i64 {
        match self {
            PublicKey::Es256(_) => ES256,
            PublicKey::EdDsa(_) => EDDSA,
        }
    }

    /// ES256 signatures are ASN.1 DER, EdDSA signatures raw 64 bytes (WebAuthn §6.5.5).
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Es256(k) => p256::ecdsa::Signature::from_der(signature)
                .map(|s| k.verify(message, &s).is_ok())
                .unwrap_or(false),
            PublicKey::EdDsa(k) => <[u8; 64]>::try_from(signature)
                .map(|s| {
                    k.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&s))
                        .is_ok()
                })
                .unwrap_or(false),
        }
    }
}

#[derive(Debug)]
struct AuthData {
    rp_id_hash: [u8; 32],
    flags: u8,
    sign_count: u32,
    aaguid: Option<[u8; 16]>,
    credential_id: Option<Vec<u8>>,
    public_key: Option<PublicKey>,
    extensions: Option<Value>,
}

impl AuthData {
    fn parse(b: &[u8]) -> Self {
        assert!(b.len() >= 37, "authData too short");
        let flags = b[32];
        let mut rest = &b[37..];
        let (mut aaguid, mut credential_id, mut public_key, mut extensions) =
            (None, None, None, None);
        if flags & FLAG_AT != 0 {
            aaguid = Some(rest[..16].try_into().unwrap());
            let len = u16::from_be_bytes([rest[16], rest[17]]) as usize;
            credential_id = Some(rest[18..18 + len].to_vec());
            rest = &rest[18 + len..];
            public_key = Some(PublicKey::from_cose(&take_canonical(&mut rest)));
        }
        if flags & FLAG_ED != 0 {
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
    fn up(&self) -> bool {
        self.flags & FLAG_UP != 0
    }
    fn uv(&self) -> bool {
        self.flags & FLAG_UV != 0
    }
}

#[derive(Debug)]
struct Registration {
    fmt: String,
    auth_data: Vec<u8>,
    att_stmt: Value,
    parsed: AuthData,
    large_blob_key: Option<Vec<u8>>,
}

impl Registration {
    fn parse(v: &Value) -> Self {
        let auth_data = as_bytes(get(v, 2).expect("authData"));
        Self {
            fmt: as_str(get(v, 1).expect("fmt")).to_string(),
            parsed: AuthData::parse(&auth_data),
            auth_data,
            att_stmt: get(v, 3).expect("attStmt").clone(),
            large_blob_key: get(v, 5).map(as_bytes),
        }
    }
    fn id(&self) -> Vec<u8> {
        self.parsed.credential_id.clone().unwrap()
    }
    fn key(&self) -> &PublicKey {
        self.parsed.public_key.as_ref().unwrap()
    }

    /// Packed self attestation (WebAuthn §8.2): alg is the credential's, no x5c, and sig
    /// verifies over authData ‖ clientDataHash with the credential public key.
    fn verify_self_attestation(&self, client_data_hash: &[u8; 32]) {
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

#[derive(Debug)]
struct Assertion {
    credential_id: Vec<u8>,
    auth_data: Vec<u8>,
    parsed: AuthData,
    signature: Vec<u8>,
    user: Option<Value>,
    number_of_credentials: Option<i128>,
    user_selected: bool,
}

impl Assertion {
    fn parse(v: &Value) -> Self {
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
    fn verify(&self, key: &PublicKey, rp_id: &str, client_data_hash: &[u8; 32]) {
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

    fn user_name(&self) -> Option<String> {
        self.user
            .as_ref()
            .and_then(|u| get_text(u, "name"))
            .map(|n| as_str(n).to_string())
    }
    fn user_id(&self) -> Option<Vec<u8>> {
        self.user
            .as_ref()
            .map(|u| as_bytes(get_text(u, "id").expect("user.id")))
    }
}

// ---- the platform side of PIN/UV auth protocols 1 and 2 --------------------------------------

mod platform {
    use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
    use ciborium::value::Value;
    use hkdf::Hkdf;
    use hmac::{Hmac, Mac};
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use rand_core::{OsRng, RngCore};
    use sha2::{Digest, Sha256};

    use super::{as_bytes, as_int, get, imap, int};

    type Enc = cbc::Encryptor<aes::Aes256>;
    type Dec = cbc::Decryptor<aes::Aes256>;

    /// authenticate(key, message): HMAC-SHA-256; protocol 1 keeps the first 16 bytes.
    pub fn authenticate(protocol: u64, key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
        mac.update(message);
        let tag = mac.finalize().into_bytes().to_vec();
        if protocol == 1 {
            tag[..16].to_vec()
        } else {
            tag
        }
    }

    /// The platform's half of one key agreement (encapsulate, §6.5.6 / §6.5.7).
    pub struct Shared {
        pub protocol: u64,
        hmac_key: [u8; 32],
        aes_key: [u8; 32],
        /// The platform key-agreement key to send (COSE_Key, alg -25).
        pub cose: Value,
    }

    impl Shared {
        pub fn encapsulate(protocol: u64, authenticator_key: &Value) -> Self {
            assert_eq!(as_int(get(authenticator_key, 1).unwrap()), 2, "kty EC2");
            assert_eq!(
                as_int(get(authenticator_key, 3).unwrap()),
                -25,
                "alg ECDH-ES+HKDF-256"
            );
            assert_eq!(as_int(get(authenticator_key, -1).unwrap()), 1, "crv P-256");
            let x = as_bytes(get(authenticator_key, -2).unwrap());
            let y = as_bytes(get(authenticator_key, -3).unwrap());
            let peer = p256::PublicKey::from_sec1_bytes(&[&[0x04][..], &x, &y].concat()).unwrap();
            let ephemeral = p256::ecdh::EphemeralSecret::random(&mut OsRng);
            let z = ephemeral.diffie_hellman(&peer);
            let z = z.raw_secret_bytes();
            let (mut hmac_key, mut aes_key) = ([0u8; 32], [0u8; 32]);
            match protocol {
                1 => {
                    hmac_key = Sha256::digest(z).into();
                    aes_key = hmac_key;
                }
                2 => {
                    let hk = Hkdf::<Sha256>::new(Some(&[0u8; 32]), z);
                    hk.expand(b"CTAP2 HMAC key", &mut hmac_key).unwrap();
                    hk.expand(b"CTAP2 AES key", &mut aes_key).unwrap();
                }
                p => panic!("no protocol {p}"),
            }
            let point = ephemeral.public_key().to_encoded_point(false);
            let cose = imap(vec![
                (1, int(2)),
                (3, int(-25)),
                (-1, int(1)),
                (-2, Value::Bytes(point.x().unwrap().to_vec())),
                (-3, Value::Bytes(point.y().unwrap().to_vec())),
            ]);
            Self {
                protocol,
                hmac_key,
                aes_key,
                cose,
            }
        }

        pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
            assert_eq!(plaintext.len() % 16, 0);
            if self.protocol == 1 {
                Enc::new(&self.aes_key.into(), &[0u8; 16].into())
                    .encrypt_padded_vec_mut::<NoPadding>(plaintext)
            } else {
                let mut iv = [0u8; 16];
                OsRng.fill_bytes(&mut iv);
                let ct = Enc::new(&self.aes_key.into(), &iv.into())
                    .encrypt_padded_vec_mut::<NoPadding>(plaintext);
                [&iv[..], &ct].concat()
            }
        }

        pub fn decrypt(&self, ciphertext: &[u8]) -> Vec<u8> {
            let (iv, ct) = if self.protocol == 1 {
                ([0u8; 16], ciphertext)
            } else {
                (ciphertext[..16].try_into().unwrap(), &ciphertext[16..])
            };
            Dec::new(&self.aes_key.into(), &iv.into())
                .decrypt_padded_vec_mut::<NoPadding>(ct)
                .unwrap()
        }

        pub fn authenticate(&self, message: &[u8]) -> Vec<u8> {
            authenticate(self.protocol, &self.hmac_key, message)
        }
    }
}

use platform::Shared;

/// A pinUvAuthToken the platform holds.
struct Token {
    protocol: u64,
    secret: Vec<u8>,
}

impl Token {
    fn param(&self, message: &[u8]) -> (Vec<u8>, u64) {
        (
            platform::authenticate(self.protocol, &self.secret, message),
            self.protocol,
        )
    }
}

impl Key {
    fn client_pin(&mut self, params: Vec<(i64, Value)>) -> Result<Value, u8> {
        self.call(CMD_CLIENT_PIN, Some(&imap(params)))
    }

    fn key_agreement(&mut self, protocol: u64) -> Shared {
        let r = self
            .client_pin(vec![(1, int(protocol as i64)), (2, int(0x02))])
            .unwrap();
        Shared::encapsulate(protocol, get(&r, 1).expect("keyAgreement"))
    }

    fn set_pin(&mut self, protocol: u64, pin: &str) -> Result<(), u8> {
        let shared = self.key_agreement(protocol);
        let new_pin_enc = shared.encrypt(&padded(pin));
        let param = shared.authenticate(&new_pin_enc);
        self.client_pin(vec![
            (1, int(protocol as i64)),
            (2, int(0x03)),
            (3, shared.cose.clone()),
            (4, bytes(&param)),
            (5, bytes(&new_pin_enc)),
        ])
        .map(|r| {
            assert!(
                matches!(&r, Value::Null) || r == Value::Map(vec![]),
                "setPIN answers with no data: {r:?}"
            )
        })
    }

    fn change_pin(&mut self, protocol: u64, old: &str, new: &str) -> Result<(), u8> {
        let shared = self.key_agreement(protocol);
        let new_pin_enc = shared.encrypt(&padded(new));
        let pin_hash_enc = shared.encrypt(&sha256(old.as_bytes())[..16]);
        let param = shared.authenticate(&[&new_pin_enc[..], &pin_hash_enc].concat());
        self.client_pin(vec![
            (1, int(protocol as i64)),
            (2, int(0x04)),
            (3, shared.cose.clone()),
            (4, bytes(&param)),
            (5, bytes(&new_pin_enc)),
            (6, bytes(&pin_hash_enc)),
        ])
        .map(|_| ())
    }

    /// getPinToken (0x05) when `permissions` is None, else getPinUvAuthTokenUsingPinWithPermissions (0x09).
    fn pin_token(
        &mut self,
        protocol: u64,
        pin: &str,
        permissions: Option<(u64, Option<&str>)>,
    ) -> Result<Token, u8> {
        let shared = self.key_agreement(protocol);
        let pin_hash_enc = shared.encrypt(&sha256(pin.as_bytes())[..16]);
        let mut params = vec![
            (1, int(protocol as i64)),
            (3, shared.cose.clone()),
            (6, bytes(&pin_hash_enc)),
        ];
        match permissions {
            None => params.push((2, int(0x05))),
            Some((perms, rp_id)) => {
                params.push((2, int(0x09)));
                params.push((9, int(perms as i64)));
                if let Some(rp) = rp_id {
                    params.push((10, text(rp)));
                }
            }
        }
        let r = self.client_pin(params)?;
        Ok(self.token_from(&shared, &r))
    }

    /// getPinUvAuthTokenUsingUvWithPermissions (0x06): the built-in UV path.
    fn uv_token(
        &mut self,
        protocol: u64,
        permissions: u64,
        rp_id: Option<&str>,
    ) -> Result<Token, u8> {
        let shared = self.key_agreement(protocol);
        let mut params = vec![
            (1, int(protocol as i64)),
            (2, int(0x06)),
            (3, shared.cose.clone()),
            (9, int(permissions as i64)),
        ];
        if let Some(rp) = rp_id {
            params.push((10, text(rp)));
        }
        let r = self.client_pin(params)?;
        Ok(self.token_from(&shared, &r))
    }

    fn token_from(&self, shared: &Shared, r: &Value) -> Token {
        let enc = as_bytes(get(r, 2).expect("pinUvAuthToken"));
        assert_eq!(enc.len(), if shared.protocol == 1 { 32 } else { 48 });
        Token {
            protocol: shared.protocol,
            secret: shared.decrypt(&enc),
        }
    }

    fn pin_retries(&mut self) -> (i128, bool) {
        let r = self.client_pin(vec![(2, int(0x01))]).unwrap();
        let power_cycle = match get(&r, 4) {
            Some(Value::Bool(b)) => *b,
            None => false,
            other => panic!("powerCycleState: {other:?}"),
        };
        (as_int(get(&r, 3).expect("pinRetries")), power_cycle)
    }

    fn uv_retries(&mut self) -> i128 {
        as_int(get(&self.client_pin(vec![(2, int(0x07))]).unwrap(), 5).expect("uvRetries"))
    }
}

/// The PIN, UTF-8, zero-padded to 64 bytes (§6.5.5.5).
fn padded(pin: &str) -> Vec<u8> {
    let mut p = pin.as_bytes().to_vec();
    p.resize(64, 0);
    p
}

fn option(info: &Value, name: &str) -> Option<bool> {
    get_text(get(info, 4).expect("options"), name).map(|v| matches!(v, Value::Bool(true)))
}

// ==== tests ======================================================================================

#[test]
fn get_info_describes_a_phone_key() {
    let mut key = Key::new();
    let info = key.info();
    let versions: Vec<&str> = match get(&info, 1).unwrap() {
        Value::Array(a) => a.iter().map(as_str).collect(),
        _ => panic!(),
    };
    for v in ["U2F_V2", "FIDO_2_0", "FIDO_2_1"] {
        assert!(versions.contains(&v), "{v} missing from {versions:?}");
    }
    for opt in [
        "rk",
        "up",
        "uv",
        "pinUvAuthToken",
        "credMgmt",
        "authnrCfg",
        "makeCredUvNotRqd",
    ] {
        assert_eq!(option(&info, opt), Some(true), "option {opt}");
    }
    assert_eq!(
        option(&info, "clientPin"),
        Some(false),
        "clientPin present and false until a PIN is set"
    );
    let protocols: Vec<i128> = match get(&info, 6).unwrap() {
        Value::Array(a) => a.iter().map(as_int).collect(),
        _ => panic!(),
    };
    assert_eq!(protocols, vec![2, 1]);
    let algs: Vec<i128> = match get(&info, 0x0A).unwrap() {
        Value::Array(a) => a
            .iter()
            .map(|p| as_int(get_text(p, "alg").unwrap()))
            .collect(),
        _ => panic!(),
    };
    assert!(algs.contains(&-7) && algs.contains(&-8));

    // Without built-in UV the "uv" option is absent (CTAP 2.1 §6.4: absent = not supported).
    let mut no_uv = Key::in_memory(false);
    assert_eq!(option(&no_uv.info(), "uv"), None);
}

fn register_and_sign_in(alg: i64) {
    let mut key = Key::new();
    let mc = MakeCred::new("example.com", "alice").alg(alg);
    key.queue([present()]);
    let reg = key.register(&mc).unwrap();
    assert_eq!(reg.key().alg(), alg);
    reg.verify_self_attestation(&mc.client_data_hash);
    let ad = &reg.parsed;
    assert_eq!(ad.rp_id_hash, sha256(b"example.com"));
    assert!(ad.up() && !ad.uv());
    assert_eq!(
        ad.aaguid,
        Some(pocketkey_core::authenticator::POCKETKEY_AAGUID)
    );
    let max_id_len = as_int(get(&key.info(), 0x08).expect("maxCredentialIdLength"));
    assert!(reg.id().len() as i128 <= max_id_len && max_id_len <= 255);

    let ga = GetAssert::new("example.com").allow(&reg.id());
    key.queue([present()]);
    let a = key.assert(&ga).unwrap();
    assert_eq!(a.credential_id, reg.id());
    a.verify(reg.key(), "example.com", &ga.client_data_hash);
    assert!(a.parsed.up() && !a.parsed.uv());
    assert!(a.parsed.sign_count > reg.parsed.sign_count);
    assert!(
        a.user.is_none(),
        "non-discoverable credentials have no user"
    );
    assert!(a.number_of_credentials.is_none());

    // The signature really covers the clientDataHash: another hash does not verify.
    let other = [&a.auth_data[..], &random32()].concat();
    assert!(!reg.key().verify(&other, &a.signature));
    // And the credential is bound to its RP.
    assert_eq!(
        key.assert(&GetAssert::new("evil.example").allow(&reg.id()))
            .err(),
        Some(NO_CREDENTIALS)
    );
    key.assert_script_used_up();
}

#[test]
fn es256_registration_self_attestation_and_assertion_verify() {
    register_and_sign_in(ES256);
}

/// ES256 keys are stored with their public point (scalar ‖ uncompressed point), so signing
/// needs no point computation; the point stored is the one registered. A discoverable
/// credential stored the earlier way — a bare 32-byte scalar — still signs, repeatedly (the
/// second time from the engine's parsed-key cache), verifiably under the scalar's public key.
#[test]
fn es256_keys_are_stored_with_their_point_and_bare_scalars_still_sign() {
    use pocketkey_core::store::{Algorithm, CredProtect, Credential};
    use zeroize::Zeroizing;

    let master = MasterKey::generate();
    let mut store = Store::open_in_memory(&master).unwrap();
    let legacy = p256::SecretKey::random(&mut OsRng);
    store
        .insert_credential(&Credential {
            id: random32().to_vec(),
            rp_id: "legacy.example".into(),
            rp_id_hash: sha256(b"legacy.example"),
            rp_name: None,
            user_id: vec![1; 16],
            user_name: Some("old".into()),
            user_display_name: None,
            algorithm: Algorithm::Es256,
            private_key: Zeroizing::new(legacy.to_bytes().to_vec()),
            cred_protect: CredProtect::UserVerificationOptional,
            hmac_secret: false,
            cred_blob: None,
            large_blob_key: None,
            backup_eligible: false,
            backup_state: false,
            created_at: 1_700_000_000,
        })
        .unwrap();
    let mut key = Key::with_store(store, &master, true);
    let legacy_public = PublicKey::Es256(p256::ecdsa::VerifyingKey::from(legacy.public_key()));
    for _ in 0..2 {
        let ga = GetAssert::new("legacy.example").uv();
        key.queue([verified()]);
        let a = key.assert(&ga).unwrap();
        a.verify(&legacy_public, "legacy.example", &ga.client_data_hash);
    }

    let mc = MakeCred::new("example.com", "alice").alg(ES256).rk().uv();
    key.queue([verified()]);
    let reg = key.register(&mc).unwrap();
    let stored = key
        .auth
        .store()
        .credential_by_id(&reg.id())
        .unwrap()
        .unwrap();
    assert_eq!(stored.private_key.len(), 32 + 65, "scalar ‖ point");
    let PublicKey::Es256(registered) = reg.key() else {
        panic!("ES256 was asked for")
    };
    assert_eq!(
        &stored.private_key[32..],
        registered.to_encoded_point(false).as_bytes()
    );
    let scalar = p256::SecretKey::from_slice(&stored.private_key[..32]).unwrap();
    assert_eq!(scalar.public_key(), p256::PublicKey::from(registered));
    key.assert_script_used_up();
}

#[test]
fn eddsa_registration_self_attestation_and_assertion_verify() {
    register_and_sign_in(EDDSA);
}

#[test]
fn first_supported_algorithm_in_rp_order_wins_and_unsupported_is_0x26() {
    let mut key = Key::new();
    let mut mc = MakeCred::new("example.com", "alice");
    mc.algs = vec![-257, EDDSA, ES256];
    key.queue([present()]);
    assert_eq!(key.register(&mc).unwrap().key().alg(), EDDSA);
    mc.algs = vec![-257, -35];
    assert_eq!(key.register(&mc).err(), Some(0x26));
}

#[test]
fn sign_counter_strictly_increases_and_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pocketkey.sqlite");
    let master = MasterKey::generate();
    let mut counts = Vec::new();

    let (rk_id, rk_key, nrk_id, nrk_key) = {
        let mut key = Key::with_store(Store::open(&path, &master).unwrap(), &master, true);
        key.queue([verified(), present()]);
        let rk = key
            .register(&MakeCred::new("example.com", "alice").rk().uv())
            .unwrap();
        let nrk = key
            .register(&MakeCred::new("example.com", "bob").alg(EDDSA))
            .unwrap();
        counts.extend([rk.parsed.sign_count, nrk.parsed.sign_count]);
        for _ in 0..3 {
            let ga = GetAssert::new("example.com").allow(&nrk.id());
            key.queue([present()]);
            let a = key.assert(&ga).unwrap();
            a.verify(nrk.key(), "example.com", &ga.client_data_hash);
            counts.push(a.parsed.sign_count);
        }
        (rk.id(), rk.key().clone(), nrk.id(), nrk.key().clone())
    };

    // A new process: the same file, the same master key.
    let mut key = Key::with_store(Store::open(&path, &master).unwrap(), &master, true);
    let ga = GetAssert::new("example.com").uv();
    key.queue([verified()]);
    let a = key.assert(&ga).unwrap();
    assert_eq!(
        a.credential_id, rk_id,
        "the discoverable credential is still there"
    );
    a.verify(&rk_key, "example.com", &ga.client_data_hash);
    counts.push(a.parsed.sign_count);
    let ga = GetAssert::new("example.com").allow(&nrk_id);
    key.queue([present()]);
    let a = key.assert(&ga).unwrap();
    a.verify(&nrk_key, "example.com", &ga.client_data_hash);
    counts.push(a.parsed.sign_count);

    assert!(
        counts.windows(2).all(|w| w[0] < w[1]),
        "counter must strictly increase: {counts:?}"
    );
    assert!(counts[0] >= 1);
}

/// getInfo's promise to platforms that batch allowLists: maxCredentialCountInList IDs of
/// maxCredentialIdLength bytes fit in one request of maxMsgSize (CTAP 2.1 §6.4), so the request
/// is looked at (none of these random IDs is ours: NO_CREDENTIALS), not refused for its length.
/// And the IDs made are no longer than announced.
#[test]
fn an_allow_list_of_the_announced_size_fits_one_message() {
    let mut key = Key::new();
    let info = key.info();
    let count = as_int(get(&info, 0x07).expect("maxCredentialCountInList")) as usize;
    let id_len = as_int(get(&info, 0x08).expect("maxCredentialIdLength")) as usize;
    let ids: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            let mut id = vec![0u8; id_len];
            OsRng.fill_bytes(&mut id);
            id
        })
        .collect();
    let mut ga = GetAssert::new("a-relying-party-with-a-long-name.example.com");
    for id in &ids {
        ga = ga.allow(id);
    }
    assert_eq!(key.assert(&ga).err(), Some(NO_CREDENTIALS));
    for alg in [ES256, EDDSA] {
        key.queue([present()]);
        let reg = key
            .register(&MakeCred::new("example.com", "alice").alg(alg))
            .unwrap();
        assert!(reg.id().len() <= id_len, "{alg}: {} bytes", reg.id().len());
    }
    key.assert_script_used_up();
}

/// Durable commits in a file-backed store's write-ahead log: the valid commit frames (a frame
/// whose "database size after commit" field is set, with the salts of the WAL header; SQLite
/// file format §4.1). With `synchronous=FULL` each commit is one fsync of the WAL.
fn wal_commits(db: &std::path::Path) -> usize {
    let mut path = db.as_os_str().to_owned();
    path.push("-wal");
    let wal = std::fs::read(path).unwrap_or_default();
    if wal.len() < 32 {
        return 0;
    }
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    let page_size = be(&wal[8..12]) as usize;
    let salts = &wal[16..24];
    wal[32..]
        .chunks_exact(24 + page_size)
        .filter(|frame| be(&frame[4..8]) != 0 && &frame[8..16] == salts)
        .count()
}

/// A discoverable makeCredential stores the credential and takes the counter in one durable
/// commit; a non-discoverable one and each getAssertion commit once (the counter).
#[test]
fn each_request_costs_one_durable_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pocketkey.sqlite");
    let master = MasterKey::generate();
    let mut key = Key::with_store(Store::open(&path, &master).unwrap(), &master, true);
    let commits = |key: &mut Key, op: &dyn Fn(&mut Key)| {
        let before = wal_commits(&path);
        op(key);
        wal_commits(&path) - before
    };
    let rk = |key: &mut Key| {
        key.queue([verified()]);
        key.register(&MakeCred::new("example.com", "alice").rk().uv())
            .unwrap();
    };
    assert_eq!(commits(&mut key, &rk), 1, "discoverable makeCredential");
    let nrk = |key: &mut Key| {
        key.queue([present()]);
        key.register(&MakeCred::new("example.com", "bob")).unwrap();
    };
    assert_eq!(
        commits(&mut key, &nrk),
        1,
        "non-discoverable makeCredential"
    );
    let ga = |key: &mut Key| {
        key.queue([verified()]);
        key.assert(&GetAssert::new("example.com").uv()).unwrap();
    };
    assert_eq!(commits(&mut key, &ga), 1, "getAssertion");
    key.assert_script_used_up();
}

#[test]
fn discoverable_credential_requires_user_verification() {
    let mut key = Key::new();
    // Built-in UV is configured: rk without uv or a token is PUAT_REQUIRED (§6.1.2 step 6,
    // makeCredUvNotRqd), and nobody is asked.
    assert_eq!(
        key.register(&MakeCred::new("example.com", "alice").rk())
            .err(),
        Some(PUAT_REQUIRED)
    );
    assert!(key.seen().is_empty());

    let mc = MakeCred::new("example.com", "alice").rk().uv();
    key.queue([verified()]);
    let reg = key.register(&mc).unwrap();
    reg.verify_self_attestation(&mc.client_data_hash);
    assert!(reg.parsed.up() && reg.parsed.uv());
    let seen = key.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].verification_required);
    assert_eq!(seen[0].operation, Operation::Register);

    // A user who only taps where verification is required does not make a credential.
    key.queue([present()]);
    assert_eq!(
        key.register(&MakeCred::new("example.com", "bob").rk().uv())
            .err(),
        Some(OPERATION_DENIED)
    );
    key.assert_script_used_up();
}

#[test]
fn discoverable_credential_without_any_uv_configured_needs_presence_only() {
    // No built-in UV and no PIN: nothing to verify with, so rk needs only a touch.
    let mut key = Key::in_memory(false);
    key.queue([present()]);
    let reg = key
        .register(&MakeCred::new("example.com", "alice").rk())
        .unwrap();
    assert!(!reg.parsed.uv());
    // uv=true without built-in UV is INVALID_OPTION (§6.1.2 step 5).
    assert_eq!(
        key.register(&MakeCred::new("example.com", "alice").rk().uv())
            .err(),
        Some(0x2C)
    );
    // Once a PIN is set the key is protected by UV: rk needs a token.
    key.set_pin(2, "1234").unwrap();
    assert_eq!(
        key.register(&MakeCred::new("example.com", "bob").rk())
            .err(),
        Some(PUAT_REQUIRED)
    );
    key.assert_script_used_up();
}

#[test]
fn approval_request_names_the_rp_the_user_and_the_requester() {
    let mut key = Key::new();
    let mut mc = MakeCred::new("login.example.com", "alice@example.com")
        .rk()
        .uv();
    mc.display_name = Some("Alice Liddell".into());
    mc.rp_name = Some("Example Login".into());
    key.queue([verified()]);
    key.register(&mc).unwrap();
    let r = key.seen().pop().unwrap();
    assert_eq!(r.operation, Operation::Register);
    assert_eq!(r.rp_id.as_deref(), Some("login.example.com"));
    assert_eq!(r.rp_name.as_deref(), Some("Example Login"));
    assert_eq!(r.user_name.as_deref(), Some("alice@example.com"));
    assert_eq!(r.user_display_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(r.requester, Requester("Work laptop".into()));
    assert!(r.accounts.is_empty());
    assert!(r.timeout > Duration::ZERO);

    // Signing in with the single discoverable credential shows whose it is.
    key.queue([verified()]);
    let a = key
        .assert(&GetAssert::new("login.example.com").uv())
        .unwrap();
    let r = key.seen().pop().unwrap();
    assert_eq!(r.operation, Operation::SignIn);
    assert_eq!(r.rp_id.as_deref(), Some("login.example.com"));
    assert_eq!(r.user_name.as_deref(), Some("alice@example.com"));
    assert!(r.accounts.is_empty(), "one account: nothing to choose");
    assert_eq!(a.user_name().as_deref(), Some("alice@example.com"));
    assert!(a.number_of_credentials.is_none());
}

fn three_accounts(key: &mut Key) -> Vec<Registration> {
    ["alice", "bob", "carol"]
        .into_iter()
        .map(|u| {
            key.queue([verified()]);
            key.register(&MakeCred::new("example.com", u).rk().uv())
                .unwrap()
        })
        .collect()
}

#[test]
fn several_discoverable_accounts_are_offered_and_the_chosen_one_is_returned() {
    let mut key = Key::new();
    let regs = three_accounts(&mut key);
    key.seen();

    let ga = GetAssert::new("example.com").uv();
    key.queue([ApprovalOutcome::Verified { account: Some(1) }]);
    let a = key.assert(&ga).unwrap();
    let r = key.seen().pop().unwrap();
    assert_eq!(r.operation, Operation::SignIn);
    assert_eq!(r.rp_id.as_deref(), Some("example.com"));
    let mut names: Vec<_> = r
        .accounts
        .iter()
        .map(|c| c.user_name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["alice", "bob", "carol"]);
    for c in &r.accounts {
        assert_eq!(
            c.display_name.as_deref(),
            Some(format!("{} display", c.user_name.as_ref().unwrap()).as_str())
        );
        assert_eq!(
            c.user_id,
            sha256(c.user_name.as_ref().unwrap().as_bytes())[..16].to_vec()
        );
    }

    // Account 1 as the user saw it is the one signed with.
    let chosen = &r.accounts[1];
    assert_eq!(a.user_id().as_deref(), Some(chosen.user_id.as_slice()));
    assert_eq!(
        a.user_name(),
        chosen.user_name,
        "names are returned after UV"
    );
    assert!(a.user_selected, "userSelected");
    assert!(
        a.number_of_credentials.is_none(),
        "no numberOfCredentials after selection on the authenticator"
    );
    let reg = regs
        .iter()
        .find(|g| g.parsed.credential_id.as_deref() == Some(&a.credential_id[..]))
        .unwrap();
    a.verify(reg.key(), "example.com", &ga.client_data_hash);
    assert!(a.parsed.uv());
    // Nothing left to iterate.
    assert_eq!(key.next_assertion().err(), Some(NOT_ALLOWED));
}

#[test]
fn without_a_choice_every_account_comes_through_get_next_assertion() {
    let mut key = Key::new();
    let regs = three_accounts(&mut key);
    key.seen();
    let ga = GetAssert::new("example.com");
    key.queue([present()]);
    let first = key.assert(&ga).unwrap();
    assert_eq!(first.number_of_credentials, Some(3));
    assert!(!first.user_selected);
    let mut all = vec![first];
    all.push(key.next_assertion().unwrap());
    all.push(key.next_assertion().unwrap());
    assert_eq!(key.next_assertion().err(), Some(NOT_ALLOWED));
    // Most recently created first (§6.2.2: credentials ordered by creation time, newest first).
    let order: Vec<_> = all.iter().map(|a| a.credential_id.clone()).collect();
    assert_eq!(order, vec![regs[2].id(), regs[1].id(), regs[0].id()]);
    let mut ids: Vec<_> = all.iter().map(|a| a.credential_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for a in &all {
        let reg = regs.iter().find(|g| g.id() == a.credential_id).unwrap();
        a.verify(reg.key(), "example.com", &ga.client_data_hash);
        assert!(a.parsed.up() && !a.parsed.uv());
        // No UV: no user-identifiable information (§6.2.2 step 12), only the handle.
        assert!(a.user_id().is_some());
        assert_eq!(a.user_name(), None);
        assert!(a
            .user
            .as_ref()
            .and_then(|u| get_text(u, "displayName"))
            .is_none());
    }
    assert!(all
        .windows(2)
        .all(|w| w[0].parsed.sign_count < w[1].parsed.sign_count));
    assert_eq!(
        key.seen().len(),
        1,
        "one approval for the whole enumeration"
    );
}

#[test]
fn refusals_map_to_their_status_codes() {
    let mut key = Key::new();
    for (outcome, status) in [
        (ApprovalOutcome::Denied, OPERATION_DENIED),
        (ApprovalOutcome::TimedOut, USER_ACTION_TIMEOUT),
        (ApprovalOutcome::Cancelled, KEEPALIVE_CANCEL),
    ] {
        key.queue([outcome]);
        assert_eq!(
            key.register(&MakeCred::new("example.com", "alice")).err(),
            Some(status),
            "mc {outcome:?}"
        );
        key.queue([outcome]);
        assert_eq!(
            key.register(&MakeCred::new("example.com", "alice").rk().uv())
                .err(),
            Some(status),
            "mc uv {outcome:?}"
        );
        key.queue([outcome]);
        assert_eq!(
            key.uv_token(2, PERM_MC, None).err(),
            Some(status),
            "clientPIN 0x06 {outcome:?}"
        );
        key.queue([outcome]);
        assert_eq!(
            key.call(0x0B, None).err(),
            Some(status),
            "selection {outcome:?}"
        );
    }
    key.queue([present()]);
    let reg = key
        .register(&MakeCred::new("example.com", "alice"))
        .unwrap();
    for (outcome, status) in [
        (ApprovalOutcome::Denied, OPERATION_DENIED),
        (ApprovalOutcome::TimedOut, USER_ACTION_TIMEOUT),
        (ApprovalOutcome::Cancelled, KEEPALIVE_CANCEL),
    ] {
        key.queue([outcome]);
        assert_eq!(
            key.assert(&GetAssert::new("example.com").allow(&reg.id()))
                .err(),
            Some(status),
            "ga {outcome:?}"
        );
    }
    key.assert_script_used_up();
    // Refusals are not verification failures.
    assert_eq!(key.uv_retries(), 8);

    // A request cancelled before the prompt (CTAPHID CANCEL) never reaches the approver.
    key.seen();
    key.cx.cancel.cancel();
    assert_eq!(
        key.register(&MakeCred::new("example.com", "alice")).err(),
        Some(KEEPALIVE_CANCEL)
    );
    assert_eq!(
        key.assert(&GetAssert::new("example.com").allow(&reg.id()))
            .err(),
        Some(KEEPALIVE_CANCEL)
    );
    assert!(key.seen().is_empty());
}

#[test]
fn built_in_uv_token_with_mc_permission_registers_without_a_second_prompt() {
    for protocol in [2, 1] {
        let mut key = Key::new();
        key.queue([verified()]);
        let token = key
            .uv_token(protocol, PERM_MC, Some("example.com"))
            .unwrap();
        let r = key.seen().pop().unwrap();
        assert_eq!(r.operation, Operation::VerifyUser);
        assert!(r.verification_required);
        assert_eq!(r.rp_id.as_deref(), Some("example.com"));

        // pinUvAuthParam = authenticate(token, clientDataHash); rk allowed, no second prompt.
        let mut mc = MakeCred::new("example.com", "alice").rk();
        mc.pin_uv_auth = Some(token.param(&mc.client_data_hash));
        let reg = key.register(&mc).unwrap();
        assert!(
            key.seen().is_empty(),
            "protocol {protocol}: the token's presence was used"
        );
        assert!(reg.parsed.up() && reg.parsed.uv());
        reg.verify_self_attestation(&mc.client_data_hash);

        // The token has no ga permission.
        let mut ga = GetAssert::new("example.com");
        ga.pin_uv_auth = Some(token.param(&ga.client_data_hash));
        assert_eq!(key.assert(&ga).err(), Some(PIN_AUTH_INVALID));
        // And its mc permission was used up by the registration (§6.1.2, clear permissions).
        let mut mc = MakeCred::new("example.com", "bob").rk();
        mc.pin_uv_auth = Some(token.param(&mc.client_data_hash));
        assert_eq!(key.register(&mc).err(), Some(PIN_AUTH_INVALID));
        // A pinUvAuthParam over the wrong message is PIN_AUTH_INVALID too.
        key.queue([verified()]);
        let token = key.uv_token(protocol, PERM_MC | PERM_GA, None).unwrap();
        let mut mc = MakeCred::new("example.com", "carol").rk();
        mc.pin_uv_auth = Some(token.param(&random32()));
        assert_eq!(key.register(&mc).err(), Some(PIN_AUTH_INVALID));
        key.assert_script_used_up();
    }
}

#[test]
fn built_in_uv_token_with_ga_permission_is_bound_to_its_rp() {
    let mut key = Key::new();
    let regs = three_accounts(&mut key);
    key.seen();
    key.queue([verified()]);
    let token = key.uv_token(2, PERM_GA, Some("example.com")).unwrap();
    assert_eq!(key.seen().len(), 1);
    let mut ga = GetAssert::new("other.example");
    ga.pin_uv_auth = Some(token.param(&ga.client_data_hash));
    assert_eq!(
        key.assert(&ga).err(),
        Some(PIN_AUTH_INVALID),
        "bound to example.com"
    );
    let mut ga = GetAssert::new("example.com").allow(&regs[2].id());
    ga.pin_uv_auth = Some(token.param(&ga.client_data_hash));
    let a = key.assert(&ga).unwrap();
    a.verify(regs[2].key(), "example.com", &ga.client_data_hash);
    assert!(a.parsed.up() && a.parsed.uv());
    assert!(
        key.seen().is_empty(),
        "no second prompt within the user-present window"
    );
}

#[test]
fn failed_verifications_count_down_uv_retries_until_blocked() {
    let mut key = Key::new();
    assert_eq!(key.uv_retries(), 8);
    // A success resets the counter.
    key.queue([
        ApprovalOutcome::VerificationFailed,
        ApprovalOutcome::VerificationFailed,
        verified(),
    ]);
    assert_eq!(key.uv_token(2, PERM_MC, None).err(), Some(UV_INVALID));
    assert_eq!(key.uv_token(2, PERM_MC, None).err(), Some(UV_INVALID));
    assert_eq!(key.uv_retries(), 6);
    key.uv_token(2, PERM_MC, None).unwrap();
    assert_eq!(key.uv_retries(), 8);

    // makeCredential's built-in UV counts against the same counter (its status codes are
    // checked in built_in_uv_failure_inside_make_credential_and_get_assertion).
    key.queue([ApprovalOutcome::VerificationFailed]);
    assert_eq!(
        key.register(&MakeCred::new("example.com", "alice").rk().uv())
            .err(),
        Some(OPERATION_DENIED)
    );
    assert_eq!(key.uv_retries(), 7);
    for left in (1..7).rev() {
        key.queue([ApprovalOutcome::VerificationFailed]);
        assert_eq!(key.uv_token(1, PERM_GA, None).err(), Some(UV_INVALID));
        assert_eq!(key.uv_retries(), left);
    }
    key.queue([ApprovalOutcome::VerificationFailed]);
    assert_eq!(key.uv_token(2, PERM_MC, None).err(), Some(UV_BLOCKED));
    assert_eq!(key.uv_retries(), 0);
    key.seen();
    // Blocked: nobody is asked any more, and a power cycle does not help.
    key.auth.power_cycle();
    assert_eq!(key.uv_token(2, PERM_MC, None).err(), Some(UV_BLOCKED));
    // Inside makeCredential a blocked built-in UV is PIN_BLOCKED (§6.1.2 step 11.2).
    assert_eq!(
        key.register(&MakeCred::new("example.com", "alice").rk().uv())
            .err(),
        Some(PIN_BLOCKED)
    );
    assert!(key.seen().is_empty());
    key.assert_script_used_up();
}

fn pin_lifecycle(set_with: u64, change_with: u64, token_with: u64) {
    let mut key = Key::new();
    assert_eq!(
        key.pin_token(token_with, "1234", None).err(),
        Some(PIN_NOT_SET)
    );
    key.set_pin(set_with, "1234").unwrap();
    assert_eq!(option(&key.info(), "clientPin"), Some(true));
    assert_eq!(key.pin_retries(), (8, false));

    // getPinToken (legacy): mc and ga permissions.
    let token = key.pin_token(token_with, "1234", None).unwrap();
    let mut mc = MakeCred::new("example.com", "alice").rk();
    mc.pin_uv_auth = Some(token.param(&mc.client_data_hash));
    key.queue([present()]); // a PIN token carries no presence
    let reg = key.register(&mc).unwrap();
    assert!(reg.parsed.uv() && reg.parsed.up());

    // changePIN voids the old PIN and every token issued before.
    let old = key
        .pin_token(token_with, "1234", Some((PERM_GA, Some("example.com"))))
        .unwrap();
    key.change_pin(change_with, "1234", "ñandú-42").unwrap();
    let mut ga = GetAssert::new("example.com");
    ga.pin_uv_auth = Some(old.param(&ga.client_data_hash));
    assert_eq!(key.assert(&ga).err(), Some(PIN_AUTH_INVALID));
    assert_eq!(
        key.pin_token(token_with, "1234", None).err(),
        Some(PIN_INVALID)
    );
    let token = key
        .pin_token(token_with, "ñandú-42", Some((PERM_GA, Some("example.com"))))
        .unwrap();
    let mut ga = GetAssert::new("example.com");
    ga.pin_uv_auth = Some(token.param(&ga.client_data_hash));
    key.queue([present()]);
    let a = key.assert(&ga).unwrap();
    a.verify(reg.key(), "example.com", &ga.client_data_hash);
    assert!(a.parsed.uv());
    assert_eq!(a.user_name().as_deref(), Some("alice"));
    // A wrong PIN above cost one retry; the right one restored the counter.
    assert_eq!(key.pin_retries(), (8, false));
    key.assert_script_used_up();
}

#[test]
fn pin_set_change_and_token_protocol_2() {
    pin_lifecycle(2, 2, 2);
}

#[test]
fn pin_set_change_and_token_protocol_1() {
    pin_lifecycle(1, 1, 1);
}

#[test]
fn pin_protocols_mix() {
    pin_lifecycle(1, 2, 1);
    pin_lifecycle(2, 1, 2);
}

#[test]
fn pin_policy_and_malformed_pin_requests() {
    let mut key = Key::new();
    assert_eq!(
        key.set_pin(2, "123").err(),
        Some(PIN_POLICY_VIOLATION),
        "minimum 4 code points"
    );
    assert_eq!(
        key.set_pin(1, &"9".repeat(64)).err(),
        Some(PIN_POLICY_VIOLATION),
        "at most 63 bytes"
    );
    // A bad pinUvAuthParam on setPIN.
    let shared = key.key_agreement(2);
    let new_pin_enc = shared.encrypt(&padded("1234"));
    let r = key.client_pin(vec![
        (1, int(2)),
        (2, int(0x03)),
        (3, shared.cose.clone()),
        (4, bytes(&[0u8; 32])),
        (5, bytes(&new_pin_enc)),
    ]);
    assert_eq!(r.err(), Some(PIN_AUTH_INVALID));
    // Unsupported protocol, missing subcommand parameters, unknown subcommand.
    assert_eq!(
        key.client_pin(vec![(1, int(3)), (2, int(0x02))]).err(),
        Some(0x02)
    );
    assert_eq!(
        key.client_pin(vec![(1, int(2)), (2, int(0x03))]).err(),
        Some(MISSING_PARAMETER)
    );
    assert_eq!(
        key.client_pin(vec![(1, int(2)), (2, int(0x0F))]).err(),
        Some(0x3E)
    );
    assert_eq!(key.change_pin(2, "1234", "5678").err(), Some(PIN_NOT_SET));
    key.set_pin(2, "１２３４").unwrap(); // four full-width digits: 4 code points, 12 bytes
    key.pin_token(1, "１２３４", None).unwrap();
}

/// CTAP 2.1 §6.5.5.5 step 3: "If a PIN has already been set, authenticator returns
/// CTAP2_ERR_PIN_AUTH_INVALID error." (the engine returned NOT_ALLOWED before 7ece200).
#[test]
fn set_pin_twice_is_pin_auth_invalid() {
    let mut key = Key::new();
    key.set_pin(2, "1234").unwrap();
    assert_eq!(key.set_pin(2, "5678").err(), Some(PIN_AUTH_INVALID));
    key.pin_token(2, "1234", None).unwrap();
}

#[test]
fn three_wrong_pins_need_a_power_cycle() {
    let mut key = Key::new();
    key.set_pin(2, "1234").unwrap();
    assert_eq!(key.pin_token(2, "0000", None).err(), Some(PIN_INVALID));
    assert_eq!(key.pin_token(1, "0000", None).err(), Some(PIN_INVALID));
    assert_eq!(key.pin_token(2, "0000", None).err(), Some(PIN_AUTH_BLOCKED));
    assert_eq!(key.pin_retries(), (5, true));
    // Even the right PIN is refused until the power cycle, and costs no retry.
    assert_eq!(key.pin_token(2, "1234", None).err(), Some(PIN_AUTH_BLOCKED));
    assert_eq!(
        key.change_pin(2, "1234", "5678").err(),
        Some(PIN_AUTH_BLOCKED)
    );
    assert_eq!(key.pin_retries(), (5, true));
    key.auth.power_cycle();
    assert_eq!(key.pin_retries(), (5, false));
    key.pin_token(2, "1234", None).unwrap();
    assert_eq!(
        key.pin_retries(),
        (8, false),
        "a correct PIN restores the retries"
    );
}

#[test]
fn eight_wrong_pins_block_the_pin_until_reset() {
    let mut key = Key::new();
    key.set_pin(2, "1234").unwrap();
    let mut results = Vec::new();
    for attempt in 1..=8 {
        results.push(
            key.pin_token(2, &format!("{attempt:04}9"), None)
                .err()
                .unwrap(),
        );
        if attempt % 3 == 0 {
            key.auth.power_cycle();
        }
    }
    assert_eq!(
        results,
        [
            PIN_INVALID,
            PIN_INVALID,
            PIN_AUTH_BLOCKED,
            PIN_INVALID,
            PIN_INVALID,
            PIN_AUTH_BLOCKED,
            PIN_INVALID,
            PIN_BLOCKED
        ]
    );
    assert_eq!(key.pin_retries().0, 0);
    assert_eq!(key.pin_token(2, "1234", None).err(), Some(PIN_BLOCKED));
    key.auth.power_cycle();
    assert_eq!(key.pin_token(1, "1234", None).err(), Some(PIN_BLOCKED));
    assert_eq!(key.change_pin(2, "1234", "5678").err(), Some(PIN_BLOCKED));
    // Only a reset gives the key back.
    key.queue([present()]);
    key.call(CMD_RESET, None).unwrap();
    assert_eq!(option(&key.info(), "clientPin"), Some(false));
    key.set_pin(2, "5678").unwrap();
    assert_eq!(key.pin_retries(), (8, false));
}

#[test]
fn cred_protect_3_is_invisible_without_user_verification() {
    let mut key = Key::new();
    let protect = |mc: MakeCred| MakeCred {
        extensions: vec![("credProtect", int(3))],
        ..mc
    };
    key.queue([verified(), verified()]);
    let rk = key
        .register(&protect(MakeCred::new("example.com", "alice").rk().uv()))
        .unwrap();
    let nrk = key
        .register(&protect(MakeCred::new("example.com", "bob").uv()))
        .unwrap();
    for reg in [&rk, &nrk] {
        let ext = reg.parsed.extensions.as_ref().expect("extension outputs");
        assert_eq!(as_int(get_text(ext, "credProtect").unwrap()), 3);
    }
    key.seen();
    // Without UV: not found by discovery nor by ID, and nobody is bothered.
    assert_eq!(
        key.assert(&GetAssert::new("example.com")).err(),
        Some(NO_CREDENTIALS)
    );
    assert_eq!(
        key.assert(&GetAssert::new("example.com").allow(&rk.id()))
            .err(),
        Some(NO_CREDENTIALS)
    );
    assert_eq!(
        key.assert(&GetAssert::new("example.com").allow(&nrk.id()))
            .err(),
        Some(NO_CREDENTIALS)
    );
    assert!(key.seen().is_empty());
    // Nor does an excludeList reveal them without UV (§6.1.2 step 12).
    let mut mc = MakeCred::new("example.com", "dave");
    mc.exclude = vec![rk.id(), nrk.id()];
    key.queue([present()]);
    key.register(&mc).unwrap();
    // With UV they are there.
    for reg in [&rk, &nrk] {
        let ga = GetAssert::new("example.com").allow(&reg.id()).uv();
        key.queue([verified()]);
        key.assert(&ga)
            .unwrap()
            .verify(reg.key(), "example.com", &ga.client_data_hash);
    }
    key.queue([verified()]);
    assert_eq!(
        key.assert(&GetAssert::new("example.com").uv())
            .unwrap()
            .credential_id,
        rk.id()
    );
    key.assert_script_used_up();
}

#[test]
fn cred_protect_2_needs_uv_only_for_discovery() {
    let mut key = Key::new();
    let mut mc = MakeCred::new("example.com", "alice").rk().uv();
    mc.extensions = vec![("credProtect", int(2))];
    key.queue([verified()]);
    let reg = key.register(&mc).unwrap();
    assert_eq!(
        key.assert(&GetAssert::new("example.com")).err(),
        Some(NO_CREDENTIALS)
    );
    key.queue([present()]);
    key.assert(&GetAssert::new("example.com").allow(&reg.id()))
        .unwrap();
}

#[test]
fn excluded_credential_is_0x19_after_presence() {
    let mut key = Key::new();
    key.queue([present(), verified()]);
    let nrk = key
        .register(&MakeCred::new("example.com", "alice"))
        .unwrap();
    let rk = key
        .register(&MakeCred::new("example.com", "bob").rk().uv())
        .unwrap();
    for id in [nrk.id(), rk.id()] {
        let mut mc = MakeCred::new("example.com", "alice");
        mc.exclude = vec![random32().to_vec(), id];
        key.seen();
        // "regardless of whether user presence is obtained" (§6.1.2 step 12).
        key.queue([ApprovalOutcome::Denied]);
        assert_eq!(key.register(&mc).err(), Some(CREDENTIAL_EXCLUDED));
        assert_eq!(key.seen().len(), 1, "the user is asked before the answer");
    }
    // The same IDs for another RP exclude nothing.
    let mut mc = MakeCred::new("other.example", "alice");
    mc.exclude = vec![nrk.id(), rk.id()];
    key.queue([present()]);
    key.register(&mc).unwrap();
    key.assert_script_used_up();
}

#[test]
fn reset_within_ten_seconds_wipes_every_credential_and_the_pin() {
    let mut key = Key::new();
    key.queue([verified(), present()]);
    let rk = key
        .register(&MakeCred::new("example.com", "alice").rk().uv())
        .unwrap();
    let nrk = key.register(&MakeCred::new("example.com", "bob")).unwrap();
    key.set_pin(2, "1234").unwrap();
    // Denied: nothing happens.
    key.queue([ApprovalOutcome::Denied]);
    assert_eq!(key.call(CMD_RESET, None).err(), Some(OPERATION_DENIED));
    key.queue([present()]);
    key.assert(&GetAssert::new("example.com").allow(&nrk.id()))
        .unwrap();

    key.seen();
    key.queue([present()]);
    assert_eq!(key.call(CMD_RESET, None), Ok(Value::Null));
    assert_eq!(key.seen().pop().unwrap().operation, Operation::Reset);
    // Discoverable gone; non-discoverable ID no longer opens; PIN gone.
    assert_eq!(
        key.assert(&GetAssert::new("example.com").uv()).err(),
        Some(NO_CREDENTIALS)
    );
    assert_eq!(
        key.assert(&GetAssert::new("example.com").allow(&rk.id()))
            .err(),
        Some(NO_CREDENTIALS)
    );
    assert_eq!(
        key.assert(&GetAssert::new("example.com").allow(&nrk.id()))
            .err(),
        Some(NO_CREDENTIALS)
    );
    let mut mc = MakeCred::new("example.com", "bob");
    mc.exclude = vec![nrk.id(), rk.id()];
    key.queue([present()]);
    key.register(&mc).unwrap();
    assert_eq!(option(&key.info(), "clientPin"), Some(false));
    assert_eq!(key.pin_retries().0, 8);
    key.assert_script_used_up();
}

#[test]
fn reset_after_the_window_is_not_allowed_until_power_cycle() {
    let mut key = Key::new();
    std::thread::sleep(Duration::from_millis(10_300));
    assert_eq!(key.call(CMD_RESET, None).err(), Some(NOT_ALLOWED));
    assert!(key.seen().is_empty());
    key.auth.power_cycle();
    key.queue([present()]);
    assert_eq!(key.call(CMD_RESET, None), Ok(Value::Null));
}

// ---- U2F ------------------------------------------------------------------------------------

/// An extended-length APDU (how CTAPHID MSG carries U2F): CLA INS P1 P2 00 Lc Lc data 00 00.
fn apdu(ins: u8, p1: u8, data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u16).to_be_bytes();
    [
        &[0x00, ins, p1, 0x00, 0x00, len[0], len[1]][..],
        data,
        &[0x00, 0x00],
    ]
    .concat()
}

/// The length of the DER item at the start of `b`.
fn der_len(b: &[u8]) -> usize {
    assert_eq!(b[0], 0x30, "a DER SEQUENCE");
    match b[1] {
        n if n < 0x80 => 2 + n as usize,
        0x81 => 3 + b[2] as usize,
        0x82 => 4 + u16::from_be_bytes([b[2], b[3]]) as usize,
        n => panic!("DER length form {n:#x}"),
    }
}

struct U2fRegistration {
    public_key: p256::ecdsa::VerifyingKey,
    key_handle: Vec<u8>,
}

fn u2f_register(key: &mut Key, challenge: &[u8; 32], application: &[u8; 32]) -> U2fRegistration {
    key.queue([present()]);
    let (body, sw) = key.u2f(&apdu(0x01, 0x03, &[&challenge[..], application].concat()));
    assert_eq!(sw, 0x9000);
    assert_eq!(body[0], 0x05, "reserved byte");
    let user_key = &body[1..66];
    let public_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(user_key).unwrap();
    let kh_len = body[66] as usize;
    let key_handle = body[67..67 + kh_len].to_vec();
    let rest = &body[67 + kh_len..];
    let cert_len = der_len(rest);
    let cert = <x509_cert::Certificate as der::Decode>::from_der(&rest[..cert_len]).unwrap();
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let attestation_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(spki).unwrap();
    let signature = p256::ecdsa::Signature::from_der(&rest[cert_len..])
        .expect("DER signature, nothing after it");
    let signed = [&[0x00][..], application, challenge, &key_handle, user_key].concat();
    attestation_key
        .verify(&signed, &signature)
        .expect("U2F registration signature verifies");
    U2fRegistration {
        public_key,
        key_handle,
    }
}

fn u2f_authenticate_data(
    challenge: &[u8; 32],
    application: &[u8; 32],
    key_handle: &[u8],
) -> Vec<u8> {
    [
        &challenge[..],
        application,
        &[key_handle.len() as u8],
        key_handle,
    ]
    .concat()
}

#[test]
fn u2f_register_and_authenticate_signatures_verify() {
    let mut key = Key::new();
    let application = sha256(b"https://example.com");
    let reg = u2f_register(&mut key, &random32(), &application);
    assert_eq!(key.seen().pop().unwrap().operation, Operation::U2fRegister);

    let mut last = 0;
    for (p1, presence) in [(0x03u8, 0x01u8), (0x08, 0x00), (0x03, 0x01)] {
        let challenge = random32();
        if p1 == 0x03 {
            key.queue([present()]);
        }
        let (body, sw) = key.u2f(&apdu(
            0x02,
            p1,
            &u2f_authenticate_data(&challenge, &application, &reg.key_handle),
        ));
        assert_eq!(sw, 0x9000);
        assert_eq!(body[0], presence);
        let counter = u32::from_be_bytes(body[1..5].try_into().unwrap());
        assert!(counter > last, "U2F counter increases");
        last = counter;
        let signed = [&application[..], &body[..5], &challenge].concat();
        let sig = p256::ecdsa::Signature::from_der(&body[5..]).unwrap();
        reg.public_key
            .verify(&signed, &sig)
            .expect("U2F authentication signature verifies");
    }
    let seen = key.seen();
    assert_eq!(seen.len(), 2, "don't-enforce asks nobody");
    assert!(seen.iter().all(|r| r.operation == Operation::U2fSignIn));
    key.assert_script_used_up();

    // CTAP2 and U2F share the one counter: it keeps increasing across both.
    key.queue([present()]);
    let r = key
        .register(&MakeCred::new("example.com", "alice"))
        .unwrap();
    assert!(r.parsed.sign_count > last);
}

#[test]
fn u2f_check_only_bad_key_handle_and_refusals() {
    let mut key = Key::new();
    let application = sha256(b"https://example.com");
    let reg = u2f_register(&mut key, &random32(), &application);
    key.seen();
    let challenge = random32();
    let good = u2f_authenticate_data(&challenge, &application, &reg.key_handle);
    // check-only with our key handle: "conditions not satisfied", nobody asked.
    assert_eq!(key.u2f(&apdu(0x02, 0x07, &good)), (vec![], 0x6985));
    // Someone else's key handle, or ours for another application: wrong data.
    let mut flipped = reg.key_handle.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let bad = u2f_authenticate_data(&challenge, &application, &flipped);
    assert_eq!(key.u2f(&apdu(0x02, 0x07, &bad)), (vec![], 0x6A80));
    assert_eq!(key.u2f(&apdu(0x02, 0x03, &bad)), (vec![], 0x6A80));
    let other_app = u2f_authenticate_data(
        &challenge,
        &sha256(b"https://evil.example"),
        &reg.key_handle,
    );
    assert_eq!(key.u2f(&apdu(0x02, 0x07, &other_app)), (vec![], 0x6A80));
    let random_kh = u2f_authenticate_data(&challenge, &application, &[0x42; 64]);
    assert_eq!(key.u2f(&apdu(0x02, 0x03, &random_kh)), (vec![], 0x6A80));
    assert!(key.seen().is_empty());
    // Presence refused: conditions not satisfied.
    key.queue([ApprovalOutcome::Denied]);
    assert_eq!(key.u2f(&apdu(0x02, 0x03, &good)), (vec![], 0x6985));
    key.queue([ApprovalOutcome::TimedOut]);
    assert_eq!(key.u2f(&apdu(0x01, 0x03, &[0u8; 64])), (vec![], 0x6985));
    key.assert_script_used_up();
}

#[test]
fn u2f_version_and_malformed_apdus() {
    let mut key = Key::new();
    assert_eq!(
        key.u2f(&[0x00, 0x03, 0x00, 0x00]),
        (b"U2F_V2".to_vec(), 0x9000)
    );
    assert_eq!(
        key.u2f(&[0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00]),
        (b"U2F_V2".to_vec(), 0x9000)
    );
    assert_eq!(
        key.u2f(&[0x80, 0x03, 0x00, 0x00]).1,
        0x6E00,
        "CLA not supported"
    );
    assert_eq!(
        key.u2f(&[0x00, 0x55, 0x00, 0x00]).1,
        0x6D00,
        "INS not supported"
    );
    assert_eq!(key.u2f(&[0x00, 0x01]).1, 0x6700, "too short");
    assert_eq!(
        key.u2f(&apdu(0x01, 0x03, &[0u8; 63])).1,
        0x6700,
        "register needs 64 bytes"
    );
    assert_eq!(
        key.u2f(&apdu(0x02, 0x03, &[0u8; 64])).1,
        0x6700,
        "authenticate needs a key handle"
    );
    assert_eq!(key.u2f(&[]).1, 0x6700);
    assert!(key.seen().is_empty());
}

// ---- malformed CTAP2 requests -----------------------------------------------------------------

#[test]
fn malformed_requests_get_their_status_codes() {
    let mut key = Key::new();
    assert_eq!(decode_response(&key.raw(&[0x55])), Err(INVALID_COMMAND));
    assert_eq!(
        decode_response(&key.raw(&[0x03, 0xa0])),
        Err(INVALID_COMMAND),
        "0x03 is not a CTAP2 command"
    );
    assert_eq!(decode_response(&key.raw(&[])), Err(INVALID_LENGTH));
    // Garbage and truncated CBOR.
    assert_eq!(
        decode_response(&key.raw(&[CMD_MAKE_CREDENTIAL, 0xff, 0x00])),
        Err(INVALID_CBOR)
    );
    assert_eq!(
        decode_response(&key.raw(&[CMD_MAKE_CREDENTIAL, 0xa2, 0x01])),
        Err(INVALID_CBOR)
    );
    assert_eq!(
        decode_response(&key.raw(&[CMD_GET_ASSERTION, 0x1c])),
        Err(INVALID_CBOR)
    );
    assert_eq!(
        decode_response(&key.raw(&[CMD_CLIENT_PIN, 0xa1, 0x01, 0x02, 0x00])),
        Err(INVALID_CBOR),
        "trailing byte"
    );

    let good = MakeCred::new("example.com", "alice").to_cbor();
    let Value::Map(entries) = &good else {
        unreachable!()
    };
    let with = |key_: i64, value: Option<Value>| {
        let mut m: Vec<(Value, Value)> = entries
            .iter()
            .filter(|(k, _)| *k != int(key_))
            .cloned()
            .collect();
        if let Some(v) = value {
            m.push((int(key_), v));
        }
        Value::Map(m)
    };
    // Wrong types.
    assert_eq!(
        key.call(CMD_MAKE_CREDENTIAL, Some(&with(1, Some(text("hash"))))),
        Err(CBOR_UNEXPECTED_TYPE)
    );
    assert_eq!(
        key.call(
            CMD_MAKE_CREDENTIAL,
            Some(&with(2, Some(text("example.com"))))
        ),
        Err(CBOR_UNEXPECTED_TYPE)
    );
    assert_eq!(
        key.call(
            CMD_MAKE_CREDENTIAL,
            Some(&with(7, Some(tmap(vec![("rk", int(1))]))))
        ),
        Err(CBOR_UNEXPECTED_TYPE)
    );
    assert_eq!(
        key.call(CMD_MAKE_CREDENTIAL, Some(&Value::Array(vec![]))),
        Err(CBOR_UNEXPECTED_TYPE)
    );
    assert_eq!(
        key.call(
            CMD_GET_ASSERTION,
            Some(&imap(vec![(1, bytes(b"x")), (2, bytes(&[0; 32]))]))
        ),
        Err(CBOR_UNEXPECTED_TYPE)
    );
    // Missing parameters.
    assert_eq!(
        key.call(CMD_MAKE_CREDENTIAL, Some(&with(1, None))),
        Err(MISSING_PARAMETER)
    );
    assert_eq!(
        key.call(CMD_MAKE_CREDENTIAL, Some(&with(4, None))),
        Err(MISSING_PARAMETER)
    );
    assert_eq!(
        key.call(
            CMD_GET_ASSERTION,
            Some(&imap(vec![(1, text("example.com"))]))
        ),
        Err(MISSING_PARAMETER)
    );
    // A pinUvAuthParam without its protocol (§6.1.2 step 2).
    assert_eq!(
        key.call(CMD_MAKE_CREDENTIAL, Some(&with(8, Some(bytes(&[1; 32]))))),
        Err(MISSING_PARAMETER)
    );
    assert!(key.seen().is_empty());
}

#[test]
fn zero_length_pin_uv_auth_param_is_a_touch_probe() {
    let mut key = Key::new();
    let mut mc = MakeCred::new("example.com", "alice");
    mc.pin_uv_auth = Some((vec![], 2));
    key.queue([present()]);
    assert_eq!(key.register(&mc).err(), Some(PIN_NOT_SET));
    assert_eq!(key.seen().pop().unwrap().operation, Operation::Select);
    key.set_pin(2, "1234").unwrap();
    let mut ga = GetAssert::new("example.com");
    ga.pin_uv_auth = Some((vec![], 1));
    key.queue([present()]);
    assert_eq!(key.assert(&ga).err(), Some(PIN_INVALID));
}

// ---- extensions and credential management with the platform helper --------------------------

#[test]
fn hmac_secret_with_both_protocols() {
    let mut key = Key::new();
    let mut mc = MakeCred::new("example.com", "alice");
    mc.extensions = vec![("hmac-secret", Value::Bool(true))];
    key.queue([present()]);
    let reg = key.register(&mc).unwrap();
    let ext = reg.parsed.extensions.as_ref().unwrap();
    assert_eq!(get_text(ext, "hmac-secret"), Some(&Value::Bool(true)));

    let salt1 = random32();
    let salt2 = random32();
    let mut outputs = Vec::new();
    for (protocol, uv) in [(1u64, false), (2, false), (2, true), (1, true)] {
        let shared = key.key_agreement(protocol);
        let salt_enc = shared.encrypt(&[&salt1[..], &salt2].concat());
        let mut input = vec![
            (1, shared.cose.clone()),
            (2, bytes(&salt_enc)),
            (3, bytes(&shared.authenticate(&salt_enc))),
        ];
        if protocol == 2 {
            input.push((4, int(2)));
        }
        let mut ga = GetAssert::new("example.com").allow(&reg.id());
        ga.extensions = vec![("hmac-secret", imap(input))];
        ga.uv = Some(uv);
        key.queue([if uv { verified() } else { present() }]);
        let a = key.assert(&ga).unwrap();
        a.verify(reg.key(), "example.com", &ga.client_data_hash);
        let ext = a.parsed.extensions.as_ref().expect("hmac-secret output");
        let out = shared.decrypt(&as_bytes(get_text(ext, "hmac-secret").unwrap()));
        assert_eq!(out.len(), 64);
        outputs.push((uv, out));
    }
    // Deterministic per credential and UV state; different with and without UV (§12.5).
    assert_eq!(outputs[0].1, outputs[1].1);
    assert_eq!(outputs[2].1, outputs[3].1);
    assert_ne!(outputs[0].1, outputs[2].1);
    assert_ne!(&outputs[0].1[..32], &outputs[0].1[32..]);

    // A saltAuth that does not verify is rejected.
    let shared = key.key_agreement(2);
    let salt_enc = shared.encrypt(&salt1);
    let mut ga = GetAssert::new("example.com").allow(&reg.id());
    ga.extensions = vec![(
        "hmac-secret",
        imap(vec![
            (1, shared.cose.clone()),
            (2, bytes(&salt_enc)),
            (3, bytes(&[0u8; 32])),
            (4, int(2)),
        ]),
    )];
    key.queue([present()]);
    assert!(
        key.assert(&ga).is_err(),
        "a saltAuth that does not verify is refused"
    );
}

#[test]
fn credential_management_through_the_0x41_alias() {
    let mut key = Key::new();
    three_accounts(&mut key);
    key.set_pin(2, "1234").unwrap();
    let token = key.pin_token(2, "1234", Some((PERM_CM, None))).unwrap();
    // getCredsMetadata: pinUvAuthParam = authenticate(token, 0x01).
    let (param, protocol) = token.param(&[0x01]);
    let r = key
        .call(
            CMD_CRED_MGMT_PREVIEW,
            Some(&imap(vec![
                (1, int(1)),
                (3, int(protocol as i64)),
                (4, bytes(&param)),
            ])),
        )
        .unwrap();
    assert_eq!(as_int(get(&r, 1).unwrap()), 3);
    // enumerateCredentialsBegin for example.com: subCommandParams {1: rpIdHash}.
    let params = imap(vec![(1, bytes(&sha256(b"example.com")))]);
    let (param, _) = token.param(&[&[0x04][..], &encode(&params)].concat());
    let r = key
        .call(
            0x0A,
            Some(&imap(vec![
                (1, int(4)),
                (2, params),
                (3, int(2)),
                (4, bytes(&param)),
            ])),
        )
        .unwrap();
    assert_eq!(as_int(get(&r, 9).unwrap()), 3);
    PublicKey::from_cose(get(&r, 8).unwrap());
    let next = key
        .call(CMD_CRED_MGMT_PREVIEW, Some(&imap(vec![(1, int(5))])))
        .unwrap();
    assert!(get(&next, 6).is_some());
    // Without a token: PUAT_REQUIRED.
    assert_eq!(
        key.call(0x0A, Some(&imap(vec![(1, int(1))]))).err(),
        Some(PUAT_REQUIRED)
    );
}

#[test]
fn get_next_assertion_without_a_pending_list_is_not_allowed() {
    let mut key = Key::new();
    assert_eq!(key.next_assertion().err(), Some(NOT_ALLOWED));
}

#[test]
fn registering_the_same_account_again_replaces_its_discoverable_credential() {
    let mut key = Key::new();
    key.queue([verified(), verified(), verified()]);
    let old = key
        .register(&MakeCred::new("example.com", "alice").rk().uv())
        .unwrap();
    let other = key
        .register(&MakeCred::new("example.com", "bob").rk().uv())
        .unwrap();
    let new = key
        .register(&MakeCred::new("example.com", "alice").rk().uv())
        .unwrap();
    assert_ne!(old.id(), new.id());
    // §6.1.2 step 17: "If a credential for the same rp.id and account ID already exists on the
    // authenticator, overwrite that credential."
    key.queue([present()]);
    let first = key.assert(&GetAssert::new("example.com")).unwrap();
    assert_eq!(first.number_of_credentials, Some(2));
    let second = key.next_assertion().unwrap();
    let mut ids = vec![first.credential_id, second.credential_id];
    ids.sort();
    let mut expected = vec![new.id(), other.id()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(
        key.assert(&GetAssert::new("example.com").allow(&old.id()))
            .err(),
        Some(NO_CREDENTIALS)
    );
}

#[test]
fn large_blob_key_and_cred_blob_come_back_with_the_assertion() {
    let mut key = Key::new();
    let mut mc = MakeCred::new("example.com", "alice").rk().uv();
    mc.extensions = vec![
        ("largeBlobKey", Value::Bool(true)),
        ("credBlob", bytes(b"sixteen byte blb")),
    ];
    key.queue([verified()]);
    let reg = key.register(&mc).unwrap();
    let lbk = reg
        .large_blob_key
        .clone()
        .expect("largeBlobKey in the makeCredential response");
    assert_eq!(lbk.len(), 32);
    let ext = reg.parsed.extensions.as_ref().unwrap();
    assert_eq!(get_text(ext, "credBlob"), Some(&Value::Bool(true)));
    assert!(
        get_text(ext, "largeBlobKey").is_none(),
        "largeBlobKey is not an authData extension"
    );

    let mut ga = GetAssert::new("example.com").uv();
    ga.extensions = vec![
        ("largeBlobKey", Value::Bool(true)),
        ("credBlob", Value::Bool(true)),
    ];
    key.queue([verified()]);
    let v = key.call(CMD_GET_ASSERTION, Some(&ga.to_cbor())).unwrap();
    assert_eq!(get(&v, 7).map(as_bytes), Some(lbk));
    let a = Assertion::parse(&v);
    a.verify(reg.key(), "example.com", &ga.client_data_hash);
    assert_eq!(
        get_text(a.parsed.extensions.as_ref().unwrap(), "credBlob"),
        Some(&bytes(b"sixteen byte blb"))
    );
    // Not asked for: not given.
    key.queue([verified()]);
    let v = key
        .call(
            CMD_GET_ASSERTION,
            Some(&GetAssert::new("example.com").uv().to_cbor()),
        )
        .unwrap();
    assert!(get(&v, 7).is_none());
    assert_eq!(
        AuthData::parse(&as_bytes(get(&v, 2).unwrap())).flags & FLAG_ED,
        0
    );
}

#[test]
fn u2f_and_ctap2_credentials_are_interchangeable() {
    // A U2F registration whose application parameter is SHA-256(rp id) signs CTAP2 assertions
    // (how platforms use U2F credentials through CTAP2), and an ES256 CTAP2 non-discoverable
    // credential answers U2F authenticate.
    let mut key = Key::new();
    let app = sha256(b"example.com");
    let u2f = u2f_register(&mut key, &random32(), &app);
    let ga = GetAssert::new("example.com").allow(&u2f.key_handle);
    key.queue([present()]);
    let a = key.assert(&ga).unwrap();
    a.verify(
        &PublicKey::Es256(u2f.public_key),
        "example.com",
        &ga.client_data_hash,
    );

    key.queue([present()]);
    let reg = key
        .register(&MakeCred::new("example.com", "alice").alg(ES256))
        .unwrap();
    let challenge = random32();
    key.queue([present()]);
    let (body, sw) = key.u2f(&apdu(
        0x02,
        0x03,
        &u2f_authenticate_data(&challenge, &app, &reg.id()),
    ));
    assert_eq!(sw, 0x9000);
    let signed = [&app[..], &body[..5], &challenge].concat();
    assert!(reg.key().verify(&signed, &body[5..]));
    // An EdDSA credential cannot answer U2F (P-256 only): wrong data.
    key.queue([present()]);
    let ed = key
        .register(&MakeCred::new("example.com", "bob").alg(EDDSA))
        .unwrap();
    assert_eq!(
        key.u2f(&apdu(
            0x02,
            0x07,
            &u2f_authenticate_data(&challenge, &app, &ed.id())
        ))
        .1,
        0x6A80
    );
    key.assert_script_used_up();
}

/// CTAP 2.1 §6.1.2 step 11.2 and §6.2.2 step 6.2: a failed performBuiltInUv inside mc/ga is
/// USER_ACTION_TIMEOUT on timeout, PIN_BLOCKED once uvRetries is 0, OPERATION_DENIED otherwise;
/// UV_INVALID / UV_BLOCKED are clientPIN 0x06's (the engine used those before 7ece200).
#[test]
fn built_in_uv_failure_inside_make_credential_and_get_assertion() {
    let mut key = Key::new();
    key.queue([verified()]);
    let reg = key
        .register(&MakeCred::new("example.com", "alice").rk().uv())
        .unwrap();

    key.queue([ApprovalOutcome::VerificationFailed]);
    assert_eq!(
        key.register(&MakeCred::new("example.com", "bob").rk().uv())
            .err(),
        Some(OPERATION_DENIED)
    );
    assert_eq!(key.uv_retries(), 7, "performBuiltInUv counts the failure");
    key.queue([ApprovalOutcome::VerificationFailed]);
    assert_eq!(
        key.assert(&GetAssert::new("example.com").allow(&reg.id()).uv())
            .err(),
        Some(OPERATION_DENIED)
    );
    assert_eq!(key.uv_retries(), 6);
    key.queue([ApprovalOutcome::TimedOut]);
    assert_eq!(
        key.assert(&GetAssert::new("example.com").uv()).err(),
        Some(USER_ACTION_TIMEOUT)
    );
    for _ in 0..5 {
        key.queue([ApprovalOutcome::VerificationFailed]);
        assert_eq!(
            key.register(&MakeCred::new("example.com", "bob").rk().uv())
                .err(),
            Some(OPERATION_DENIED)
        );
    }
    assert_eq!(key.uv_retries(), 1);
    key.queue([ApprovalOutcome::VerificationFailed]);
    assert_eq!(
        key.assert(&GetAssert::new("example.com").uv()).err(),
        Some(PIN_BLOCKED)
    );
    assert_eq!(key.uv_retries(), 0);
}

/// CTAP 2.1 §6.5.5.7.2 / §6.5.5.7.3 step 4: "Undefined permissions present in the permissions
/// are ignored" (the engine answered UNAUTHORIZED_PERMISSION before 7ece200).
#[test]
fn undefined_permission_bits_are_ignored() {
    let mut key = Key::new();
    key.set_pin(2, "1234").unwrap();
    let token = key
        .pin_token(2, "1234", Some((PERM_MC | 0x80, Some("example.com"))))
        .unwrap();
    let mut mc = MakeCred::new("example.com", "alice").rk();
    mc.pin_uv_auth = Some(token.param(&mc.client_data_hash));
    key.queue([present()]);
    key.register(&mc).unwrap();
    key.queue([verified()]);
    key.uv_token(1, PERM_GA | 0x80, None).unwrap();
}

/// CTAP 2.1 §6.2.2: the token's flags and permissions are cleared in the user-presence step,
/// so a silent (up=false) assertion leaves the token usable; a normal one spends it.
#[test]
fn silent_assertion_does_not_spend_the_token() {
    let mut key = Key::new();
    key.queue([present()]);
    let reg = key
        .register(&MakeCred::new("example.com", "alice"))
        .unwrap();
    key.queue([verified()]);
    let token = key.uv_token(2, PERM_GA, Some("example.com")).unwrap();
    key.seen();

    let mut silent = GetAssert::new("example.com").allow(&reg.id());
    silent.up = Some(false);
    silent.pin_uv_auth = Some(token.param(&silent.client_data_hash));
    let a = key.assert(&silent).unwrap();
    a.verify(reg.key(), "example.com", &silent.client_data_hash);
    assert!(
        !a.parsed.up() && a.parsed.uv(),
        "silent: UV from the token, no UP"
    );

    let mut ga = GetAssert::new("example.com").allow(&reg.id());
    ga.pin_uv_auth = Some(token.param(&ga.client_data_hash));
    let a = key.assert(&ga).unwrap();
    assert!(a.parsed.up() && a.parsed.uv());
    assert!(key.seen().is_empty(), "presence came from the token");

    let mut again = GetAssert::new("example.com").allow(&reg.id());
    again.pin_uv_auth = Some(token.param(&again.client_data_hash));
    assert_eq!(
        key.assert(&again).err(),
        Some(PIN_AUTH_INVALID),
        "spent by the assertion with up"
    );
}

/// CTAP 2.1 §12.1: a credProtect userVerificationRequired credential is never usable over U2F
/// (which cannot verify the user). Its ID is an unknown key handle whatever P1 asks, and the
/// user is never asked to touch for it: no approval is scripted, so a prompt would panic.
#[test]
fn u2f_never_uses_or_prompts_for_a_cred_protect_3_credential() {
    let mut key = Key::new();
    let app = sha256(b"example.com");
    let mut mc = MakeCred::new("example.com", "alice").alg(ES256);
    mc.extensions = vec![("credProtect", int(3))];
    key.queue([present()]);
    let reg = key.register(&mc).unwrap();
    for p1 in [0x03, 0x07, 0x08] {
        let data = u2f_authenticate_data(&random32(), &app, &reg.id());
        assert_eq!(key.u2f(&apdu(0x02, p1, &data)).1, 0x6A80, "P1 {p1:#04x}");
    }
    key.assert_script_used_up();
}

/// Config::builtin_uv = false wins over an Approver that could verify: no `uv` in getInfo,
/// clientPIN 0x06 and 0x07 are INVALID_SUBCOMMAND (§6.5.5.7.3), `uv` = true is
/// INVALID_OPTION (§6.1.2 step 5), and nobody is asked.
#[test]
fn builtin_uv_off_is_a_pin_only_key() {
    let master = MasterKey::generate();
    let config = Config {
        builtin_uv: false,
        ..Config::default()
    };
    let mut key = Key::with_config(
        Store::open_in_memory(&master).unwrap(),
        &master,
        true,
        config,
    );
    let info = key.info();
    assert_eq!(option(&info, "uv"), None);
    assert!(get(&info, 0x11).is_none() && get(&info, 0x12).is_none());
    assert_eq!(
        key.uv_token(2, PERM_MC, Some("example.com")).err(),
        Some(0x3E)
    );
    assert_eq!(key.client_pin(vec![(2, int(0x07))]).err(), Some(0x3E));
    assert_eq!(
        key.register(&MakeCred::new("example.com", "alice").uv())
            .err(),
        Some(0x2C)
    );
    key.assert_script_used_up();
}
