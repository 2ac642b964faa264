//! Property tests for everything that reads CTAP bytes from outside.
//!
//! - The typed request parsers never panic, whatever the bytes or CBOR trees, and accept the
//!   well-formed requests a platform sends, in any key order.
//! - `Authenticator::process_cbor` on arbitrary `cmd ‖ bytes` never panics and answers either
//!   `0x00 ‖ [one CBOR item]` or a single error status byte.
//! - `Authenticator::process_u2f` on arbitrary bytes always ends with a 2-byte status word.

use std::cell::RefCell;

use ciborium::value::{Integer, Value};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

use super::{client_pin, config, cred_mgmt, get_assertion, large_blobs, make_credential};

// ---- strategies ---------------------------------------------------------------------------

/// The text keys and values the parsers look for, so random trees reach deep into them.
const NAMES: &[&str] = &[
    "id",
    "name",
    "displayName",
    "type",
    "alg",
    "public-key",
    "transports",
    "rk",
    "up",
    "uv",
    "credProtect",
    "hmac-secret",
    "credBlob",
    "largeBlobKey",
    "minPinLength",
    "none",
    "packed",
];

fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

fn any_integer() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (-40i64..40).prop_map(int),
        2 => any::<i64>().prop_map(int),
        1 => any::<u64>().prop_map(|u| Value::Integer(Integer::from(u))),
        // Down to -2^64, the most negative CBOR integer.
        1 => (0u64..=u64::MAX).prop_map(|u| Value::Integer(Integer::try_from(-1i128 - u as i128).unwrap())),
    ]
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(NAMES).prop_map(str::to_string),
        2 => "[a-z.-]{0,16}",
        // Long multi-byte text: the parsers truncate strings to 64 bytes on a char boundary.
        1 => "\\PC{0,90}",
        1 => "[éü€😀]{14,40}",
    ]
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..48),
        2 => vec(any::<u8>(), 32..=32),
        1 => vec(any::<u8>(), 48..300),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => any_integer(),
        3 => any_bytes().prop_map(Value::Bytes),
        3 => any_text().prop_map(Value::Text),
        2 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
        1 => any::<f64>().prop_map(Value::Float),
    ]
}

fn map_key() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (-4i64..=12).prop_map(int),
        3 => any_text().prop_map(Value::Text),
        1 => leaf(),
    ]
}

/// Arbitrary CBOR trees biased towards the shapes CTAP requests have.
fn value_tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            3 => vec((map_key(), inner.clone()), 0..8).prop_map(Value::Map),
            2 => vec(inner.clone(), 0..8).prop_map(Value::Array),
            1 => (any::<u64>(), inner).prop_map(|(t, v)| Value::Tag(t, Box::new(v))),
        ]
    })
}

/// A request-shaped top level: a map with small integer keys (sometimes repeated).
fn request_map() -> impl Strategy<Value = Value> {
    vec(((0i64..=12).prop_map(int), value_tree()), 0..10).prop_map(Value::Map)
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).expect("CBOR into a Vec");
    out
}

fn parse_all(bytes: &[u8]) {
    let _ = make_credential::Request::parse(bytes);
    let _ = get_assertion::Request::parse(bytes);
    let _ = client_pin::Request::parse(bytes);
    let _ = cred_mgmt::Request::parse(bytes);
    let _ = config::Request::parse(bytes);
    let _ = large_blobs::Request::parse(bytes);
}

// ---- well-formed requests -------------------------------------------------------------------

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn tmap(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
}

fn descriptor(id: Vec<u8>) -> Value {
    tmap(vec![("id", Value::Bytes(id)), ("type", text("public-key"))])
}

#[derive(Debug, Clone)]
struct WellFormedMakeCredential {
    client_data_hash: Vec<u8>,
    rp_id: String,
    rp_name: Option<String>,
    user_id: Vec<u8>,
    user_name: Option<String>,
    algs: Vec<i64>,
    exclude: Vec<Vec<u8>>,
    rk: Option<bool>,
    uv: Option<bool>,
    pin: Option<(Vec<u8>, u64)>,
}

