//! Properties of `ctap::Request::parse`, the wire layer's entry point:
//!
//! - it never panics, whatever the bytes (any command byte, any parameters), and refuses an
//!   empty message and an unknown command byte with their CTAP status;
//! - the makeCredential and getAssertion requests the testkit builds, as a platform sends
//!   them, parse back into the typed request holding what was sent (strings cut to 64 bytes,
//!   CTAP 2.1 §6.1.2).
//!
//! The requests come from `pocketkey-testkit`, written apart from the engine, so the parser is
//! not checked against its own encoder.

use ciborium::value::{Integer, Value};
use pocketkey_core::ctap::shared::{
    CredentialDescriptor, Options, PinUvAuth, RpEntity, UserEntity,
};
use pocketkey_core::ctap::{command, get_assertion, make_credential, CtapError, Request};
use pocketkey_testkit::{GetAssertion, MakeCredential};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::Config as RunnerConfig;

fn command_byte() -> impl Strategy<Value = u8> {
    prop_oneof![3 => proptest::sample::select(command::ALL), 1 => any::<u8>()]
}

fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

/// Assorted CBOR values, nested a little, with the integer and text keys requests use.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(int),
        vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        "\\PC{0,20}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let key = prop_oneof![(0i64..12).prop_map(int), "[a-z]{1,6}".prop_map(Value::Text)];
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((key, inner), 0..4).prop_map(Value::Map),
        ]
    })
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).expect("CBOR into a Vec");
    out
}

/// Parameters shaped like a request: a map of small integer keys to assorted values, or
/// sometimes no map at all.
fn params() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(((0i64..=12).prop_map(int), value()), 0..8).prop_map(|m| encode(&Value::Map(m))),
        1 => vec(any::<u8>(), 0..200),
    ]
}

/// `s` cut to at most 64 bytes on a character boundary, as the authenticator keeps it.
fn cut64(s: &str) -> String {
    let mut cut = s.len().min(64);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_string()
}

fn pin_uv_auth() -> impl Strategy<Value = Option<(Vec<u8>, u64)>> {
    option::of((vec(any::<u8>(), 0..48), 0u64..4))
}

/// makeCredential extension inputs the authenticator reads, with values it accepts.
#[derive(Debug, Clone)]
struct McExtensions {
    cred_protect: Option<u8>,
    hmac_secret: Option<bool>,
    cred_blob: Option<Vec<u8>>,
    large_blob_key: bool,
    min_pin_length: Option<bool>,
}

impl McExtensions {
    fn inputs(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if let Some(p) = self.cred_protect {
            out.push(("credProtect", Value::from(p)));
        }
        if let Some(h) = self.hmac_secret {
            out.push(("hmac-secret", Value::Bool(h)));
        }
        if let Some(b) = &self.cred_blob {
            out.push(("credBlob", Value::Bytes(b.clone())));
        }
        if self.large_blob_key {
            out.push(("largeBlobKey", Value::Bool(true)));
        }
        if let Some(m) = self.min_pin_length {
            out.push(("minPinLength", Value::Bool(m)));
        }
        out
    }

    fn expected(&self) -> make_credential::Extensions {
        make_credential::Extensions {
            cred_protect: self.cred_protect,
            hmac_secret: self.hmac_secret.unwrap_or(false),
            cred_blob: self.cred_blob.clone(),
            large_blob_key: self.large_blob_key,
            min_pin_length: self.min_pin_length.unwrap_or(false),
        }
    }
}

fn mc_extensions() -> impl Strategy<Value = McExtensions> {
    (
        option::of(1u8..=3),
        option::of(any::<bool>()),
        option::of(vec(any::<u8>(), 0..40)),
        any::<bool>(),
        option::of(any::<bool>()),
    )
        .prop_map(
            |(cred_protect, hmac_secret, cred_blob, large_blob_key, min_pin_length)| McExtensions {
                cred_protect,
                hmac_secret,
                cred_blob,
                large_blob_key,
                min_pin_length,
            },
        )
}

