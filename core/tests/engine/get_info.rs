//! authenticatorGetInfo (CTAP 2.1 §6.4): what the key says it is.

use ciborium::value::Value;
use pocketkey_testkit::cbor::{as_int, as_str, get, get_text};
use pocketkey_testkit::key::Key;
use pocketkey_testkit::responses::info_option;

#[test]
fn get_info_describes_a_phone_key() {
    let mut key = Key::new();
    let info = key.info();
    let versions: Vec<&str> = match get(&info, 1).unwrap() {
        Value::Array(a) => a.iter().map(as_str).collect(),
        _ => panic!(),
    };
    for v in ["U2F_V2", "FIDO_2_0", "FIDO_2_1"] {
        assert!(versions.contains(&v), "{v} missing from {versions:?}");
    }
    for opt in [
        "rk",
        "up",
        "uv",
        "pinUvAuthToken",
        "credMgmt",
        "authnrCfg",
        "makeCredUvNotRqd",
    ] {
        assert_eq!(info_option(&info, opt), Some(true), "option {opt}");
    }
    assert_eq!(
        info_option(&info, "clientPin"),
        Some(false),
        "clientPin present and false until a PIN is set"
    );
    let protocols: Vec<i128> = match get(&info, 6).unwrap() {
        Value::Array(a) => a.iter().map(as_int).collect(),
        _ => panic!(),
    };
    assert_eq!(protocols, vec![2, 1]);
    let algs: Vec<i128> = match get(&info, 0x0A).unwrap() {
        Value::Array(a) => a
            .iter()
            .map(|p| as_int(get_text(p, "alg").unwrap()))
            .collect(),
        _ => panic!(),
    };
    assert!(algs.contains(&-7) && algs.contains(&-8));

    // Without built-in UV the "uv" option is absent (CTAP 2.1 §6.4: absent = not supported).
    let mut no_uv = Key::in_memory(false);
    assert_eq!(info_option(&no_uv.info(), "uv"), None);
}
