//! CBOR in and out: bounded decoding of requests and CTAP2-canonical encoding of responses.
//!
//! CTAP 2.1 §8 "Message Encoding": map keys sorted by major type, then by encoded length, then
//! bytewise; definite lengths; shortest integer encodings (ciborium always emits those).

use ciborium::value::{Integer, Value};

use super::status::{CtapError, CtapResult};

/// Nesting deep enough for every CTAP request (extensions inside options inside a map…).
const MAX_DEPTH: usize = 16;

/// Decodes one CBOR item; trailing bytes are an error. Malformed CBOR → CTAP2_ERR_INVALID_CBOR.
pub fn decode(bytes: &[u8]) -> CtapResult<Value> {
    let mut reader = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH)
        .map_err(|_| CtapError::InvalidCbor)?;
    if !reader.is_empty() {
        return Err(CtapError::InvalidCbor);
    }
    Ok(value)
}

/// Encodes `value` CTAP2-canonically (maps sorted recursively).
pub fn encode(value: Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(&canonical(value), &mut out)
        .expect("serializing a CBOR value into a Vec cannot fail");
    out
}

fn encoded(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).expect("CBOR into a Vec cannot fail");
    out
}

/// Sorts every map in `value` into CTAP2 canonical key order.
pub fn canonical(value: Value) -> Value {
    match value {
        Value::Map(entries) => {
            let mut keyed: Vec<(Vec<u8>, Value, Value)> = entries
                .into_iter()
                .map(|(k, v)| {
                    let k = canonical(k);
                    (encoded(&k), k, canonical(v))
                })
                .collect();
            keyed.sort_by(|(a, ..), (b, ..)| {
                let major = |e: &[u8]| e.first().map(|b| b >> 5);
                major(a)
                    .cmp(&major(b))
                    .then(a.len().cmp(&b.len()))
                    .then(a.cmp(b))
            });
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        Value::Tag(t, inner) => Value::Tag(t, Box::new(canonical(*inner))),
        other => other,
    }
}

/// Builds a map with integer keys; `None` values are left out.
#[derive(Default)]
pub struct MapBuilder(Vec<(Value, Value)>);

impl MapBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(mut self, key: impl Into<Value>, value: impl Into<Value>) -> Self {
        self.0.push((key.into(), value.into()));
        self
    }
    pub fn put_opt<V: Into<Value>>(self, key: impl Into<Value>, value: Option<V>) -> Self {
        match value {
            Some(v) => self.put(key, v),
            None => self,
        }
    }
    pub fn build(self) -> Value {
        Value::Map(self.0)
    }
}

// ---- typed readers for request fields ------------------------------------------------------

/// A CBOR map being read field by field; rejects duplicate keys.
pub struct MapReader {
    entries: Vec<(Value, Value)>,
}

impl MapReader {
    pub fn new(value: Value) -> CtapResult<Self> {
        match value {
            Value::Map(entries) => {
                if has_duplicate_keys(&entries) {
                    return Err(CtapError::InvalidCbor);
                }
                Ok(Self { entries })
            }
            _ => Err(CtapError::CborUnexpectedType),
        }
    }

    fn take_by(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let pos = self.entries.iter().position(|(k, _)| pred(k))?;
        Some(self.entries.swap_remove(pos).1)
    }

    /// Removes and returns the value under integer key `key`.
    pub fn take(&mut self, key: i64) -> Option<Value> {
        self.take_by(|k| matches!(k, Value::Integer(i) if i128::from(*i) == i128::from(key)))
    }

    /// Removes and returns the value under text key `key`.
    pub fn take_text(&mut self, key: &str) -> Option<Value> {
        self.take_by(|k| matches!(k, Value::Text(t) if t == key))
    }

    pub fn require(&mut self, key: i64) -> CtapResult<Value> {
        self.take(key).ok_or(CtapError::MissingParameter)
    }

    /// The remaining entries (unknown keys), for callers that iterate them.
    pub fn into_entries(self) -> Vec<(Value, Value)> {
        self.entries
    }
}

/// Whether two keys of `entries` are equal (`==`), in O(n log n): a request map may hold tens
/// of thousands of keys, and this runs under the engine's lock.
///
/// A key holding a NaN anywhere equals no key, itself included (NaN != NaN), so it can be no
/// duplicate. On the other keys `Value`'s derived order is total and agrees with `==`, so
/// equal keys are adjacent once sorted.
fn has_duplicate_keys(entries: &[(Value, Value)]) -> bool {
    let mut keys: Vec<&Value> = entries
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !holds_nan(k))
        .collect();
    keys.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    keys.windows(2).any(|pair| pair[0] == pair[1])
}

fn holds_nan(value: &Value) -> bool {
    match value {
        Value::Float(f) => f.is_nan(),
        Value::Tag(_, inner) => holds_nan(inner),
        Value::Array(items) => items.iter().any(holds_nan),
        Value::Map(entries) => entries.iter().any(|(k, v)| holds_nan(k) || holds_nan(v)),
        _ => false,
    }
}

pub fn as_bytes(v: Value) -> CtapResult<Vec<u8>> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(CtapError::CborUnexpectedType),
    }
}

pub fn as_text(v: Value) -> CtapResult<String> {
    match v {
        Value::Text(t) => Ok(t),
        _ => Err(CtapError::CborUnexpectedType),
    }
}

