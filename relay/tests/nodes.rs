//! Several relay nodes sharing one Redis (`--redis`): real `redis-server` and real
//! `pocketkey-relay` processes on loopback ports, real websockets (docs/relay.md §7).

mod common;

use std::time::Duration;

use common::mailbox::{attach, attach_from, attach_request, frame, pairing, put, status_of};
use common::push::{register, sink, webhook};
use common::redis::{node, Redis};
use common::{
    cable_request, closed, connect_url, join, open, recv, refused, send, tunnel_id, PATIENCE,
};
use pocketkey_core::pairing::relay::{
    close_code, frame_type, RelayErrorCode, RelayFrame, WakeResult,
};
use pocketkey_core::pairing::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

fn data(bytes: &[u8]) -> RelayFrame {
    RelayFrame::Data(bytes.to_vec())
}

const ABSENT: RelayFrame = RelayFrame::Peer { present: false };
const PRESENT: RelayFrame = RelayFrame::Peer { present: true };

/// A bridge on node A and a phone on node B see each other arrive and leave and exchange
/// DATA both ways, through Redis.
#[tokio::test]
async fn a_bridge_and_a_phone_on_two_nodes_exchange_frames() {
    let redis = Redis::start();
    let (a, b) = (node(&redis.url(), &[]), node(&redis.url(), &[]));
    let keys = pairing().2;
    let mut bridge = attach(a.addr, &keys, Role::Bridge).await;
    assert_eq!(frame(&mut bridge).await, ABSENT);
    let mut phone = attach(b.addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, PRESENT);
    assert_eq!(frame(&mut bridge).await, PRESENT);

    put(&mut bridge, data(b"request")).await;
    assert_eq!(frame(&mut phone).await, data(b"request"));
    put(&mut phone, data(b"response")).await;
    assert_eq!(frame(&mut bridge).await, data(b"response"));
    // A burst keeps its order across the hop.
    for n in 0..20u8 {
        put(&mut bridge, data(&[n])).await;
    }
    for n in 0..20u8 {
        assert_eq!(frame(&mut phone).await, data(&[n]));
    }

    phone.close(None).await.unwrap();
    assert_eq!(frame(&mut bridge).await, ABSENT);
    put(&mut bridge, data(b"anyone?")).await;
    assert!(matches!(
        frame(&mut bridge).await,
        RelayFrame::Error { code, .. } if code == RelayErrorCode::PeerAbsent as u8
    ));
}

/// A newer phone on node B replaces the phone on node A (4001 there); the bridge on A is
/// told "present" and is not told "absent" by the replaced phone's end.
#[tokio::test]
async fn a_phone_on_another_node_replaces_the_older_one() {
    let redis = Redis::start();
    let (a, b) = (node(&redis.url(), &[]), node(&redis.url(), &[]));
    let keys = pairing().2;
    let mut bridge = attach(a.addr, &keys, Role::Bridge).await;
    assert_eq!(frame(&mut bridge).await, ABSENT);
    let mut old = attach(a.addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut old).await, PRESENT);
    assert_eq!(frame(&mut bridge).await, PRESENT);

    let mut new = attach(b.addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut new).await, PRESENT);
    assert_eq!(closed(old).await.0, close_code::REPLACED);
    assert_eq!(frame(&mut bridge).await, PRESENT);
    // The next frame the bridge gets is the new phone's DATA, not an "absent".
    put(&mut new, data(b"from the new phone")).await;
    assert_eq!(frame(&mut bridge).await, data(b"from the new phone"));
    put(&mut bridge, data(b"to the new phone")).await;
    assert_eq!(frame(&mut new).await, data(b"to the new phone"));
}

