//! The load test's short form (seconds, bounded counts, loopback): `pocketkey-relay-load`
//! against real relay programs and a real redis-server. It checks that the program runs and
//! reports every figure; the long form and its figures are docs/relay.md §8.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::program::{spawn, Program};
use common::redis::{node, Redis};

/// The nodes admit the load's pace and addresses.
const OPEN: [&str; 8] = [
    "--pair-rate",
    "1000000",
    "--pair-burst",
    "1000000",
    "--max-connections-per-ip",
    "100000",
    "--new-mailboxes-per-ip",
    "1000000",
];

/// Runs the load program; its `name<TAB>value…` lines.
fn load(args: &[&str]) -> HashMap<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_pocketkey-relay-load"))
        .args(args)
        .output()
        .expect("run pocketkey-relay-load");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn idle_connections_are_measured_from_outside() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"));
    command
        .args(["--listen", "127.0.0.1:0", "--memory"])
        .args(OPEN);
    let (child, addr) = spawn(command);
    let relay = Program { child, addr };
    let pid = relay.child.id().to_string();
    let figures = load(&[
        "idle",
        "--relay",
        &relay.addr.to_string(),
        "--pid",
        &pid,
        "--pairings",
        "300",
        "--idle-secs",
        "1",
    ]);
    assert_eq!(figures["connections"], "600");
    let per_connection: f64 = figures["kib_per_connection"].parse().unwrap();
    assert!(per_connection > 0.0, "{figures:?}");
    figures["idle_cpu_percent"].parse::<f64>().unwrap();
}

#[test]
fn the_cross_node_hop_and_tunnel_set_ups_are_measured() {
    let redis = Redis::start();
    let (a, b) = (node(&redis.url(), &OPEN), node(&redis.url(), &OPEN));
    let figures = load(&[
        "hop",
        "--a",
        &a.addr.to_string(),
        "--b",
        &b.addr.to_string(),
        "--rounds",
        "300",
    ]);
    for name in ["same_node_round_trip_us", "cross_node_round_trip_us"] {
        assert!(figures[name].starts_with("p50 "), "{figures:?}");
    }
    figures["hop_added_median_us"].parse::<i64>().unwrap();
    let figures = load(&[
        "tunnels",
        "--a",
        &a.addr.to_string(),
        "--b",
        &b.addr.to_string(),
        "--count",
        "50",
    ]);
    for name in [
        "same_node_tunnels_per_second",
        "cross_node_tunnels_per_second",
    ] {
        assert!(figures[name].parse::<f64>().unwrap() > 0.0, "{figures:?}");
    }
}
