//! Revocation only by the peer (docs/pairing-protocol.md §3.4): the bridge as a real process,
//! the phone side of `pocketkey-net` in this process, and the relay stand-in. A relay that
//! says a live pairing's mailbox was deleted (close 4010, then 410) without anyone's DELETE
//! only suspends the pairing on both sides — records and keys kept, resumable — while a
//! `Revoke` the phone sends inside an established session deletes the bridge's record.

mod common;

use std::time::Instant;

use common::bridge::{bridge_tool, listed, text, Bridge, WAIT};
use common::hid::HidClient;
use common::phone::{wait_for, Phone};
use common::StandInRelay;
use pocketkey_net::pairing::ServeEvent;
use pocketkey_testkit::MakeCredential;

/// The relay closes both sides with 4010 and answers 410 afterwards, though neither side
/// revoked anything. Both keep their record and keys, marked suspended: the bridge stops with
/// a message naming the phone and what to do, the phone stops serving it and says so. A resume
/// tries again; the relay still says 410, so both are suspended again. (Before: both deleted
/// their keys for ever, and the bridge showed a pairing code as if never paired.)
#[test]
fn the_relays_word_alone_suspends_the_pairing_on_both_sides() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::start(&relay.url, dir.path(), &[]);
    let phone = Phone::new();
    let record = phone.pair(&bridge, "Test phone");
    let (_stop, listener, events) = phone.listen("Test phone");
    wait_for(&events, &ServeEvent::Established);

    assert_eq!(relay.claim_revoked(), 1);

    // The phone: the listener ends by itself, having reported the suspension; record and
    // key kept.
    wait_for(&events, &ServeEvent::Suspended);
    listener.join().unwrap();
    let kept = phone.stored(&record).expect("the phone kept the pairing");
    assert!(kept.suspended_at.is_some());
    assert_eq!(kept.our_static.to_bytes(), record.our_static.to_bytes());
    assert!(kept.revoked_at.is_none());

    // The bridge: stops with what happened and what to do; the pairing is listed, suspended.
    assert!(!bridge.exit().success());
    let said = bridge.stderr_text();
    assert!(
        said.contains("the pairing with the phone \"Test phone\" is suspended")
            && said.contains("--resume \"Test phone\"")
            && said.contains("--unpair \"Test phone\""),
        "{said}"
    );
    let line = listed(dir.path());
    assert!(
        line.starts_with("Test phone\t") && line.trim_end().ends_with("\tsuspended"),
        "{line}"
    );

    // Resumed on both sides: each attaches again, the relay says 410 again, suspended again.
    let out = bridge_tool(dir.path(), &["--resume"]);
    assert_eq!(text(&out.stdout).trim(), "resumed: Test phone");
    assert!(!listed(dir.path()).contains("suspended"));
    phone.pairings.lock().unwrap().resume(&record.id).unwrap();
    let mut again = Bridge::start(&relay.url, dir.path(), &[]);
    assert!(!again.exit().success());
    assert!(again.stderr_text().contains("is suspended"));
    assert!(listed(dir.path()).trim_end().ends_with("\tsuspended"));
    let (_stop, listener, events) = phone.listen("Test phone");
    wait_for(&events, &ServeEvent::Suspended);
    listener.join().unwrap();
    assert!(phone.stored(&record).unwrap().suspended_at.is_some());
}

/// The phone's user revoked the pairing (in another process, whose DELETE did not reach the
/// relay) while a session with the bridge is open. At the next request the phone says
/// `Revoke` in the session (authenticated by the pairing's keys) before its DELETE: the
/// bridge deletes its record and shows a pairing code, the browser hears at once, and the
/// phone forgets the pairing once the relay confirmed. (Before: the request was dropped, the
/// bridge never heard, and it waited for the phone until the request timed out.)
#[test]
fn a_revoke_in_the_session_deletes_the_pairing() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(&relay.url, dir.path(), &[]);
    let phone = Phone::new();
    let record = phone.pair(&bridge, "Test phone");
    let (_stop, listener, events) = phone.listen("Test phone");
    wait_for(&events, &ServeEvent::Established);

    phone
        .pairings
        .lock()
        .unwrap()
        .revoke(&record.id, 1)
        .unwrap();
    let mut hid = HidClient::connect(bridge.addr);
    let request = MakeCredential::new("example.com", "anna")
        .client_data_hash([0x11; 32])
        .user_id([1, 2, 3])
        .encode();
    let answer = hid.cbor(&request, WAIT);
    assert_ne!(answer.first(), Some(&0x00), "a revoked pairing answered");

    // The bridge deleted the pairing: nothing listed, a new pairing code shown.
    assert!(bridge.pairing_url().starts_with("pocketkey://pair?"));
    assert_eq!(listed(dir.path()), "");
    // The phone: the relay confirmed its DELETE; the pairing is gone, not suspended.
    wait_for(&events, &ServeEvent::Revoked);
    listener.join().unwrap();
    assert!(phone.stored(&record).is_none());
}

/// The computer's user unpairs (`pocketkey-bridge --unpair`, while the bridge runs) and the
/// phone listens: the phone is told in a session (`Revoke`) and forgets the pairing rather
/// than suspending it; the running bridge, whose pairing was removed here, shows a pairing
/// code again. (Without the session, the phone hears only the relay's 4010 and suspends.)
#[test]
fn the_bridges_unpair_tells_a_listening_phone_in_a_session() {
    let relay = StandInRelay::start();
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::start(&relay.url, dir.path(), &[]);
    let phone = Phone::new();
    let record = phone.pair(&bridge, "Test phone");
    let (_stop, listener, events) = phone.listen("Test phone");
    wait_for(&events, &ServeEvent::Established);

    let out = bridge_tool(dir.path(), &["--unpair"]);
    assert_eq!(text(&out.stdout).trim(), "unpaired: Test phone");
    let until = Instant::now() + WAIT;
    let ended = loop {
        let left = until.saturating_duration_since(Instant::now());
        match events.recv_timeout(left).expect("the phone heard of it") {
            event @ (ServeEvent::Revoked | ServeEvent::Suspended) => break event,
            _ => {}
        }
    };
    assert_eq!(ended, ServeEvent::Revoked);
    listener.join().unwrap();
    assert!(
        phone.stored(&record).is_none(),
        "the phone kept the pairing"
    );
    assert!(bridge.pairing_url().starts_with("pocketkey://pair?"));
    assert_eq!(listed(dir.path()), "");
}