/// DELETE on node A: the DATA sent just before it, then 4010, reach the phone on node B, and
/// the tombstone refuses the next attach on either node (410).
#[tokio::test]
async fn a_delete_reaches_the_other_node_after_the_frames_before_it() {
    let redis = Redis::start();
    let (a, b) = (node(&redis.url(), &[]), node(&redis.url(), &[]));
    let keys = pairing().2;
    let mut bridge = attach(a.addr, &keys, Role::Bridge).await;
    assert_eq!(frame(&mut bridge).await, ABSENT);
    let mut phone = attach(b.addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, PRESENT);
    assert_eq!(frame(&mut bridge).await, PRESENT);

    put(&mut bridge, data(b"revoke")).await;
    put(&mut bridge, RelayFrame::Delete).await;
    assert_eq!(frame(&mut phone).await, data(b"revoke"));
    assert_eq!(closed(phone).await.0, close_code::REVOKED);
    for addr in [a.addr, b.addr] {
        assert_eq!(
            status_of(attach_request(addr, &keys, Role::Phone)).await,
            410
        );
    }
}

/// The budget of new mailboxes per address holds across nodes: two on A and B together,
/// the third (on A, where it would be only the second) is refused.
#[tokio::test]
async fn the_new_mailbox_budget_holds_across_nodes() {
    let redis = Redis::start();
    let args = ["--new-mailboxes-per-ip", "2"];
    let (a, b) = (node(&redis.url(), &args), node(&redis.url(), &args));
    let mut held = Vec::new();
    for addr in [a.addr, b.addr] {
        let mut ws = attach_from("127.0.0.2", addr, &pairing().2, Role::Bridge)
            .await
            .unwrap();
        assert_eq!(frame(&mut ws).await, ABSENT);
        held.push(ws);
    }
    let ws = attach_from("127.0.0.2", a.addr, &pairing().2, Role::Bridge)
        .await
        .unwrap();
    assert_eq!(closed(ws).await.0, 1008);
    // Another address has its own budget.
    let mut other = attach_from("127.0.0.3", b.addr, &pairing().2, Role::Bridge)
        .await
        .unwrap();
    assert_eq!(frame(&mut other).await, ABSENT);
}

