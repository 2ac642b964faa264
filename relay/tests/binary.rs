//! The built `pocketkey-relay` program: port discovery from its first line, one tunnel through
//! it, logs on standard error, and a clean exit on SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::*;

#[tokio::test]
async fn the_program_relays_a_tunnel_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pocketkey-relay"))
        .args(["--listen", "127.0.0.1:0", "--memory"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pocketkey-relay");
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut logs = String::new();
        stderr.read_to_string(&mut logs).map(|_| logs)
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr: SocketAddr = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    let tunnel = tunnel_id();
    let (mut phone, routing) = open(addr, &tunnel).await;
    let mut browser = join(addr, &routing, &tunnel).await;
    send(&mut browser, b"secret payload bytes").await;
    assert_eq!(recv(&mut phone).await, b"secret payload bytes");
    send(&mut phone, b"answer").await;
    assert_eq!(recv(&mut browser).await, b"answer");
    drop(browser);
    assert_eq!(closed(phone).await.0, 1001);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");

    let logs = logs.join().unwrap().unwrap();
    for event in [
        "tunnel created",
        "tunnel joined",
        "tunnel closed",
        "shutting down",
    ] {
        assert!(logs.contains(event), "no {event:?} in:\n{logs}");
    }
    assert!(
        logs.contains(&format!("routing_id={}", routing.to_uppercase())),
        "{logs}"
    );
    assert!(logs.contains("phone_to_browser_bytes=6"), "{logs}");
    assert!(logs.contains("browser_to_phone_bytes=20"), "{logs}");
    // Never payload bytes, nor whole tunnel ids.
    assert!(!logs.contains("secret payload"), "{logs}");
    assert!(!logs.contains(&tunnel), "{logs}");
}
