//! The relay served in-process on 127.0.0.1, driven by real websocket clients.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use pocketkey_relay::registry::RegistryFuture;
use pocketkey_relay::{
    serve_with_registry, ClaimError, Config, RegisterError, RemoveError, RoutingId, TunnelId,
    TunnelRegistry,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------------
// Happy paths and closing

#[tokio::test]
async fn phone_and_browser_exchange_messages_and_the_browser_closes() {
    let relay = start(Config::default()).await;
    let addr = relay.local_addr();
    let tunnel = tunnel_id();
    let (mut phone, routing) = open(addr, &tunnel).await;
    assert_eq!(relay.open_tunnels(), 1);
    // The browser may write the ids in lower case.
    let mut browser = join(addr, &routing.to_lowercase(), &tunnel.to_lowercase()).await;

    // The browser speaks first in caBLE (Noise initiator); then both ways, in order.
    send(&mut browser, b"handshake from browser").await;
    assert_eq!(recv(&mut phone).await, b"handshake from browser");
    send(&mut phone, b"handshake from phone").await;
    send(&mut phone, b"").await;
    let big = vec![0xA5; 64 * 1024]; // exactly the default limit
    send(&mut phone, &big).await;
    assert_eq!(recv(&mut browser).await, b"handshake from phone");
    assert_eq!(recv(&mut browser).await, b"");
    assert_eq!(recv(&mut browser).await, big);
    for i in 0u8..20 {
        send(&mut browser, &[i; 100]).await;
    }
    for i in 0u8..20 {
        assert_eq!(recv(&mut phone).await, [i; 100]);
    }
    // Pings are answered per hop (by the relay), not forwarded.
    browser
        .send(Message::Ping(vec![1, 2].into()))
        .await
        .unwrap();
    send(&mut browser, b"after ping").await;
    assert_eq!(recv(&mut phone).await, b"after ping");
    let pong = tokio::time::timeout(PATIENCE, browser.next())
        .await
        .unwrap();
    assert!(
        matches!(&pong, Some(Ok(Message::Pong(data))) if data[..] == [1, 2]),
        "{pong:?}"
    );

    browser
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        }))
        .await
        .unwrap();
    assert_eq!(closed(phone).await, (1000, "done".to_string()));
    // The browser gets the relay's close reply and then the end of the connection.
    let reply = tokio::time::timeout(PATIENCE, browser.next())
        .await
        .unwrap();
    assert!(
        matches!(reply, Some(Ok(Message::Close(_))) | None),
        "{reply:?}"
    );
    drop(browser);
    until_no_tunnels(&relay).await;

    // The tunnel is gone; its id may be used again.
    assert_eq!(
        refused(cable_request(&connect_url(addr, &routing, &tunnel))).await,
        404
    );
    let (_phone, _) = open(addr, &tunnel).await;
}

#[tokio::test]
async fn the_phone_closing_closes_the_browser() {
    let relay = start(Config::default()).await;
    let (mut phone, mut browser) = pair(relay.local_addr()).await;
    send(&mut phone, b"x").await;
    assert_eq!(recv(&mut browser).await, b"x");
    phone
        .close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "user left".into(),
        }))
        .await
        .unwrap();
    assert_eq!(closed(browser).await, (1001, "user left".to_string()));
    drop(phone);
    until_no_tunnels(&relay).await;
}

#[tokio::test]
async fn a_side_vanishing_without_close_frame_closes_the_other_with_1001() {
    let relay = start(Config::default()).await;
    let (phone, browser) = pair(relay.local_addr()).await;
    drop(browser); // TCP closed, no close frame
    assert_eq!(closed(phone).await.0, 1001);
    until_no_tunnels(&relay).await;

    // Also while waiting for a browser: the tunnel is forgotten.
    let addr = relay.local_addr();
    let tunnel = tunnel_id();
    let (phone, routing) = open(addr, &tunnel).await;
    until_tunnels(&relay, 1).await;
    drop(phone);
    until_no_tunnels(&relay).await;
    assert_eq!(
        refused(cable_request(&connect_url(addr, &routing, &tunnel))).await,
        404
    );
}

