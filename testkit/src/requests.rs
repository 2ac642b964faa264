//! authenticatorMakeCredential and authenticatorGetAssertion as a platform (browser, OS) sends
//! them: the command byte, then CTAP2-canonical CBOR. Written apart from the engine's own
//! decoders, so tests do not check the engine against itself.
//!
//! Parameter names and integer keys are those of CTAP 2.1 §6.1 (authenticatorMakeCredential)
//! and §6.2 (authenticatorGetAssertion). Every map is written in the canonical key order of
//! CTAP 2.1 §8 (integer keys before text keys; then shorter encodings first; then bytewise).
//!
//! The fields are public so that a test can set any parameter, or build a malformed request
//! from [`MakeCredential::to_cbor`].

use ciborium::value::Value;

use crate::cbor::{bytes, encode, sort_canonically, text};
use crate::command;
use crate::cose::{EDDSA, ES256};
use crate::{random32, sha256};

/// authenticatorMakeCredential's parameter keys (CTAP 2.1 §6.1).
mod make_credential {
    pub const CLIENT_DATA_HASH: u8 = 0x01;
    pub const RP: u8 = 0x02;
    pub const USER: u8 = 0x03;
    pub const PUB_KEY_CRED_PARAMS: u8 = 0x04;
    pub const EXCLUDE_LIST: u8 = 0x05;
    pub const EXTENSIONS: u8 = 0x06;
    pub const OPTIONS: u8 = 0x07;
    pub const PIN_UV_AUTH_PARAM: u8 = 0x08;
    pub const PIN_UV_AUTH_PROTOCOL: u8 = 0x09;
}

/// authenticatorGetAssertion's parameter keys (CTAP 2.1 §6.2).
mod get_assertion {
    pub const RP_ID: u8 = 0x01;
    pub const CLIENT_DATA_HASH: u8 = 0x02;
    pub const ALLOW_LIST: u8 = 0x03;
    pub const EXTENSIONS: u8 = 0x04;
    pub const OPTIONS: u8 = 0x05;
    pub const PIN_UV_AUTH_PARAM: u8 = 0x06;
    pub const PIN_UV_AUTH_PROTOCOL: u8 = 0x07;
}

/// authenticatorLargeBlobs' parameter keys (CTAP 2.1 §6.10.2).
mod large_blobs {
    pub const GET: u8 = 0x01;
    pub const SET: u8 = 0x02;
    pub const OFFSET: u8 = 0x03;
    pub const LENGTH: u8 = 0x04;
    pub const PIN_UV_AUTH_PARAM: u8 = 0x05;
    pub const PIN_UV_AUTH_PROTOCOL: u8 = 0x06;
}

/// The only credential type WebAuthn defines (PublicKeyCredentialType).
const PUBLIC_KEY: &str = "public-key";

/// pinUvAuthParam and the pinUvAuthProtocol it was made with.
pub type PinUvAuth = (Vec<u8>, u64);

/// authenticatorMakeCredential (CTAP 2.1 §6.1) as a platform sends it.
#[derive(Clone, Debug)]
pub struct MakeCredential {
    pub client_data_hash: Vec<u8>,
    pub rp_id: String,
    pub rp_name: Option<String>,
    pub user_id: Vec<u8>,
    pub user_name: String,
    pub user_display_name: Option<String>,
    /// pubKeyCredParams: COSE algorithms in preference order.
    pub algs: Vec<i64>,
    /// excludeList: credential IDs.
    pub exclude_list: Vec<Vec<u8>>,
    /// Extension inputs by identifier (sent in canonical order whatever the order here).
    pub extensions: Vec<(&'static str, Value)>,
    pub rk: Option<bool>,
    pub uv: Option<bool>,
    pub pin_uv_auth: Option<PinUvAuth>,
}

impl MakeCredential {
    /// Registers `user_name` at `rp_id`: clientDataHash 32 zero bytes, user id the name's UTF-8
    /// bytes, ES256 only, no options (the authenticator's defaults). Deterministic, for tests
    /// that compare bytes or do not read the response.
    pub fn new(rp_id: impl Into<String>, user_name: impl Into<String>) -> Self {
        let user_name = user_name.into();
        Self {
            client_data_hash: vec![0; 32],
            rp_id: rp_id.into(),
            rp_name: None,
            user_id: user_name.as_bytes().to_vec(),
            user_name,
            user_display_name: None,
            algs: vec![ES256],
            exclude_list: Vec::new(),
            extensions: Vec::new(),
            rk: None,
            uv: None,
            pin_uv_auth: None,
        }
    }

