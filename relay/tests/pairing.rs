//! Pairing mailboxes (docs/pairing-protocol.md §3) on loopback: attach and its refusals,
//! forwarding, presence, replacement, DELETE, WAKE through a local webhook, and the end-to-end
//! encryption seen from the relay.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mailbox::{attach, attach_request, challenge, frame, pairing, put, status_of, upgrade};
use common::{closed, recv, send, Ws, PATIENCE};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use pocketkey_core::engine::RequestKind;
use pocketkey_core::pairing::mailbox::{MailboxKeys, SUBPROTOCOL};
use pocketkey_core::pairing::messages::Hello;
use pocketkey_core::pairing::relay::{
    close_code, frame_type, ApnsEnvironment, PushProvider as Kind, PushTarget, RelayErrorCode,
    RelayFrame, WakeId, WakeResult,
};
use pocketkey_core::pairing::session::{Event, Session};
use pocketkey_core::pairing::Role;
use pocketkey_relay::{
    serve_with, Config, PairingLimits, PushService, RelayHandle, Services, WebhookProvider,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

async fn start_with(push: PushService, limits: PairingLimits) -> RelayHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_with(
        listener,
        Config::default(),
        Services {
            push: Arc::new(push),
            pairing_limits: limits,
            ..Services::default()
        },
    )
    .unwrap()
}

async fn start() -> RelayHandle {
    start_with(PushService::default(), PairingLimits::default()).await
}

/// Bridge then phone attached; both have seen the phone arrive.
async fn both(addr: SocketAddr, keys: &MailboxKeys) -> (Ws, Ws) {
    let mut bridge = attach(addr, keys, Role::Bridge).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    let mut phone = attach(addr, keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, RelayFrame::Peer { present: true });
    assert_eq!(frame(&mut bridge).await, RelayFrame::Peer { present: true });
    (bridge, phone)
}

#[tokio::test]
async fn malformed_attach_requests_are_http_statuses() {
    let relay = start().await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    // A malformed path: 400.
    let mut request = format!("ws://{addr}/pair/v1/1234")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    assert_eq!(status_of(request).await, 400);
    // Without the subprotocol: 400.
    let mut request = attach_request(addr, &keys, Role::Bridge);
    request.headers_mut().remove("sec-websocket-protocol");
    assert_eq!(status_of(request).await, 400);
    // A client of the bearer-token attach: 400, saying why.
    let path = format!("/pair/v1/{}", keys.id());
    let (status, text) = common::raw(
        addr,
        &common::raw_upgrade(
            "GET",
            &path,
            &[
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Protocol: pocketkey.pair.v1",
                "X-PocketKey-Token: AAAA",
            ],
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("update PocketKey"), "{text}");
    // Not GET: 405.
    let (status, _) = common::raw(
        addr,
        &common::raw_upgrade(
            "POST",
            &path,
            &["Sec-WebSocket-Protocol: pocketkey.pair.v1"],
        ),
    )
    .await;
    assert_eq!(status, 405);
    relay.shutdown().await;
}

/// After the upgrade the relay accepts nothing but an ATTACH answering its CHALLENGE with the
/// mailbox's attach key for the claimed role; anything else is closed with 4003 and never
/// becomes a member of the mailbox.
#[tokio::test]
async fn only_a_valid_attach_proof_opens_the_mailbox() {
    let relay = start().await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let (_, _, other) = pairing();
    let mut bridge = attach(addr, &keys, Role::Bridge).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );

    // Another pairing's attach key; the right proof claiming the other role; a proof for
    // another nonce; a DATA frame first; a text message first.
    let mut ws = upgrade(addr, &keys, Role::Phone).await;
    let nonce = challenge(&mut ws).await;
    put(
        &mut ws,
        RelayFrame::Attach(other.attach(Role::Phone).respond(&nonce)),
    )
    .await;
    assert_eq!(closed(ws).await.0, close_code::FORBIDDEN);

    let mut ws = upgrade(addr, &keys, Role::Phone).await;
    let nonce = challenge(&mut ws).await;
    let mut proof = keys.attach(Role::Phone).respond(&nonce);
    proof.role = Role::Bridge;
    put(&mut ws, RelayFrame::Attach(proof)).await;
    assert_eq!(closed(ws).await.0, close_code::FORBIDDEN);

    let mut ws = upgrade(addr, &keys, Role::Phone).await;
    let mut nonce = challenge(&mut ws).await;
    nonce[0] ^= 1;
    put(
        &mut ws,
        RelayFrame::Attach(keys.attach(Role::Phone).respond(&nonce)),
    )
    .await;
    assert_eq!(closed(ws).await.0, close_code::FORBIDDEN);

    let mut ws = upgrade(addr, &keys, Role::Phone).await;
    challenge(&mut ws).await;
    put(&mut ws, RelayFrame::Data(vec![1, 2, 3])).await;
    assert_eq!(closed(ws).await.0, close_code::FORBIDDEN);

    let mut ws = upgrade(addr, &keys, Role::Phone).await;
    challenge(&mut ws).await;
    ws.send(Message::text("attach")).await.unwrap();
    assert_eq!(closed(ws).await.0, close_code::FORBIDDEN);

    // None of them was ever present for the bridge, which is still attached: the real phone
    // is the first PEER it sees.
    let mut phone = attach(addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, RelayFrame::Peer { present: true });
    assert_eq!(frame(&mut bridge).await, RelayFrame::Peer { present: true });
    relay.shutdown().await;
}

