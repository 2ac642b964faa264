//! Arbitrary bytes (as lossy UTF-8) as a scanned pairing link/QR text into
//! `pocketkey_core::pairing::url::PairingUrl::parse_with`, under both relay policies.
//!
//! Checked on every input: no panic; a URL accepted under the strict policy is accepted, equal,
//! under the lenient one; an accepted URL's fields pass the field rules, rebuild with
//! `PairingUrl::new` to the same value, and its `to_url_string` parses back to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketkey_core::pairing::url::{
    validate_name, validate_relay_url, PairingUrl, UrlPolicy, MAX_URL_LEN,
};

fn check(text: &str, policy: UrlPolicy) -> Option<PairingUrl> {
    let url = PairingUrl::parse_with(text, policy).ok()?;
    assert!(text.len() <= MAX_URL_LEN);
    assert_eq!(validate_name(&url.name), Ok(()));
    assert_eq!(validate_relay_url(&url.relay_url, policy), Ok(()));
    let rebuilt = PairingUrl::new(
        url.bridge_key,
        url.secret.clone(),
        &url.relay_url,
        &url.name,
        policy,
    )
    .unwrap_or_else(|e| panic!("an accepted URL does not rebuild: {e:?}"));
    assert_eq!(rebuilt, url);
    let encoded = url.to_url_string();
    assert_eq!(url.to_string(), encoded);
    let again = PairingUrl::parse_with(&encoded, policy)
        .unwrap_or_else(|e| panic!("the re-encoded URL does not parse: {e:?}"));
    assert_eq!(again, url);
    assert_eq!(again.to_url_string(), encoded, "encoding is a fixed point");
    Some(url)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let strict = check(&text, UrlPolicy::Strict);
    let lenient = check(&text, UrlPolicy::AllowInsecureRelay);
    if let Some(strict) = strict {
        assert_eq!(lenient.as_ref(), Some(&strict), "strict ⊆ lenient");
    }
});
