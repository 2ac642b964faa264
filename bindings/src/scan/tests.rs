use proptest::prelude::*;

use super::*;

fn scan(text: &str) -> Result<ScannedCode, ScanError> {
    classify_scan(text.to_string(), ScanSource::Camera)
}

fn link(text: &str) -> Result<ScannedCode, ScanError> {
    classify_scan(text.to_string(), ScanSource::Link)
}

/// A pairing code pairs only from the app's camera; from a link (a web page's deep link,
/// another app) it is refused with its own error. Hybrid codes and invitations are links too.
#[test]
fn pairing_codes_only_from_the_camera() {
    let url = "pocketkey://pair?v=1&k=AAAA&s=BBBB&r=wss%3A%2F%2Frelay.example&n=Work%20laptop";
    assert_eq!(scan(url), Ok(ScannedCode::Pairing { url: url.into() }));
    assert_eq!(link(url), Err(ScanError::PairingNeedsCamera));
    assert_eq!(
        link("POCKETKEY://PAIR?x=1"),
        Err(ScanError::PairingNeedsCamera)
    );
    assert_eq!(
        ScanError::PairingNeedsCamera.user_message(),
        "Scan the code shown by PocketKey on your computer with the app's camera"
    );
    // Damaged codes keep their own error, whatever the source.
    assert_eq!(link("pocketkey://pair"), Err(ScanError::Malformed));
    assert_eq!(link(QR), Ok(ScannedCode::Hybrid { url: QR.into() }));
    let invitation = "pocketkey://activate?token=t0k3n";
    assert!(matches!(
        link(invitation),
        Ok(ScannedCode::Activation { .. })
    ));
}

const QR: &str = "FIDO:/1234567890123456701234567890123456789";

#[test]
fn hybrid_codes() {
    assert_eq!(scan(QR), Ok(ScannedCode::Hybrid { url: QR.into() }));
    let lower = QR.replace("FIDO", "fido");
    assert_eq!(scan(&lower), Ok(ScannedCode::Hybrid { url: lower.clone() }));
    assert_eq!(
        scan(&format!(" {QR} ")),
        Ok(ScannedCode::Hybrid { url: QR.into() })
    );
    for bad in [
        "FIDO:/",
        "FIDO:/12a",
        "FIDO:/1234",
        "FIDO://123",
        "FIDO:/١٢٣",
        "FIDO:/123 456",
    ] {
        assert_eq!(scan(bad), Err(ScanError::Malformed), "{bad}");
    }
}

#[test]
fn pairing_codes() {
    let url = "pocketkey://pair?k=AAAA&s=BBBB&r=wss%3A%2F%2Frelay.example&n=Work%20laptop";
    assert_eq!(scan(url), Ok(ScannedCode::Pairing { url: url.into() }));
    assert_eq!(
        scan("POCKETKEY://PAIR?x=1"),
        Ok(ScannedCode::Pairing {
            url: "POCKETKEY://PAIR?x=1".into()
        })
    );
    for bad in [
        "pocketkey://pair",
        "pocketkey://pair?",
        "pocketkey://pair/extra?x=1",
        "pocketkey:pair?x=1",
        "pocketkey://unknown?x=1",
    ] {
        assert_eq!(scan(bad), Err(ScanError::Malformed), "{bad}");
    }
}

