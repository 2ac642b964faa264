//! `traffic`: N attached pairings exchanging request / response DATA frames through the relay
//! at a paced offered rate. Steps the rate up until the relay (or the machine) stops keeping
//! up, takes the highest delivered rate as the maximum, then measures latency and the relay's
//! CPU per frame at 50 % and 90 % of it.
//!
//! Each bridge sends requests at its share of the offered rate; its phone answers each one
//! at once with a response of the same size. A frame carries the time it was sent (one clock:
//! both ends are in this process), so the latency of every frame through the relay is
//! measured one way, and the request's round trip at the bridge.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::Role;
use rand_core::{OsRng, RngCore};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::{connect, keys, percentile, source, ticks_per_second, usage, Ws};

/// Requests a bridge may have unanswered; past it the bridge skips its turn rather than let
/// the relay's write queue of the phone (64 frames) overflow and close the connection.
const MAX_IN_FLIGHT: u32 = 8;
/// A step whose delivered rate falls below this share of its offered rate is saturated.
const KEEPS_UP: f64 = 0.95;
/// Offered-rate factor from one step to the next.
const STEP_FACTOR: f64 = 1.5;
/// Steps that narrow the sustained rate down between the last step that kept up and the
/// first that did not (each halves the factor between them: ×1.5 → ×1.05 after three).
const REFINE_STEPS: u32 = 3;
/// Time before each measuring window for the rate to settle.
const WARM_UP: Duration = Duration::from_secs(1);
/// Longest wait for the answers still in flight after a step.
const DRAIN: Duration = Duration::from_secs(10);
/// Bytes at the start of a payload that carry its times: the request's send time, then the
/// response's (nanoseconds since the run began, big-endian).
const STAMPS: usize = 16;

/// What `traffic` runs; every count is bounded by `main`.
pub struct Plan {
    /// The node the bridges attach to.
    pub relay: SocketAddr,
    /// The node the phones attach to (the same node, or another sharing Redis).
    pub phones: SocketAddr,
    /// Processes whose CPU is the relay's (the nodes, and Redis if it should count).
    pub pids: Vec<u32>,
    pub pairings: u32,
    /// DATA payload bytes of each request and response.
    pub payload: usize,
    /// First offered rate, frames per second (requests and responses together).
    pub start_rate: f64,
    /// Highest offered rate tried.
    pub max_rate: f64,
    pub max_steps: u32,
    /// Length of each measuring window.
    pub window: Duration,
}

/// What the frames of one measuring window did, shared by every connection's task.
#[derive(Default)]
struct Window {
    recording: AtomicBool,
    frames: AtomicU64,
    /// One-way latency of each frame received while recording, µs.
    frame_us: Mutex<Vec<u64>>,
    /// Round trip of each request answered while recording, µs.
    round_trip_us: Mutex<Vec<u64>>,
    /// Requests sent and answered over the whole run.
    sent: AtomicU64,
    answered: AtomicU64,
    /// Turns a bridge skipped because MAX_IN_FLIGHT requests were unanswered.
    held_back: AtomicU64,
    failure: Mutex<Option<String>>,
}

impl Window {
    fn fail(&self, why: String) {
        self.failure.lock().unwrap().get_or_insert(why);
    }

    /// A frame received `now` that was sent at `since`.
    fn frame(&self, since: u64, now: u64) {
        if self.recording.load(Ordering::Relaxed) {
            self.frames.fetch_add(1, Ordering::Relaxed);
            self.frame_us.lock().unwrap().push(micros(since, now));
        }
    }

    /// A response received `now` to the request sent at `since`.
    fn round_trip(&self, since: u64, now: u64) {
        if self.recording.load(Ordering::Relaxed) {
            self.round_trip_us.lock().unwrap().push(micros(since, now));
        }
    }
}

fn micros(since: u64, now: u64) -> u64 {
    now.saturating_sub(since) / 1_000
}

/// The figures of one measuring window.
struct Step {
    offered: f64,
    delivered: f64,
    frame_us: Vec<u64>,
    round_trip_us: Vec<u64>,
    /// Relay CPU (user + system of every pid) per delivered frame, µs.
    relay_cpu_us_per_frame: f64,
    /// This program's own CPU over the window, % of one core.
    load_cpu_percent: f64,
}

struct Bridge {
    sink: Arc<tokio::sync::Mutex<SplitSink<Ws, Message>>>,
    in_flight: Arc<AtomicU32>,
}

