//! A bridge with more than one paired phone, as a real process with the relay stand-in and the
//! phone side of `pocketkey-net` in this process: when the served phone revokes the pairing
//! while the bridge runs, another paired phone takes over (no pairing code); and a revocation
//! the relay could not be told of (`--unpair` while it was down) is sent when the bridge
//! starts again, and one the phone could not send (`pocketkey unpair`) when `pocketkey listen`
//! starts.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

use common::bridge::{bridge_tool, listed, text, Bridge, BRIDGE, WAIT};
use common::hid::HidClient;
use common::phone::{wait_for, Phone};
use common::StandInRelay;
use pocketkey_core::pairing::PairingRecord;
use pocketkey_net::pairing::ServeEvent;
use pocketkey_testkit::MakeCredential;

/// The phones `--list` shows on the bridge's side, by name.
fn phones_listed(dir: &Path) -> Vec<String> {
    listed(dir)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

fn make_credential(user: &str) -> Vec<u8> {
    MakeCredential::new("example.com", user)
        .client_data_hash([0x11; 32])
        .user_id(user.as_bytes().to_vec())
        .rk(true)
        .uv(true)
        .encode()
}

/// "Phone A" paired with a bridge on `dir`, then "Phone B" with `--pair-another` (the user
/// answering yes to serving it); the bridge that serves Phone B.
fn two_phones_paired(relay: &StandInRelay, dir: &Path) -> (Phone, Phone, PairingRecord, Bridge) {
    let phone_a = Phone::new();
    let phone_b = Phone::new();
    {
        let bridge = Bridge::start(&relay.url, dir, &[]);
        phone_a.pair(&bridge, "Phone A");
        bridge.said("serving the phone \"Phone A\"");
    }
    let bridge = Bridge::start(&relay.url, dir, &["--pair-another"]);
    let record_b = phone_b.pair(&bridge, "Phone B");
    bridge.said("serving the phone \"Phone B\"");
    (phone_a, phone_b, record_b, bridge)
}

/// The bridge said `why`, then that it serves Phone A, without showing a pairing code in
/// between; Phone A has a session and is the one phone listed.
fn phone_a_took_over(bridge: &Bridge, dir: &Path, events_a: &Receiver<ServeEvent>, why: &str) {
    let said = bridge.said("serving the phone \"Phone A\"");
    assert!(said.iter().any(|l| l == why), "{said:#?}");
    assert!(
        bridge.stdout.try_iter().all(|l| !l.starts_with("pair: ")),
        "the bridge showed a pairing code"
    );
    wait_for(events_a, &ServeEvent::Established);
    assert_eq!(phones_listed(dir), ["Phone A"]);
}

/// Two phones paired with one bridge, the second (paired with `--pair-another`, the user
/// answering yes to serving it) served. That phone's user revokes the pairing while the bridge
/// runs: at the next request the phone says `Revoke` in the session, and the bridge, instead of
/// showing a pairing code, serves the other paired phone, which answers the next request.
#[test]
fn the_other_paired_phone_takes_over_when_the_served_one_revokes() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let (phone_a, phone_b, record_b, bridge) = two_phones_paired(&relay, dir.path());
    assert_eq!(phones_listed(dir.path()), ["Phone B", "Phone A"]);

    let (_, _listener_a, events_a) = phone_a.listen("Phone A");
    let (_, listener_b, events_b) = phone_b.listen("Phone B");
    wait_for(&events_b, &ServeEvent::Established);

    phone_b
        .pairings
        .lock()
        .unwrap()
        .revoke(&record_b.id, 1)
        .unwrap();
    let mut hid = HidClient::connect(bridge.addr);
    let answer = hid.cbor(&make_credential("anna"), WAIT);
    assert_ne!(answer.first(), Some(&0x00), "a revoked pairing answered");
    wait_for(&events_b, &ServeEvent::Revoked);
    listener_b.join().unwrap();

    // Phone A takes over, without a pairing code in between.
    phone_a_took_over(
        &bridge,
        dir.path(),
        &events_a,
        "the phone \"Phone B\" revoked the pairing",
    );
    let answer = hid.cbor(&make_credential("bert"), WAIT);
    assert_eq!(answer.first(), Some(&0x00), "phone A did not answer");
    assert_eq!(phone_a.credentials(), 1);
    assert_eq!(phone_b.credentials(), 0);
}

