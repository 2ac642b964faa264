//! The built `pocketkey-relay` program with push flags: a pairing mailbox through it, WAKE with
//! the phone away reaching a local webhook allowed by `--webhook-allow`, and refused push
//! settings.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::mailbox::{attach, attach_request, frame, pairing, status_of};
use common::{send, PATIENCE};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use p256::SecretKey;
use pocketkey_core::pairing::mailbox::MailboxKeys;
use pocketkey_core::pairing::relay::{
    frame_type, PushProvider as Kind, PushTarget, RelayFrame, WakeId, WakeResult,
};
use pocketkey_core::pairing::Role;
use rand_core::OsRng;
use tokio::net::TcpListener;

async fn webhook() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let (tx, posts) = tokio::sync::mpsc::unbounded_channel();
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
    (hook_addr, posts)
}

#[tokio::test]
async fn the_program_wakes_through_an_allowed_webhook() {
    let (hook_addr, mut posts) = webhook().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"))
        .args(["--listen", "127.0.0.1:0", "--memory", "--webhook-allow"])
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
        wake: WakeId([0x42; 16]),
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
        serde_json::json!({"v": 1, "w": "42".repeat(16)})
    );
    let mut stderr = child.stderr.take().unwrap();
    stop(child);
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut logs).unwrap();
    for event in ["mailbox attached", "push sent", "mailbox detached"] {
        assert!(logs.contains(event), "no {event:?} in:\n{logs}");
    }
    // A short mailbox prefix only; never the whole pairing id or the push URL.
    let id = keys.id().to_hex();
    assert!(logs.contains(&id[..8]), "{logs}");
    assert!(!logs.contains(&id), "{logs}");
    assert!(!logs.contains("/wake"), "{logs}");
}

/// The program's pushes carry the wake id the phone registered, never the mailbox id; a new
/// registration rotates it (the next push carries the new one); and a mailbox gets at most
/// `--mailbox-wakes-per-hour` pushes (here 2, with no 3 s spacing so that the test need not
/// wait): the next WAKE is refused with WAKE_RESULT 4 and posts nothing.
#[tokio::test]
async fn pushes_carry_the_rotating_wake_id_within_the_hourly_budget() {
    let (hook_addr, mut posts) = webhook().await;
    let allow = format!("http://{hook_addr}/");
    let (child, addr) = start_program(
        &[
            "--memory",
            "--webhook-allow",
            allow.as_str(),
            "--mailbox-wakes-per-hour",
            "2",
            "--mailbox-push-interval-ms",
            "0",
        ],
        &[],
    );
    let keys = pairing().2;
    let register = |wake: WakeId| {
        RelayFrame::PushRegister(PushTarget {
            provider: Kind::Webhook,
            target: format!("http://{hook_addr}/wake"),
            environment: None,
            wake,
        })
    };
    let body = |bytes: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
    let mut next_post = async || {
        tokio::time::timeout(PATIENCE, posts.recv())
            .await
            .expect("a POST")
            .unwrap()
    };

    // The bridge stays attached; the phone attaches, registers and leaves (the bridge sees it
    // go, so the WAKE finds it away).
    let mut bridge = attach(addr, &keys, Role::Bridge).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    let (first, second) = (WakeId::random(), WakeId::random());
    register_and_leave(addr, &keys, &mut bridge, register(first)).await;
    assert_eq!(
        wake_from(&mut bridge).await,
        RelayFrame::WakeResult(WakeResult::PushSent)
    );
    let posted = next_post().await;
    let text = String::from_utf8(posted.clone()).unwrap();
    assert!(!text.contains(&keys.id().to_hex()), "{text}");
    assert_eq!(
        body(posted),
        serde_json::json!({"v": 1, "w": first.to_hex()})
    );

    // Registered again (the phone's next attach): the next push carries the new id.
    register_and_leave(addr, &keys, &mut bridge, register(second)).await;
    assert_eq!(
        wake_from(&mut bridge).await,
        RelayFrame::WakeResult(WakeResult::PushSent)
    );
    assert_eq!(
        body(next_post().await),
        serde_json::json!({"v": 1, "w": second.to_hex()})
    );
    // The third within the hour: refused, nothing posted.
    assert_eq!(
        wake_from(&mut bridge).await,
        RelayFrame::WakeResult(WakeResult::RateLimited)
    );
    stop(child);
    assert!(posts.try_recv().is_err(), "no push beyond the budget");
}

/// The phone of `keys` attaches while `bridge` is attached, sends `register`, expects the ACK
/// and leaves; returns once the bridge was told it left.
async fn register_and_leave(
    addr: SocketAddr,
    keys: &MailboxKeys,
    bridge: &mut common::Ws,
    register: RelayFrame,
) {
    let mut phone = attach(addr, keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, RelayFrame::Peer { present: true });
    assert_eq!(frame(bridge).await, RelayFrame::Peer { present: true });
    send(&mut phone, &register.encode()).await;
    assert_eq!(
        frame(&mut phone).await,
        RelayFrame::Ack(frame_type::PUSH_REGISTER)
    );
    drop(phone);
    assert_eq!(frame(bridge).await, RelayFrame::Peer { present: false });
}

/// WAKE from an attached bridge; its answer.
async fn wake_from(bridge: &mut common::Ws) -> RelayFrame {
    send(bridge, &RelayFrame::Wake.encode()).await;
    frame(bridge).await
}