#[tokio::test]
async fn messages_the_phone_sends_before_the_join_are_delivered_after_it() {
    let relay = start(Config::default()).await;
    let addr = relay.local_addr();
    let tunnel = tunnel_id();
    let (mut phone, routing) = open(addr, &tunnel).await;
    send(&mut phone, b"early 1").await;
    send(&mut phone, b"early 2").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut browser = join(addr, &routing, &tunnel).await;
    send(&mut phone, b"late").await;
    assert_eq!(recv(&mut browser).await, b"early 1");
    assert_eq!(recv(&mut browser).await, b"early 2");
    assert_eq!(recv(&mut browser).await, b"late");
}

#[tokio::test]
async fn concurrent_tunnels_do_not_cross() {
    let relay = start(Config::default()).await;
    let addr = relay.local_addr();
    let mut sessions = Vec::new();
    for n in 0u32..24 {
        sessions.push(tokio::spawn(async move {
            let (mut phone, mut browser) = pair(addr).await;
            for i in 0u32..10 {
                let to_phone = format!("tunnel {n} browser {i}");
                let to_browser = format!("tunnel {n} phone {i}");
                send(&mut browser, to_phone.as_bytes()).await;
                send(&mut phone, to_browser.as_bytes()).await;
                assert_eq!(recv(&mut phone).await, to_phone.as_bytes());
                assert_eq!(recv(&mut browser).await, to_browser.as_bytes());
                tokio::task::yield_now().await;
            }
            browser.close(None).await.unwrap();
            let frame = match tokio::time::timeout(PATIENCE, phone.next()).await.unwrap() {
                Some(Ok(Message::Close(frame))) => frame,
                other => panic!("tunnel {n}: {other:?}"),
            };
            // A close frame without a status code is forwarded as such.
            assert_eq!(frame, None);
        }));
    }
    // All of them open at once at some point.
    for session in sessions {
        session.await.unwrap();
    }
    until_no_tunnels(&relay).await;
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[tokio::test]
async fn connect_to_an_unknown_tunnel_is_404() {
    let relay = start(Config::default()).await;
    let addr = relay.local_addr();
    let tunnel = tunnel_id();
    assert_eq!(
        refused(cable_request(&connect_url(addr, "ABCDEF", &tunnel))).await,
        404
    );

    // Known tunnel id, wrong routing id.
    let (_phone, routing) = open(addr, &tunnel).await;
    let wrong = format!("{:06X}", u32::from_str_radix(&routing, 16).unwrap() ^ 1);
    assert_eq!(
        refused(cable_request(&connect_url(addr, &wrong, &tunnel))).await,
        404
    );
    // Known routing id, wrong tunnel id.
    assert_eq!(
        refused(cable_request(&connect_url(addr, &routing, &tunnel_id()))).await,
        404
    );
    // The tunnel is still there for the right browser.
    let _browser = join(addr, &routing, &tunnel).await;
}

#[tokio::test]
async fn malformed_ids_are_400_and_unknown_paths_404() {
    let relay = start(Config::default()).await;
    let addr = relay.local_addr();
    let tunnel = tunnel_id();
    for path in [
        format!("/cable/new/{}", &tunnel[1..]),
        format!("/cable/new/{}0", tunnel),
        format!(
            "/cable/new/{}",
            tunnel.replace(|c: char| c.is_ascii_digit(), "Z")
        ),
        format!("/cable/new/{tunnel}/extra"),
        format!("/cable/connect/ABCDEG/{tunnel}"),
        format!("/cable/connect/ABCD/{tunnel}"),
        format!("/cable/connect/{tunnel}"),
        format!("/cable/connect/ABCDEF/{}", &tunnel[2..]),
    ] {
        let url = format!("ws://{addr}{path}");
        assert_eq!(refused(cable_request(&url)).await, 400, "{path}");
    }
    for path in ["/", "/cable", "/cable/old/00", "/index.html"] {
        let url = format!("ws://{addr}{path}");
        assert_eq!(refused(cable_request(&url)).await, 404, "{path}");
    }
}

#[tokio::test]
async fn a_missing_or_wrong_subprotocol_is_400() {
    let relay = start(Config::default()).await;
    let addr = relay.local_addr();
    let tunnel = tunnel_id();
    let bare = new_url(addr, &tunnel).into_client_request().unwrap();
    assert_eq!(refused(bare).await, 400);
    let mut wrong = new_url(addr, &tunnel).into_client_request().unwrap();
    wrong.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("fido.cable2, chat"),
    );
    assert_eq!(refused(wrong).await, 400);

    // The refusals registered nothing: the tunnel id is free, and a browser offering several
    // subprotocols including fido.cable is accepted.
    let (_phone, routing) = open(addr, &tunnel).await;
    let mut several = connect_url(addr, &routing, &tunnel)
        .into_client_request()
        .unwrap();
    several.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("chat, fido.cable"),
    );
    let bare_connect = connect_url(addr, &routing, &tunnel)
        .into_client_request()
        .unwrap();
    assert_eq!(refused(bare_connect).await, 400);
    let (_browser, response) = tokio_tungstenite::connect_async(several).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "fido.cable");
}