/// An attach that never answers the challenge is closed at the deadline (4003).
#[tokio::test]
async fn an_unanswered_challenge_is_closed() {
    let relay = serve_with(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Config {
            handshake_timeout: Duration::from_millis(300),
            ..Config::default()
        },
        Services::default(),
    )
    .unwrap();
    let (_, _, keys) = pairing();
    let mut ws = upgrade(relay.local_addr(), &keys, Role::Bridge).await;
    challenge(&mut ws).await;
    assert_eq!(closed(ws).await.0, close_code::FORBIDDEN);
    relay.shutdown().await;
}

#[tokio::test]
async fn data_is_forwarded_both_ways_and_presence_is_told() {
    let relay = start().await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let (mut bridge, mut phone) = both(addr, &keys).await;
    assert_eq!(relay.attached_connections(), 2);

    put(&mut bridge, RelayFrame::Data(b"to the phone".to_vec())).await;
    assert_eq!(
        frame(&mut phone).await,
        RelayFrame::Data(b"to the phone".to_vec())
    );
    put(&mut phone, RelayFrame::Data(vec![0xAB; 16_383])).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Data(vec![0xAB; 16_383])
    );

    // Another mailbox's traffic does not cross over.
    let (_, _, keys2) = pairing();
    let (mut bridge2, mut phone2) = both(addr, &keys2).await;
    put(&mut bridge2, RelayFrame::Data(vec![2])).await;
    assert_eq!(frame(&mut phone2).await, RelayFrame::Data(vec![2]));

    // The phone leaves: the bridge is told, its DATA is dropped with peer_absent.
    phone.close(None).await.unwrap();
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    put(&mut bridge, RelayFrame::Data(vec![1])).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Error {
            code: RelayErrorCode::PeerAbsent as u8,
            message: "peer absent".into()
        }
    );
    // Nothing was queued for it: a new phone gets only the presence frame.
    let mut phone = attach(addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, RelayFrame::Peer { present: true });
    assert_eq!(frame(&mut bridge).await, RelayFrame::Peer { present: true });
    put(&mut phone, RelayFrame::Data(vec![3])).await;
    assert_eq!(frame(&mut bridge).await, RelayFrame::Data(vec![3]));
    relay.shutdown().await;
}

