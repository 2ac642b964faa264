//! A pairing-mailbox client (docs/pairing-protocol.md §3) for the relay's tests: attach as the
//! bridge or the phone of a pairing, read and write relay frames.

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

/// The attach upgrade of `role` at the relay on `addr`, with its subprotocol and tokens.
pub fn attach_request(addr: SocketAddr, keys: &MailboxKeys, role: Role) -> Request {
    let attach = keys.attach(role);
    let mut request = attach
        .url(&format!("ws://{addr}"))
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    for (name, value) in attach.headers() {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    }
    request
}

/// Attaches as `role`; the relay must accept, naming the subprotocol.
pub async fn attach(addr: SocketAddr, keys: &MailboxKeys, role: Role) -> Ws {
    let (ws, response) = connect_async(attach_request(addr, keys, role))
        .await
        .expect("attach");
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        SUBPROTOCOL
    );
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