    /// What a browser sends for a WebAuthn create(): a fresh random clientDataHash, rp.name
    /// `"{rp_id} (name)"`, user.id the first 16 bytes of SHA-256(`user_name`), displayName
    /// `"{user_name} display"`, ES256 then EdDSA; no options.
    pub fn typical(rp_id: &str, user_name: &str) -> Self {
        Self {
            client_data_hash: random32().to_vec(),
            rp_name: Some(format!("{rp_id} (name)")),
            user_id: sha256(user_name.as_bytes())[..16].to_vec(),
            user_display_name: Some(format!("{user_name} display")),
            algs: vec![ES256, EDDSA],
            ..Self::new(rp_id, user_name)
        }
    }

    pub fn client_data_hash(mut self, hash: impl Into<Vec<u8>>) -> Self {
        self.client_data_hash = hash.into();
        self
    }

    /// user.id
    pub fn user_id(mut self, id: impl Into<Vec<u8>>) -> Self {
        self.user_id = id.into();
        self
    }

    /// rp.name
    pub fn rp_name(mut self, name: impl Into<String>) -> Self {
        self.rp_name = Some(name.into());
        self
    }

    /// user.displayName
    pub fn user_display_name(mut self, name: impl Into<String>) -> Self {
        self.user_display_name = Some(name.into());
        self
    }

    /// pubKeyCredParams: one `public-key` entry per COSE algorithm, in preference order.
    pub fn algs(mut self, algs: impl Into<Vec<i64>>) -> Self {
        self.algs = algs.into();
        self
    }

    /// options.rk: a discoverable credential.
    pub fn rk(mut self, rk: bool) -> Self {
        self.rk = Some(rk);
        self
    }

    /// options.uv
    pub fn uv(mut self, uv: bool) -> Self {
        self.uv = Some(uv);
        self
    }

    /// The parameters' CBOR map.
    pub fn to_cbor(&self) -> Value {
        use make_credential::*;
        let rp = [
            ("id", Some(text(&self.rp_id))),
            ("name", self.rp_name.as_deref().map(text)),
        ];
        let user = [
            ("id", Some(bytes(&self.user_id))),
            ("name", Some(text(&self.user_name))),
            ("displayName", self.user_display_name.as_deref().map(text)),
        ];
        let algs = self.algs.iter().map(|&alg| public_key("alg", alg.into()));
        let (param, protocol) = pin_uv_auth(&self.pin_uv_auth);
        params([
            (CLIENT_DATA_HASH, Some(bytes(&self.client_data_hash))),
            (RP, Some(text_map(&rp))),
            (USER, Some(text_map(&user))),
            (PUB_KEY_CRED_PARAMS, Some(Value::Array(algs.collect()))),
            (EXCLUDE_LIST, descriptors(&self.exclude_list)),
            (EXTENSIONS, extensions(&self.extensions)),
            (OPTIONS, options(&[("rk", self.rk), ("uv", self.uv)])),
            (PIN_UV_AUTH_PARAM, param),
            (PIN_UV_AUTH_PROTOCOL, protocol),
        ])
    }

    /// The command byte followed by the parameters' CBOR map.
    pub fn encode(&self) -> Vec<u8> {
        [&[command::MAKE_CREDENTIAL][..], &encode(&self.to_cbor())].concat()
    }
}

/// authenticatorGetAssertion (CTAP 2.1 §6.2) as a platform sends it.
#[derive(Clone, Debug)]
pub struct GetAssertion {
    pub rp_id: String,
    pub client_data_hash: Vec<u8>,
    /// allowList: credential IDs.
    pub allow_list: Vec<Vec<u8>>,
    /// Extension inputs by identifier (sent in canonical order whatever the order here).
    pub extensions: Vec<(&'static str, Value)>,
    pub up: Option<bool>,
    pub uv: Option<bool>,
    pub pin_uv_auth: Option<PinUvAuth>,
}

impl GetAssertion {
    /// Signs in at `rp_id`: clientDataHash 32 zero bytes, no allowList (discoverable
    /// credentials), no options (the authenticator's defaults).
    pub fn new(rp_id: impl Into<String>) -> Self {
        Self {
            rp_id: rp_id.into(),
            client_data_hash: vec![0; 32],
            allow_list: Vec::new(),
            extensions: Vec::new(),
            up: None,
            uv: None,
            pin_uv_auth: None,
        }
    }

    /// What a browser sends for a WebAuthn get(): as [`GetAssertion::new`] with a fresh
    /// random clientDataHash.
    pub fn typical(rp_id: &str) -> Self {
        Self::new(rp_id).client_data_hash(random32())
    }