#[tokio::test]
async fn requests_that_are_not_websocket_upgrades() {
    let relay = start(Config::default()).await;
    let addr = relay.local_addr();
    let path = format!("/cable/new/{}", tunnel_id());
    let protocol = "Sec-WebSocket-Protocol: fido.cable";

    let (status, _) = raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: relay.test\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 400);
    let (status, text) = raw(
        addr,
        &raw_upgrade("POST", &path, &["Sec-WebSocket-Version: 13", protocol]),
    )
    .await;
    assert_eq!(status, 405);
    assert!(text.to_ascii_lowercase().contains("allow: get"), "{text}");
    let (status, text) = raw(
        addr,
        &raw_upgrade("GET", &path, &["Sec-WebSocket-Version: 12", protocol]),
    )
    .await;
    assert_eq!(status, 426);
    assert!(
        text.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{text}"
    );
    let (status, _) = raw(addr, &raw_upgrade("GET", &path, &[protocol])).await;
    assert_eq!(status, 400);
    let (status, text) = raw(addr, "GET /healthz HTTP/1.1\r\nHost: relay.test\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(text.ends_with("ok\n"), "{text}");
    assert_eq!(relay.open_tunnels(), 0);

    // A raw, correct handshake is answered 101 with the routing id.
    let (status, text) = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                raw_upgrade("GET", &path, &["Sec-WebSocket-Version: 13", protocol]).as_bytes(),
            )
            .await
            .unwrap();
        let mut head = vec![0u8; 1024];
        let n = stream.read(&mut head).await.unwrap();
        let text = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
        (text.split(' ').nth(1).unwrap().to_string(), text)
    };
    assert_eq!(status, "101");
    assert!(
        text.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{text}"
    );
    assert!(text.contains("x-cable-routing-id: "), "{text}");
}

/// The relay reads no request body: a handshake declaring one is refused before any upgrade
/// (content in a GET has no meaning, RFC 9110 §9.3.1), and HEAD is not served as GET.
#[tokio::test]
async fn a_declared_body_is_413_and_head_is_405() {
    let relay = start(Config::default()).await;
    let addr = relay.local_addr();
    let path = format!("/cable/new/{}", tunnel_id());
    let headers = [
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: fido.cable",
    ];
    let mut with_body = raw_upgrade("GET", &path, &[headers[0], headers[1], "Content-Length: 5"]);
    with_body.push_str("hello");
    let (status, text) = raw(addr, &with_body).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(relay.open_tunnels(), 0);

    for request in [
        raw_upgrade("HEAD", &path, &headers),
        "HEAD /healthz HTTP/1.1\r\nHost: relay.test\r\n\r\n".to_string(),
    ] {
        let (status, text) = raw(addr, &request).await;
        assert_eq!(status, 405, "{text}");
        assert!(
            text.to_ascii_lowercase().contains("allow: get\r\n"),
            "{text}"
        );
    }
    // A malformed id is 400 whatever the method, and names no methods.
    for method in ["HEAD", "POST"] {
        let (status, text) = raw(addr, &raw_upgrade(method, "/cable/new/XYZ", &headers)).await;
        assert_eq!(status, 400, "{text}");
        assert!(!text.to_ascii_lowercase().contains("allow:"), "{text}");
    }
    assert_eq!(relay.open_tunnels(), 0);
}