fn stamp(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Whether a DATA payload is one of this test's (it carries the two send times).
fn stamped(payload: &[u8]) -> bool {
    payload.len() >= STAMPS
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}

/// The phone: answers each request with a response of the same size, stamped with its own
/// send time after the request's.
async fn phone(mut ws: Ws, base: Instant, window: Arc<Window>) {
    loop {
        let bytes = match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(frame))) => {
                return window.fail(format!("phone closed: {frame:?}"))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return window.fail(format!("phone: {e}")),
            None => return,
        };
        let mut payload = match RelayFrame::decode(&bytes) {
            Ok(RelayFrame::Data(payload)) if stamped(&payload) => payload,
            Ok(RelayFrame::Peer { .. }) => continue,
            other => return window.fail(format!("phone got {other:?}")),
        };
        let now = stamp(base);
        window.frame(read_u64(&payload, 0), now);
        payload[8..16].copy_from_slice(&now.to_be_bytes());
        let response = RelayFrame::Data(payload).encode();
        if let Err(e) = ws.send(Message::binary(response)).await {
            return window.fail(format!("phone send: {e}"));
        }
    }
}

/// The bridge's reader: records each response's one-way latency and its request's round trip.
async fn bridge_reader(
    mut stream: SplitStream<Ws>,
    in_flight: Arc<AtomicU32>,
    base: Instant,
    window: Arc<Window>,
) {
    loop {
        let bytes = match stream.next().await {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(frame))) => {
                return window.fail(format!("bridge closed: {frame:?}"))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return window.fail(format!("bridge: {e}")),
            None => return,
        };
        match RelayFrame::decode(&bytes) {
            Ok(RelayFrame::Data(payload)) if stamped(&payload) => {
                let now = stamp(base);
                window.frame(read_u64(&payload, 8), now);
                window.round_trip(read_u64(&payload, 0), now);
                in_flight.fetch_sub(1, Ordering::Relaxed);
                window.answered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(RelayFrame::Peer { .. }) => {}
            // ERROR (rate limited, peer absent) ends the run: the figures would be wrong.
            other => return window.fail(format!("bridge got {other:?}")),
        }
    }
}

/// One bridge's requests at `period`, from a random phase so that the bridges spread out.
async fn sender(
    bridge: Arc<Bridge>,
    period: Duration,
    payload: usize,
    base: Instant,
    window: Arc<Window>,
    stop: CancellationToken,
) {
    let phase = OsRng.next_u64() % period.as_nanos().max(1) as u64;
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_nanos(phase),
        period,
    );
    // Behind schedule, skip the missed turns: the offered rate is then not met, which is what
    // marks a saturated step (a burst of catch-up sends would hide it).
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut body = vec![0u8; payload.max(STAMPS)];
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if bridge.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            window.held_back.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        body[..8].copy_from_slice(&stamp(base).to_be_bytes());
        let frame = RelayFrame::Data(body.clone()).encode();
        bridge.in_flight.fetch_add(1, Ordering::Relaxed);
        window.sent.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = bridge.sink.lock().await.send(Message::binary(frame)).await {
            return window.fail(format!("bridge send: {e}"));
        }
    }
}

/// CPU ticks (user + system) of every pid together.
fn cpu_ticks(pids: &[u32]) -> Result<u64, String> {
    pids.iter().map(|&pid| Ok(usage(pid)?.1)).sum()
}

