//! A pairing-mailbox client (docs/pairing-protocol.md §3) for the relay's tests: attach as the
//! bridge or the phone of a pairing (upgrade, CHALLENGE, ATTACH), read and write relay frames.

use std::net::SocketAddr;

use p256::SecretKey;
use pocketkey_core::pairing::mailbox::{MailboxKeys, SUBPROTOCOL};
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::Role;
use rand_core::OsRng;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::{recv, send, Ws};

/// A new pairing: the bridge's and the phone's static keys, and the mailbox keys they share.
pub fn pairing() -> (SecretKey, SecretKey, MailboxKeys) {
    let bridge = SecretKey::random(&mut OsRng);
    let phone = SecretKey::random(&mut OsRng);
    let keys = MailboxKeys::pairing(&bridge, &phone.public_key(), Role::Bridge);
    (bridge, phone, keys)
}

/// The websocket upgrade to the mailbox of `keys` at the relay on `addr`, with its subprotocol.
pub fn attach_request(addr: SocketAddr, keys: &MailboxKeys, role: Role) -> Request {
    let mut request = keys
        .attach(role)
        .url(&format!("ws://{addr}"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    request
}

/// The upgrade only; the relay's CHALLENGE is the next frame.
pub async fn upgrade(addr: SocketAddr, keys: &MailboxKeys, role: Role) -> Ws {
    let (ws, response) = connect_async(attach_request(addr, keys, role))
        .await
        .expect("attach upgrade");
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        SUBPROTOCOL
    );
    ws
}

/// Reads the CHALLENGE, returns its nonce.
pub async fn challenge(ws: &mut Ws) -> [u8; 32] {
    match frame(ws).await {
        RelayFrame::Challenge(nonce) => nonce,
        other => panic!("expected CHALLENGE, got {other:?}"),
    }
}

/// Attaches as `role`: upgrade, CHALLENGE, ATTACH signed with the role's attach key.
pub async fn attach(addr: SocketAddr, keys: &MailboxKeys, role: Role) -> Ws {
    let mut ws = upgrade(addr, keys, role).await;
    let nonce = challenge(&mut ws).await;
    put(
        &mut ws,
        RelayFrame::Attach(keys.attach(role).respond(&nonce)),
    )
    .await;
    ws
}

/// The HTTP status the relay answers `request` with (101 when it accepts).
pub async fn status_of(request: Request) -> u16 {
    match connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("attach failed: {other}"),
    }
}

/// The next relay frame.
pub async fn frame(ws: &mut Ws) -> RelayFrame {
    RelayFrame::decode(&recv(ws).await).expect("a relay frame")
}

/// Sends a relay frame.
pub async fn put(ws: &mut Ws, frame: RelayFrame) {
    send(ws, &frame.encode()).await;
}

/// [`attach`] from the loopback address `source`: the socket after ATTACH, or the HTTP status
/// the upgrade was refused with.
pub async fn attach_from(
    source: &str,
    addr: SocketAddr,
    keys: &MailboxKeys,
    role: Role,
) -> Result<Ws, u16> {
    let (mut ws, _) =
        super::program::connect_from(source, addr, attach_request(addr, keys, role)).await?;
    let nonce = challenge(&mut ws).await;
    put(
        &mut ws,
        RelayFrame::Attach(keys.attach(role).respond(&nonce)),
    )
    .await;
    Ok(ws)
}
