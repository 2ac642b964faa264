//! The platform's side of CTAP2, for tests and benches: builds the authenticatorMakeCredential
//! and authenticatorGetAssertion requests a browser sends (command byte, then CTAP2-canonical
//! CBOR). It is written apart from the engine's own encoders, so tests do not check the engine
//! against itself.
//!
//! Parameter names and integer keys are those of CTAP 2.1 §6.1 (authenticatorMakeCredential)
//! and §6.2 (authenticatorGetAssertion). Every map is written in the canonical key order of
//! CTAP 2.1 §8 (integer keys before text keys; then shorter encodings first; then bytewise).

use ciborium::Value;

/// The command bytes (CTAP 2.1 §6).
const AUTHENTICATOR_MAKE_CREDENTIAL: u8 = 0x01;
const AUTHENTICATOR_GET_ASSERTION: u8 = 0x02;

/// authenticatorMakeCredential's parameter keys used here (CTAP 2.1 §6.1).
mod make_credential {
    pub const CLIENT_DATA_HASH: u8 = 0x01;
    pub const RP: u8 = 0x02;
    pub const USER: u8 = 0x03;
    pub const PUB_KEY_CRED_PARAMS: u8 = 0x04;
    pub const OPTIONS: u8 = 0x07;
}

/// authenticatorGetAssertion's parameter keys used here (CTAP 2.1 §6.2).
mod get_assertion {
    pub const RP_ID: u8 = 0x01;
    pub const CLIENT_DATA_HASH: u8 = 0x02;
    pub const ALLOW_LIST: u8 = 0x03;
    pub const OPTIONS: u8 = 0x05;
}

/// The only credential type WebAuthn defines (PublicKeyCredentialType).
const PUBLIC_KEY: &str = "public-key";

/// ES256, the COSE algorithm every authenticator supports.
const ES256: i64 = -7;

/// authenticatorMakeCredential (CTAP 2.1 §6.1) as a platform sends it.
#[derive(Clone, Debug)]
pub struct MakeCredential {
    client_data_hash: Vec<u8>,
    rp_id: String,
    rp_name: Option<String>,
    user_id: Vec<u8>,
    user_name: String,
    user_display_name: Option<String>,
    algs: Vec<i64>,
    rk: Option<bool>,
    uv: Option<bool>,
}

impl MakeCredential {
    /// Registers `user_name` at `rp_id`: clientDataHash 32 zero bytes, user id the name's UTF-8
    /// bytes, ES256 only, no options (the authenticator's defaults).
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
            rk: None,
            uv: None,
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

    /// The command byte followed by the parameters' CBOR map.
    pub fn encode(&self) -> Vec<u8> {
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
        request(
            AUTHENTICATOR_MAKE_CREDENTIAL,
            [
                (CLIENT_DATA_HASH, Some(bytes(&self.client_data_hash))),
                (RP, Some(text_map(&rp))),
                (USER, Some(text_map(&user))),
                (PUB_KEY_CRED_PARAMS, Some(Value::Array(algs.collect()))),
                (OPTIONS, options(&[("rk", self.rk), ("uv", self.uv)])),
            ],
        )
    }
}

/// authenticatorGetAssertion (CTAP 2.1 §6.2) as a platform sends it.
#[derive(Clone, Debug)]
pub struct GetAssertion {
    rp_id: String,
    client_data_hash: Vec<u8>,
    allow_list: Vec<Vec<u8>>,
    uv: Option<bool>,
}

impl GetAssertion {
    /// Signs in at `rp_id`: clientDataHash 32 zero bytes, no allowList (discoverable
    /// credentials), no options (the authenticator's defaults).
    pub fn new(rp_id: impl Into<String>) -> Self {
        Self {
            rp_id: rp_id.into(),
            client_data_hash: vec![0; 32],
            allow_list: Vec::new(),
            uv: None,
        }
    }

    pub fn client_data_hash(mut self, hash: impl Into<Vec<u8>>) -> Self {
        self.client_data_hash = hash.into();
        self
    }

    /// Adds a `public-key` credential id to allowList.
    pub fn allow(mut self, credential_id: impl Into<Vec<u8>>) -> Self {
        self.allow_list.push(credential_id.into());
        self
    }

    /// options.uv
    pub fn uv(mut self, uv: bool) -> Self {
        self.uv = Some(uv);
        self
    }

    /// The command byte followed by the parameters' CBOR map.
    pub fn encode(&self) -> Vec<u8> {
        use get_assertion::*;
        let allow_list = self.allow_list.iter().map(|id| public_key("id", bytes(id)));
        request(
            AUTHENTICATOR_GET_ASSERTION,
            [
                (RP_ID, Some(text(&self.rp_id))),
                (CLIENT_DATA_HASH, Some(bytes(&self.client_data_hash))),
                (
                    ALLOW_LIST,
                    (!self.allow_list.is_empty()).then(|| Value::Array(allow_list.collect())),
                ),
                (OPTIONS, options(&[("uv", self.uv)])),
            ],
        )
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
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

/// The options map of the flags that are set, or nothing when none is.
fn options(flags: &[(&str, Option<bool>)]) -> Option<Value> {
    let set: Vec<_> = flags
        .iter()
        .filter_map(|&(k, v)| Some((text(k), Value::Bool(v?))))
        .collect();
    (!set.is_empty()).then_some(Value::Map(set))
}

/// `command` then the map of the present parameters (listed by the callers in ascending order).
fn request<const N: usize>(command: u8, params: [(u8, Option<Value>); N]) -> Vec<u8> {
    let present = params
        .into_iter()
        .filter_map(|(k, v)| Some((Value::from(k), v?)));
    let mut out = vec![command];
    ciborium::into_writer(&Value::Map(present.collect()), &mut out).expect("CBOR into a Vec");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command byte and the decoded parameters, after checking they are canonical.
    fn decode(request: &[u8]) -> (u8, Vec<(Value, Value)>) {
        let value: Value = ciborium::from_reader(&request[1..]).expect("CBOR");
        assert_canonical(&value);
        let mut again = vec![request[0]];
        ciborium::into_writer(&value, &mut again).unwrap();
        assert_eq!(again, request, "definite lengths and shortest forms");
        match value {
            Value::Map(entries) => (request[0], entries),
            other => panic!("not a map: {other:?}"),
        }
    }

    /// CTAP 2.1 §8: in every map, keys ascend by major type, then encoded length, then bytes.
    fn assert_canonical(value: &Value) {
        match value {
            Value::Map(entries) => {
                let rank = |k: &Value| {
                    let mut e = Vec::new();
                    ciborium::into_writer(k, &mut e).unwrap();
                    (e[0] >> 5, e.len(), e)
                };
                let keys: Vec<_> = entries.iter().map(|(k, _)| rank(k)).collect();
                assert!(
                    keys.windows(2).all(|w| w[0] < w[1]),
                    "not canonical: {value:?}"
                );
                entries.iter().for_each(|(_, v)| assert_canonical(v));
            }
            Value::Array(items) => items.iter().for_each(assert_canonical),
            _ => {}
        }
    }

    #[test]
    #[should_panic(expected = "not canonical")]
    fn the_canonical_check_refuses_longer_keys_first() {
        assert_canonical(&Value::Map(vec![
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
}