fn well_formed_make_credential() -> impl Strategy<Value = WellFormedMakeCredential> {
    (
        vec(any::<u8>(), 32..=32),
        "[a-z]{1,20}\\.[a-z]{2,5}",
        proptest::option::of("\\PC{0,40}"),
        vec(any::<u8>(), 1..=64),
        proptest::option::of("\\PC{0,40}"),
        vec(
            prop_oneof![
                Just(-7i64),
                Just(-8),
                Just(-257),
                any::<i32>().prop_map(i64::from)
            ],
            1..5,
        ),
        vec(vec(any::<u8>(), 16..100), 0..4),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
        ),
        proptest::option::of((vec(any::<u8>(), 0..33), 1u64..3)),
    )
        .prop_map(
            |(
                client_data_hash,
                rp_id,
                rp_name,
                user_id,
                user_name,
                algs,
                exclude,
                (rk, uv),
                pin,
            )| {
                WellFormedMakeCredential {
                    client_data_hash,
                    rp_id,
                    rp_name,
                    user_id,
                    user_name,
                    algs,
                    exclude,
                    rk,
                    uv,
                    pin,
                }
            },
        )
}

impl WellFormedMakeCredential {
    fn to_cbor(&self) -> Vec<(Value, Value)> {
        let mut rp = vec![("id", text(&self.rp_id))];
        if let Some(n) = &self.rp_name {
            rp.push(("name", text(n)));
        }
        let mut user = vec![("id", Value::Bytes(self.user_id.clone()))];
        if let Some(n) = &self.user_name {
            user.push(("name", text(n)));
        }
        let params = self
            .algs
            .iter()
            .map(|a| tmap(vec![("alg", int(*a)), ("type", text("public-key"))]))
            .collect();
        let mut m = vec![
            (int(1), Value::Bytes(self.client_data_hash.clone())),
            (int(2), tmap(rp)),
            (int(3), tmap(user)),
            (int(4), Value::Array(params)),
        ];
        if !self.exclude.is_empty() {
            m.push((
                int(5),
                Value::Array(self.exclude.iter().cloned().map(descriptor).collect()),
            ));
        }
        let mut options = vec![];
        if let Some(rk) = self.rk {
            options.push(("rk", Value::Bool(rk)));
        }
        if let Some(uv) = self.uv {
            options.push(("uv", Value::Bool(uv)));
        }
        m.push((int(7), tmap(options)));
        if let Some((param, protocol)) = &self.pin {
            m.push((int(8), Value::Bytes(param.clone())));
            m.push((int(9), Value::Integer((*protocol).into())));
        }
        // An unknown key: authenticators must ignore it (CTAP 2.1 §8).
        m.push((int(0x30), text("ignored")));
        m
    }
}

fn truncated(s: &str) -> String {
    let mut cut = s.len().min(64);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_string()
}