#[tokio::test]
async fn bad_frames_are_answered_and_limits_close() {
    let relay = start().await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let (mut bridge, mut phone) = both(addr, &keys).await;
    let error_code = |f: RelayFrame| match f {
        RelayFrame::Error { code, .. } => code,
        other => panic!("expected ERROR, got {other:?}"),
    };
    // Unknown type, relay→client type, empty DATA: malformed; connection stays open.
    for bad in [
        vec![0x7f],
        vec![frame_type::PEER, 1],
        vec![frame_type::DATA],
    ] {
        send(&mut bridge, &bad).await;
        assert_eq!(
            error_code(frame(&mut bridge).await),
            RelayErrorCode::Malformed as u8
        );
    }
    // Role rules: phone cannot WAKE, bridge cannot PUSH_REGISTER.
    put(&mut phone, RelayFrame::Wake).await;
    assert_eq!(
        error_code(frame(&mut phone).await),
        RelayErrorCode::NotAllowedForRole as u8
    );
    put(&mut bridge, RelayFrame::PushUnregister).await;
    assert_eq!(
        error_code(frame(&mut bridge).await),
        RelayErrorCode::NotAllowedForRole as u8
    );
    // WAKE while the phone is attached.
    put(&mut bridge, RelayFrame::Wake).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::WakeResult(WakeResult::AlreadyAttached)
    );
    // A push target of a provider this relay lacks: bad_push_target.
    put(
        &mut phone,
        RelayFrame::PushRegister(PushTarget {
            provider: Kind::Apns,
            target: "ab".into(),
            environment: Some(ApnsEnvironment::Sandbox),
            wake: WakeId::random(),
        }),
    )
    .await;
    assert_eq!(
        error_code(frame(&mut phone).await),
        RelayErrorCode::BadPushTarget as u8
    );
    // Text: 1002 (the bridge also learns the phone left).
    phone.send(Message::text("hi")).await.unwrap();
    assert_eq!(closed(phone).await.0, 1002);
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    // Over 16 KiB: 1009.
    send(&mut bridge, &vec![1u8; 16_385]).await;
    assert_eq!(closed(bridge).await.0, 1009);
    relay.shutdown().await;
}

#[tokio::test]
async fn frames_over_the_rate_are_refused() {
    let limits = PairingLimits {
        frames_per_sec: 1,
        burst: 3,
        max_dropped: 5,
        ..PairingLimits::default()
    };
    let relay = start_with(PushService::default(), limits).await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let (mut bridge, mut phone) = both(addr, &keys).await;
    for i in 0..3u8 {
        put(&mut bridge, RelayFrame::Data(vec![i])).await;
        assert_eq!(frame(&mut phone).await, RelayFrame::Data(vec![i]));
    }
    put(&mut bridge, RelayFrame::Data(vec![9])).await;
    assert!(matches!(
        frame(&mut bridge).await,
        RelayFrame::Error { code, .. } if code == RelayErrorCode::RateLimited as u8
    ));
    // Persistent abuse: 1008.
    for _ in 0..10 {
        if bridge.send(Message::binary(vec![1u8, 1])).await.is_err() {
            break;
        }
    }
    let code = loop {
        match tokio::time::timeout(PATIENCE, bridge.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(close)))) => break u16::from(close.code),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 1008);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_newer_attach_replaces_the_older_with_4001() {
    let relay = start().await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let (mut bridge, phone) = both(addr, &keys).await;
    let mut phone2 = attach(addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut phone2).await, RelayFrame::Peer { present: true });
    let (code, reason) = closed(phone).await;
    assert_eq!((code, reason.as_str()), (close_code::REPLACED, "replaced"));
    // The bridge hears of the new phone, never of an absence; DATA reaches the new one.
    assert_eq!(frame(&mut bridge).await, RelayFrame::Peer { present: true });
    put(&mut bridge, RelayFrame::Data(vec![5])).await;
    assert_eq!(frame(&mut phone2).await, RelayFrame::Data(vec![5]));
    relay.shutdown().await;
}

#[tokio::test]
async fn delete_tombstones_the_mailbox_and_closes_both_with_4010() {
    let relay = start().await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let (bridge, mut phone) = both(addr, &keys).await;
    put(&mut phone, RelayFrame::Delete).await;
    assert_eq!(frame(&mut phone).await, RelayFrame::Ack(frame_type::DELETE));
    assert_eq!(closed(phone).await.0, close_code::REVOKED);
    assert_eq!(closed(bridge).await.0, close_code::REVOKED);
    // 410 for every attach from now on (before any upgrade, so before any proof).
    assert_eq!(
        status_of(attach_request(addr, &keys, Role::Bridge)).await,
        410
    );
    assert_eq!(
        status_of(attach_request(addr, &keys, Role::Phone)).await,
        410
    );
    relay.shutdown().await;
}

