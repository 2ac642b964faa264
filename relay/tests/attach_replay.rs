//! A recorded attach does not attach again (docs/pairing-protocol.md §3.1): everything a
//! TLS-terminating, logging proxy would see of a phone's attach — the upgrade request and the
//! ATTACH frame, byte for byte — replayed against the `pocketkey-relay` program is closed with
//! 4003, and the bridge attached to that mailbox never sees it.

mod common;

use std::sync::{Arc, Mutex};

use common::mailbox::{attach, frame, pairing, put};
use common::program::program;
use common::PATIENCE;
use pocketkey_core::pairing::relay::{close_code, RelayErrorCode, RelayFrame};
use pocketkey_core::pairing::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to `upstream` for one connection, recording what the client sends.
async fn recording_proxy(
    upstream: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&log);
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(upstream).await.unwrap();
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        });
        let mut buffer = [0u8; 4096];
        loop {
            match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    record.lock().unwrap().extend_from_slice(&buffer[..n]);
                    if server_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    (addr, log)
}

/// The server frames of a raw relay response after the 101 head: (opcode, payload) each.
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let len = usize::from(bytes[1] & 0x7f);
        assert!(len < 126, "short frames only");
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        frames.push((opcode, bytes[2..2 + len].to_vec()));
        bytes = &bytes[2 + len..];
    }
    frames
}

#[tokio::test]
async fn a_recorded_attach_replayed_does_not_attach() {
    let relay = program(&[]);
    let (_, _, keys) = pairing();
    let mut bridge = attach(relay.addr, &keys, Role::Bridge).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );

    // The phone attaches through the recording proxy, then leaves.
    let (proxy, log) = recording_proxy(relay.addr).await;
    let mut phone = attach(proxy, &keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, RelayFrame::Peer { present: true });
    assert_eq!(frame(&mut bridge).await, RelayFrame::Peer { present: true });
    drop(phone);
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    let recorded = log.lock().unwrap().clone();
    let head_end = recorded.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(recorded.len() > head_end, "the ATTACH frame was recorded");

    // Replayed byte for byte, straight to the relay.
    let mut replay = TcpStream::connect(relay.addr).await.unwrap();
    replay.write_all(&recorded).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, replay.read_to_end(&mut response))
        .await
        .expect("the relay ends the replayed connection")
        .unwrap();
    let head = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&response[..head])
    );
    let frames = server_frames(&response[head..]);
    // A fresh CHALLENGE, then the close: 4003, nothing else.
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0].0, 0x2);
    assert!(matches!(
        RelayFrame::decode(&frames[0].1),
        Ok(RelayFrame::Challenge(_))
    ));
    assert_eq!(frames[1].0, 0x8);
    assert_eq!(
        u16::from_be_bytes([frames[1].1[0], frames[1].1[1]]),
        close_code::FORBIDDEN
    );

    // The bridge never saw a phone: still attached, still alone.
    put(&mut bridge, RelayFrame::Data(vec![1])).await;
    match frame(&mut bridge).await {
        RelayFrame::Error { code, .. } => assert_eq!(code, RelayErrorCode::PeerAbsent as u8),
        other => panic!("expected peer_absent, got {other:?}"),
    }
}