#[test]
fn activation_links() {
    let url = "https://keys.example.com/activate?org=acme&token=abc%2Fdef";
    assert_eq!(
        scan(url),
        Ok(ScannedCode::Activation {
            url: url.into(),
            token: "abc/def".into()
        })
    );
    let url = "pocketkey://activate?token=t0k3n";
    assert_eq!(
        scan(url),
        Ok(ScannedCode::Activation {
            url: url.into(),
            token: "t0k3n".into()
        })
    );
    let url = "https://keys.example.com:8443/activate/?token=x";
    assert_eq!(
        scan(url),
        Ok(ScannedCode::Activation {
            url: url.into(),
            token: "x".into()
        })
    );
    // The form pocketkey-org mails: the token as the last path segment.
    let token = "0123456789abcdef".repeat(4);
    for url in [
        format!("https://keys.example.com/activate/{token}"),
        format!("https://keys.example.com:8443/org/activate/{token}"),
    ] {
        assert_eq!(
            scan(&url),
            Ok(ScannedCode::Activation {
                url: url.clone(),
                token: token.clone()
            })
        );
    }
    // Plain http only to loopback: a test's or an emulator's own server.
    for url in [
        format!("http://127.0.0.1:8080/activate/{token}"),
        format!("http://[::1]:8080/activate/{token}"),
        format!("http://localhost/activate/{token}"),
        "http://127.0.0.1:8080/activate?token=x".to_string(),
    ] {
        assert!(
            matches!(scan(&url), Ok(ScannedCode::Activation { .. })),
            "{url}"
        );
    }
    for bad in [
        format!("https://keys.example.com/activate/{token}?token=x"),
        format!("https://u:p@keys.example.com/activate/{token}"),
    ] {
        assert_eq!(scan(&bad), Err(ScanError::Malformed), "{bad}");
    }
    for other in [
        "https://example.com/activate/welcome".to_string(),
        format!("https://example.com/activate/{token}/more"),
        format!("https://example.com/deactivate/{token}"),
        format!("http://keys.example.com/activate/{token}"),
    ] {
        assert_eq!(scan(&other), Err(ScanError::NotOurs), "{other}");
    }
    for bad in [
        "pocketkey://activate",
        "pocketkey://activate?token=",
        "https://keys.example.com/activate?token=a&token=b",
        "https://keys.example.com/activate?token=a%0Ab",
        "https://user:pw@keys.example.com/activate?token=a",
    ] {
        assert_eq!(scan(bad), Err(ScanError::Malformed), "{bad}");
    }
}

#[test]
fn everything_else_is_not_ours() {
    for other in [
        "",
        "hello",
        "https://example.com/",
        "https://example.com/activate",
        "https://example.com/activate?org=acme",
        "http://keys.example.com/activate?token=abc",
        "https://example.com/activation?token=abc",
        "WIFI:S:home;T:WPA;P:secret;;",
        "mailto:someone@example.com",
    ] {
        assert_eq!(scan(other), Err(ScanError::NotOurs), "{other}");
    }
}

#[test]
fn long_or_controlled_text_is_malformed() {
    let long = format!(
        "https://example.com/activate?token={}",
        "a".repeat(MAX_SCAN_LEN)
    );
    assert_eq!(scan(&long), Err(ScanError::Malformed));
    let at_limit = format!("FIDO:/{}", "1".repeat(17 * 240));
    assert!(at_limit.len() <= MAX_SCAN_LEN);
    assert!(scan(&at_limit).is_ok());
    for bad in [
        format!("{QR}\n"),
        "pocketkey://pair?x=\u{7}".into(),
        "hello\u{0}".into(),
        "a\u{85}b".into(),
    ] {
        assert_eq!(scan(&bad), Err(ScanError::Malformed), "{bad:?}");
    }
}

#[test]
fn messages_are_sentences() {
    assert_eq!(
        ScanError::NotOurs.user_message(),
        "This is not a PocketKey or passkey code"
    );
}

proptest! {
    #[test]
    fn never_panics_on_any_text(text in ".{0,300}") {
        let _ = classify_scan(text, ScanSource::Link);
    }

    #[test]
    fn never_panics_on_near_misses(
        prefix in prop::sample::select(vec!["FIDO:/", "fido:/", "pocketkey://pair?", "pocketkey://activate?",
            "https://h/activate?", "pocketkey://", "https://"]),
        rest in "[ -~\u{80}-\u{10FFFF}]{0,200}",
    ) {
        let _ = classify_scan(format!("{prefix}{rest}"), ScanSource::Camera);
    }

    #[test]
    fn every_well_formed_qr_is_hybrid(bytes in prop::collection::vec(any::<u8>(), 1..120)) {
        // Digit counts of the QR encoding: 17 per 7 bytes, then 3/5/8/10/13/15.
        let tail = [0, 3, 5, 8, 10, 13, 15][bytes.len() % 7];
        let digits = "7".repeat(17 * (bytes.len() / 7) + tail);
        let url = format!("FIDO:/{digits}");
        prop_assert_eq!(classify_scan(url.clone(), ScanSource::Link), Ok(ScannedCode::Hybrid { url }));
    }
}