/// A registry that never answers (a store that hangs): the request is refused with 503 once
/// `handshake_timeout` has passed, its connection closed and its slot released, rather than
/// held open for ever.
#[tokio::test]
async fn a_registry_that_never_answers_is_503_after_the_handshake_timeout() {
    struct Stuck;
    impl TunnelRegistry for Stuck {
        fn register(
            &self,
            _: TunnelId,
            _: Duration,
        ) -> RegistryFuture<'_, Result<RoutingId, RegisterError>> {
            Box::pin(std::future::pending())
        }
        fn claim(&self, _: RoutingId, _: TunnelId) -> RegistryFuture<'_, Result<(), ClaimError>> {
            Box::pin(std::future::pending())
        }
        fn remove(&self, _: RoutingId, _: TunnelId) -> RegistryFuture<'_, Result<(), RemoveError>> {
            Box::pin(std::future::ready(Ok(())))
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        handshake_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let relay = serve_with_registry(listener, config, std::sync::Arc::new(Stuck)).unwrap();
    let addr = relay.local_addr();
    let headers = [
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: fido.cable",
    ];
    for path in [
        format!("/cable/new/{}", tunnel_id()),
        format!("/cable/connect/ABCDEF/{}", tunnel_id()),
    ] {
        let (status, text) = raw(addr, &raw_upgrade("GET", &path, &headers)).await;
        assert_eq!(status, 503, "{path}: {text}");
    }
    assert_eq!(relay.open_tunnels(), 0);
}

#[tokio::test]
async fn a_second_new_for_an_open_tunnel_is_409() {
    let relay = start(Config::default()).await;
    let addr = relay.local_addr();
    let tunnel = tunnel_id();
    let (_phone, routing) = open(addr, &tunnel).await;
    assert_eq!(refused(cable_request(&new_url(addr, &tunnel))).await, 409);
    let _browser = join(addr, &routing, &tunnel).await;
    assert_eq!(refused(cable_request(&new_url(addr, &tunnel))).await, 409);
    assert_eq!(relay.open_tunnels(), 1);
}

#[tokio::test]
async fn a_second_connect_to_a_joined_tunnel_is_410() {
    let relay = start(Config::default()).await;
    let addr = relay.local_addr();
    let tunnel = tunnel_id();
    let (mut phone, routing) = open(addr, &tunnel).await;
    let mut browser = join(addr, &routing, &tunnel).await;
    assert_eq!(
        refused(cable_request(&connect_url(addr, &routing, &tunnel))).await,
        410
    );
    // The first pair is undisturbed.
    send(&mut browser, b"still here").await;
    assert_eq!(recv(&mut phone).await, b"still here");
}

// ---------------------------------------------------------------------------------------------
// Limits

#[tokio::test]
async fn a_message_over_the_size_limit_closes_both_with_1009() {
    let config = Config {
        max_message_size: 1000,
        ..Config::default()
    };
    let relay = start(config).await;
    let (mut phone, mut browser) = pair(relay.local_addr()).await;
    send(&mut browser, &[1; 1000]).await;
    assert_eq!(recv(&mut phone).await, [1; 1000]);
    send(&mut browser, &[2; 1001]).await;
    assert_eq!(closed(browser).await.0, 1009);
    assert_eq!(closed(phone).await.0, 1009);
    until_no_tunnels(&relay).await;

    // From the phone too, and for a message split into small fragments.
    let (mut phone, browser) = pair(relay.local_addr()).await;
    use tokio_tungstenite::tungstenite::protocol::frame::{
        coding::{Data, OpCode},
        Frame, FrameHeader,
    };
    let fragment = |opcode, fin| {
        Message::Frame(Frame::from_payload(
            FrameHeader {
                is_final: fin,
                opcode: OpCode::Data(opcode),
                ..FrameHeader::default()
            },
            vec![3u8; 400].into(),
        ))
    };
    phone.send(fragment(Data::Binary, false)).await.unwrap();
    phone.send(fragment(Data::Continue, false)).await.unwrap();
    phone.send(fragment(Data::Continue, true)).await.unwrap();
    assert_eq!(closed(phone).await.0, 1009);
    assert_eq!(closed(browser).await.0, 1009);
}

