//! `pocketkey-relay-load`: a bounded load test of running relay nodes, on loopback only
//! (docs/relay.md §8 has the method and the figures).
//!
//! - `idle`: attaches N pairings (2N mailbox connections, from 127.0.0.2, .3, … so that no
//!   one source address runs out of ports), then reads the relay's memory (VmRSS) and CPU time
//!   from /proc before and after: KiB per connection, and CPU while they idle.
//! - `idle-tunnels`: holds N joined caBLE tunnels on one node and reads its memory: KiB per
//!   tunnel socket.
//! - `tunnels`: caBLE tunnel set-ups, one after another (phone `new`, browser `connect`, one
//!   message each way, close), both on one node and across two: set-ups per second.
//! - `hop`: round trips of DATA frames (bridge → phone → bridge) between a bridge and a phone
//!   on the same node and on two nodes sharing Redis: p50 / p99 of each, and what the hop adds.
//!   The nodes must admit the pace (`--pair-rate` / `--pair-burst` above the rounds): a frame
//!   the relay rate-limits ends the run with its ERROR.
//! - `traffic`: N pairings (1,000 by default) exchanging request / response DATA frames at a
//!   paced rate, stepped up to find the most frames per second the node delivers; then p50 /
//!   p99 latency and the relay's CPU per frame at 50 % and 90 % of that (`traffic.rs`).
//!
//! Every count and wait is bounded; it only ever connects to the loopback addresses given.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use p256::SecretKey;
use pocketkey_core::pairing::mailbox::{MailboxKeys, SUBPROTOCOL};
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::Role;
use rand_core::OsRng;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

#[path = "load/traffic.rs"]
mod traffic;

type Ws = WebSocketStream<TcpStream>;

/// How long any one step (an attach, a frame) may take before the run is abandoned.
const STEP: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(name = "pocketkey-relay-load", version)]
struct Args {
    #[command(subcommand)]
    test: Test,
}

#[derive(Debug, Subcommand)]
enum Test {
    /// Hold idle pairings on one node and measure its memory and CPU.
    Idle {
        /// The node (its listen address, loopback).
        #[arg(long)]
        relay: SocketAddr,
        /// Its process id (memory and CPU are read from /proc/PID).
        #[arg(long)]
        pid: u32,
        /// Pairings to attach (two connections each); at most 10,000.
        #[arg(long, default_value_t = 1000)]
        pairings: u32,
        /// How long to measure idle CPU, in seconds (at most 60).
        #[arg(long, default_value_t = 5)]
        idle_secs: u64,
    },
    /// caBLE tunnel set-ups per second, on one node and across two.
    Tunnels {
        /// Node A (the phones').
        #[arg(long)]
        a: SocketAddr,
        /// Node B (the browsers' in the cross-node run).
        #[arg(long)]
        b: SocketAddr,
        /// Tunnels per run; at most 100,000.
        #[arg(long, default_value_t = 1000)]
        count: u32,
    },
    /// Hold joined caBLE tunnels on one node and measure its memory.
    IdleTunnels {
        /// The node (its listen address, loopback); it must admit them (`--max-tunnels`).
        #[arg(long)]
        relay: SocketAddr,
        /// Its process id (memory is read from /proc/PID).
        #[arg(long)]
        pid: u32,
        /// Tunnels to hold (two sockets each); at most 5,000.
        #[arg(long, default_value_t = 500)]
        tunnels: u32,
    },
    /// Round trips same-node and across two nodes.
    Hop {
        /// Node A (the bridges').
        #[arg(long)]
        a: SocketAddr,
        /// Node B (the phones' in the cross-node run).
        #[arg(long)]
        b: SocketAddr,
        /// Round trips per run; at most 100,000.
        #[arg(long, default_value_t = 2000)]
        rounds: u32,
    },
    /// Pairings exchanging frames: the most frames per second, latency and CPU per frame.
    Traffic {
        /// The node of the bridges (and of the phones, without --phones).
        #[arg(long)]
        relay: SocketAddr,
        /// Another node for the phones (sharing Redis with --relay): traffic across nodes.
        #[arg(long)]
        phones: Option<SocketAddr>,
        /// Processes whose CPU counts as the relay's (repeat for each node, Redis).
        #[arg(long, required = true)]
        pid: Vec<u32>,
        /// Pairings (two connections each); at most 10,000.
        #[arg(long, default_value_t = 1000)]
        pairings: u32,
        /// DATA payload bytes of each request and response (16 to 16,000).
        #[arg(long, default_value_t = 256)]
        payload: usize,
        /// First offered rate, frames per second.
        #[arg(long, default_value_t = 4000.0)]
        start_rate: f64,
        /// Highest offered rate tried (at most 1,000,000).
        #[arg(long, default_value_t = 200_000.0)]
        max_rate: f64,
        /// Most rate steps (at most 20).
        #[arg(long, default_value_t = 12)]
        max_steps: u32,
        /// Seconds each step measures (1 to 60).
        #[arg(long, default_value_t = 5)]
        window_secs: u64,
    },
}