fn make_credential_request() -> impl Strategy<Value = (MakeCredential, McExtensions)> {
    (
        (
            vec(any::<u8>(), 32..=32),
            "[a-z]{1,20}\\.[a-z]{2,5}",
            option::of("\\PC{0,80}"),
            vec(any::<u8>(), 1..=64),
            "\\PC{0,80}",
            option::of("\\PC{0,80}"),
        ),
        (
            vec(
                prop_oneof![Just(-7i64), Just(-8), any::<i32>().prop_map(i64::from)],
                1..5,
            ),
            vec(vec(any::<u8>(), 1..100), 0..4),
            mc_extensions(),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            pin_uv_auth(),
        ),
    )
        .prop_map(
            |(
                (client_data_hash, rp_id, rp_name, user_id, user_name, display_name),
                (algs, exclude_list, extensions, rk, uv, pin_uv_auth),
            )| {
                let mut mc = MakeCredential::new(rp_id, user_name)
                    .client_data_hash(client_data_hash)
                    .user_id(user_id)
                    .algs(algs);
                mc.rp_name = rp_name;
                mc.user_display_name = display_name;
                mc.exclude_list = exclude_list;
                mc.extensions = extensions.inputs();
                mc.rk = rk;
                mc.uv = uv;
                mc.pin_uv_auth = pin_uv_auth;
                (mc, extensions)
            },
        )
}

/// The hmac-secret input of getAssertion: keyAgreement (any COSE-shaped map; its content is
/// checked later, by the PIN protocol), saltEnc, saltAuth and an optional protocol.
fn hmac_secret_input() -> impl Strategy<Value = (Value, Vec<u8>, Vec<u8>, Option<u64>)> {
    (
        vec((-3i64..4, vec(any::<u8>(), 0..33)), 0..4).prop_map(|entries| {
            Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (int(k), Value::Bytes(v)))
                    .collect(),
            )
        }),
        vec(any::<u8>(), 0..80),
        vec(any::<u8>(), 0..40),
        option::of(1u64..3),
    )
}

type HmacInput = (Value, Vec<u8>, Vec<u8>, Option<u64>);

fn get_assertion_request(
) -> impl Strategy<Value = (GetAssertion, Option<HmacInput>, Option<bool>, bool)> {
    (
        "[a-z]{1,20}\\.[a-z]{2,5}",
        vec(any::<u8>(), 32..=32),
        vec(vec(any::<u8>(), 1..120), 0..5),
        option::of(hmac_secret_input()),
        option::of(any::<bool>()),
        any::<bool>(),
        (option::of(any::<bool>()), option::of(any::<bool>())),
        pin_uv_auth(),
    )
        .prop_map(
            |(rp_id, cdh, allow, hmac, cred_blob, large_blob_key, (up, uv), pin_uv_auth)| {
                let mut ga = GetAssertion::new(rp_id).client_data_hash(cdh);
                for id in allow {
                    ga = ga.allow(id);
                }
                if let Some(b) = cred_blob {
                    ga.extensions.push(("credBlob", Value::Bool(b)));
                }
                if let Some((key_agreement, salt_enc, salt_auth, protocol)) = &hmac {
                    let mut input = vec![
                        (int(1), key_agreement.clone()),
                        (int(2), Value::Bytes(salt_enc.clone())),
                        (int(3), Value::Bytes(salt_auth.clone())),
                    ];
                    if let Some(p) = protocol {
                        input.push((int(4), Value::from(*p)));
                    }
                    ga.extensions.push(("hmac-secret", Value::Map(input)));
                }
                if large_blob_key {
                    ga.extensions.push(("largeBlobKey", Value::Bool(true)));
                }
                ga.up = up;
                ga.uv = uv;
                ga.pin_uv_auth = pin_uv_auth;
                (ga, hmac, cred_blob, large_blob_key)
            },
        )
}