/// The sockets read 1 KiB per system call (relay/src/config.rs `READ_BUFFER`): a message of
/// the largest size still arrives whole, both ways, in one frame and in fragments.
#[tokio::test]
async fn a_message_of_the_largest_size_passes_both_ways() {
    let max = Config::default().max_message_size;
    let relay = start(Config::default()).await;
    let (mut phone, mut browser) = pair(relay.local_addr()).await;
    let big: Vec<u8> = (0..max).map(|n| (n % 251) as u8).collect();
    send(&mut browser, &big).await;
    assert_eq!(recv(&mut phone).await, big);
    send(&mut phone, &big).await;
    assert_eq!(recv(&mut browser).await, big);
    use tokio_tungstenite::tungstenite::protocol::frame::{
        coding::{Data, OpCode},
        Frame, FrameHeader,
    };
    let chunks: Vec<&[u8]> = big.chunks(3000).collect();
    for (n, chunk) in chunks.iter().enumerate() {
        let header = FrameHeader {
            is_final: n + 1 == chunks.len(),
            opcode: OpCode::Data(if n == 0 { Data::Binary } else { Data::Continue }),
            ..FrameHeader::default()
        };
        let frame = Frame::from_payload(header, chunk.to_vec().into());
        phone.send(Message::Frame(frame)).await.unwrap();
    }
    assert_eq!(recv(&mut browser).await, big);
}

#[tokio::test]
async fn the_default_size_limit_is_64_kib() {
    let relay = start(Config::default()).await;
    let (mut phone, browser) = pair(relay.local_addr()).await;
    send(&mut phone, &vec![9; 64 * 1024 + 1]).await;
    assert_eq!(closed(phone).await.0, 1009);
    assert_eq!(closed(browser).await.0, 1009);
}

#[tokio::test]
async fn the_message_limit_closes_both_with_1008() {
    let config = Config {
        max_messages_per_tunnel: 5,
        ..Config::default()
    };
    let relay = start(config).await;
    let addr = relay.local_addr();
    let tunnel = tunnel_id();
    let (mut phone, routing) = open(addr, &tunnel).await;
    send(&mut phone, b"1 (before the join)").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut browser = join(addr, &routing, &tunnel).await;
    assert_eq!(recv(&mut browser).await, b"1 (before the join)");
    send(&mut browser, b"2").await;
    assert_eq!(recv(&mut phone).await, b"2");
    send(&mut phone, b"3").await;
    assert_eq!(recv(&mut browser).await, b"3");
    send(&mut browser, b"4").await;
    assert_eq!(recv(&mut phone).await, b"4");
    send(&mut browser, b"5").await;
    assert_eq!(recv(&mut phone).await, b"5");
    // The sixth is not forwarded: the phone's next frame is the close.
    send(&mut browser, b"6").await;
    assert_eq!(closed(phone).await.0, 1008);
    assert_eq!(closed(browser).await.0, 1008);
}