/// The same handover when the computer's user unpairs the served phone (`--unpair NAME` in
/// another process) while the bridge runs: the running bridge hears its own revocation and
/// serves the other paired phone.
#[test]
fn the_other_paired_phone_takes_over_when_the_served_one_is_unpaired_here() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let (phone_a, _phone_b, _, bridge) = two_phones_paired(&relay, dir.path());
    let (_, _listener_a, events_a) = phone_a.listen("Phone A");

    let out = bridge_tool(dir.path(), &["--unpair", "Phone B"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Phone B does not listen: no session, the relay alone is told (a DELETE).
    assert_eq!(text(&out.stdout).trim(), "unpaired: Phone B");
    phone_a_took_over(
        &bridge,
        dir.path(),
        &events_a,
        "the pairing with \"Phone B\" was removed here",
    );
    let mut hid = HidClient::connect(bridge.addr);
    let answer = hid.cbor(&make_credential("carl"), WAIT);
    assert_eq!(answer.first(), Some(&0x00), "phone A did not answer");
    assert_eq!(phone_a.credentials(), 1);
}

/// Waits until nothing accepts connections at `addr` any more.
fn until_closed(addr: SocketAddr) {
    let until = Instant::now() + WAIT;
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < until, "{addr} still accepts connections");
        thread::sleep(Duration::from_millis(10));
    }
}

/// `--unpair` while the relay is down leaves a pending revocation; the bridge's next start
/// sends the DELETE (the relay tombstones the mailbox), says so, and shows a pairing code
/// since no phone is left. The phone, told only by the relay, suspends the pairing.
#[test]
fn the_bridge_sends_a_pending_revocation_when_it_starts() {
    let relay = StandInRelay::start();
    let addr: SocketAddr = relay.url.strip_prefix("ws://").unwrap().parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let phone = Phone::new();
    let record = {
        let bridge = Bridge::start(&relay.url, dir.path(), &[]);
        let record = phone.pair(&bridge, "Phone A");
        bridge.said("serving the phone \"Phone A\"");
        record
    };
    drop(relay);
    until_closed(addr);

    let out = bridge_tool(dir.path(), &["--unpair"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "unpaired: Phone A (the relay could not be told yet; retried at the next start)"
    );

    let relay = StandInRelay::start_at(addr);
    assert_eq!(relay.tombstones(), 0);
    let bridge = Bridge::start(&relay.url, dir.path(), &[]);
    bridge.said("unpaired: Phone A (the relay was told now)");
    assert!(bridge.pairing_url().starts_with("pocketkey://pair?"));
    assert_eq!(relay.tombstones(), 1);
    assert_eq!(phones_listed(dir.path()), Vec::<String>::new());

    // The phone attaches, gets 410 (the relay's word only): suspended, keys kept.
    let (_, listener, events) = phone.listen("Phone A");
    wait_for(&events, &ServeEvent::Suspended);
    listener.join().unwrap();
    let stored = phone
        .pairings
        .lock()
        .unwrap()
        .get(&record.id)
        .unwrap()
        .expect("the phone kept the pairing");
    assert!(stored.suspended_at.is_some());
}

/// `pocketkey` (the phone's command line), next to the bridge's program; built if it is not.
fn pocketkey_program() -> std::path::PathBuf {
    let path = Path::new(BRIDGE).with_file_name("pocketkey");
    if !path.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "pocketkey"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

fn pocketkey(dir: &Path, args: &[&str]) -> Output {
    Command::new(pocketkey_program())
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .output()
        .unwrap()
}

/// The phone's `pocketkey unpair` while the relay is down leaves a pending revocation;
/// `pocketkey listen`, started once the relay is back, sends the DELETE before anything else,
/// says so, and (nothing else paired) ends with nothing to serve.
#[test]
fn pocketkey_listen_sends_a_pending_revocation_when_it_starts() {
    let relay = StandInRelay::start();
    let addr: SocketAddr = relay.url.strip_prefix("ws://").unwrap().parse().unwrap();
    let bridge_dir = tempfile::tempdir().unwrap();
    let phone = tempfile::tempdir().unwrap();
    {
        let bridge = Bridge::start(&relay.url, bridge_dir.path(), &[]);
        let out = pocketkey(phone.path(), &["pair", &bridge.pairing_url()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).ends_with(" Test laptop\n"));
    }
    drop(relay);
    until_closed(addr);

    let out = pocketkey(phone.path(), &["unpair", "Test laptop"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "unpaired: Test laptop (the relay will be told later)"
    );

    let relay = StandInRelay::start_at(addr);
    let out = pocketkey(phone.path(), &["listen", "--auto-approve"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l == "unpaired: Test laptop (the relay was told now)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no computer is paired"),
        "listen served something: {stderr}"
    );
    assert!(!out.status.success());
    assert_eq!(relay.tombstones(), 1);
    // Nothing pending any more: `pocketkey pairings` neither lists nor mentions it.
    let out = pocketkey(phone.path(), &["pairings"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert!(
        !text(&out.stderr).contains("Test laptop"),
        "{}",
        text(&out.stderr)
    );
}