fn loopback(addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!("{addr}: only loopback addresses are load-tested"))
    }
}

async fn connect(
    source: IpAddr,
    relay: SocketAddr,
    keys: &MailboxKeys,
    role: Role,
) -> Result<Ws, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let stream = socket.connect(relay).await.map_err(|e| e.to_string())?;
    let mut request = keys
        .attach(role)
        .url(&format!("ws://{relay}"))
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| format!("attach: {e}"))?;
    let nonce = match next(&mut ws).await? {
        RelayFrame::Challenge(nonce) => nonce,
        other => return Err(format!("expected CHALLENGE, got {other:?}")),
    };
    let attach = RelayFrame::Attach(keys.attach(role).respond(&nonce)).encode();
    ws.send(Message::binary(attach))
        .await
        .map_err(|e| e.to_string())?;
    match next(&mut ws).await? {
        RelayFrame::Peer { .. } => Ok(ws),
        other => Err(format!("expected PEER, got {other:?}")),
    }
}

async fn next(ws: &mut Ws) -> Result<RelayFrame, String> {
    loop {
        let message = tokio::time::timeout(STEP, ws.next())
            .await
            .map_err(|_| "no frame in time".to_string())?
            .ok_or("connection closed")?
            .map_err(|e| e.to_string())?;
        if let Message::Binary(bytes) = message {
            return RelayFrame::decode(&bytes).map_err(|e| e.to_string());
        }
    }
}

/// The source address of pairing `n`: 250 pairings (500 connections) per address 127.0.x.y,
/// far from the port range of any one address.
fn source(n: u32) -> IpAddr {
    IpAddr::from([127, 0, 1 + (n / 250 / 250) as u8, 2 + (n / 250 % 250) as u8])
}

fn keys() -> MailboxKeys {
    let bridge = SecretKey::random(&mut OsRng);
    let phone = SecretKey::random(&mut OsRng);
    MailboxKeys::pairing(&bridge, &phone.public_key(), Role::Bridge)
}