/// Redis SIGKILLed: a pairing whose two sides are on the same node goes on; a frame for a
/// peer on another node is answered ERROR peer_absent saying why; a new attach is refused
/// with 503 before the upgrade. Redis back (empty): new pairings across nodes work again.
#[tokio::test]
async fn without_redis_nodes_serve_their_own_clients_and_recover() {
    let mut redis = Redis::start();
    let port = redis.port;
    let (a, b) = (node(&redis.url(), &[]), node(&redis.url(), &[]));
    let local = pairing().2;
    let mut bridge = attach(a.addr, &local, Role::Bridge).await;
    assert_eq!(frame(&mut bridge).await, ABSENT);
    let mut phone = attach(a.addr, &local, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, PRESENT);
    assert_eq!(frame(&mut bridge).await, PRESENT);
    let across = pairing().2;
    let mut far_bridge = attach(a.addr, &across, Role::Bridge).await;
    assert_eq!(frame(&mut far_bridge).await, ABSENT);
    let mut far_phone = attach(b.addr, &across, Role::Phone).await;
    assert_eq!(frame(&mut far_phone).await, PRESENT);
    assert_eq!(frame(&mut far_bridge).await, PRESENT);

    redis.kill();
    put(&mut bridge, data(b"same node")).await;
    assert_eq!(frame(&mut phone).await, data(b"same node"));
    put(&mut phone, data(b"still here")).await;
    assert_eq!(frame(&mut bridge).await, data(b"still here"));
    put(&mut far_bridge, data(b"other node")).await;
    match frame(&mut far_bridge).await {
        RelayFrame::Error { code, message } => {
            assert_eq!(code, RelayErrorCode::PeerAbsent as u8);
            assert!(message.contains("unavailable"), "{message}");
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    for addr in [a.addr, b.addr] {
        assert_eq!(
            status_of(attach_request(addr, &pairing().2, Role::Bridge)).await,
            503
        );
    }

    let _redis = Redis::on(port);
    // The nodes reconnect on their next call and resubscribe within their backoff (2 s at
    // most): a new pairing across them works within PATIENCE.
    let keys = tokio::time::timeout(PATIENCE * 2, async {
        loop {
            let keys = pairing().2;
            if status_of(attach_request(a.addr, &keys, Role::Bridge)).await != 101 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let mut bridge = attach(a.addr, &keys, Role::Bridge).await;
            assert_eq!(frame(&mut bridge).await, ABSENT);
            let mut phone = attach(b.addr, &keys, Role::Phone).await;
            if frame(&mut phone).await == PRESENT {
                assert_eq!(frame(&mut bridge).await, PRESENT);
                break (bridge, phone);
            }
            // Node A had not subscribed again yet.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("cross-node pairing after Redis came back");
    let (mut bridge, mut phone) = keys;
    put(&mut bridge, data(b"back")).await;
    assert_eq!(frame(&mut phone).await, data(b"back"));
}

/// caBLE: the phone's `new` on node A, the browser's `connect` on node B. What the phone sent
/// before the join, then messages both ways, cross; the browser's close frame reaches the
/// phone unchanged; the tunnel's one join is used up on every node (410).
#[tokio::test]
async fn a_tunnel_joins_across_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis.url(), &[]), node(&redis.url(), &[]));
    let tunnel = tunnel_id();
    let (mut phone, routing) = open(a.addr, &tunnel).await;
    send(&mut phone, b"before the join").await;
    let mut browser = join(b.addr, &routing, &tunnel).await;
    assert_eq!(recv(&mut browser).await, b"before the join");
    send(&mut browser, b"handshake").await;
    assert_eq!(recv(&mut phone).await, b"handshake");
    for n in 0..20u8 {
        send(&mut phone, &[n]).await;
    }
    for n in 0..20u8 {
        assert_eq!(recv(&mut browser).await, [n]);
    }
    assert_eq!(
        refused(cable_request(&connect_url(a.addr, &routing, &tunnel))).await,
        410
    );

    browser
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        }))
        .await
        .unwrap();
    assert_eq!(closed(phone).await, (1000, "done".to_string()));
}

/// caBLE across nodes: a message of the largest size crosses whole both ways (read 1 KiB per
/// system call on each node, carried in one PUBLISH).
#[tokio::test]
async fn a_largest_tunnel_message_crosses_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis.url(), &[]), node(&redis.url(), &[]));
    let tunnel = tunnel_id();
    let (mut phone, routing) = open(a.addr, &tunnel).await;
    let mut browser = join(b.addr, &routing, &tunnel).await;
    let max = pocketkey_relay::Config::default().max_message_size;
    let big: Vec<u8> = (0..max).map(|n| (n % 253) as u8).collect();
    send(&mut browser, &big).await;
    assert_eq!(recv(&mut phone).await, big);
    send(&mut phone, &big).await;
    assert_eq!(recv(&mut browser).await, big);
}

/// caBLE across nodes, the other way round: the phone closes (here by going away without a
/// close frame), the browser on the other node gets 1001.
#[tokio::test]
async fn a_phone_gone_closes_the_browser_on_the_other_node() {
    let redis = Redis::start();
    let (a, b) = (node(&redis.url(), &[]), node(&redis.url(), &[]));
    let tunnel = tunnel_id();
    let (phone, routing) = open(a.addr, &tunnel).await;
    let mut browser = join(b.addr, &routing, &tunnel).await;
    send(&mut browser, b"hello").await;
    drop(phone);
    assert_eq!(closed(browser).await.0, 1001);
}

