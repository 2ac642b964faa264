//! Every known-answer vector in `shared/vectors/hybrid.json`, against `pocketkey_core::hybrid`.
//!
//! The file is read at test time from `../shared/vectors/hybrid.json` beside the workspace (as
//! CI lays it out), or else from `$POCKETKEY_VECTORS` (the file, or a folder holding it). If
//! neither exists the tests fail: a missing vector file must not pass as green.

use std::path::{Path, PathBuf};

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use pocketkey_core::hybrid::advert::{self, EidPlaintext};
use pocketkey_core::hybrid::crypter::Crypter;
use pocketkey_core::hybrid::digits;
use pocketkey_core::hybrid::domains::{self, DomainError};
use pocketkey_core::hybrid::keys::{self, EidKey, KeyPurpose};
use pocketkey_core::hybrid::noise::{self, Initiator, TrafficKeys};
use pocketkey_core::hybrid::qr::{QrCode, RequestType};
use pocketkey_core::hybrid::session::{encode_message, MessageType};
use serde_json::Value;

const ENV: &str = "POCKETKEY_VECTORS";

fn vectors_path() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("core/ is inside the workspace");
    let beside = workspace.join("../shared/vectors/hybrid.json");
    if beside.is_file() {
        return beside;
    }
    if let Some(var) = std::env::var_os(ENV) {
        let path = PathBuf::from(var);
        let path = if path.is_dir() {
            path.join("hybrid.json")
        } else {
            path
        };
        if path.is_file() {
            return path;
        }
        panic!("{ENV} is set but {} is not a file", path.display());
    }
    panic!(
        "hybrid vectors not found: looked for {} and ${ENV} is unset. Put shared/ beside the \
         checkout, or set {ENV} to the vectors file or folder.",
        beside.display()
    );
}