/// VmRSS in KiB and CPU time (user + system) in clock ticks of a process.
fn usage(pid: u32) -> Result<(u64, u64), String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command name (which may hold spaces, within parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("bad stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    Ok((rss, ticks(11) + ticks(12)))
}

fn ticks_per_second() -> f64 {
    100.0 // USER_HZ on Linux
}

async fn idle(relay: SocketAddr, pid: u32, pairings: u32, idle_secs: u64) -> Result<(), String> {
    let pairings = pairings.min(10_000);
    let idle_secs = idle_secs.min(60);
    let (rss_before, _) = usage(pid)?;
    let started = Instant::now();
    // Each connection is read, as an idle client's would be: that answers the relay's pings,
    // which otherwise closes a connection silent for its silence timeout (75 s), inside the
    // window when the attaches take long.
    let mut held = tokio::task::JoinSet::new();
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for n in 0..pairings {
        let keys = keys();
        for role in [Role::Bridge, Role::Phone] {
            let mut ws = connect(source(n), relay, &keys, role).await?;
            let closed = closed.clone();
            held.spawn(async move {
                while let Some(Ok(_)) = ws.next().await {}
                closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
    }
    let attach_secs = started.elapsed().as_secs_f64();
    // Let the relay settle, then measure while every connection idles.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_held, cpu_start) = usage(pid)?;
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let (_, cpu_end) = usage(pid)?;
    let connections = held.len() as f64;
    println!("connections\t{}", held.len());
    println!("attach_seconds\t{attach_secs:.2}");
    println!("rss_kib_before\t{rss_before}");
    println!("rss_kib_held\t{rss_held}");
    println!(
        "kib_per_connection\t{:.2}",
        rss_held.saturating_sub(rss_before) as f64 / connections
    );
    println!(
        "idle_cpu_percent\t{:.2}",
        (cpu_end - cpu_start) as f64 / ticks_per_second() / idle_secs.max(1) as f64 * 100.0
    );
    println!(
        "connections_closed\t{}",
        closed.load(std::sync::atomic::Ordering::Relaxed)
    );
    held.abort_all();
    Ok(())
}

/// Round trips between a bridge on `a` and a phone on `b`: sorted latencies in µs.
async fn round_trips(a: SocketAddr, b: SocketAddr, rounds: u32) -> Result<Vec<u64>, String> {
    let keys = keys();
    let local: IpAddr = [127, 0, 0, 1].into();
    let mut bridge = connect(local, a, &keys, Role::Bridge).await?;
    let mut phone = connect(local, b, &keys, Role::Phone).await?;
    // The bridge's PEER present for the phone.
    while next(&mut bridge).await? != (RelayFrame::Peer { present: true }) {}
    let mut times = Vec::with_capacity(rounds as usize);
    for n in 0..rounds {
        let payload = RelayFrame::Data(n.to_be_bytes().to_vec()).encode();
        let start = Instant::now();
        bridge
            .send(Message::binary(payload.clone()))
            .await
            .map_err(|e| e.to_string())?;
        match next(&mut phone).await? {
            RelayFrame::Data(_) => {}
            other => return Err(format!("phone got {other:?}")),
        }
        phone
            .send(Message::binary(payload))
            .await
            .map_err(|e| e.to_string())?;
        match next(&mut bridge).await? {
            RelayFrame::Data(_) => {}
            other => return Err(format!("bridge got {other:?}")),
        }
        times.push(start.elapsed().as_micros() as u64);
    }
    times.sort_unstable();
    Ok(times)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn hop(a: SocketAddr, b: SocketAddr, rounds: u32) -> Result<(), String> {
    let rounds = rounds.min(100_000);
    let same = round_trips(a, a, rounds).await?;
    let cross = round_trips(a, b, rounds).await?;
    for (name, times) in [("same_node", &same), ("cross_node", &cross)] {
        println!("{name}_round_trips\t{}", times.len());
        println!(
            "{name}_round_trip_us\tp50 {}\tp99 {}",
            percentile(times, 0.5),
            percentile(times, 0.99)
        );
    }
    // A round trip crosses twice (there and back).
    let added = percentile(&cross, 0.5) as i64 - percentile(&same, 0.5) as i64;
    println!("hop_added_median_us\t{}", added / 2);
    Ok(())
}

fn cable(
    url: String,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("fido.cable"),
    );
    Ok(request)
}

async fn cable_socket(
    addr: SocketAddr,
    url: String,
) -> Result<
    (
        Ws,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    String,
> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tokio::time::timeout(STEP, tokio_tungstenite::client_async(cable(url)?, stream))
        .await
        .map_err(|_| "no upgrade in time".to_string())?
        .map_err(|e| e.to_string())
}

async fn binary(ws: &mut Ws) -> Result<Bytes, String> {
    loop {
        match tokio::time::timeout(STEP, ws.next())
            .await
            .map_err(|_| "no message in time".to_string())?
            .ok_or("connection closed")?
            .map_err(|e| e.to_string())?
        {
            Message::Binary(bytes) => return Ok(bytes),
            Message::Close(frame) => return Err(format!("closed: {frame:?}")),
            _ => {}
        }
    }
}

/// One tunnel: phone on `a`, browser on `b`, a message each way, the browser closes and the
/// phone sees its close frame.
async fn one_tunnel(a: SocketAddr, b: SocketAddr) -> Result<(), String> {
    let (mut phone, mut browser) = joined_tunnel(a, b).await?;
    browser.close(None).await.map_err(|e| e.to_string())?;
    match binary(&mut phone).await {
        Err(closed) if closed.starts_with("closed") => Ok(()),
        other => Err(format!("phone after the browser's close: {other:?}")),
    }
}

/// A tunnel with its phone on `a` and its browser on `b`, after a message each way: the
/// phone's socket and the browser's.
async fn joined_tunnel(a: SocketAddr, b: SocketAddr) -> Result<(Ws, Ws), String> {
    let mut id = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut id);
    let tunnel: String = id.iter().map(|b| format!("{b:02X}")).collect();
    let (mut phone, response) = cable_socket(a, format!("ws://{a}/cable/new/{tunnel}")).await?;
    let routing = response
        .headers()
        .get("x-cable-routing-id")
        .and_then(|v| v.to_str().ok())
        .ok_or("no routing id")?
        .to_string();
    let (mut browser, _) =
        cable_socket(b, format!("ws://{b}/cable/connect/{routing}/{tunnel}")).await?;
    browser
        .send(Message::binary(b"hello".to_vec()))
        .await
        .map_err(|e| e.to_string())?;
    binary(&mut phone).await?;
    phone
        .send(Message::binary(b"hi".to_vec()))
        .await
        .map_err(|e| e.to_string())?;
    binary(&mut browser).await?;
    Ok((phone, browser))
}

/// Holds `count` joined caBLE tunnels on one node, idle after a message each way, and reads
/// the node's memory (VmRSS) before and after: KiB per tunnel socket (two per tunnel).
async fn idle_tunnels(relay: SocketAddr, pid: u32, count: u32) -> Result<(), String> {
    let count = count.min(5_000);
    let (rss_before, _) = usage(pid)?;
    let mut held = Vec::with_capacity(count as usize);
    for _ in 0..count {
        held.push(joined_tunnel(relay, relay).await?);
    }
    // Let the relay settle, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_held, _) = usage(pid)?;
    let sockets = 2 * held.len();
    println!("tunnel_sockets\t{sockets}");
    println!("rss_kib_before\t{rss_before}");
    println!("rss_kib_held\t{rss_held}");
    println!(
        "kib_per_tunnel_socket\t{:.2}",
        rss_held.saturating_sub(rss_before) as f64 / sockets.max(1) as f64
    );
    Ok(())
}

async fn tunnels(a: SocketAddr, b: SocketAddr, count: u32) -> Result<(), String> {
    let count = count.min(100_000);
    for (name, browser) in [("same_node", a), ("cross_node", b)] {
        let start = Instant::now();
        let mut completed = 0u32;
        for _ in 0..count {
            one_tunnel(a, browser).await?;
            completed += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        println!("{name}_tunnels\t{completed}");
        println!(
            "{name}_tunnels_per_second\t{:.0}",
            f64::from(completed) / secs
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.test {
        Test::Idle {
            relay,
            pid,
            pairings,
            idle_secs,
        } => match loopback(relay) {
            Ok(()) => idle(relay, pid, pairings, idle_secs).await,
            Err(e) => Err(e),
        },
        Test::IdleTunnels {
            relay,
            pid,
            tunnels,
        } => match loopback(relay) {
            Ok(()) => idle_tunnels(relay, pid, tunnels).await,
            Err(e) => Err(e),
        },
        Test::Tunnels { a, b, count } => match loopback(a).and(loopback(b)) {
            Ok(()) => tunnels(a, b, count).await,
            Err(e) => Err(e),
        },
        Test::Hop { a, b, rounds } => match loopback(a).and(loopback(b)) {
            Ok(()) => hop(a, b, rounds).await,
            Err(e) => Err(e),
        },
        Test::Traffic {
            relay,
            phones,
            pid,
            pairings,
            payload,
            start_rate,
            max_rate,
            max_steps,
            window_secs,
        } => {
            let phones = phones.unwrap_or(relay);
            match loopback(relay).and(loopback(phones)) {
                Ok(()) => {
                    traffic::run(traffic::Plan {
                        relay,
                        phones,
                        pids: pid,
                        pairings: pairings.clamp(1, 10_000),
                        payload: payload.clamp(16, 16_000),
                        start_rate: start_rate.clamp(1.0, 1_000_000.0),
                        max_rate: max_rate.clamp(1.0, 1_000_000.0),
                        max_steps: max_steps.clamp(1, 20),
                        window: Duration::from_secs(window_secs.clamp(1, 60)),
                    })
                    .await
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pocketkey-relay-load: {error}");
            ExitCode::FAILURE
        }
    }
}
