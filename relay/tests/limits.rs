//! The relay's resource limits (issue: relay resource abuse), each against the built
//! `pocketkey-relay` program with a flooding client on loopback, bounded in count: per-address
//! connection caps (one loopback address limited while another is not), a connection cap that
//! holds under concurrent attaches, new mailboxes per address, the node's push budget, push
//! target length and store size caps, and a SQLite store that cannot stall the node.

mod common;

use std::net::SocketAddr;

use common::mailbox::{attach, attach_from, attach_request, frame, pairing, put};
use common::program::{connect_from, program};
use common::push::{register, sink, webhook};
use common::{cable_request, closed, new_url, recv, send, tunnel_id, PATIENCE};
use pocketkey_core::pairing::mailbox::MailboxKeys;
use pocketkey_core::pairing::relay::{
    frame_type, PushProvider as Kind, PushTarget, RelayErrorCode, RelayFrame, WakeId, WakeResult,
};
use pocketkey_core::pairing::Role;

fn is_error(frame: &RelayFrame, code: RelayErrorCode) -> bool {
    matches!(frame, RelayFrame::Error { code: c, .. } if *c == code as u8)
}

/// One address fills its connection cap with tunnel sockets and pairing connections together
/// and is refused (429) beyond it; another address is not; a closed connection frees its
/// slot.
#[tokio::test]
async fn connections_are_capped_per_address() {
    let relay = program(&["--max-connections-per-ip", "4"]);
    let addr = relay.addr;
    let mut open = Vec::new();
    for _ in 0..2 {
        let (ws, _) = connect_from(
            "127.0.0.2",
            addr,
            cable_request(&new_url(addr, &tunnel_id())),
        )
        .await
        .expect("a tunnel");
        open.push(ws);
    }
    for _ in 0..2 {
        open.push(
            attach_from("127.0.0.2", addr, &pairing().2, Role::Bridge)
                .await
                .expect("an attach"),
        );
    }
    let refused = connect_from(
        "127.0.0.2",
        addr,
        cable_request(&new_url(addr, &tunnel_id())),
    )
    .await
    .err();
    assert_eq!(refused, Some(429));
    let refused = attach_from("127.0.0.2", addr, &pairing().2, Role::Phone)
        .await
        .err();
    assert_eq!(refused, Some(429));
    // Another address is not limited by the first one's connections.
    let mut other = attach_from("127.0.0.3", addr, &pairing().2, Role::Bridge)
        .await
        .expect("another address attaches");
    assert_eq!(frame(&mut other).await, RelayFrame::Peer { present: false });

    // Closing one frees its slot (once the relay has seen the close).
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    let _ = recv_close(&mut first).await;
    tokio::time::timeout(PATIENCE, async {
        while connect_from(
            "127.0.0.2",
            addr,
            cable_request(&new_url(addr, &tunnel_id())),
        )
        .await
        .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the slot of a closed connection is freed");
}

/// Drains a socket until it ends.
async fn recv_close(ws: &mut common::Ws) {
    use futures_util::StreamExt;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, ws.next()).await {}
}

/// Forty attaches at once against a cap of five: the cap is reserved before each upgrade, so
/// at most five are answered 101, whatever the interleaving.
#[tokio::test]
async fn the_connection_cap_holds_under_concurrent_attaches() {
    let relay = program(&[
        "--pair-max-connections",
        "5",
        "--max-connections-per-ip",
        "1000",
        "--new-mailboxes-per-ip",
        "1000",
    ]);
    let addr = relay.addr;
    let attempts: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(async move {
                let keys = pairing().2;
                match tokio_tungstenite::connect_async(attach_request(addr, &keys, Role::Bridge))
                    .await
                {
                    Ok((ws, _)) => Some(ws),
                    Err(_) => None,
                }
            })
        })
        .collect();
    let mut accepted = Vec::new();
    for attempt in attempts {
        if let Some(ws) = attempt.await.unwrap() {
            accepted.push(ws);
        }
    }
    assert!(
        (1..=5).contains(&accepted.len()),
        "{} upgrades accepted with a cap of 5",
        accepted.len()
    );
}

/// A new mailbox (nobody attached, no push target) counts against its address's budget;
/// beyond it the attach is closed with 1008. Another address has its own budget, and a
/// mailbox already in use is not new.
#[tokio::test]
async fn new_mailboxes_are_limited_per_address() {
    let relay = program(&["--new-mailboxes-per-ip", "3"]);
    let addr = relay.addr;
    let mut held = Vec::new();
    let first = pairing().2;
    for keys in [&first, &pairing().2, &pairing().2] {
        let mut ws = attach_from("127.0.0.2", addr, keys, Role::Bridge)
            .await
            .unwrap();
        assert_eq!(frame(&mut ws).await, RelayFrame::Peer { present: false });
        held.push(ws);
    }
    let ws = attach_from("127.0.0.2", addr, &pairing().2, Role::Bridge)
        .await
        .unwrap();
    assert_eq!(closed(ws).await.0, 1008);
    // The phone of a mailbox in use is not a new mailbox.
    let mut phone = attach_from("127.0.0.2", addr, &first, Role::Phone)
        .await
        .unwrap();
    assert_eq!(frame(&mut phone).await, RelayFrame::Peer { present: true });
    let mut other = attach_from("127.0.0.3", addr, &pairing().2, Role::Bridge)
        .await
        .unwrap();
    assert_eq!(frame(&mut other).await, RelayFrame::Peer { present: false });
}

