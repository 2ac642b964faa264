//! Unit tests of the tunnel's pure parts. The whole session (a scripted tunnel server and
//! browser) is tested through the app facade, in `pocketkey-ffi`.

use super::tunnel::{new_tunnel_url, parse_routing_id};
use super::*;

const ROUTING: [u8; 3] = [0xAB, 0xCD, 0x01];

#[test]
fn routing_ids() {
    assert_eq!(parse_routing_id(b"ABCD01"), Ok(ROUTING));
    assert_eq!(parse_routing_id(b"abcd01"), Ok(ROUTING));
    for bad in [
        &b""[..],
        b"ABCD0",
        b"ABCD012",
        b"GBCD01",
        b"AB CD0",
        b"\xff\xff\xff\xff\xff\xff",
    ] {
        assert!(
            matches!(parse_routing_id(bad), Err(Error::TunnelProtocol { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn tunnel_urls() {
    let id = [0xab; 16];
    let hex = "AB".repeat(16);
    for (base, expected) in [
        (
            "wss://cable.ua5v.com",
            format!("wss://cable.ua5v.com/cable/new/{hex}"),
        ),
        (
            "ws://127.0.0.1:8080/",
            format!("ws://127.0.0.1:8080/cable/new/{hex}"),
        ),
        (
            "wss://relay.example/tunnels",
            format!("wss://relay.example/tunnels/cable/new/{hex}"),
        ),
    ] {
        assert_eq!(new_tunnel_url(base, &id).unwrap().as_str(), expected);
    }
    for bad in ["https://x", "ws://", "x", "wss://u@h", "ws://h#f"] {
        assert!(
            matches!(new_tunnel_url(bad, &id), Err(Error::InvalidOptions { .. })),
            "{bad}"
        );
    }
}

#[test]
fn tls_config_with_a_bad_extra_root_is_invalid_options() {
    tunnel::tls_config(&[]).unwrap();
    assert!(matches!(
        tunnel::tls_config(&[vec![1, 2, 3]]),
        Err(Error::InvalidOptions { .. })
    ));
}

#[test]
fn errors_read_as_sentences_with_details_apart() {
    let e = Error::HandshakeFailed {
        detail: "rejected".into(),
    };
    assert_eq!(
        e.user_message(),
        "The browser could not be verified: scan the QR code again"
    );
    assert_eq!(
        e.describe(),
        "The browser could not be verified: scan the QR code again (rejected)"
    );
    assert_eq!(
        Error::TimedOut {
            waiting_for: Wait::Browser
        }
        .to_string(),
        "Timed out waiting for the browser to connect"
    );
}
