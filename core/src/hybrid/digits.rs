//! The decimal encoding of bytes in `FIDO:/` QR codes.
//!
//! QR codes hold decimal digits more densely than bytes, so the CBOR payload is written as
//! digits: every 7-byte chunk, read as a little-endian integer, becomes exactly 17 digits
//! (zero-padded); a final chunk of 1..=6 bytes becomes 3, 5, 8, 10, 13 or 15 digits — the fewest
//! that can hold any value of that many bytes.

use thiserror::Error;

/// Bytes in a full chunk.
pub const CHUNK_BYTES: usize = 7;
/// Digits of a full chunk.
pub const CHUNK_DIGITS: usize = 17;

/// Digits for a final chunk of `n` bytes (index `n`, 0..=7).
const DIGITS_FOR_BYTES: [usize; 8] = [0, 3, 5, 8, 10, 13, 15, 17];

/// Why a digit string is not the encoding of any byte string.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DigitsError {
    /// A character other than `0`..=`9`.
    #[error("character {found:?} at position {position} is not a decimal digit")]
    NotADigit { position: usize, found: char },
    /// The length leaves a final group of digits that no byte count encodes to.
    #[error("{len} digits: a final group of {remainder} digits encodes no whole number of bytes")]
    InvalidLength { len: usize, remainder: usize },
    /// A group's value does not fit in the bytes its length stands for.
    #[error("digits {start}..{end} hold a value too large for {bytes} bytes")]
    Overflow {
        start: usize,
        end: usize,
        bytes: usize,
    },
}

/// Encodes bytes as QR digits.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(CHUNK_BYTES) * CHUNK_DIGITS);
    for chunk in bytes.chunks(CHUNK_BYTES) {
        let mut le = [0u8; 8];
        le[..chunk.len()].copy_from_slice(chunk);
        let value = u64::from_le_bytes(le);
        let width = DIGITS_FOR_BYTES[chunk.len()];
        out.push_str(&format!("{value:0width$}"));
    }
    out
}

/// Decodes QR digits back to bytes. Every string that [`encode`] cannot produce is an error.
pub fn decode(digits: &str) -> Result<Vec<u8>, DigitsError> {
    if let Some((position, found)) = digits.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(DigitsError::NotADigit { position, found });
    }
    // All ASCII from here on: byte offsets are character offsets.
    let digits = digits.as_bytes();
    let remainder = digits.len() % CHUNK_DIGITS;
    let Some(last_bytes) = DIGITS_FOR_BYTES.iter().position(|&d| d == remainder) else {
        return Err(DigitsError::InvalidLength {
            len: digits.len(),
            remainder,
        });
    };
    let mut out = Vec::with_capacity(digits.len() / CHUNK_DIGITS * CHUNK_BYTES + last_bytes);
    for (index, group) in digits.chunks(CHUNK_DIGITS).enumerate() {
        let bytes = if group.len() == CHUNK_DIGITS {
            CHUNK_BYTES
        } else {
            last_bytes
        };
        // At most 17 digits: below 10^17 < 2^64, so this cannot overflow a u64.
        let value = group
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        if bytes < 8 && value >> (8 * bytes) != 0 {
            let start = index * CHUNK_DIGITS;
            return Err(DigitsError::Overflow {
                start,
                end: start + group.len(),
                bytes,
            });
        }
        out.extend_from_slice(&value.to_le_bytes()[..bytes]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        assert_eq!(encode(&[0x61, 0x62, 0xff]), "16736865");
        assert_eq!(encode(b""), "");
        assert_eq!(encode(&[0]), "000");
        assert_eq!(encode(&[0xff; 7]), "72057594037927935");
        assert_eq!(decode("72057594037927935").unwrap(), vec![0xff; 7]);
    }

    #[test]
    fn final_group_widths() {
        for (n, expected) in [(1, 3), (2, 5), (3, 8), (4, 10), (5, 13), (6, 15)] {
            assert_eq!(encode(&vec![0xff; n]).len(), expected, "{n} bytes");
            assert_eq!(
                encode(&vec![0xff; 7 + n]).len(),
                17 + expected,
                "{} bytes",
                7 + n
            );
        }
    }

    #[test]
    fn typed_errors() {
        assert_eq!(
            decode("999"),
            Err(DigitsError::Overflow {
                start: 0,
                end: 3,
                bytes: 1
            })
        );
        assert_eq!(
            decode("0"),
            Err(DigitsError::InvalidLength {
                len: 1,
                remainder: 1
            })
        );
        assert_eq!(
            decode("0000"),
            Err(DigitsError::InvalidLength {
                len: 4,
                remainder: 4
            })
        );
        assert_eq!(
            decode("12a"),
            Err(DigitsError::NotADigit {
                position: 2,
                found: 'a'
            })
        );
        assert_eq!(
            decode("１23"),
            Err(DigitsError::NotADigit {
                position: 0,
                found: '１'
            })
        );
        // 2^56 in a full group: one more than 7 bytes hold.
        assert_eq!(
            decode("72057594037927936"),
            Err(DigitsError::Overflow {
                start: 0,
                end: 17,
                bytes: 7
            })
        );
        // The largest value of 3 bytes is fine, one more is not.
        assert_eq!(decode("16777215").unwrap(), vec![0xff; 3]);
        assert!(matches!(
            decode("16777216"),
            Err(DigitsError::Overflow { bytes: 3, .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn decode_never_panics(s in "\\PC{0,80}") {
            let _ = decode(&s);
        }

        #[test]
        fn decode_digit_strings_never_panics(s in "[0-9]{0,120}") {
            // Whatever decodes must re-encode to the same digits (the encoding is a bijection).
            if let Ok(bytes) = decode(&s) {
                prop_assert_eq!(encode(&bytes), s);
            }
        }
    }
}
