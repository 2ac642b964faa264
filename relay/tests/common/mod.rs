//! Test clients for the relay: a phone and a browser speaking the tunnel-server protocol with
//! tokio-tungstenite, and a raw HTTP client for requests a websocket client cannot make.

#![allow(dead_code)]

pub mod mailbox;
pub mod program;
pub mod push;
pub mod redis;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pocketkey_relay::{serve, Config, RelayHandle};
use rand_core::{OsRng, RngCore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any single expected event may take.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub async fn start(config: Config) -> RelayHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, config).unwrap()
}

/// A fresh random tunnel id, upper-case hex.
pub fn tunnel_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

pub fn new_url(addr: SocketAddr, tunnel: &str) -> String {
    format!("ws://{addr}/cable/new/{tunnel}")
}

pub fn connect_url(addr: SocketAddr, routing: &str, tunnel: &str) -> String {
    format!("ws://{addr}/cable/connect/{routing}/{tunnel}")
}

/// A websocket request offering `fido.cable`.
pub fn cable_request(url: &str) -> Request {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("fido.cable"),
    );
    request
}

/// The phone: opens a tunnel, returns the socket and the routing id the relay assigned.
pub async fn open(addr: SocketAddr, tunnel: &str) -> (Ws, String) {
    let (ws, response) = connect_async(cable_request(&new_url(addr, tunnel)))
        .await
        .expect("phone's new tunnel");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "fido.cable"
    );
    let routing = response
        .headers()
        .get("x-cable-routing-id")
        .expect("X-caBLE-Routing-ID header")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(routing.len(), 6, "{routing}");
    assert!(routing.bytes().all(|b| b.is_ascii_hexdigit()), "{routing}");
    (ws, routing)
}

/// The browser: joins a tunnel.
pub async fn join(addr: SocketAddr, routing: &str, tunnel: &str) -> Ws {
    let (ws, response) = connect_async(cable_request(&connect_url(addr, routing, tunnel)))
        .await
        .expect("browser's connect");
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "fido.cable"
    );
    ws
}

/// A phone and a browser joined through the relay.
pub async fn pair(addr: SocketAddr) -> (Ws, Ws) {
    let tunnel = tunnel_id();
    let (phone, routing) = open(addr, &tunnel).await;
    let browser = join(addr, &routing, &tunnel).await;
    (phone, browser)
}

/// The HTTP status a websocket request is refused with (panics if it is accepted).
pub async fn refused(request: Request) -> u16 {
    match connect_async(request).await {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok((_, response)) => panic!("expected a refusal, got {}", response.status()),
    }
}

/// Sends a raw HTTP request, returns the status code and the whole response head and body.
pub async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("the relay closes refused connections")
        .unwrap();
    let text = String::from_utf8(response).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

/// A websocket upgrade request as raw text, with the given extra header lines.
pub fn raw_upgrade(method: &str, path: &str, extra: &[&str]) -> String {
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: relay.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text
}

pub async fn send(ws: &mut Ws, payload: &[u8]) {
    ws.send(Message::binary(payload.to_vec())).await.unwrap();
}

/// The next data message (pings and pongs skipped); panics on anything else.
pub async fn recv(ws: &mut Ws) -> Vec<u8> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message")
        {
            Some(Ok(Message::Binary(data))) => return data.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

/// Waits for the relay's close frame; returns its code and reason, checks that the relay then
/// hangs up, and hangs up too (as browsers and phones do).
pub async fn closed(mut ws: Ws) -> (u16, String) {
    let frame = loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a close frame")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let frame: CloseFrame = frame.expect("a close frame with a status code");
    // After the close handshake the relay hangs up.
    let rest = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("the connection ends after the close frame");
    assert!(
        matches!(rest, None | Some(Err(_))),
        "unexpected after close: {rest:?}"
    );
    (u16::from(frame.code), frame.reason.to_string())
}

/// Waits until the relay has no open tunnel (their tasks end shortly after the sockets close).
pub async fn until_no_tunnels(relay: &RelayHandle) {
    until_tunnels(relay, 0).await;
}

pub async fn until_tunnels(relay: &RelayHandle, count: usize) {
    tokio::time::timeout(PATIENCE, async {
        while relay.open_tunnels() != count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} tunnels open, expected {count}", relay.open_tunnels()));
}
