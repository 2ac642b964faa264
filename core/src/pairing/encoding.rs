//! The text encodings of the pairing URL and the relay headers: base64url without padding,
//! percent-encoding, lower-case hex. Decoders are strict: one spelling per byte string
//! (except hex, whose case is free), so that a value always round-trips.

/// The base64url alphabet (RFC 4648 §5).
const B64U: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding.
pub fn b64u_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(B64U[index as usize]));
        }
    }
    out
}

fn b64u_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes base64url without padding. Refuses `=`, characters outside the alphabet, a length
/// of 1 mod 4 and non-zero trailing bits (so every byte string has exactly one encoding).
pub fn b64u_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= b64u_value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        let len = chunk.len() - 1; // 4 chars → 3 bytes, 3 → 2, 2 → 1
                                   // The bits below the last full byte must be zero.
        let used_bits = 8 * len;
        if n & ((1u32 << (24 - used_bits)) - 1) != 0 {
            return None;
        }
        out.extend_from_slice(&bytes[1..=len]);
    }
    Some(out)
}

/// Percent-encodes every byte except the unreserved `A-Z a-z 0-9 - . _ ~`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes and `+` (a space, as in form encoding); the result must be UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Lower-case hex.
pub fn hex_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX_LOWER[usize::from(b >> 4)]));
        out.push(char::from(HEX_LOWER[usize::from(b & 0xf)]));
    }
    out
}

/// Hex of exactly `N` bytes, either case.
pub fn hex_decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = hex_value(pair[0])? << 4 | hex_value(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors_in_the_url_alphabet() {
        // RFC 4648 §10, without padding.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64u_encode(plain.as_bytes()), encoded);
            assert_eq!(b64u_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(b64u_encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64u_decode("-_8").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn b64u_refuses_other_spellings() {
        assert_eq!(b64u_decode("Zg=="), None, "padding");
        assert_eq!(b64u_decode("Zh"), None, "non-zero trailing bits");
        assert_eq!(b64u_decode("Zm9"), None, "non-zero trailing bits");
        assert_eq!(b64u_decode("Z"), None, "length 1 mod 4");
        assert_eq!(b64u_decode("+/8"), None, "standard alphabet");
        assert_eq!(b64u_decode("Zm 9"), None);
    }

    #[test]
    fn percent_coding() {
        assert_eq!(percent_encode("a b/é~"), "a%20b%2F%C3%A9~");
        assert_eq!(percent_decode("a%20b%2f%C3%A9~").unwrap(), "a b/é~");
        assert_eq!(percent_decode("a+b").unwrap(), "a b");
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%FF"), None, "not UTF-8");
    }

    #[test]
    fn hex() {
        assert_eq!(hex_encode(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(hex_decode::<3>("00AB7f"), Some([0x00, 0xab, 0x7f]));
        assert_eq!(hex_decode::<3>("00ab7"), None);
        assert_eq!(hex_decode::<1>("g0"), None);
    }

    proptest! {
        #[test]
        fn b64u_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let text = b64u_encode(&bytes);
            prop_assert!(!text.contains('='));
            prop_assert_eq!(b64u_decode(&text).unwrap(), bytes);
        }

        #[test]
        fn b64u_decode_never_panics_and_is_canonical(text in "[A-Za-z0-9_=+/-]{0,40}") {
            if let Some(bytes) = b64u_decode(&text) {
                prop_assert_eq!(b64u_encode(&bytes), text);
            }
        }

        #[test]
        fn percent_round_trip(text in "\\PC{0,40}") {
            prop_assert_eq!(percent_decode(&percent_encode(&text)).unwrap(), text);
        }

        #[test]
        fn percent_decode_never_panics(text in "[%+a-fA-F0-9 é]{0,40}") {
            let _ = percent_decode(&text);
        }
    }
}
