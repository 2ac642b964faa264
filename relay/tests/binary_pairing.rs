//! The built `pocketkey-relay` program with push flags: a pairing mailbox through it, WAKE with
//! the phone away reaching a local webhook allowed by `--webhook-allow`, and refused push
//! settings.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::{recv, send, Ws, PATIENCE};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use p256::SecretKey;
use pocketkey_core::pairing::mailbox::{MailboxKeys, SUBPROTOCOL};
use pocketkey_core::pairing::relay::{
    frame_type, PushProvider as Kind, PushTarget, RelayFrame, WakeResult,
};
use pocketkey_core::pairing::Role;
use rand_core::OsRng;
use tokio::net::TcpListener;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

async fn attach(addr: SocketAddr, keys: &MailboxKeys, role: Role) -> Ws {
    let attach = keys.attach(role);
    let mut request = attach
        .url(&format!("ws://{addr}"))
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    for (name, value) in attach.headers() {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    }
    connect_async(request).await.expect("attach").0
}

async fn frame(ws: &mut Ws) -> RelayFrame {
    RelayFrame::decode(&recv(ws).await).unwrap()
}

#[tokio::test]
async fn the_program_wakes_through_an_allowed_webhook() {
    // The webhook endpoint: answers 200, hands over the body.
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let (tx, mut posts) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = hook.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            tx.send(body.to_vec()).unwrap();
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let mut child = Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"))
        .args(["--listen", "127.0.0.1:0", "--webhook-allow"])
        .arg(format!("http://{hook_addr}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pocketkey-relay");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr: SocketAddr = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();

    let bridge_key = SecretKey::random(&mut OsRng);
    let phone_key = SecretKey::random(&mut OsRng);
    let keys = MailboxKeys::pairing(&phone_key, &bridge_key.public_key(), Role::Phone);
    let mut bridge = attach(addr, &keys, Role::Bridge).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    let mut phone = attach(addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, RelayFrame::Peer { present: true });
    assert_eq!(frame(&mut bridge).await, RelayFrame::Peer { present: true });
    let register = RelayFrame::PushRegister(PushTarget {
        provider: Kind::Webhook,
        target: format!("http://{hook_addr}/wake"),
        environment: None,
    });
    send(&mut phone, &register.encode()).await;
    assert_eq!(
        frame(&mut phone).await,
        RelayFrame::Ack(frame_type::PUSH_REGISTER)
    );
    drop(phone);
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    send(&mut bridge, &RelayFrame::Wake.encode()).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::WakeResult(WakeResult::PushSent)
    );
    let body = tokio::time::timeout(PATIENCE, posts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"v": 1, "mailbox": keys.id().to_hex()})
    );
    let mut stderr = child.stderr.take().unwrap();
    stop(child);
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut logs).unwrap();
    for event in ["mailbox attached", "push sent", "mailbox detached"] {
        assert!(logs.contains(event), "no {event:?} in:\n{logs}");
    }
    // A short mailbox prefix only; never the whole pairing id, the tokens, or the push URL.
    let id = keys.id().to_hex();
    assert!(logs.contains(&id[..8]), "{logs}");
    assert!(!logs.contains(&id), "{logs}");
    assert!(!logs.contains("/wake"), "{logs}");
    for (_, value) in keys.attach(Role::Phone).headers().into_iter().skip(1) {
        assert!(!logs.contains(&value), "{logs}");
    }
}

#[test]
fn bad_push_settings_are_refused_at_start() {
    let dir = tempfile_dir("settings");
    let key = dir.join("AuthKey.p8");
    std::fs::write(&key, "not a key").unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    let key = key.to_str().unwrap();
    let out = run(&[
        "--apns-key",
        key,
        "--apns-key-id",
        "K",
        "--apns-team-id",
        "T",
        "--apns-topic",
        "t",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("APNs key"),
        "{out:?}"
    );
    // Missing companions of --apns-key; --fcm-project without credentials.
    assert_eq!(run(&["--apns-key", key]).status.code(), Some(2));
    assert_eq!(run(&["--fcm-project", "p"]).status.code(), Some(2));
    let help = Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--webhook-allow",
        "--fcm-project",
        "--fcm-endpoint",
        "--fcm-credentials",
        "--apns-key",
        "--apns-key-id",
        "--apns-team-id",
        "--apns-topic",
        "--apns-endpoint",
        "--state",
        "--pair-max-connections",
        "--pair-rate",
        "--pair-burst",
        "--pair-queue",
    ] {
        assert!(help.contains(flag), "{flag} not in --help");
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pk-relay-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts the program; returns it and its address.
fn start_program(args: &[&str]) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pocketkey-relay");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    (child, addr)
}

fn stop(mut child: std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn tombstones_survive_a_restart_with_state() {
    let dir = tempfile_dir("state");
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("relay.db");
    let _ = std::fs::remove_file(&state);
    let state = state.to_str().unwrap().to_string();
    let keys = MailboxKeys::pairing(
        &SecretKey::random(&mut OsRng),
        &SecretKey::random(&mut OsRng).public_key(),
        Role::Bridge,
    );
    let (child, addr) = start_program(&["--state", &state]);
    let mut bridge = attach(addr, &keys, Role::Bridge).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    send(&mut bridge, &RelayFrame::Delete.encode()).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Ack(frame_type::DELETE)
    );
    stop(child);

    let (child, addr) = start_program(&["--state", &state]);
    let attach = keys.attach(Role::Phone);
    let mut request = attach
        .url(&format!("ws://{addr}"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    for (name, value) in attach.headers() {
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).unwrap());
    }
    match connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 410)
        }
        other => panic!("expected 410, got {:?}", other.map(|(_, r)| r)),
    }
    stop(child);
    let _ = std::fs::remove_dir_all(dir);
}