/// A node SIGKILLed while it holds one half of two tunnels (a phone's, a browser's): the
/// other halves, on the surviving node, are closed with 1001 (going away) well before the
/// tunnels' lifetime (10 minutes), once that node finds the dead node's channel unheard.
#[tokio::test]
async fn a_dead_nodes_tunnel_halves_close_the_other_halves() {
    let redis = Redis::start();
    let (mut a, b) = (node(&redis.url(), &[]), node(&redis.url(), &[]));
    let (first, second) = (tunnel_id(), tunnel_id());
    let (mut phone_on_a, routing) = open(a.addr, &first).await;
    let mut browser_on_b = join(b.addr, &routing, &first).await;
    let (mut phone_on_b, routing) = open(b.addr, &second).await;
    let mut browser_on_a = join(a.addr, &routing, &second).await;
    // Both tunnels joined and carrying messages.
    send(&mut phone_on_a, b"one").await;
    assert_eq!(recv(&mut browser_on_b).await, b"one");
    send(&mut browser_on_a, b"two").await;
    assert_eq!(recv(&mut phone_on_b).await, b"two");

    a.child.kill().unwrap();
    a.child.wait().unwrap();
    assert_eq!(closed(browser_on_b).await.0, 1001);
    assert_eq!(closed(phone_on_b).await.0, 1001);
}