/// A frame the deleting side routes right before its DELETE reaches the peer before the 4010
/// close: the peer deletes its pairing only on the `Revoke` such a frame carries, and on the
/// close alone it suspends it (docs/pairing-protocol.md §3.4). (Before: the close cut the
/// frames still queued for the peer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_routed_before_delete_reaches_the_peer_before_4010() {
    let relay = start().await;
    let addr = relay.local_addr();
    for _ in 0..5 {
        let (_, _, keys) = pairing();
        let (mut bridge, mut phone) = both(addr, &keys).await;
        // A burst, so that the bridge's side is still writing when DELETE comes.
        for i in 0..60u8 {
            put(&mut phone, RelayFrame::Data(vec![i; 4096])).await;
        }
        put(&mut phone, RelayFrame::Delete).await;
        for i in 0..60u8 {
            assert_eq!(frame(&mut bridge).await, RelayFrame::Data(vec![i; 4096]));
        }
        assert_eq!(closed(bridge).await.0, close_code::REVOKED);
    }
    relay.shutdown().await;
}

/// A local webhook endpoint: records each request (path, content type, body) and answers
/// `status`.
async fn webhook_server(
    status: u16,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<(String, String, Vec<u8>)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let path = request.uri().path().to_string();
                            let content_type = request
                                .headers()
                                .get("content-type")
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            tx.send((path, content_type, body.to_vec())).unwrap();
                            let mut response = hyper::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn webhook_push(addr: SocketAddr) -> PushService {
    PushService::new(
        Some(Arc::new(
            WebhookProvider::new(vec![format!("http://{addr}/")]).unwrap(),
        )),
        None,
        None,
    )
}

#[tokio::test]
async fn wake_with_the_phone_absent_posts_to_the_webhook() {
    let (hook, mut posts) = webhook_server(204).await;
    let relay = start_with(webhook_push(hook), PairingLimits::default()).await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let (mut bridge, mut phone) = both(addr, &keys).await;

    // Outside the allowed prefix: refused.
    let target = |url: String| {
        RelayFrame::PushRegister(PushTarget {
            provider: Kind::Webhook,
            target: url,
            environment: None,
            wake: WakeId([0x77; 16]),
        })
    };
    // A phone from before wake ids (no key 4): refused, and told to update.
    let old = [
        vec![frame_type::PUSH_REGISTER],
        pocketkey_core::ctap::cbor::encode(
            pocketkey_core::ctap::cbor::MapBuilder::new()
                .put(1, "webhook")
                .put(2, format!("http://{hook}/wake/me"))
                .build(),
        ),
    ]
    .concat();
    phone.send(Message::binary(old)).await.unwrap();
    match frame(&mut phone).await {
        RelayFrame::Error { code, message } => {
            assert_eq!(code, RelayErrorCode::BadPushTarget as u8);
            assert!(message.contains("update PocketKey"), "{message}");
        }
        other => panic!("expected ERROR bad_push_target, got {other:?}"),
    }
    put(&mut phone, target("http://10.0.0.1/wake".into())).await;
    assert!(matches!(
        frame(&mut phone).await,
        RelayFrame::Error { code, .. } if code == RelayErrorCode::BadPushTarget as u8
    ));
    put(&mut phone, target(format!("http://{hook}/wake/me"))).await;
    assert_eq!(
        frame(&mut phone).await,
        RelayFrame::Ack(frame_type::PUSH_REGISTER)
    );
    phone.close(None).await.unwrap();
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );

    put(&mut bridge, RelayFrame::Wake).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::WakeResult(WakeResult::PushSent)
    );
    let (path, content_type, body) = tokio::time::timeout(PATIENCE, posts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(path, "/wake/me");
    assert_eq!(content_type, "application/json");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json, serde_json::json!({"v": 1, "w": "77".repeat(16)}));
    // Within 3 s: rate-limited, no second POST.
    put(&mut bridge, RelayFrame::Wake).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::WakeResult(WakeResult::RateLimited)
    );
    assert!(posts.try_recv().is_err());

    // The woken phone attaches, unregisters; later wakes find no target.
    let mut phone = attach(addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, RelayFrame::Peer { present: true });
    assert_eq!(frame(&mut bridge).await, RelayFrame::Peer { present: true });
    put(&mut phone, RelayFrame::PushUnregister).await;
    assert_eq!(
        frame(&mut phone).await,
        RelayFrame::Ack(frame_type::PUSH_UNREGISTER)
    );
    phone.close(None).await.unwrap();
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    put(&mut bridge, RelayFrame::Wake).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::WakeResult(WakeResult::NoPushTarget)
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn a_failing_webhook_is_reported() {
    let (hook, mut posts) = webhook_server(500).await;
    let relay = start_with(webhook_push(hook), PairingLimits::default()).await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let (mut bridge, mut phone) = both(addr, &keys).await;
    put(
        &mut phone,
        RelayFrame::PushRegister(PushTarget {
            provider: Kind::Webhook,
            target: format!("http://{hook}/"),
            environment: None,
            wake: WakeId::random(),
        }),
    )
    .await;
    assert_eq!(
        frame(&mut phone).await,
        RelayFrame::Ack(frame_type::PUSH_REGISTER)
    );
    drop(phone);
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    put(&mut bridge, RelayFrame::Wake).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::WakeResult(WakeResult::ProviderFailed)
    );
    assert!(posts.recv().await.is_some());
    relay.shutdown().await;
}