/// Runs one offered rate: warm-up, a measuring window, then waits for the answers in flight.
async fn step(
    plan: &Plan,
    bridges: &[Arc<Bridge>],
    offered: f64,
    base: Instant,
    window: &Arc<Window>,
) -> Result<Step, String> {
    // Each request is two frames (it, and its response).
    let per_bridge = offered / 2.0 / bridges.len() as f64;
    let period = Duration::from_secs_f64(1.0 / per_bridge);
    let stop = CancellationToken::new();
    for bridge in bridges {
        tokio::spawn(sender(
            bridge.clone(),
            period,
            plan.payload,
            base,
            window.clone(),
            stop.clone(),
        ));
    }
    tokio::time::sleep(WARM_UP).await;
    window.frame_us.lock().unwrap().clear();
    window.round_trip_us.lock().unwrap().clear();
    window.frames.store(0, Ordering::Relaxed);
    let relay_before = cpu_ticks(&plan.pids)?;
    let load_before = usage(std::process::id())?.1;
    let started = Instant::now();
    window.recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(plan.window).await;
    window.recording.store(false, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let relay_ticks = cpu_ticks(&plan.pids)? - relay_before;
    let load_ticks = usage(std::process::id())?.1 - load_before;
    stop.cancel();
    let frames = window.frames.load(Ordering::Relaxed);
    // Let the requests in flight be answered before the next step (bounded).
    let drained = Instant::now();
    while window.sent.load(Ordering::Relaxed) > window.answered.load(Ordering::Relaxed)
        && drained.elapsed() < DRAIN
        && window.failure.lock().unwrap().is_none()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(why) = window.failure.lock().unwrap().clone() {
        return Err(why);
    }
    let mut frame_us = std::mem::take(&mut *window.frame_us.lock().unwrap());
    let mut round_trip_us = std::mem::take(&mut *window.round_trip_us.lock().unwrap());
    frame_us.sort_unstable();
    round_trip_us.sort_unstable();
    let cpu_secs = relay_ticks as f64 / ticks_per_second();
    Ok(Step {
        offered,
        delivered: frames as f64 / secs,
        frame_us,
        round_trip_us,
        relay_cpu_us_per_frame: cpu_secs * 1e6 / frames.max(1) as f64,
        load_cpu_percent: load_ticks as f64 / ticks_per_second() / secs * 100.0,
    })
}

fn print_at(name: &str, step: &Step) {
    println!("{name}_offered_frames_per_second\t{:.0}", step.offered);
    println!("{name}_frames_per_second\t{:.0}", step.delivered);
    println!(
        "{name}_frame_latency_us\tp50 {}\tp99 {}",
        percentile(&step.frame_us, 0.5),
        percentile(&step.frame_us, 0.99)
    );
    println!(
        "{name}_round_trip_us\tp50 {}\tp99 {}",
        percentile(&step.round_trip_us, 0.5),
        percentile(&step.round_trip_us, 0.99)
    );
    println!(
        "{name}_relay_cpu_us_per_frame\t{:.2}",
        step.relay_cpu_us_per_frame
    );
    println!("{name}_load_cpu_percent\t{:.0}", step.load_cpu_percent);
}

pub async fn run(plan: Plan) -> Result<(), String> {
    let base = Instant::now();
    let window = Arc::new(Window::default());
    let mut bridges = Vec::with_capacity(plan.pairings as usize);
    for n in 0..plan.pairings {
        let from: IpAddr = source(n);
        let keys = keys();
        let bridge = connect(from, plan.relay, &keys, Role::Bridge).await?;
        let phone_ws = connect(from, plan.phones, &keys, Role::Phone).await?;
        tokio::spawn(phone(phone_ws, base, window.clone()));
        let (sink, stream) = bridge.split();
        let in_flight = Arc::new(AtomicU32::new(0));
        tokio::spawn(bridge_reader(
            stream,
            in_flight.clone(),
            base,
            window.clone(),
        ));
        bridges.push(Arc::new(Bridge {
            sink: Arc::new(tokio::sync::Mutex::new(sink)),
            in_flight,
        }));
    }
    println!("pairings\t{}", plan.pairings);
    println!("connections\t{}", 2 * plan.pairings);

    // Step the offered rate up until a step no longer keeps up.
    let mut rate = plan.start_rate;
    let mut most = 0.0f64;
    // The highest offered rate a step kept up with, and what that step delivered.
    let mut kept: Option<(f64, f64)> = None;
    let mut saturated = None;
    let print_step = |label: String, s: &Step| {
        println!(
            "{label}\toffered {:.0}\tdelivered {:.0}\tframe_p50_us {}\tframe_p99_us {}",
            s.offered,
            s.delivered,
            percentile(&s.frame_us, 0.5),
            percentile(&s.frame_us, 0.99)
        );
    };
    for n in 1..=plan.max_steps {
        let s = step(&plan, &bridges, rate, base, &window).await?;
        print_step(format!("step_{n}"), &s);
        most = most.max(s.delivered);
        if s.delivered < KEEPS_UP * s.offered {
            saturated = Some(rate);
            break;
        }
        kept = Some((rate, s.delivered));
        if rate >= plan.max_rate {
            break;
        }
        rate = (rate * STEP_FACTOR).min(plan.max_rate);
    }
    // The saturated step's delivery is what an overloaded relay (and load program) got through
    // with every queue full: 90 % of it can lie above what any rate sustains, and the ×1.5
    // steps leave the range from the last step kept up to it unmeasured. Narrow it down.
    if let (Some((mut low, _)), Some(mut high)) = (kept, saturated) {
        for n in 1..=REFINE_STEPS {
            let middle = (low * high).sqrt();
            let s = step(&plan, &bridges, middle, base, &window).await?;
            print_step(format!("refine_{n}"), &s);
            most = most.max(s.delivered);
            if s.delivered < KEEPS_UP * s.offered {
                high = middle;
            } else {
                low = middle;
                kept = Some((middle, s.delivered));
            }
        }
    }
    println!("max_frames_per_second\t{most:.0}");
    // Not saturated: the maximum is only a lower bound (the steps or --max-rate ran out).
    println!(
        "saturated\t{}",
        if saturated.is_some() { "yes" } else { "no" }
    );
    // The 50 % and 90 % steps are shares of the most a step sustained (all of the very
    // first step's delivery when even that one did not keep up).
    let sustained = kept.map_or(most, |(_, delivered)| delivered);
    println!("sustained_frames_per_second\t{sustained:.0}");
    for (name, share) in [("at_50pct", 0.5), ("at_90pct", 0.9)] {
        let s = step(&plan, &bridges, sustained * share, base, &window).await?;
        print_at(name, &s);
    }
    println!(
        "requests_unanswered\t{}",
        window.sent.load(Ordering::Relaxed) - window.answered.load(Ordering::Relaxed)
    );
    println!(
        "turns_held_back\t{}",
        window.held_back.load(Ordering::Relaxed)
    );
    Ok(())
}