#[test]
fn bad_push_settings_are_refused_at_start() {
    let dir = tempfile_dir("settings");
    let key = dir.join("AuthKey.p8");
    std::fs::write(&key, "not a key").unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"))
            .args(["--listen", "127.0.0.1:0", "--memory"])
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
    // Webhook allow-list entries that are not URLs (or a bare "host:" prefix meant as "any
    // port") stop it.
    for entry in [
        "http://127.0.0.1:",
        "wake.example.org",
        "https://user@wake.example.org/",
    ] {
        let out = run(&["--webhook-allow", entry]);
        assert_eq!(out.status.code(), Some(2), "{entry}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--webhook-allow"),
            "{out:?}"
        );
    }
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
        "--memory",
        "POCKETKEY_RELAY_STATE",
        "pocketkey-relay/relay.sqlite",
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
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The variables that choose the default state file; the program gets only those in `env`.
const STATE_VARS: [&str; 4] = [
    "POCKETKEY_RELAY_STATE",
    "STATE_DIRECTORY",
    "XDG_STATE_HOME",
    "HOME",
];

/// Starts the program; returns it and its address.
fn start_program(
    args: &[&str],
    env: &[(&str, &std::path::Path)],
) -> (std::process::Child, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"));
    for name in STATE_VARS {
        command.env_remove(name);
    }
    command
        .envs(env.iter().copied())
        .args(["--listen", "127.0.0.1:0"])
        .args(args);
    common::program::spawn(command)
}

fn stop(mut child: std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

/// Attaches as `role`, sends `request`, expects the ACK of its type; detaches.
async fn acked(addr: SocketAddr, keys: &MailboxKeys, role: Role, request: RelayFrame) {
    let mut ws = attach(addr, keys, role).await;
    assert_eq!(frame(&mut ws).await, RelayFrame::Peer { present: false });
    let kind = request.encode()[0];
    send(&mut ws, &request.encode()).await;
    assert_eq!(frame(&mut ws).await, RelayFrame::Ack(kind));
}

/// WAKE from the bridge of `keys` (the phone away).
async fn wake(addr: SocketAddr, keys: &MailboxKeys) -> RelayFrame {
    let mut bridge = attach(addr, keys, Role::Bridge).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    send(&mut bridge, &RelayFrame::Wake.encode()).await;
    frame(&mut bridge).await
}

#[tokio::test]
async fn tombstones_survive_a_restart_with_state() {
    let dir = tempfile_dir("state");
    let state = dir.join("relay.db");
    let state = state.to_str().unwrap().to_string();
    let keys = pairing().2;
    let (child, addr) = start_program(&["--state", &state], &[]);
    acked(addr, &keys, Role::Bridge, RelayFrame::Delete).await;
    stop(child);

    let (child, addr) = start_program(&["--state", &state], &[]);
    assert_eq!(
        status_of(attach_request(addr, &keys, Role::Phone)).await,
        410
    );
    stop(child);
    let _ = std::fs::remove_dir_all(dir);
}

/// Without --state or --memory the routing data is in SQLite under $XDG_STATE_HOME (else
/// $HOME/.local/state, or $POCKETKEY_RELAY_STATE): a push registration and a tombstone survive
/// a restart of the program; --memory neither reads nor keeps them.
#[tokio::test]
async fn routing_state_is_in_sqlite_by_default_and_survives_a_restart() {
    let dir = tempfile_dir("default-state");
    let (xdg, home) = (dir.join("xdg"), dir.join("home"));
    std::fs::create_dir_all(&home).unwrap();
    let (hook_addr, mut posts) = webhook().await;
    let allow = format!("http://{hook_addr}/");
    let args = ["--webhook-allow", allow.as_str()];
    let env = [("XDG_STATE_HOME", xdg.as_path()), ("HOME", home.as_path())];
    let (registered, revoked) = (pairing().2, pairing().2);
    let target = PushTarget {
        provider: Kind::Webhook,
        target: format!("http://{hook_addr}/wake"),
        environment: None,
        wake: WakeId([0x24; 16]),
    };

    let (child, addr) = start_program(&args, &env);
    acked(
        addr,
        &registered,
        Role::Phone,
        RelayFrame::PushRegister(target),
    )
    .await;
    acked(addr, &revoked, Role::Bridge, RelayFrame::Delete).await;
    stop(child);
    let file = xdg.join("pocketkey-relay").join("relay.sqlite");
    assert!(file.is_file(), "no {}", file.display());
    assert_eq!(
        std::fs::read_dir(&home).unwrap().count(),
        0,
        "wrote into $HOME"
    );

    let (child, addr) = start_program(&args, &env);
    assert_eq!(
        status_of(attach_request(addr, &revoked, Role::Phone)).await,
        410
    );
    assert_eq!(
        wake(addr, &registered).await,
        RelayFrame::WakeResult(WakeResult::PushSent)
    );
    let body = tokio::time::timeout(PATIENCE, posts.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8(body).unwrap().contains(&"24".repeat(16)));
    stop(child);

    let memory = [&["--memory"][..], &args[..]].concat();
    let (child, addr) = start_program(&memory, &env);
    assert_eq!(
        status_of(attach_request(addr, &revoked, Role::Phone)).await,
        101
    );
    assert_eq!(
        wake(addr, &registered).await,
        RelayFrame::WakeResult(WakeResult::NoPushTarget)
    );
    stop(child);

    // No XDG_STATE_HOME: under $HOME/.local/state. POCKETKEY_RELAY_STATE names the file.
    let (child, _) = start_program(&[], &[("HOME", home.as_path())]);
    stop(child);
    assert!(home
        .join(".local/state/pocketkey-relay/relay.sqlite")
        .is_file());
    let named = dir.join("named.sqlite");
    let (child, _) = start_program(&[], &[("POCKETKEY_RELAY_STATE", named.as_path())]);
    stop(child);
    assert!(named.is_file());

    // A state file that cannot be opened: one line on standard error, exit 1, no listening.
    let out = Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"))
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(named.join("relay.sqlite"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("pocketkey-relay: cannot create the directory of the state file"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