pub fn as_bool(v: Value) -> CtapResult<bool> {
    match v {
        Value::Bool(b) => Ok(b),
        _ => Err(CtapError::CborUnexpectedType),
    }
}

pub fn as_int(v: Value) -> CtapResult<i128> {
    match v {
        Value::Integer(i) => Ok(i128::from(i)),
        _ => Err(CtapError::CborUnexpectedType),
    }
}

/// An unsigned integer that must fit `u64`; negative → unexpected type.
pub fn as_uint(v: Value) -> CtapResult<u64> {
    let i = as_int(v)?;
    u64::try_from(i).map_err(|_| CtapError::CborUnexpectedType)
}

pub fn as_array(v: Value) -> CtapResult<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(CtapError::CborUnexpectedType),
    }
}

pub fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_orders_ints_before_text_and_shorter_first() {
        let v = Value::Map(vec![
            (Value::Text("bb".into()), int(1)),
            (int(-1), int(2)),
            (Value::Text("a".into()), int(3)),
            (int(24), int(4)),
            (int(3), int(5)),
        ]);
        let keys: Vec<Value> = match canonical(v) {
            Value::Map(m) => m.into_iter().map(|(k, _)| k).collect(),
            _ => unreachable!(),
        };
        assert_eq!(
            keys,
            vec![
                int(3),
                int(24),
                int(-1),
                Value::Text("a".into()),
                Value::Text("bb".into())
            ]
        );
    }

    #[test]
    fn decode_rejects_trailing_bytes_and_garbage() {
        assert_eq!(decode(&[0xa0, 0x00]).unwrap_err(), CtapError::InvalidCbor);
        assert_eq!(decode(&[0xff]).unwrap_err(), CtapError::InvalidCbor);
        assert_eq!(decode(&[]).unwrap_err(), CtapError::InvalidCbor);
        assert!(decode(&[0xa0]).is_ok());
    }

    #[test]
    fn decode_bounds_nesting() {
        let deep = [vec![0x81u8; 200], vec![0x00]].concat();
        assert_eq!(decode(&deep).unwrap_err(), CtapError::InvalidCbor);
    }

    #[test]
    fn duplicate_keys_are_invalid() {
        let v = Value::Map(vec![(int(1), int(1)), (int(1), int(2))]);
        assert_eq!(MapReader::new(v).err(), Some(CtapError::InvalidCbor));
    }

    /// The pairwise check this module used before: every key against every earlier one.
    fn duplicates_pairwise(entries: &[(Value, Value)]) -> bool {
        entries
            .iter()
            .enumerate()
            .any(|(i, (k, _))| entries[..i].iter().any(|(other, _)| other == k))
    }

    #[test]
    fn float_keys_follow_value_equality() {
        let nan = Value::Float(f64::NAN);
        let cases = [
            (vec![nan.clone(), nan.clone()], false),
            (
                vec![Value::Array(vec![nan.clone()]), Value::Array(vec![nan])],
                false,
            ),
            (vec![Value::Float(0.0), Value::Float(-0.0)], true),
            (vec![Value::Float(1.5), int(1), Value::Float(1.5)], true),
        ];
        for (keys, duplicate) in cases {
            let entries: Vec<(Value, Value)> = keys.into_iter().map(|k| (k, Value::Null)).collect();
            assert_eq!(duplicates_pairwise(&entries), duplicate, "{entries:?}");
            assert_eq!(has_duplicate_keys(&entries), duplicate, "{entries:?}");
        }
    }

    /// A 65 536-key map, as CBOR bytes from outside: distinct keys are accepted, one repeated
    /// key (the last one, far from its twin) is refused.
    #[test]
    fn a_map_with_65536_keys_is_checked() {
        const N: i64 = 65_536;
        let map = |last: i64| {
            let mut entries: Vec<(Value, Value)> = (0..N - 1).map(|i| (int(i), int(0))).collect();
            entries.push((int(last), int(0)));
            let mut bytes = Vec::new();
            ciborium::ser::into_writer(&Value::Map(entries), &mut bytes).unwrap();
            bytes
        };
        let distinct = decode(&map(N - 1)).unwrap();
        let entries = MapReader::new(distinct).unwrap().into_entries();
        assert_eq!(entries.len(), N as usize);
        let repeated = decode(&map(0)).unwrap();
        assert_eq!(MapReader::new(repeated).err(), Some(CtapError::InvalidCbor));
    }

    fn key() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            4 => (-3i64..4).prop_map(int),
            2 => "[ab]{0,2}".prop_map(Value::Text),
            1 => proptest::collection::vec(0u8..2, 0..2).prop_map(Value::Bytes),
            1 => proptest::sample::select(vec![0.0, -0.0, 1.0, f64::NAN, f64::INFINITY])
                .prop_map(Value::Float),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => Just(Value::Null),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                (0u64..2, inner.clone()).prop_map(|(t, v)| Value::Tag(t, Box::new(v))),
                proptest::collection::vec((inner.clone(), inner), 0..2).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn duplicate_check_agrees_with_the_pairwise_one(
            keys in proptest::collection::vec(key(), 0..24)
        ) {
            let entries: Vec<(Value, Value)> = keys.into_iter().map(|k| (k, Value::Null)).collect();
            prop_assert_eq!(has_duplicate_keys(&entries), duplicates_pairwise(&entries));
        }
    }
}