proptest! {
    #![proptest_config(RunnerConfig { cases: 512, ..RunnerConfig::default() })]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..600)) {
        parse_all(&bytes);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_cbor_trees(tree in value_tree()) {
        parse_all(&encode(&tree));
    }

    #[test]
    fn parsers_never_panic_on_request_shaped_maps(map in request_map()) {
        let bytes = encode(&map);
        parse_all(&bytes);
        // Whatever follows the item is trailing garbage: always refused.
        let mut with_tail = bytes.clone();
        with_tail.push(0x00);
        prop_assert!(make_credential::Request::parse(&with_tail).is_err());
        prop_assert!(client_pin::Request::parse(&with_tail).is_err());
    }

    #[test]
    fn truncated_cbor_is_refused(map in request_map(), cut in any::<prop::sample::Index>()) {
        let bytes = encode(&map);
        let cut = cut.index(bytes.len().max(1));
        if cut < bytes.len() {
            let prefix = &bytes[..cut];
            prop_assert!(make_credential::Request::parse(prefix).is_err());
            prop_assert!(get_assertion::Request::parse(prefix).is_err());
            prop_assert!(large_blobs::Request::parse(prefix).is_err());
        }
    }

    #[test]
    fn well_formed_make_credential_parses_in_any_key_order(
        req in well_formed_make_credential(),
        order in any::<prop::sample::Index>(),
    ) {
        let mut entries = req.to_cbor();
        let rotate = order.index(entries.len());
        entries.rotate_left(rotate);
        let parsed = make_credential::Request::parse(&encode(&Value::Map(entries))).unwrap();
        prop_assert_eq!(&parsed.client_data_hash[..], &req.client_data_hash[..]);
        prop_assert_eq!(&parsed.rp.id, &req.rp_id);
        prop_assert_eq!(parsed.rp.name, req.rp_name.as_deref().map(truncated));
        prop_assert_eq!(&parsed.user.id, &req.user_id);
        prop_assert_eq!(parsed.user.name, req.user_name.as_deref().map(truncated));
        prop_assert_eq!(&parsed.algorithms, &req.algs);
        prop_assert_eq!(parsed.exclude_list.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), req.exclude.clone());
        prop_assert_eq!((parsed.options.rk, parsed.options.uv, parsed.options.up), (req.rk, req.uv, None));
        prop_assert_eq!(parsed.pin_uv_auth.param, req.pin.as_ref().map(|p| p.0.clone()));
        prop_assert_eq!(parsed.pin_uv_auth.protocol, req.pin.as_ref().map(|p| p.1));
    }

    #[test]
    fn well_formed_get_assertion_parses(
        rp_id in "[a-z]{1,20}\\.[a-z]{2,5}",
        cdh in vec(any::<u8>(), 32..=32),
        allow in vec(vec(any::<u8>(), 1..120), 0..5),
        up in proptest::option::of(any::<bool>()),
    ) {
        let mut m = vec![(int(2), Value::Bytes(cdh.clone())), (int(1), text(&rp_id))];
        if !allow.is_empty() {
            m.push((int(3), Value::Array(allow.iter().cloned().map(descriptor).collect())));
        }
        if let Some(up) = up {
            m.push((int(5), tmap(vec![("up", Value::Bool(up))])));
        }
        let parsed = get_assertion::Request::parse(&encode(&Value::Map(m))).unwrap();
        prop_assert_eq!(parsed.rp_id, rp_id);
        prop_assert_eq!(&parsed.client_data_hash[..], &cdh[..]);
        prop_assert_eq!(parsed.allow_list.into_iter().map(|d| d.id).collect::<Vec<_>>(), allow);
        prop_assert_eq!(parsed.options.up, up);
    }

    #[test]
    fn a_wrongly_typed_field_is_an_error_not_a_panic(
        req in well_formed_make_credential(),
        which in 0usize..4,
        replacement in leaf(),
    ) {
        let mut entries = req.to_cbor();
        entries[which].1 = replacement;
        // Some replacements happen to be valid (a 32-byte string for the hash); the rest fail.
        let _ = make_credential::Request::parse(&encode(&Value::Map(entries)));
    }
}

// ---- the command processors -----------------------------------------------------------------

use crate::approver::AutoApprover;
use crate::authenticator::{Authenticator, Config, RequestContext};
use crate::crypto::master_key::MasterKey;
use crate::ctap::command;
use crate::store::Store;