#[tokio::test]
async fn a_tunnel_nobody_joins_is_dropped_after_the_join_timeout() {
    let config = Config {
        join_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let relay = start(config).await;
    let addr = relay.local_addr();
    let tunnel = tunnel_id();
    let started = Instant::now();
    let (phone, routing) = open(addr, &tunnel).await;
    let (code, reason) = closed(phone).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    until_no_tunnels(&relay).await;
    assert_eq!(
        refused(cable_request(&connect_url(addr, &routing, &tunnel))).await,
        404
    );

    // A browser arriving while the expired phone is still being closed (the phone has the
    // close frame but has not hung up) is refused too.
    let tunnel = tunnel_id();
    let (mut phone, routing) = open(addr, &tunnel).await;
    let frame = tokio::time::timeout(PATIENCE, phone.next()).await.unwrap();
    assert!(
        matches!(frame, Some(Ok(Message::Close(Some(_))))),
        "{frame:?}"
    );
    assert_eq!(relay.open_tunnels(), 1);
    assert_eq!(
        refused(cable_request(&connect_url(addr, &routing, &tunnel))).await,
        404
    );
    drop(phone);
    until_no_tunnels(&relay).await;
}

#[tokio::test]
async fn a_joined_tunnel_is_closed_at_the_end_of_its_lifetime() {
    let config = Config {
        tunnel_lifetime: Duration::from_millis(700),
        ..Config::default()
    };
    let relay = start(config).await;
    let started = Instant::now();
    let (mut phone, mut browser) = pair(relay.local_addr()).await;
    send(&mut browser, b"hello").await;
    assert_eq!(recv(&mut phone).await, b"hello");
    assert_eq!(closed(phone).await.0, 1008);
    assert_eq!(closed(browser).await.0, 1008);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(650), "{elapsed:?}");
    until_no_tunnels(&relay).await;
}

#[tokio::test]
async fn the_lifetime_also_bounds_the_wait_for_a_browser() {
    let config = Config {
        tunnel_lifetime: Duration::from_millis(300),
        join_timeout: Duration::from_secs(60),
        ..Config::default()
    };
    let relay = start(config).await;
    let (phone, _) = open(relay.local_addr(), &tunnel_id()).await;
    let (code, reason) = closed(phone).await;
    assert_eq!((code, reason.as_str()), (1008, "tunnel lifetime exceeded"));
}

#[tokio::test]
async fn tunnels_beyond_the_limit_are_refused_with_503() {
    let config = Config {
        max_tunnels: 2,
        ..Config::default()
    };
    let relay = start(config).await;
    let addr = relay.local_addr();
    let (first, _) = open(addr, &tunnel_id()).await;
    let (_second, routing) = open(addr, &tunnel_id()).await;
    let _ = routing;
    assert_eq!(
        refused(cable_request(&new_url(addr, &tunnel_id()))).await,
        503
    );
    drop(first);
    until_tunnels(&relay, 1).await;
    let (_third, _) = open(addr, &tunnel_id()).await;
    assert_eq!(relay.open_tunnels(), 2);
}

#[tokio::test]
async fn a_text_message_closes_both_with_1002() {
    let relay = start(Config::default()).await;
    let (phone, mut browser) = pair(relay.local_addr()).await;
    browser.send(Message::text("not binary")).await.unwrap();
    assert_eq!(closed(browser).await.0, 1002);
    assert_eq!(closed(phone).await.0, 1002);

    // Before the join as well.
    let (mut phone, _) = open(relay.local_addr(), &tunnel_id()).await;
    phone.send(Message::text("hi")).await.unwrap();
    assert_eq!(closed(phone).await.0, 1002);
    until_no_tunnels(&relay).await;
}

#[tokio::test]
async fn too_many_messages_before_the_join_close_the_phone_with_1008() {
    let config = Config {
        max_pending_messages: 2,
        ..Config::default()
    };
    let relay = start(config).await;
    let (mut phone, _) = open(relay.local_addr(), &tunnel_id()).await;
    for _ in 0..3 {
        send(&mut phone, b"early").await;
    }
    assert_eq!(closed(phone).await.0, 1008);
    until_no_tunnels(&relay).await;
}

#[tokio::test]
async fn shutdown_closes_open_tunnels_with_1001() {
    let relay = start(Config::default()).await;
    let addr = relay.local_addr();
    let (phone, browser) = pair(addr).await;
    let (waiting, _) = open(addr, &tunnel_id()).await;
    let shutdown = tokio::spawn(relay.shutdown());
    assert_eq!(closed(phone).await.0, 1001);
    assert_eq!(closed(browser).await.0, 1001);
    assert_eq!(closed(waiting).await.0, 1001);
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("shutdown completes")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