fn vectors() -> Value {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex_field(v: &Value, name: &str) -> Vec<u8> {
    unhex(
        v[name]
            .as_str()
            .unwrap_or_else(|| panic!("field {name} missing")),
    )
}

fn array<const N: usize>(v: &Value, name: &str) -> [u8; N] {
    hex_field(v, name)
        .try_into()
        .unwrap_or_else(|b: Vec<u8>| panic!("{name}: {} bytes, expected {N}", b.len()))
}

/// Named `hybrid::…` so that `cargo test -p pocketkey-core hybrid` runs these too.
mod hybrid {
    use super::*;

    #[test]
    fn digits() {
        let all = vectors();
        let cases = all["digits"].as_array().expect("digits");
        assert!(!cases.is_empty());
        for case in cases {
            let bytes = match (case.get("bytes_hex"), case.get("bytes_ascii")) {
                (Some(h), _) => unhex(h.as_str().unwrap()),
                (_, Some(a)) => a.as_str().unwrap().as_bytes().to_vec(),
                _ => panic!("digits case without bytes: {case}"),
            };
            let expected = case["digits"].as_str().unwrap();
            assert_eq!(digits::encode(&bytes), expected, "encode {case}");
            assert_eq!(digits::decode(expected).unwrap(), bytes, "decode {case}");
        }
    }

    #[test]
    fn digits_invalid() {
        let all = vectors();
        let cases = all["digits_invalid"].as_array().expect("digits_invalid");
        assert!(!cases.is_empty());
        for case in cases {
            let s = case.as_str().unwrap();
            assert!(digits::decode(s).is_err(), "{s:?} must not decode");
            // And the same digits are a typed QR error, not a panic.
            assert!(QrCode::parse(&format!("FIDO:/{s}")).is_err());
        }
    }

    #[test]
    fn domains() {
        let all = vectors();
        let cases = all["domains"].as_array().expect("domains");
        assert!(!cases.is_empty());
        for case in cases {
            let id = u16::try_from(case["id"].as_u64().unwrap()).unwrap();
            assert_eq!(
                domains::decode(id).unwrap(),
                case["domain"].as_str().unwrap(),
                "id {id}"
            );
        }
    }

    #[test]
    fn domains_invalid() {
        let all = vectors();
        let cases = all["domains_invalid"].as_array().expect("domains_invalid");
        assert!(!cases.is_empty());
        for case in cases {
            let id = u16::try_from(case.as_u64().unwrap()).unwrap();
            assert_eq!(domains::decode(id), Err(DomainError::Unassigned(id)));
        }
    }

    #[test]
    fn derive_eid_key() {
        let all = vectors();
        let cases = all["derive_eid_key"].as_array().expect("derive_eid_key");
        assert!(!cases.is_empty());
        for case in cases {
            let secret = hex_field(case, "secret");
            let salt = hex_field(case, "salt");
            let mut out = [0u8; 64];
            keys::derive(&secret, &salt, KeyPurpose::EidKey, &mut out);
            assert_eq!(out.to_vec(), hex_field(case, "key64"), "{case}");
            if salt.is_empty() {
                let secret: [u8; 16] = secret.try_into().unwrap();
                assert_eq!(keys::eid_key(&secret).as_bytes(), &out);
            }
        }
    }

    #[test]
    fn advert_decrypt() {
        let all = vectors();
        let v = &all["advert_decrypt"];
        let secret: [u8; 16] = array(v, "qr_secret");
        let key = keys::eid_key(&secret);
        let advert_bytes = hex_field(v, "advert");

        let eid = advert::decrypt(&key, &advert_bytes).expect("the advert decrypts");
        assert_eq!(eid.to_bytes(), array::<16>(v, "eid_plaintext"));
        assert_eq!(eid.nonce, array::<10>(v, "nonce"));
        assert_eq!(eid.routing_id, array::<3>(v, "routing_id"));
        assert_eq!(u64::from(eid.domain_id), v["domain_id"].as_u64().unwrap());

        // The phone's direction: encrypting the same EID gives the same advert (AES-ECB + HMAC are
        // deterministic).
        assert_eq!(advert::encrypt(&key, &eid).to_vec(), advert_bytes);
        assert_eq!(
            EidPlaintext::from_bytes(&array(v, "eid_plaintext")).unwrap(),
            eid
        );

        // A different key, or any flipped bit, is refused.
        assert!(advert::decrypt(&keys::eid_key(&[0; 16]), &advert_bytes).is_err());
        let mut flipped = advert_bytes.clone();
        flipped[19] ^= 1;
        assert!(advert::decrypt(&key, &flipped).is_err());
        assert!(advert::decrypt(&EidKey::from_bytes([0; 64]), &advert_bytes).is_err());

        let tunnel_id = keys::tunnel_id(&secret);
        assert_eq!(tunnel_id, array::<16>(v, "tunnel_id"));
        assert_eq!(*keys::psk(&secret, &eid.to_bytes()), array::<32>(v, "psk"));
        let domain = domains::decode(eid.domain_id).unwrap();
        assert_eq!(
            domains::new_tunnel_url(&domain, &tunnel_id),
            v["new_url"].as_str().unwrap()
        );
    }

    #[test]
    fn qr_payloads() {
        let all = vectors();
        let v = &all["qr_payloads"];
        let entries = v.as_object().expect("qr_payloads is a map");
        assert!(entries.len() >= 2);
        for (name, payload) in entries {
            if name == "about" {
                continue;
            }
            let cbor = unhex(payload.as_str().unwrap());
            let code = QrCode::from_cbor(&cbor).unwrap_or_else(|e| panic!("{name}: {e}"));
            // Through the full text path too: FIDO:/ + digits, scheme in any case.
            let url = format!("FIDO:/{}", digits::encode(&cbor));
            assert_eq!(QrCode::parse(&url).unwrap(), code, "{name}");
            assert_eq!(QrCode::parse(&url.to_lowercase()).unwrap(), code, "{name}");

            // Both are registration codes from browsers that know both assigned domains.
            assert_eq!(
                code.compressed_public_key().to_vec(),
                cbor[4..37].to_vec(),
                "{name}: key 0"
            );
            assert_eq!(code.known_domains, Some(2), "{name}");
            assert!(code.timestamp.is_some(), "{name}");
            assert!(code.supports_linking.is_some(), "{name}");
            assert_eq!(
                code.request_type,
                Some(RequestType::MakeCredential),
                "{name}"
            );
            assert_eq!(code.key6, None, "{name}");
            // Re-encoding yields the same bytes (the payloads are canonical).
            assert_eq!(code.to_cbor(), cbor, "{name}");
        }
        let chrome = QrCode::from_cbor(&unhex(v["chrome_cbor"].as_str().unwrap())).unwrap();
        let safari = QrCode::from_cbor(&unhex(v["safari_cbor"].as_str().unwrap())).unwrap();
        assert_eq!(chrome.supports_linking, Some(true));
        assert_eq!(safari.supports_linking, Some(false));
        assert_eq!(chrome.timestamp, Some(0x6356217b));
        assert_eq!(safari.timestamp, Some(0x6396b230));
    }

    #[test]
    fn responder_handshake() {
        let all = vectors();
        let v = &all["responder_handshake"];
        let secret: [u8; 16] = array(v, "qr_secret");
        let eid: [u8; 16] = array(v, "eid_plaintext");
        let psk = keys::psk(&secret, &eid);
        assert_eq!(
            *psk,
            array::<32>(v, "psk"),
            "PSK from the QR secret and the EID"
        );

        let static_private =
            SecretKey::from_slice(&hex_field(v, "initiator_static_private")).unwrap();
        let static_public =
            PublicKey::from_sec1_bytes(&hex_field(v, "initiator_static_public_compressed"))
                .unwrap();
        assert_eq!(static_private.public_key(), static_public);
        assert_eq!(
            static_public.to_encoded_point(true).as_bytes(),
            &hex_field(v, "initiator_static_public_compressed")[..]
        );

        // The browser's message, reproduced from its fixed ephemeral.
        let msg1 = hex_field(v, "msg1");
        assert_eq!(msg1.len(), noise::HANDSHAKE_MESSAGE_LEN);
        let (initiator, our_msg1) = Initiator::start_with_fixed_ephemeral_for_testing(
            &static_private,
            &psk,
            &array(v, "initiator_ephemeral_private"),
        )
        .unwrap();
        assert_eq!(our_msg1.to_vec(), msg1, "msg1");

        // The phone's answer, from its fixed ephemeral.
        let (msg2, phone) = noise::respond_with_fixed_ephemeral_for_testing(
            &static_public,
            &psk,
            &msg1,
            &array(v, "responder_ephemeral_private"),
        )
        .unwrap();
        assert_eq!(msg2.to_vec(), hex_field(v, "msg2"), "msg2");
        assert_eq!(
            phone.handshake_hash,
            array::<32>(v, "handshake_hash"),
            "handshake hash"
        );
        assert_eq!(
            *phone.keys.read,
            array::<32>(v, "phone_read_key"),
            "phone read key"
        );
        assert_eq!(
            *phone.keys.write,
            array::<32>(v, "phone_write_key"),
            "phone write key"
        );

        // The browser finishes on the vector's msg2 and agrees.
        let browser = initiator.finish(&msg2).unwrap();
        assert_eq!(browser.handshake_hash, phone.handshake_hash);
        assert_eq!(*browser.keys.write, *phone.keys.read);
        assert_eq!(*browser.keys.read, *phone.keys.write);

        // A random-ephemeral phone still completes with the vector's msg1 (only msg2 differs).
        let (other_msg2, _) = noise::respond(&static_public, &psk, &msg1).unwrap();
        assert_ne!(other_msg2.to_vec(), hex_field(v, "msg2"));

        // The browser's shutdown at sequence number 1: the browser's crypter, having sent one
        // message (counter 0), encrypts shutdown exactly as the vector; the phone decrypts both.
        let expected = hex_field(v, "shutdown_from_initiator_seq1");
        let browser_keys = TrafficKeys {
            read: phone.keys.write.clone(),
            write: phone.keys.read.clone(),
        };
        let mut browser_crypter = Crypter::new(&browser_keys);
        let first = browser_crypter
            .encrypt(&encode_message(MessageType::Ctap, &[0x04]))
            .unwrap();
        let shutdown = browser_crypter
            .encrypt(&encode_message(MessageType::Shutdown, &[]))
            .unwrap();
        assert_eq!(shutdown, expected, "shutdown ciphertext at counter 1");

        let mut phone_crypter = Crypter::new(&phone.keys);
        assert_eq!(phone_crypter.decrypt(&first).unwrap(), vec![0x01, 0x04]);
        assert_eq!(
            phone_crypter.decrypt(&expected).unwrap(),
            vec![0x00],
            "decrypted shutdown"
        );
        // At counter 0 the same bytes do not authenticate.
        assert!(Crypter::new(&phone.keys).decrypt(&expected).is_err());
    }

    /// Every group in the file is covered by a test above: a new group must get one.
    #[test]
    fn every_group_is_tested() {
        let all = vectors();
        let known = [
            "about",
            "digits",
            "digits_invalid",
            "domains",
            "domains_invalid",
            "derive_eid_key",
            "advert_decrypt",
            "qr_payloads",
            "responder_handshake",
        ];
        for key in all.as_object().expect("a JSON object").keys() {
            assert!(
                known.contains(&key.as_str()),
                "vector group {key:?} has no test"
            );
        }
    }
}