/// Three mailboxes, each under its own per-mailbox limit, share the node's budget of two
/// pushes: the third WAKE is rate-limited.
#[tokio::test]
async fn wakes_share_a_global_push_budget() {
    let hook = sink().await;
    let allow = format!("http://{hook}/");
    let relay = program(&["--push-budget", "2", "--webhook-allow", &allow]);
    let addr = relay.addr;
    let mailboxes = [pairing().2, pairing().2, pairing().2];
    for keys in &mailboxes {
        assert_eq!(
            register(addr, keys, webhook(format!("http://{hook}/wake"))).await,
            RelayFrame::Ack(frame_type::PUSH_REGISTER)
        );
    }
    let mut results = Vec::new();
    for keys in &mailboxes {
        let mut bridge = attach(addr, keys, Role::Bridge).await;
        // The phone's detach may still be on its way: wait until the relay says absent.
        while frame(&mut bridge).await != (RelayFrame::Peer { present: false }) {}
        put(&mut bridge, RelayFrame::Wake).await;
        results.push(frame(&mut bridge).await);
    }
    assert_eq!(
        results,
        [
            RelayFrame::WakeResult(WakeResult::PushSent),
            RelayFrame::WakeResult(WakeResult::PushSent),
            RelayFrame::WakeResult(WakeResult::RateLimited),
        ]
    );
}

