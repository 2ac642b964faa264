//! `ciborium::Value` in short: building values, reading them back (panicking on a wrong type,
//! which is a test failure), and the CTAP2-canonical form of CTAP 2.1 §8.

use std::cmp::Ordering;

use ciborium::value::{Integer, Value};

pub fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

pub fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

/// A map with integer keys, in the order given.
pub fn imap(entries: Vec<(i64, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (int(k), v)).collect())
}

/// A map with text keys, in the order given.
pub fn tmap(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
}

/// The value under integer `key` of `map`.
pub fn get(map: &Value, key: i64) -> Option<&Value> {
    let Value::Map(m) = map else {
        panic!("not a map: {map:?}")
    };
    m.iter()
        .find(|(k, _)| matches!(k, Value::Integer(i) if i128::from(*i) == key as i128))
        .map(|(_, v)| v)
}

/// The value under text `key` of `map`.
pub fn get_text<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    let Value::Map(m) = map else {
        panic!("not a map: {map:?}")
    };
    m.iter()
        .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
        .map(|(_, v)| v)
}

pub fn as_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        other => panic!("not bytes: {other:?}"),
    }
}

pub fn as_int(v: &Value) -> i128 {
    match v {
        Value::Integer(i) => i128::from(*i),
        other => panic!("not an integer: {other:?}"),
    }
}

pub fn as_str(v: &Value) -> &str {
    match v {
        Value::Text(t) => t,
        other => panic!("not text: {other:?}"),
    }
}

/// The definite-length, shortest-form encoding ciborium writes.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).expect("CBOR into a Vec");
    out
}

/// CTAP 2.1 §8 canonical key order of two encoded keys: major type, then encoded length,
/// then bytewise.
pub fn canonical_key_order(a: &[u8], b: &[u8]) -> Ordering {
    (a[0] >> 5)
        .cmp(&(b[0] >> 5))
        .then(a.len().cmp(&b.len()))
        .then(a.cmp(b))
}

/// Panics unless every map in `v` has its keys in canonical order without repeats, and `v`
/// holds no floating point (CTAP 2.1 §8).
pub fn check_canonical_order(v: &Value) {
    match v {
        Value::Map(entries) => {
            let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| encode(k)).collect();
            for pair in keys.windows(2) {
                assert_eq!(
                    canonical_key_order(&pair[0], &pair[1]),
                    Ordering::Less,
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
        Value::Float(_) => panic!("floating point in CTAP CBOR: {v:?}"),
        _ => {}
    }
}

/// Decodes exactly one CBOR item from the front of `*input`, advancing it, and checks that
/// the item's bytes are canonical: keys ordered, and re-encoding gives identical bytes.
pub fn take_canonical(input: &mut &[u8]) -> Value {
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

/// Keys in canonical order (see [`canonical_key_order`]), for maps built from a caller's list.
pub fn sort_canonically(entries: &mut [(Value, Value)]) {
    entries.sort_by(|(a, _), (b, _)| canonical_key_order(&encode(a), &encode(b)));
}