    pub fn client_data_hash(mut self, hash: impl Into<Vec<u8>>) -> Self {
        self.client_data_hash = hash.into();
        self
    }

    /// Adds a `public-key` credential id to allowList.
    pub fn allow(mut self, credential_id: impl AsRef<[u8]>) -> Self {
        self.allow_list.push(credential_id.as_ref().to_vec());
        self
    }

    /// options.uv
    pub fn uv(mut self, uv: bool) -> Self {
        self.uv = Some(uv);
        self
    }

    /// The parameters' CBOR map.
    pub fn to_cbor(&self) -> Value {
        use get_assertion::*;
        let (param, protocol) = pin_uv_auth(&self.pin_uv_auth);
        params([
            (RP_ID, Some(text(&self.rp_id))),
            (CLIENT_DATA_HASH, Some(bytes(&self.client_data_hash))),
            (ALLOW_LIST, descriptors(&self.allow_list)),
            (EXTENSIONS, extensions(&self.extensions)),
            (OPTIONS, options(&[("up", self.up), ("uv", self.uv)])),
            (PIN_UV_AUTH_PARAM, param),
            (PIN_UV_AUTH_PROTOCOL, protocol),
        ])
    }

    /// The command byte followed by the parameters' CBOR map.
    pub fn encode(&self) -> Vec<u8> {
        [&[command::GET_ASSERTION][..], &encode(&self.to_cbor())].concat()
    }
}

/// A map of text keys, absent values left out. Callers list the keys in canonical order.
fn text_map(fields: &[(&str, Option<Value>)]) -> Value {
    let present = fields
        .iter()
        .filter_map(|(k, v)| Some((text(k), v.clone()?)));
    Value::Map(present.collect())
}

/// `{key: value, "type": "public-key"}`: PublicKeyCredentialParameters (key "alg") or
/// PublicKeyCredentialDescriptor (key "id"); both keys sort before "type".
fn public_key(key: &str, value: Value) -> Value {
    Value::Map(vec![(text(key), value), (text("type"), text(PUBLIC_KEY))])
}

/// A list of PublicKeyCredentialDescriptors, or nothing when there are no IDs.
fn descriptors(ids: &[Vec<u8>]) -> Option<Value> {
    let list = ids.iter().map(|id| public_key("id", bytes(id)));
    (!ids.is_empty()).then(|| Value::Array(list.collect()))
}

/// The extensions map in canonical key order, or nothing when there are none.
fn extensions(inputs: &[(&str, Value)]) -> Option<Value> {
    let mut entries: Vec<_> = inputs.iter().map(|(k, v)| (text(k), v.clone())).collect();
    sort_canonically(&mut entries);
    (!entries.is_empty()).then_some(Value::Map(entries))
}

/// The options map of the flags that are set, or nothing when none is. Callers list the
/// flags in canonical order.
fn options(flags: &[(&str, Option<bool>)]) -> Option<Value> {
    let set: Vec<_> = flags
        .iter()
        .filter_map(|&(k, v)| Some((text(k), Value::Bool(v?))))
        .collect();
    (!set.is_empty()).then_some(Value::Map(set))
}

/// pinUvAuthParam and pinUvAuthProtocol as two parameters.
/// authenticatorLargeBlobs (CTAP 2.1 §6.10) as a platform sends it: a read of `get` bytes or
/// a write of the fragment `set`, at `offset`; `length` is the whole array's, sent with the
/// first fragment only.
#[derive(Clone, Debug, Default)]
pub struct LargeBlobs {
    pub get: Option<u64>,
    pub set: Option<Vec<u8>>,
    pub offset: u64,
    pub length: Option<u64>,
    pub pin_uv_auth: Option<PinUvAuth>,
}

impl LargeBlobs {
    /// Reads up to `count` bytes of the serialized array from `offset`.
    pub fn get(offset: u64, count: u64) -> Self {
        Self {
            get: Some(count),
            offset,
            ..Self::default()
        }
    }

    /// Writes `fragment` at `offset`; at offset 0 `length` announces the array's total length.
    pub fn set(offset: u64, fragment: impl Into<Vec<u8>>, length: Option<u64>) -> Self {
        Self {
            set: Some(fragment.into()),
            offset,
            length,
            ..Self::default()
        }
    }

    pub fn to_cbor(&self) -> Value {
        use large_blobs::*;
        let (param, protocol) = pin_uv_auth(&self.pin_uv_auth);
        params([
            (GET, self.get.map(Value::from)),
            (SET, self.set.as_deref().map(bytes)),
            (OFFSET, Some(self.offset.into())),
            (LENGTH, self.length.map(Value::from)),
            (PIN_UV_AUTH_PARAM, param),
            (PIN_UV_AUTH_PROTOCOL, protocol),
        ])
    }

