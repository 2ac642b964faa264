//! Arbitrary bytes into the hybrid (caBLE v2) QR parsers: as lossy UTF-8 text into
//! `QrCode::parse` (`FIDO:/` + digits) and `digits::decode`, and as raw bytes into
//! `QrCode::from_cbor` (the payload after the digits).
//!
//! Checked on every input: no panic; digits decode only from the one string `digits::encode`
//! makes of the bytes; an accepted code's CBOR (`to_cbor`) and text (`to_url`) parse back to a
//! code with the same fields (compared by their canonical CBOR, since key 6 may hold a NaN) and
//! the canonical CBOR is a fixed point; the text form and the payload form agree.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketkey_core::hybrid::digits;
use pocketkey_core::hybrid::qr::{QrCode, SCHEME};

/// The re-encodings of an accepted code parse back to the same code.
fn round_trip(code: &QrCode) {
    let cbor = code.to_cbor();
    let again = QrCode::from_cbor(&cbor)
        .unwrap_or_else(|e| panic!("{code:?}: its canonical CBOR does not parse: {e}"));
    assert_eq!(again.to_cbor(), cbor, "canonical CBOR is a fixed point");
    assert_eq!(again.compressed_public_key(), code.compressed_public_key());
    assert_eq!(*again.secret, *code.secret);
    assert_eq!(again.known_domains, code.known_domains);
    assert_eq!(again.timestamp, code.timestamp);
    assert_eq!(again.supports_linking, code.supports_linking);
    assert_eq!(again.request_type, code.request_type);
    let url = code.to_url();
    assert!(url.starts_with(SCHEME));
    let parsed = QrCode::parse(&url)
        .unwrap_or_else(|e| panic!("{code:?}: its FIDO:/ text does not parse: {e}"));
    assert_eq!(parsed.to_cbor(), cbor);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(bytes) = digits::decode(&text) {
        assert_eq!(
            digits::encode(&bytes),
            text,
            "one digit string per byte string"
        );
    }
    if let Ok(code) = QrCode::parse(&text) {
        round_trip(&code);
        // The text form is the payload form behind the scheme and the digits.
        let trimmed = text.trim();
        let payload = digits::decode(&trimmed[SCHEME.len()..]).expect("digits that parsed");
        let direct = QrCode::from_cbor(&payload).expect("a payload that parsed");
        assert_eq!(direct.to_cbor(), code.to_cbor());
    }
    if let Ok(code) = QrCode::from_cbor(data) {
        round_trip(&code);
    }
});