proptest! {
    #![proptest_config(RunnerConfig { cases: 512, ..RunnerConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(message in vec(any::<u8>(), 0..600)) {
        let _ = Request::parse(&message);
    }

    #[test]
    fn parse_never_panics_on_request_shaped_messages(cmd in command_byte(), params in params()) {
        let message = [&[cmd][..], &params].concat();
        match Request::parse(&message) {
            Err(CtapError::InvalidCommand) => prop_assert!(!command::ALL.contains(&cmd)),
            Ok(_) | Err(_) => prop_assert!(command::ALL.contains(&cmd)),
        }
    }

    #[test]
    fn make_credential_from_the_testkit_parses_back((mc, extensions) in make_credential_request()) {
        let Request::MakeCredential(parsed) = Request::parse(&mc.encode()).unwrap() else {
            panic!("not makeCredential");
        };
        let expected = make_credential::Request {
            client_data_hash: mc.client_data_hash.clone().try_into().unwrap(),
            rp: RpEntity {
                id: mc.rp_id.clone(),
                name: mc.rp_name.as_deref().map(cut64),
            },
            user: UserEntity {
                id: mc.user_id.clone(),
                name: Some(cut64(&mc.user_name)),
                display_name: mc.user_display_name.as_deref().map(cut64),
            },
            algorithms: mc.algs.clone(),
            exclude_list: mc
                .exclude_list
                .iter()
                .map(|id| CredentialDescriptor { id: id.clone() })
                .collect(),
            extensions: extensions.expected(),
            options: Options { rk: mc.rk, up: None, uv: mc.uv },
            pin_uv_auth: PinUvAuth {
                param: mc.pin_uv_auth.as_ref().map(|(p, _)| p.clone()),
                protocol: mc.pin_uv_auth.as_ref().map(|(_, v)| *v),
            },
            enterprise_attestation: None,
            attestation_formats_preference: None,
        };
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn get_assertion_from_the_testkit_parses_back(
        (ga, hmac, cred_blob, large_blob_key) in get_assertion_request()
    ) {
        let Request::GetAssertion(parsed) = Request::parse(&ga.encode()).unwrap() else {
            panic!("not getAssertion");
        };
        let expected = get_assertion::Request {
            rp_id: ga.rp_id.clone(),
            client_data_hash: ga.client_data_hash.clone().try_into().unwrap(),
            allow_list: ga
                .allow_list
                .iter()
                .map(|id| CredentialDescriptor { id: id.clone() })
                .collect(),
            extensions: get_assertion::Extensions {
                hmac_secret: hmac.map(|(key_agreement, salt_enc, salt_auth, protocol)| {
                    get_assertion::HmacSecretInput {
                        key_agreement,
                        salt_enc,
                        salt_auth,
                        // Absent: protocol one (CTAP 2.1 §12.5).
                        protocol: protocol.unwrap_or(1),
                    }
                }),
                cred_blob: cred_blob.unwrap_or(false),
                large_blob_key,
            },
            options: Options { rk: None, up: ga.up, uv: ga.uv },
            pin_uv_auth: PinUvAuth {
                param: ga.pin_uv_auth.as_ref().map(|(p, _)| p.clone()),
                protocol: ga.pin_uv_auth.as_ref().map(|(_, v)| *v),
            },
        };
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn a_testkit_request_with_one_parameter_replaced_never_panics(
        (mc, _) in make_credential_request(),
        (ga, ..) in get_assertion_request(),
        which in any::<prop::sample::Index>(),
        replacement in value(),
    ) {
        for (cmd, params) in [
            (command::MAKE_CREDENTIAL, mc.to_cbor()),
            (command::GET_ASSERTION, ga.to_cbor()),
        ] {
            let Value::Map(mut entries) = params else { panic!("parameters are a map") };
            let i = which.index(entries.len());
            entries[i].1 = replacement.clone();
            // Some replacements happen to be valid; the rest are a CTAP error.
            let _ = Request::parse(&[&[cmd][..], &encode(&Value::Map(entries))].concat());
        }
    }

    /// A user handle longer than WebAuthn's 64 bytes is CTAP1_ERR_INVALID_LENGTH, not a panic
    /// and not a silently cut id.
    #[test]
    fn an_overlong_user_id_is_invalid_length(user_id in vec(any::<u8>(), 65..200)) {
        let mc = MakeCredential::new("example.com", "anna").user_id(user_id);
        prop_assert_eq!(Request::parse(&mc.encode()), Err(CtapError::InvalidLength));
    }
}

#[test]
fn an_empty_message_is_invalid_length_and_an_unknown_command_invalid_command() {
    assert_eq!(Request::parse(&[]), Err(CtapError::InvalidLength));
    assert_eq!(Request::parse(&[0x03]), Err(CtapError::InvalidCommand));
    assert_eq!(
        Request::parse(&[0x40, 0xa0]),
        Err(CtapError::InvalidCommand)
    );
}

#[test]
fn commands_without_parameters_ignore_what_follows() {
    for (cmd, expected) in [
        (command::GET_INFO, Request::GetInfo),
        (command::RESET, Request::Reset),
        (command::GET_NEXT_ASSERTION, Request::GetNextAssertion),
        (command::SELECTION, Request::Selection),
    ] {
        assert_eq!(Request::parse(&[cmd]), Ok(expected.clone()));
        assert_eq!(Request::parse(&[cmd, 0xff, 0x00]), Ok(expected));
    }
}

#[test]
fn the_credential_management_prototype_parses_as_credential_management() {
    // {1: 1} getCredsMetadata
    let params = [0xa1, 0x01, 0x01];
    let official = Request::parse(&[&[command::CREDENTIAL_MANAGEMENT][..], &params].concat());
    let preview =
        Request::parse(&[&[command::CREDENTIAL_MANAGEMENT_PREVIEW][..], &params].concat());
    assert!(matches!(official, Ok(Request::CredentialManagement(_))));
    assert_eq!(official, preview);
}