    /// The command byte, then the CBOR parameters.
    pub fn encode(&self) -> Vec<u8> {
        [vec![command::LARGE_BLOBS], encode(&self.to_cbor())].concat()
    }
}

fn pin_uv_auth(auth: &Option<PinUvAuth>) -> (Option<Value>, Option<Value>) {
    match auth {
        Some((param, protocol)) => (Some(bytes(param)), Some((*protocol).into())),
        None => (None, None),
    }
}

/// The map of the present parameters (listed by the callers in ascending order).
fn params<const N: usize>(params: [(u8, Option<Value>); N]) -> Value {
    let present = params
        .into_iter()
        .filter_map(|(k, v)| Some((Value::from(k), v?)));
    Value::Map(present.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor::{check_canonical_order, take_canonical};

    /// The command byte and the decoded parameters, after checking they are canonical.
    fn decode(request: &[u8]) -> (u8, Vec<(Value, Value)>) {
        let mut body = &request[1..];
        let value = take_canonical(&mut body);
        assert!(body.is_empty(), "nothing after the parameters");
        match value {
            Value::Map(entries) => (request[0], entries),
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    #[should_panic(expected = "out of canonical order")]
    fn the_canonical_check_refuses_longer_keys_first() {
        check_canonical_order(&Value::Map(vec![
            (text("name"), text("a")),
            (text("id"), text("b")),
        ]));
    }

    fn get(map: &[(Value, Value)], key: impl Into<Value>) -> Option<&Value> {
        let key = key.into();
        map.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    fn map(value: Option<&Value>) -> &[(Value, Value)] {
        match value {
            Some(Value::Map(entries)) => entries,
            other => panic!("not a map: {other:?}"),
        }
    }

    fn keys(map: &[(Value, Value)]) -> Vec<Value> {
        map.iter().map(|(k, _)| k.clone()).collect()
    }

    #[test]
    fn make_credential_defaults() {
        let (command, params) = decode(&MakeCredential::new("example.com", "anna").encode());
        assert_eq!(command, 0x01);
        assert_eq!(keys(&params), [1, 2, 3, 4].map(Value::from), "no options");
        assert_eq!(get(&params, 1), Some(&Value::Bytes(vec![0; 32])));
        assert_eq!(map(get(&params, 2)), [(text("id"), text("example.com"))]);
        let user = [
            (text("id"), Value::Bytes(b"anna".to_vec())),
            (text("name"), text("anna")),
        ];
        assert_eq!(map(get(&params, 3)), user);
        let es256 = Value::Map(vec![
            (text("alg"), (-7).into()),
            (text("type"), text("public-key")),
        ]);
        assert_eq!(get(&params, 4), Some(&Value::Array(vec![es256])));
    }

    #[test]
    fn make_credential_every_parameter() {
        let request = MakeCredential::new("example.com", "alice")
            .client_data_hash([7; 32])
            .rp_name("The Site")
            .user_id([1, 2, 3])
            .user_display_name("Alice")
            .algs([-8, -7])
            .rk(true)
            .uv(false)
            .encode();
        let (command, params) = decode(&request);
        assert_eq!(command, 0x01);
        assert_eq!(keys(&params), [1, 2, 3, 4, 7].map(Value::from));
        assert_eq!(get(&params, 1), Some(&Value::Bytes(vec![7; 32])));
        let rp = map(get(&params, 2));
        assert_eq!(
            rp,
            [
                (text("id"), text("example.com")),
                (text("name"), text("The Site"))
            ]
        );
        let user = map(get(&params, 3));
        assert_eq!(keys(user), ["id", "name", "displayName"].map(text));
        assert_eq!(get(user, "id"), Some(&Value::Bytes(vec![1, 2, 3])));
        assert_eq!(get(user, "name"), Some(&text("alice")));
        assert_eq!(get(user, "displayName"), Some(&text("Alice")));
        let Some(Value::Array(algs)) = get(&params, 4) else {
            panic!("pubKeyCredParams")
        };
        let algs: Vec<_> = algs
            .iter()
            .map(|p| get(map(Some(p)), "alg").cloned())
            .collect();
        assert_eq!(algs, [Some((-8).into()), Some((-7).into())]);
        let options = map(get(&params, 7));
        assert_eq!(
            options,
            [
                (text("rk"), Value::Bool(true)),
                (text("uv"), Value::Bool(false))
            ]
        );
    }

    #[test]
    fn get_assertion_bytes_are_the_canonical_encoding() {
        let request = GetAssertion::new("example.com")
            .client_data_hash([0x33; 32])
            .encode();
        let mut expected = vec![0x02, 0xa2, 0x01, 0x6b];
        expected.extend_from_slice(b"example.com");
        expected.extend_from_slice(&[0x02, 0x58, 0x20]);
        expected.extend_from_slice(&[0x33; 32]);
        assert_eq!(request, expected);
        decode(&request);
    }

    #[test]
    fn get_assertion_every_parameter() {
        let request = GetAssertion::new("example.com")
            .client_data_hash(vec![9; 32])
            .allow(vec![1, 1])
            .allow([2; 16])
            .uv(false)
            .encode();
        let (command, params) = decode(&request);
        assert_eq!(command, 0x02);
        assert_eq!(keys(&params), [1, 2, 3, 5].map(Value::from));
        assert_eq!(get(&params, 1), Some(&text("example.com")));
        assert_eq!(get(&params, 2), Some(&Value::Bytes(vec![9; 32])));
        let descriptor = |id: Vec<u8>| {
            Value::Map(vec![
                (text("id"), Value::Bytes(id)),
                (text("type"), text("public-key")),
            ])
        };
        let allow = Value::Array(vec![descriptor(vec![1, 1]), descriptor(vec![2; 16])]);
        assert_eq!(get(&params, 3), Some(&allow));
        let options = map(get(&params, 5));
        assert_eq!(options, [(text("uv"), Value::Bool(false))]);
    }

    #[test]
    fn only_the_options_set_are_sent() {
        let (_, params) = decode(&GetAssertion::new("example.com").uv(true).encode());
        assert_eq!(keys(&params), [1, 2, 5].map(Value::from));
        assert_eq!(map(get(&params, 5)), [(text("uv"), Value::Bool(true))]);
        let (_, params) = decode(&MakeCredential::new("example.com", "anna").uv(true).encode());
        assert_eq!(map(get(&params, 7)), [(text("uv"), Value::Bool(true))]);
    }

    #[test]
    fn exclude_list_extensions_and_pin_uv_auth_have_their_keys() {
        let mut mc = MakeCredential::new("example.com", "anna");
        mc.exclude_list = vec![vec![1; 16]];
        mc.extensions = vec![
            ("largeBlobKey", Value::Bool(true)),
            ("credBlob", Value::Bytes(vec![5])),
        ];
        mc.pin_uv_auth = Some((vec![6; 32], 2));
        let (_, params) = decode(&mc.encode());
        assert_eq!(keys(&params), [1, 2, 3, 4, 5, 6, 8, 9].map(Value::from));
        let Some(Value::Array(exclude)) = get(&params, 5) else {
            panic!("excludeList")
        };
        assert_eq!(
            get(map(exclude.first()), "id"),
            Some(&Value::Bytes(vec![1; 16]))
        );
        let extensions = map(get(&params, 6));
        assert_eq!(keys(extensions), ["credBlob", "largeBlobKey"].map(text));
        assert_eq!(get(&params, 8), Some(&Value::Bytes(vec![6; 32])));
        assert_eq!(get(&params, 9), Some(&Value::from(2)));

        let mut ga = GetAssertion::new("example.com");
        ga.extensions = vec![("hmac-secret", Value::Bool(true))];
        ga.up = Some(false);
        ga.uv = Some(true);
        ga.pin_uv_auth = Some((vec![7; 16], 1));
        let (_, params) = decode(&ga.encode());
        assert_eq!(keys(&params), [1, 2, 4, 5, 6, 7].map(Value::from));
        assert_eq!(
            map(get(&params, 5)),
            [
                (text("up"), Value::Bool(false)),
                (text("uv"), Value::Bool(true))
            ]
        );
        assert_eq!(get(&params, 7), Some(&Value::from(1)));
    }

    #[test]
    fn typical_requests_carry_a_fresh_client_data_hash() {
        let (a, b) = (
            MakeCredential::typical("example.com", "anna"),
            MakeCredential::typical("example.com", "anna"),
        );
        assert_ne!(a.client_data_hash, b.client_data_hash);
        assert_eq!(a.user_id, b.user_id);
        let (_, params) = decode(&a.encode());
        assert_eq!(keys(&params), [1, 2, 3, 4].map(Value::from));
        assert_ne!(
            GetAssertion::typical("example.com").client_data_hash,
            GetAssertion::typical("example.com").client_data_hash
        );
    }
}