/// Push targets longer than the cap are refused, FCM tokens included (an FCM provider with a
/// fixed access token: registration reaches no network).
#[tokio::test]
async fn long_push_targets_are_refused() {
    let dir = std::env::temp_dir().join(format!("pk-relay-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("fcm-token");
    std::fs::write(&token, "test-token").unwrap();
    let relay = program(&[
        "--fcm-project",
        "p",
        "--fcm-access-token-file",
        token.to_str().unwrap(),
        "--webhook-allow",
        "http://127.0.0.1:9",
    ]);
    let addr = relay.addr;
    let fcm = |len: usize| PushTarget {
        provider: Kind::Fcm,
        target: "a".repeat(len),
        environment: None,
        wake: WakeId::random(),
    };
    assert_eq!(
        register(addr, &pairing().2, fcm(200)).await,
        RelayFrame::Ack(frame_type::PUSH_REGISTER)
    );
    let answer = register(addr, &pairing().2, fcm(4000)).await;
    assert!(
        is_error(&answer, RelayErrorCode::BadPushTarget),
        "{answer:?}"
    );
    let long_url = format!("http://127.0.0.1:9/{}", "w".repeat(2000));
    let answer = register(addr, &pairing().2, webhook(long_url)).await;
    assert!(
        is_error(&answer, RelayErrorCode::BadPushTarget),
        "{answer:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The store holds at most `--max-push-targets` targets (a new mailbox's registration beyond
/// it is refused, a replacement is not) and `--max-tombstones` tombstones (the oldest goes).
/// A full store is the relay's passing trouble, not the target's: ERROR `unavailable`, which
/// the phone retries, never `bad_push_target`, which it tells its user as a refusal for good.
#[tokio::test]
async fn the_store_is_bounded() {
    let relay = program(&[
        "--max-push-targets",
        "2",
        "--max-tombstones",
        "1",
        "--webhook-allow",
        "http://127.0.0.1:9",
    ]);
    let addr = relay.addr;
    let target = || webhook("http://127.0.0.1:9/wake".into());
    let (a, b, c) = (pairing().2, pairing().2, pairing().2);
    for keys in [&a, &b] {
        assert_eq!(
            register(addr, keys, target()).await,
            RelayFrame::Ack(frame_type::PUSH_REGISTER)
        );
    }
    let answer = register(addr, &c, target()).await;
    assert!(is_error(&answer, RelayErrorCode::Unavailable), "{answer:?}");
    assert_eq!(
        register(addr, &a, target()).await,
        RelayFrame::Ack(frame_type::PUSH_REGISTER)
    );
    // Two deletions, one tombstone kept: the second.
    for keys in [&a, &b] {
        let mut ws = attach(addr, keys, Role::Bridge).await;
        assert!(matches!(frame(&mut ws).await, RelayFrame::Peer { .. }));
        put(&mut ws, RelayFrame::Delete).await;
        assert_eq!(frame(&mut ws).await, RelayFrame::Ack(frame_type::DELETE));
    }
    let status = |keys: MailboxKeys| async move {
        common::mailbox::status_of(attach_request(addr, &keys, Role::Phone)).await
    };
    assert_eq!(status(b.clone()).await, 410);
    assert_eq!(status(a.clone()).await, 101);
}

/// SQLite work runs off the async workers: with the state file locked by another process
/// (every write waits out the busy timeout) and phones flooding PUSH_REGISTER, a caBLE
/// tunnel still opens, joins and forwards.
#[tokio::test]
async fn a_stalled_store_does_not_stall_tunnels() {
    let dir = std::env::temp_dir().join(format!("pk-relay-stall-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("relay.sqlite");
    let _ = std::fs::remove_file(&state);
    let relay = relay_with_state(&state);
    let addr = relay.addr;
    // Attach the flooding phones first (attach reads the store too).
    let mut phones = Vec::new();
    for _ in 0..16 {
        let mut phone = attach(addr, &pairing().2, Role::Phone).await;
        assert!(matches!(frame(&mut phone).await, RelayFrame::Peer { .. }));
        phones.push(phone);
    }
    let lock = rusqlite::Connection::open(&state).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let register = RelayFrame::PushRegister(webhook("http://127.0.0.1:9/wake".into())).encode();
    for phone in &mut phones {
        for _ in 0..20 {
            send(phone, &register).await;
        }
    }
    let tunnel = tunnel_id();
    let (mut phone, routing) = common::open(addr, &tunnel).await;
    let mut browser = common::join(addr, &routing, &tunnel).await;
    send(&mut browser, b"through").await;
    assert_eq!(recv(&mut phone).await, b"through");
    // The tunnel got through while the store was still stuck on the flood: each answered
    // registration took the store a whole busy timeout (1 s), and a node whose workers wait
    // for the store answers many of them before it serves the tunnel.
    let mut answered = 0;
    for flooder in &mut phones {
        use futures_util::{FutureExt, StreamExt};
        while let Some(Some(Ok(message))) = flooder.next().now_or_never() {
            answered += usize::from(message.is_binary());
        }
    }
    assert!(
        answered <= 2,
        "{answered} of 320 registrations answered first"
    );
    lock.execute_batch("ROLLBACK").unwrap();
    drop(relay);
    let _ = std::fs::remove_dir_all(dir);
}

/// `--webhook-allow http://127.0.0.1:PORT` admits that port only (a string prefix admitted
/// every port it is a prefix of: `:900` let `:9000` through), and a host-only entry admits
/// neither a longer host nor another port.
#[tokio::test]
async fn the_webhook_allow_list_matches_scheme_host_and_port() {
    let relay = program(&[
        "--webhook-allow",
        "http://127.0.0.1:900",
        "--webhook-allow",
        "https://wake.example.org",
    ]);
    let addr = relay.addr;
    for ok in ["http://127.0.0.1:900/wake", "https://wake.example.org/w"] {
        assert_eq!(
            register(addr, &pairing().2, webhook(ok.into())).await,
            RelayFrame::Ack(frame_type::PUSH_REGISTER),
            "{ok}"
        );
    }
    for bad in [
        "http://127.0.0.1:9000/wake",
        "http://127.0.0.1:901/wake",
        "https://wake.example.org.evil.net/w",
        "https://wake.example.org:444/",
    ] {
        let answer = register(addr, &pairing().2, webhook(bad.into())).await;
        assert!(
            is_error(&answer, RelayErrorCode::BadPushTarget),
            "{bad}: {answer:?}"
        );
    }
}

/// The built relay with its SQLite store at `state` (webhooks to 127.0.0.1:9 allowed).
fn relay_with_state(state: &std::path::Path) -> common::program::Program {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"))
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(state)
        .args(["--webhook-allow", "http://127.0.0.1:9"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    common::program::Program { child, addr }
}

/// A store the relay cannot write (the state file locked by another process beyond the busy
/// timeout) is the relay's passing trouble: PUSH_REGISTER answers ERROR `unavailable`, which
/// the phone retries, never `bad_push_target`, which it tells its user as a refusal for good.
#[tokio::test]
async fn a_store_it_cannot_write_answers_unavailable() {
    let dir = std::env::temp_dir().join(format!("pk-relay-locked-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("relay.sqlite");
    let _ = std::fs::remove_file(&state);
    let relay = relay_with_state(&state);
    let mut phone = attach(relay.addr, &pairing().2, Role::Phone).await;
    assert!(matches!(frame(&mut phone).await, RelayFrame::Peer { .. }));
    let lock = rusqlite::Connection::open(&state).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    put(
        &mut phone,
        RelayFrame::PushRegister(webhook("http://127.0.0.1:9/wake".into())),
    )
    .await;
    let answer = frame(&mut phone).await;
    assert!(is_error(&answer, RelayErrorCode::Unavailable), "{answer:?}");
    lock.execute_batch("ROLLBACK").unwrap();
    drop(relay);
    let _ = std::fs::remove_dir_all(dir);
}