/// Redis restarted empty (no persistence) under two nodes with a pairing across them: the
/// nodes announce their connections again as soon as they are back on Redis, so frames cross
/// again at once, not at each connection's next ping (30 s; the wait below is bounded at a
/// third of that).
#[tokio::test]
async fn after_an_empty_redis_restart_frames_cross_nodes_again_without_a_ping() {
    let mut redis = Redis::start();
    let port = redis.port;
    let (a, b) = (node(&redis.url(), &[]), node(&redis.url(), &[]));
    let keys = pairing().2;
    let mut bridge = attach(a.addr, &keys, Role::Bridge).await;
    assert_eq!(frame(&mut bridge).await, ABSENT);
    let mut phone = attach(b.addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, PRESENT);
    assert_eq!(frame(&mut bridge).await, PRESENT);

    redis.kill();
    let _redis = Redis::on(port);
    // Each frame either arrives or is answered `peer_absent` (no presence, or Redis not
    // reached yet); the sender tries again until one arrives.
    async fn crossed(from: &mut common::Ws, to: &mut common::Ws, what: &[u8]) {
        loop {
            put(from, data(what)).await;
            tokio::select! {
                got = frame(to) => {
                    assert_eq!(got, data(what));
                    return;
                }
                answer = frame(from) => {
                    assert!(matches!(
                        answer,
                        RelayFrame::Error { code, .. } if code == RelayErrorCode::PeerAbsent as u8
                    ), "{answer:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        crossed(&mut bridge, &mut phone, b"to the phone").await;
        crossed(&mut phone, &mut bridge, b"to the bridge").await;
    })
    .await
    .expect("frames across nodes before the next ping");
}

/// The push target the phone registered through node A serves a WAKE on node B, and the
/// one-push-per-mailbox interval holds across nodes: a second WAKE of the same mailbox on the
/// other node within it is rate-limited (4), where each node alone would have pushed.
#[tokio::test]
async fn push_targets_and_the_wake_interval_are_shared() {
    let hook = sink().await;
    let allow = format!("http://{hook}/");
    let redis = Redis::start();
    let args = ["--webhook-allow", allow.as_str()];
    let (a, b) = (node(&redis.url(), &args), node(&redis.url(), &args));
    let keys = pairing().2;
    assert_eq!(
        register(a.addr, &keys, webhook(format!("http://{hook}/wake"))).await,
        RelayFrame::Ack(frame_type::PUSH_REGISTER)
    );
    let mut results = Vec::new();
    for addr in [b.addr, a.addr] {
        let mut bridge = attach(addr, &keys, Role::Bridge).await;
        // The phone's detach may still be on its way: wait until the relay says absent.
        while frame(&mut bridge).await != ABSENT {}
        put(&mut bridge, RelayFrame::Wake).await;
        results.push(frame(&mut bridge).await);
    }
    assert_eq!(
        results,
        [
            RelayFrame::WakeResult(WakeResult::PushSent),
            RelayFrame::WakeResult(WakeResult::RateLimited),
        ]
    );
}

/// The Redis store keeps the single-node stores' rules (relay/src/mailbox_store.rs): a
/// tombstone drops the push target and refuses new ones; the cap on push targets counts
/// across every node's registrations and refuses only a new mailbox; a tombstone frees its
/// target's place.
#[tokio::test]
async fn the_redis_store_keeps_the_store_rules() {
    use pocketkey_core::pairing::mailbox::MailboxId;
    use pocketkey_relay::{MailboxStore, RedisState, SetOutcome, StoreLimits};

    let redis = Redis::start();
    let limits = StoreLimits {
        max_push_targets: 2,
        ..StoreLimits::default()
    };
    let ttl = Duration::from_secs(60);
    let one = RedisState::connect(&redis.url(), limits, ttl)
        .await
        .unwrap();
    let other = RedisState::connect(&redis.url(), limits, ttl)
        .await
        .unwrap();
    let target = |n: u8| webhook(format!("http://127.0.0.1:9/{n}"));
    let m = |n: u8| MailboxId([n; 16]);

    assert_eq!(
        one.set_push_target(m(1), Some(target(1))).await,
        Ok(SetOutcome::Done)
    );
    assert_eq!(
        other.set_push_target(m(2), Some(target(2))).await,
        Ok(SetOutcome::Done)
    );
    assert_eq!(
        one.set_push_target(m(3), Some(target(3))).await,
        Ok(SetOutcome::Full)
    );
    // A replacement is not a new mailbox.
    let replaced = target(9);
    assert_eq!(
        other.set_push_target(m(1), Some(replaced.clone())).await,
        Ok(SetOutcome::Done)
    );
    assert_eq!(one.push_target(m(1)).await, Ok(Some(replaced)));

    assert_eq!(one.is_tombstoned(m(1)).await, Ok(false));
    other.tombstone(m(1)).await.unwrap();
    assert_eq!(one.is_tombstoned(m(1)).await, Ok(true));
    assert_eq!(one.push_target(m(1)).await, Ok(None));
    assert_eq!(
        one.set_push_target(m(1), Some(target(1))).await,
        Ok(SetOutcome::Revoked)
    );
    // Its place is free again.
    assert_eq!(
        one.set_push_target(m(3), Some(target(3))).await,
        Ok(SetOutcome::Done)
    );
    // Unregistering frees a place too.
    assert_eq!(one.set_push_target(m(2), None).await, Ok(SetOutcome::Done));
    assert_eq!(one.push_target(m(2)).await, Ok(None));
    assert_eq!(
        one.set_push_target(m(4), Some(target(4))).await,
        Ok(SetOutcome::Done)
    );
}

/// The phone's node SIGKILLed (no detach, its presence left in Redis): the bridge's WAKE on
/// the other node is not answered "already attached" but goes on to the push (here: no push
/// target, 2), and a DATA frame gets `peer_absent`.
#[tokio::test]
async fn a_dead_nodes_phone_is_not_present() {
    let redis = Redis::start();
    let (a, mut b) = (node(&redis.url(), &[]), node(&redis.url(), &[]));
    let keys = pairing().2;
    let mut bridge = attach(a.addr, &keys, Role::Bridge).await;
    assert_eq!(frame(&mut bridge).await, ABSENT);
    let mut phone = attach(b.addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, PRESENT);
    assert_eq!(frame(&mut bridge).await, PRESENT);

    b.child.kill().unwrap();
    b.child.wait().unwrap();
    put(&mut bridge, RelayFrame::Wake).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::WakeResult(WakeResult::NoPushTarget)
    );
    put(&mut bridge, data(b"anyone?")).await;
    assert!(matches!(
        frame(&mut bridge).await,
        RelayFrame::Error { code, .. } if code == RelayErrorCode::PeerAbsent as u8
    ));
}