/// Drives a session: sends its pending frames as DATA, records them.
async fn flush(session: &mut Session, ws: &mut Ws, seen: &mut Vec<Vec<u8>>) {
    while let Some(data) = session.poll_frame() {
        let bytes = RelayFrame::Data(data).encode();
        seen.push(bytes.clone());
        send(ws, &bytes).await;
    }
}

/// Feeds the next DATA frame to the session (other relay frames skipped), records it.
async fn deliver(session: &mut Session, ws: &mut Ws, seen: &mut Vec<Vec<u8>>) {
    loop {
        let bytes = recv(ws).await;
        seen.push(bytes.clone());
        if let RelayFrame::Data(data) = RelayFrame::decode(&bytes).unwrap() {
            session.receive(&data, Instant::now()).unwrap();
            return;
        }
    }
}

#[tokio::test]
async fn the_relay_sees_no_plaintext() {
    let relay = start().await;
    let addr = relay.local_addr();
    let (bridge_key, phone_key, keys) = pairing();
    let (mut bridge_ws, mut phone_ws) = both(addr, &keys).await;
    let now = Instant::now();
    let mut bridge = Session::bridge(
        bridge_key.clone(),
        &phone_key.public_key(),
        Hello {
            name: "Desk computer".into(),
            get_info: None,
        },
    )
    .unwrap();
    let mut phone = Session::phone(
        phone_key,
        &bridge_key.public_key(),
        Hello {
            name: "Pixel phone".into(),
            get_info: Some(b"GETINFO-PLAINTEXT".to_vec()),
        },
        now,
    )
    .unwrap();
    let mut seen = Vec::new();
    // HS1 → bridge; HS2 (+ bridge Hello) → phone; phone Hello → bridge.
    flush(&mut phone, &mut phone_ws, &mut seen).await;
    deliver(&mut bridge, &mut bridge_ws, &mut seen).await;
    flush(&mut bridge, &mut bridge_ws, &mut seen).await;
    while !phone.is_established() {
        deliver(&mut phone, &mut phone_ws, &mut seen).await;
    }
    flush(&mut phone, &mut phone_ws, &mut seen).await;
    while !bridge.is_established() {
        deliver(&mut bridge, &mut bridge_ws, &mut seen).await;
    }
    while phone.poll_event().is_some() {}
    while bridge.poll_event().is_some() {}

    let request = b"CTAP-REQUEST-PLAINTEXT example.com".to_vec();
    let id = bridge
        .send_request(
            RequestKind::Cbor,
            request.clone(),
            Some("Firefox".into()),
            now,
        )
        .unwrap();
    flush(&mut bridge, &mut bridge_ws, &mut seen).await;
    let got = loop {
        deliver(&mut phone, &mut phone_ws, &mut seen).await;
        if let Some(Event::CtapRequest(r)) = phone.poll_event() {
            break r;
        }
    };
    assert_eq!(got.payload, request);
    phone
        .respond(id, b"CTAP-RESPONSE-PLAINTEXT".to_vec())
        .unwrap();
    flush(&mut phone, &mut phone_ws, &mut seen).await;
    let answer = loop {
        deliver(&mut bridge, &mut bridge_ws, &mut seen).await;
        if let Some(Event::CtapResponse { payload, .. }) = bridge.poll_event() {
            break payload;
        }
    };
    assert_eq!(answer, b"CTAP-RESPONSE-PLAINTEXT");

    // Every frame that went through the relay, both ways: no plaintext of either side.
    assert!(seen.len() >= 6, "{}", seen.len());
    let markers: [&[u8]; 6] = [
        b"PLAINTEXT",
        b"example.com",
        b"Firefox",
        b"Desk computer",
        b"Pixel phone",
        b"GETINFO",
    ];
    for bytes in &seen {
        for marker in markers {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker),
                "plaintext {:?} seen by the relay",
                String::from_utf8_lossy(marker)
            );
        }
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_does_not_read_is_closed_with_1008() {
    let limits = PairingLimits {
        frames_per_sec: 1_000_000,
        burst: 1_000_000,
        write_queue: 8,
        ..PairingLimits::default()
    };
    let relay = start_with(PushService::default(), limits).await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let (mut bridge, mut phone) = both(addr, &keys).await;
    // The phone stops reading; the bridge sends until the relay gives up on the phone.
    let big = RelayFrame::Data(vec![7; 16_000]).encode();
    let gone = loop {
        send(&mut bridge, &big).await;
        match tokio::time::timeout(Duration::from_millis(1), bridge.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                break RelayFrame::decode(&bytes).unwrap();
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => {}
        }
    };
    assert_eq!(gone, RelayFrame::Peer { present: false });
    // The phone reads what was buffered, then the 1008 close (or a reset: the relay gave up).
    let code = loop {
        match tokio::time::timeout(PATIENCE, phone.next()).await.unwrap() {
            Some(Ok(Message::Binary(_) | Message::Ping(_))) => {}
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            None | Some(Err(_)) => break None,
            other => panic!("{other:?}"),
        }
    };
    assert!(matches!(code, Some(1008) | None), "{code:?}");
    tokio::time::timeout(PATIENCE, async {
        while relay.attached_connections() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    relay.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_attached_connections_with_1001() {
    let relay = start().await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let (bridge, phone) = both(addr, &keys).await;
    let shutdown = tokio::spawn(relay.shutdown());
    assert_eq!(closed(bridge).await.0, 1001);
    assert_eq!(closed(phone).await.0, 1001);
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_silent_connection_is_dropped_and_the_peer_told() {
    let limits = PairingLimits {
        ping_interval: Duration::from_millis(100),
        silence_timeout: Duration::from_millis(400),
        ..PairingLimits::default()
    };
    let relay = start_with(PushService::default(), limits).await;
    let addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let (mut bridge, phone) = both(addr, &keys).await;
    // The bridge keeps reading (its client answers the pings); the phone never reads, so it
    // never answers: after the silence timeout the relay drops it.
    let started = std::time::Instant::now();
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The bridge, answering pings, is still attached.
    let until = tokio::time::Instant::now() + Duration::from_millis(600);
    while let Ok(message) = tokio::time::timeout_at(until, bridge.next()).await {
        assert!(matches!(message, Some(Ok(Message::Ping(_)))), "{message:?}");
    }
    put(&mut bridge, RelayFrame::Wake).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::WakeResult(WakeResult::NoPushTarget)
    );
    drop(phone);
    relay.shutdown().await;
}