fn authenticator() -> Authenticator {
    let master = MasterKey::generate();
    let store = Store::open_in_memory(&master).expect("in-memory store");
    Authenticator::new(store, &master, Box::new(AutoApprover), Config::default())
        .expect("authenticator")
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

fn ctap_request() -> impl Strategy<Value = Vec<u8>> {
    let cmd = prop_oneof![3 => proptest::sample::select(command::ALL), 1 => any::<u8>()];
    let body = prop_oneof![
        3 => request_map().prop_map(|m| encode(&m)),
        2 => well_formed_make_credential().prop_map(|r| encode(&Value::Map(r.to_cbor()))),
        1 => value_tree().prop_map(|v| encode(&v)),
        2 => vec(any::<u8>(), 0..300),
    ];
    prop_oneof![
        20 => (cmd, body).prop_map(|(c, b)| [vec![c], b].concat()),
        1 => Just(vec![]),
    ]
}

/// A CTAP2 answer is `0x00` alone, `0x00 ‖ one CBOR item`, or one non-zero status byte.
fn check_ctap_response(response: &[u8]) -> Result<(), TestCaseError> {
    let (&status, body) = response
        .split_first()
        .ok_or_else(|| TestCaseError::fail("empty response"))?;
    if status != 0 {
        prop_assert!(
            body.is_empty(),
            "error 0x{:02x} with a body of {} bytes",
            status,
            body.len()
        );
        return Ok(());
    }
    if !body.is_empty() {
        let mut rest = body;
        let decoded: Result<Value, _> = ciborium::de::from_reader(&mut rest);
        prop_assert!(decoded.is_ok(), "success body is not CBOR: {:02x?}", body);
        prop_assert!(rest.is_empty(), "trailing bytes after the success body");
    }
    Ok(())
}

#[test]
fn process_cbor_never_panics_and_answers_ok_cbor_or_one_status_byte() {
    let auth = RefCell::new(authenticator());
    let cx = RequestContext::default();
    runner(1000)
        .run(&vec(ctap_request(), 1..4), |requests| {
            let mut auth = auth.borrow_mut();
            for request in &requests {
                check_ctap_response(&auth.process_cbor(request, &cx))?;
            }
            Ok(())
        })
        .unwrap();
}

fn apdu() -> impl Strategy<Value = Vec<u8>> {
    let header = (
        prop_oneof![4 => Just(0u8), 1 => any::<u8>()],
        prop_oneof![4 => 1u8..=3, 1 => any::<u8>()],
        prop_oneof![Just(3u8), Just(7), Just(8), any::<u8>()],
        any::<u8>(),
    );
    let data = prop_oneof![
        vec(any::<u8>(), 64..=64),
        vec(any::<u8>(), 65..200),
        vec(any::<u8>(), 0..80)
    ];
    prop_oneof![
        // Well-framed extended-length APDUs with plausible data.
        3 => (header, data, any::<bool>()).prop_map(|((cla, ins, p1, p2), data, le)| {
            let len = (data.len() as u16).to_be_bytes();
            let mut out = vec![cla, ins, p1, p2, 0, len[0], len[1]];
            out.extend(data);
            if le {
                out.extend([0, 0]);
            }
            out
        }),
        // Authenticate with a key handle length byte that may lie.
        1 => (vec(any::<u8>(), 64..=64), any::<u8>(), vec(any::<u8>(), 0..300)).prop_map(|(head, l, kh)| {
            let data = [head, vec![l], kh].concat();
            let len = (data.len() as u16).to_be_bytes();
            [vec![0, 2, 3, 0, 0, len[0], len[1]], data].concat()
        }),
        2 => vec(any::<u8>(), 0..300),
    ]
}

#[test]
fn process_u2f_always_ends_with_a_status_word() {
    let auth = RefCell::new(authenticator());
    let cx = RequestContext::default();
    runner(1000)
        .run(&apdu(), |apdu| {
            let response = auth.borrow_mut().process_u2f(&apdu, &cx);
            prop_assert!(response.len() >= 2, "no status word: {:02x?}", response);
            let sw =
                u16::from_be_bytes([response[response.len() - 2], response[response.len() - 1]]);
            if sw != 0x9000 {
                prop_assert_eq!(response.len(), 2, "an error status word comes alone");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn u2f_and_ctap2_interleaved_never_panic() {
    let auth = RefCell::new(authenticator());
    let cx = RequestContext::default();
    let step = prop_oneof![
        ctap_request().prop_map(|r| (true, r)),
        apdu().prop_map(|a| (false, a))
    ];
    runner(300)
        .run(&vec(step, 1..6), |steps| {
            let mut auth = auth.borrow_mut();
            for (ctap, bytes) in &steps {
                if *ctap {
                    check_ctap_response(&auth.process_cbor(bytes, &cx))?;
                } else {
                    prop_assert!(auth.process_u2f(bytes, &cx).len() >= 2);
                }
            }
            Ok(())
        })
        .unwrap();
}
