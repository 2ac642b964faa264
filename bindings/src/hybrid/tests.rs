//! The hybrid session through the app facade against a tunnel server of the test's own on
//! loopback, which also plays the browser (core's `noise::Initiator` and `Crypter`) on the phone's websocket, with a real
//! `SecurityKey` (temporary database, listener answering prompts).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ciborium::value::Value;
use p256::SecretKey;
use pocketkey_core::hybrid::advert::{self, EidPlaintext};
use pocketkey_core::hybrid::crypter::Crypter;
use pocketkey_core::hybrid::keys;
use pocketkey_core::hybrid::noise::Initiator;
use pocketkey_core::hybrid::qr::QrCode;
use pocketkey_core::hybrid::session::{encode_message, MessageType, PostHandshake};
use pocketkey_testkit::{GetAssertion, MakeCredential};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::{Message, WebSocket};

use super::*;
use crate::{
    ApprovalAnswer, ApprovalClosed, ApprovalListener, ApprovalListenerError, ApprovalPrompt,
    KeyProvider, KeyProviderError, PocketKeyError, SecurityKey,
};

const ROUTING: [u8; 3] = [0xAB, 0xCD, 0x01];

// ---------------------------------------------------------------- the app's callbacks

struct Keychain;
impl KeyProvider for Keychain {
    fn master_key(&self) -> Result<Vec<u8>, KeyProviderError> {
        Ok(vec![0x42; 32])
    }
}

/// Approves at once (verified) unless told to hold; records prompts and closings.
#[derive(Default)]
struct Listener {
    key: OnceLock<Weak<SecurityKey>>,
    hold: bool,
    /// The phone's UV key (a software P-256 key standing in for the Keystore's).
    uv_key: OnceLock<p256::ecdsa::SigningKey>,
    prompts: Mutex<Vec<ApprovalPrompt>>,
    closed: Mutex<Vec<ApprovalClosed>>,
}

impl ApprovalListener for Listener {
    fn on_approval_requested(&self, request: ApprovalPrompt) -> Result<(), ApprovalListenerError> {
        use p256::ecdsa::signature::Signer;
        let id = request.id;
        let uv_key = self.uv_key.get().expect("UV key registered");
        let signature: p256::ecdsa::DerSignature = uv_key.sign(&request.uv_challenge);
        self.prompts.lock().unwrap().push(request);
        if !self.hold {
            let key = self.key.get().and_then(Weak::upgrade).expect("key is open");
            let answer = ApprovalAnswer::ApproveVerified {
                account: None,
                signature: signature.as_bytes().to_vec(),
            };
            key.answer(id, answer).unwrap();
        }
        Ok(())
    }
    fn on_approval_closed(
        &self,
        _id: u64,
        reason: ApprovalClosed,
    ) -> Result<(), ApprovalListenerError> {
        self.closed.lock().unwrap().push(reason);
        Ok(())
    }
}

struct App {
    key: Arc<SecurityKey>,
    listener: Arc<Listener>,
    _dir: tempfile::TempDir,
}

fn app(hold: bool) -> App {
    let dir = tempfile::tempdir().unwrap();
    let listener = Arc::new(Listener {
        hold,
        ..Listener::default()
    });
    let key = SecurityKey::open(
        dir.path().join("key").to_string_lossy().into_owned(),
        Arc::new(Keychain),
        listener.clone(),
        Some(5_000),
        None,
    )
    .unwrap();
    listener.key.set(Arc::downgrade(&key)).unwrap();
    let uv_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let public = uv_key.verifying_key().to_encoded_point(false);
    key.register_uv_key(public.as_bytes().to_vec()).unwrap();
    let _ = listener.uv_key.set(uv_key);
    App {
        key,
        listener,
        _dir: dir,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AdvertEvent {
    Start(Vec<u8>),
    Stop,
}

/// Records calls; hands the service data to the browser.
struct Radio {
    events: Mutex<Vec<AdvertEvent>>,
    to_browser: Mutex<Option<Sender<Vec<u8>>>>,
    fail: bool,
}

impl Radio {
    fn new(fail: bool) -> (Arc<Self>, Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel();
        (
            Arc::new(Self {
                events: Mutex::default(),
                to_browser: Mutex::new(Some(tx)),
                fail,
            }),
            rx,
        )
    }
    fn events(&self) -> Vec<AdvertEvent> {
        self.events.lock().unwrap().clone()
    }
}

impl Advertiser for Radio {
    fn start(&self, service_data: Vec<u8>) -> Result<(), AdvertiserError> {
        if self.fail {
            return Err(AdvertiserError::Failed {
                reason: "bluetooth is off".into(),
            });
        }
        self.events
            .lock()
            .unwrap()
            .push(AdvertEvent::Start(service_data.clone()));
        if let Some(tx) = self.to_browser.lock().unwrap().take() {
            let _ = tx.send(service_data);
        }
        Ok(())
    }
    fn stop(&self) {
        self.events.lock().unwrap().push(AdvertEvent::Stop);
    }
}

// ---------------------------------------------------------------- the browser side

struct Browser {
    key: SecretKey,
    qr: QrCode,
}

impl Browser {
    fn new() -> Self {
        let key = SecretKey::random(&mut rand_core::OsRng);
        let mut secret = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
        let qr = QrCode::new(key.public_key(), secret);
        Self { key, qr }
    }
    fn text(&self) -> String {
        self.qr.to_url()
    }
    fn tunnel_hex(&self) -> String {
        keys::tunnel_id(&self.qr.secret)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }
    /// Reads the advert as a browser's BLE scan would.
    fn eid(&self, service_data: &[u8]) -> EidPlaintext {
        advert::decrypt(&keys::eid_key(&self.qr.secret), service_data).expect("our advert")
    }
}

/// What the fake tunnel server answers the phone.
#[derive(Clone, Copy)]
enum Answer {
    Upgrade,
    UpgradeWithoutRoutingId,
    Status(u16),
}

type Script<S = TcpStream> = Box<dyn FnOnce(WebSocket<S>, Receiver<Vec<u8>>) + Send>;

/// One-connection tunnel server on 127.0.0.1. Returns its ws:// URL and a handle that yields
/// the path the phone asked for.
fn tunnel_server(
    answer: Answer,
    adverts: Receiver<Vec<u8>>,
    script: Script,
) -> (String, JoinHandle<Option<String>>) {
    tunnel_server_over(answer, adverts, |tcp| tcp, script)
}

/// [`tunnel_server`] over whatever `wrap` makes of the accepted TCP stream (TLS).
#[allow(clippy::result_large_err)] // tungstenite's callback type
fn tunnel_server_over<S: Read + Write + Send + 'static>(
    answer: Answer,
    adverts: Receiver<Vec<u8>>,
    wrap: impl FnOnce(TcpStream) -> S + Send + 'static,
    script: Script<S>,
) -> (String, JoinHandle<Option<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().ok()?;
        let stream = wrap(stream);
        let mut path = None;
        let callback = |request: &Request, mut response: Response| {
            path = Some(request.uri().path().to_string());
            let protocol = request
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert_eq!(protocol, "fido.cable");
            match answer {
                Answer::Status(status) => {
                    let mut error = ErrorResponse::new(None);
                    *error.status_mut() = StatusCode::from_u16(status).unwrap();
                    return Err(error);
                }
                Answer::Upgrade => {
                    response
                        .headers_mut()
                        .insert("X-caBLE-Routing-ID", HeaderValue::from_static("ABCD01"));
                }
                Answer::UpgradeWithoutRoutingId => {}
            }
            response.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static("fido.cable"),
            );
            Ok(response)
        };
        let ws = tungstenite::accept_hdr(stream, callback);
        if let Ok(ws) = ws {
            script(ws, adverts);
        }
        path
    });
    (format!("ws://{addr}"), handle)
}

fn recv_binary<S: Read + Write>(ws: &mut WebSocket<S>) -> Vec<u8> {
    loop {
        match ws.read().expect("a message from the phone") {
            Message::Binary(b) => return b.to_vec(),
            Message::Close(_) => panic!("the phone closed"),
            _ => {}
        }
    }
}

/// Runs the handshake as the browser; returns its crypter and the phone's first message.
fn handshake<S: Read + Write>(
    browser: &Browser,
    ws: &mut WebSocket<S>,
    adverts: &Receiver<Vec<u8>>,
) -> (Crypter, PostHandshake) {
    let service_data = adverts.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(service_data.len(), 20);
    let eid = browser.eid(&service_data);
    assert_eq!(eid.routing_id, ROUTING);
    assert_eq!(eid.domain_id, 0);
    let psk = keys::psk(&browser.qr.secret, &eid.to_bytes());
    let (initiator, msg1) = Initiator::start(&browser.key, &psk).unwrap();
    ws.send(Message::Binary(msg1.to_vec().into())).unwrap();
    let answer = recv_binary(ws);
    let done = initiator.finish(&answer).unwrap();
    let mut crypter = Crypter::new(&done.keys);
    let post = PostHandshake::decode(&crypter.decrypt(&recv_binary(ws)).unwrap()).unwrap();
    (crypter, post)
}

fn send_message<S: Read + Write>(
    ws: &mut WebSocket<S>,
    c: &mut Crypter,
    kind: MessageType,
    payload: &[u8],
) {
    let frame = c.encrypt(&encode_message(kind, payload)).unwrap();
    ws.send(Message::Binary(frame.into())).unwrap();
}

/// Sends a CTAP request and returns the phone's answer (status ‖ CBOR).
fn ctap(ws: &mut WebSocket<TcpStream>, c: &mut Crypter, request: &[u8]) -> Vec<u8> {
    send_message(ws, c, MessageType::Ctap, request);
    let reply = c.decrypt(&recv_binary(ws)).unwrap();
    assert_eq!(reply[0], MessageType::Ctap as u8);
    reply[1..].to_vec()
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn make_credential() -> Vec<u8> {
    MakeCredential::new("example.com", "alice")
        .client_data_hash([7; 32])
        .user_id([1])
        .rk(true)
        .uv(true)
        .encode()
}

fn get_assertion() -> Vec<u8> {
    GetAssertion::new("example.com")
        .client_data_hash([8; 32])
        .encode()
}

fn options(url: &str) -> HybridOptions {
    HybridOptions {
        tunnel_url: Some(url.to_string()),
        connect_timeout_ms: 5_000,
        browser_timeout_ms: 10_000,
        message_timeout_ms: 10_000,
        ..HybridOptions::default()
    }
}

fn start_with(
    app: &App,
    browser: &Browser,
    radio: &Arc<Radio>,
    options: HybridOptions,
) -> Arc<HybridSession> {
    app.key
        .clone()
        .start_hybrid_with_options(browser.text(), radio.clone(), options)
        .unwrap()
}

fn finish(session: &HybridSession) -> Result<HybridOutcome, HybridError> {
    session
        .wait_timeout(Duration::from_secs(20))
        .expect("the session ends")
}

// ---------------------------------------------------------------- tests

#[test]
fn registers_and_signs_in_through_the_security_key() {
    let app = app(false);
    let browser = Browser::new();
    let (radio, adverts) = Radio::new(false);
    let b = Browser {
        key: browser.key.clone(),
        qr: browser.qr.clone(),
    };
    let (url, server) = tunnel_server(
        Answer::Upgrade,
        adverts,
        Box::new(move |mut ws, adverts| {
            let (mut c, post) = handshake(&b, &mut ws, &adverts);
            assert_eq!(post.features, vec!["ctap".to_string()]);
            let info = ciborium::de::from_reader::<Value, _>(&post.get_info[..]).unwrap();
            let transports = info
                .as_map()
                .unwrap()
                .iter()
                .find(|(k, _)| k == &Value::from(9))
                .map(|(_, v)| v.clone())
                .unwrap();
            assert!(
                transports.as_array().unwrap().contains(&text("hybrid")),
                "{transports:?}"
            );
            let made = ctap(&mut ws, &mut c, &make_credential());
            assert_eq!(made[0], 0x00, "makeCredential: {made:?}");
            let got = ctap(&mut ws, &mut c, &get_assertion());
            assert_eq!(got[0], 0x00, "getAssertion: {got:?}");
            send_message(&mut ws, &mut c, MessageType::Shutdown, &[]);
            // The phone closes the tunnel after the shutdown.
            loop {
                match ws.read() {
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }),
    );
    let session = start_with(&app, &browser, &radio, options(&url));
    assert_eq!(finish(&session), Ok(HybridOutcome { requests: 2 }));
    assert_eq!(
        server.join().unwrap().unwrap(),
        format!("/cable/new/{}", browser.tunnel_hex())
    );
    let events = radio.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[0], AdvertEvent::Start(d) if d.len() == 20));
    assert_eq!(events[1], AdvertEvent::Stop);
    let prompts = app.listener.prompts.lock().unwrap();
    assert_eq!(prompts.len(), 2);
    for prompt in prompts.iter() {
        assert_eq!(prompt.requester, "a nearby browser");
        assert_eq!(prompt.rp_id.as_deref(), Some("example.com"));
    }
    assert_eq!(app.key.passkeys().unwrap().len(), 1);
    assert!(session.is_finished());
    assert_eq!(
        session.wait(),
        Ok(HybridOutcome { requests: 2 }),
        "wait again"
    );
}

/// The browser may send a CTAP message longer than getInfo's maxMsgSize (the tunnel carries
/// 256 KiB): the engine answers CTAP1_ERR_INVALID_LENGTH without parsing it, and serves the
/// next request.
#[test]
fn a_request_over_max_msg_size_is_invalid_length() {
    let app = app(false);
    let browser = Browser::new();
    let (radio, adverts) = Radio::new(false);
    let b = Browser {
        key: browser.key.clone(),
        qr: browser.qr.clone(),
    };
    let max = pocketkey_core::authenticator::Config::default().max_msg_size;
    let (url, server) = tunnel_server(
        Answer::Upgrade,
        adverts,
        Box::new(move |mut ws, adverts| {
            let (mut c, _post) = handshake(&b, &mut ws, &adverts);
            let mut request = MakeCredential::new("example.com", "alice")
                .client_data_hash([7; 32])
                .user_display_name("d".repeat(max))
                .encode();
            assert!(request.len() > max);
            request.truncate(max + 1);
            assert_eq!(ctap(&mut ws, &mut c, &request), vec![0x03]);
            let made = ctap(&mut ws, &mut c, &make_credential());
            assert_eq!(made[0], 0x00, "makeCredential: {made:?}");
            send_message(&mut ws, &mut c, MessageType::Shutdown, &[]);
            loop {
                match ws.read() {
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }),
    );
    let session = start_with(&app, &browser, &radio, options(&url));
    assert_eq!(finish(&session), Ok(HybridOutcome { requests: 2 }));
    server.join().unwrap();
}

#[test]
fn malformed_codes_and_options_fail_before_any_network() {
    let app = app(false);
    let (radio, _adverts) = Radio::new(false);
    // A listener that must see no connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    for bad in [
        "FIDO:/123",
        "FIDO:/",
        "https://example.com",
        "FIDO:/12345678901234567",
    ] {
        match app
            .key
            .clone()
            .start_hybrid(bad.into(), radio.clone(), Some(url.clone()))
        {
            Err(PocketKeyError::InvalidHybridCode { detail }) => assert!(!detail.is_empty()),
            other => panic!("{bad}: {other:?}"),
        }
    }
    let browser = Browser::new();
    for bad in ["http://127.0.0.1:1", "ws://", "not a url", "ws://h/x?q=1"] {
        match app
            .key
            .clone()
            .start_hybrid(browser.text(), radio.clone(), Some(bad.into()))
        {
            Err(PocketKeyError::InvalidHybridOptions { .. }) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
    // Tunnel server id 1 is unknown to a browser whose code omits key 2; 2 is unassigned.
    for domain_id in [1, 2] {
        let result = app.key.clone().start_hybrid_with_options(
            browser.text(),
            radio.clone(),
            HybridOptions {
                domain_id,
                ..options(&url)
            },
        );
        assert!(
            matches!(result, Err(PocketKeyError::InvalidHybridOptions { .. })),
            "{result:?}"
        );
    }
    thread::sleep(Duration::from_millis(50));
    assert!(listener.accept().is_err(), "no connection was made");
    assert!(radio.events().is_empty());
}

/// A code's timestamp (key 3) against the phone's clock: an old one is expired, one far ahead
/// is a clock problem, both before any network; none at all is fine.
#[test]
fn stale_codes_fail_before_any_network() {
    use pocketkey_net::hybrid::{parse_qr, parse_qr_at, Error as HybridError};
    let app = app(false);
    let (radio, _adverts) = Radio::new(false);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let stamped = |t: u64| {
        let mut browser = Browser::new();
        browser.qr.timestamp = Some(t as i64);
        browser.text()
    };
    // Fixed clocks.
    let t = 1_700_000_000;
    assert!(parse_qr_at(&stamped(t), t + 600).is_ok());
    assert!(matches!(
        parse_qr_at(&stamped(t), t + 601),
        Err(HybridError::ExpiredQrCode { .. })
    ));
    assert!(matches!(
        parse_qr_at(&stamped(t + 601), t),
        Err(HybridError::QrCodeClockMismatch { .. })
    ));
    assert!(parse_qr_at(&Browser::new().text(), u64::MAX).is_ok());
    // The phone's own clock.
    assert!(parse_qr(&stamped(now)).is_ok());
    match app
        .key
        .clone()
        .start_hybrid(stamped(now - 3600), radio.clone(), Some(url.clone()))
    {
        Err(e @ PocketKeyError::ExpiredHybridCode { .. }) => assert_eq!(
            e.to_string(),
            "This code has expired: show a new one in the browser"
        ),
        other => panic!("{other:?}"),
    }
    match app
        .key
        .clone()
        .start_hybrid(stamped(now + 3600), radio.clone(), Some(url.clone()))
    {
        Err(PocketKeyError::HybridCodeClockMismatch { .. }) => {}
        other => panic!("{other:?}"),
    }
    thread::sleep(Duration::from_millis(50));
    assert!(listener.accept().is_err(), "no connection was made");
    assert!(radio.events().is_empty());
}

#[test]
fn tunnel_server_refusals_are_typed() {
    let app = app(false);
    let browser = Browser::new();
    for (answer, expected) in [
        (
            Answer::Status(404),
            HybridError::TunnelRefused { status: 404 },
        ),
        (
            Answer::Status(503),
            HybridError::TunnelRefused { status: 503 },
        ),
    ] {
        let (radio, adverts) = Radio::new(false);
        let (url, server) = tunnel_server(answer, adverts, Box::new(|_, _| {}));
        let session = start_with(&app, &browser, &radio, options(&url));
        assert_eq!(finish(&session), Err(expected));
        server.join().unwrap();
        assert!(radio.events().is_empty(), "no advert without a tunnel");
    }

    let (radio, adverts) = Radio::new(false);
    let (url, server) = tunnel_server(
        Answer::UpgradeWithoutRoutingId,
        adverts,
        Box::new(|_, _| {}),
    );
    let session = start_with(&app, &browser, &radio, options(&url));
    assert!(matches!(
        finish(&session),
        Err(HybridError::TunnelProtocol { .. })
    ));
    server.join().unwrap();
    assert!(radio.events().is_empty());

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", closed.local_addr().unwrap());
    drop(closed);
    let (radio, _adverts) = Radio::new(false);
    let session = start_with(&app, &browser, &radio, options(&url));
    assert!(matches!(
        finish(&session),
        Err(HybridError::TunnelUnreachable { .. })
    ));
}

#[test]
fn tunnel_server_that_never_answers_times_out() {
    let app = app(false);
    let browser = Browser::new();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", silent.local_addr().unwrap());
    let (radio, _adverts) = Radio::new(false);
    let session = start_with(
        &app,
        &browser,
        &radio,
        HybridOptions {
            connect_timeout_ms: 300,
            ..options(&url)
        },
    );
    assert_eq!(
        finish(&session),
        Err(HybridError::TimedOut {
            waiting_for: HybridWait::TunnelServer
        })
    );
}

/// A server whose browser never comes: holds the socket until the phone closes it.
fn idle_script() -> Script {
    Box::new(|mut ws, _| while ws.read().is_ok() {})
}

#[test]
fn a_browser_that_never_connects_times_out_and_the_advert_stops() {
    let app = app(false);
    let browser = Browser::new();
    let (radio, adverts) = Radio::new(false);
    let (url, server) = tunnel_server(Answer::Upgrade, adverts, idle_script());
    let session = start_with(
        &app,
        &browser,
        &radio,
        HybridOptions {
            browser_timeout_ms: 300,
            ..options(&url)
        },
    );
    assert_eq!(
        finish(&session),
        Err(HybridError::TimedOut {
            waiting_for: HybridWait::Browser
        })
    );
    server.join().unwrap();
    let events = radio.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1], AdvertEvent::Stop);
}

#[test]
fn cancel_while_advertising() {
    let app = app(false);
    let browser = Browser::new();
    let (radio, adverts) = Radio::new(false);
    let (url, server) = tunnel_server(Answer::Upgrade, adverts, idle_script());
    let session = start_with(&app, &browser, &radio, options(&url));
    for _ in 0..500 {
        if !radio.events().is_empty() {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    session.cancel();
    assert_eq!(finish(&session), Err(HybridError::Cancelled));
    server.join().unwrap();
    assert_eq!(radio.events().last(), Some(&AdvertEvent::Stop));
}

#[test]
fn advertiser_failure_is_typed_and_closes_the_tunnel() {
    let app = app(false);
    let browser = Browser::new();
    let (radio, adverts) = Radio::new(true);
    let (url, server) = tunnel_server(Answer::Upgrade, adverts, idle_script());
    let session = start_with(&app, &browser, &radio, options(&url));
    assert_eq!(
        finish(&session),
        Err(HybridError::AdvertiserFailed {
            reason: "the advert could not start: bluetooth is off".into()
        })
    );
    server.join().unwrap();
    assert!(radio.events().is_empty(), "no stop without a start");
}

/// Runs a session whose browser deviates as `script` says; returns the session's end.
fn misbehaving_browser(
    script: impl FnOnce(&Browser, &mut WebSocket<TcpStream>, &Receiver<Vec<u8>>) + Send + 'static,
) -> (Result<HybridOutcome, HybridError>, Vec<AdvertEvent>) {
    let app = app(false);
    let browser = Browser::new();
    let b = Browser {
        key: browser.key.clone(),
        qr: browser.qr.clone(),
    };
    let (radio, adverts) = Radio::new(false);
    let (url, server) = tunnel_server(
        Answer::Upgrade,
        adverts,
        Box::new(move |mut ws, adverts| {
            script(&b, &mut ws, &adverts);
            while ws.read().is_ok() {}
        }),
    );
    let session = start_with(&app, &browser, &radio, options(&url));
    let result = finish(&session);
    server.join().unwrap();
    (result, radio.events())
}

#[test]
fn a_browser_with_the_wrong_secret_fails_the_handshake() {
    let (result, events) = misbehaving_browser(|b, ws, adverts| {
        let eid = b.eid(&adverts.recv().unwrap());
        let psk = keys::psk(&[0x99; 16], &eid.to_bytes());
        let (_, msg1) = Initiator::start(&b.key, &psk).unwrap();
        ws.send(Message::Binary(msg1.to_vec().into())).unwrap();
    });
    assert!(
        matches!(&result, Err(HybridError::HandshakeFailed { detail }) if detail.contains("authenticate")),
        "{result:?}"
    );
    assert_eq!(events.last(), Some(&AdvertEvent::Stop));
}

#[test]
fn a_tampered_handshake_fails() {
    let (result, _) = misbehaving_browser(|b, ws, adverts| {
        let eid = b.eid(&adverts.recv().unwrap());
        let psk = keys::psk(&b.qr.secret, &eid.to_bytes());
        let (_, mut msg1) = Initiator::start(&b.key, &psk).unwrap();
        msg1[80] ^= 0x01;
        ws.send(Message::Binary(msg1.to_vec().into())).unwrap();
    });
    assert!(
        matches!(result, Err(HybridError::HandshakeFailed { .. })),
        "{result:?}"
    );
}

#[test]
fn a_tampered_transport_frame_fails() {
    let (result, _) = misbehaving_browser(|b, ws, adverts| {
        let (mut c, _) = handshake(b, ws, adverts);
        let mut frame = c
            .encrypt(&encode_message(MessageType::Ctap, &[0x04]))
            .unwrap();
        frame[3] ^= 0x80;
        ws.send(Message::Binary(frame.into())).unwrap();
    });
    assert!(
        matches!(result, Err(HybridError::TransportFailed { .. })),
        "{result:?}"
    );
}

#[test]
fn a_dropped_tunnel_mid_session_is_typed() {
    let (result, _) = misbehaving_browser(|b, ws, adverts| {
        let _ = handshake(b, ws, adverts);
        ws.close(None).unwrap();
    });
    assert!(
        matches!(result, Err(HybridError::TunnelClosed { .. })),
        "{result:?}"
    );
}

#[test]
fn shutdown_during_an_approval_cancels_it() {
    let app = app(true);
    let browser = Browser::new();
    let b = Browser {
        key: browser.key.clone(),
        qr: browser.qr.clone(),
    };
    let (radio, adverts) = Radio::new(false);
    let listener = app.listener.clone();
    let (url, server) = tunnel_server(
        Answer::Upgrade,
        adverts,
        Box::new(move |mut ws, adverts| {
            let (mut c, _) = handshake(&b, &mut ws, &adverts);
            send_message(&mut ws, &mut c, MessageType::Ctap, &make_credential());
            for _ in 0..500 {
                if !listener.prompts.lock().unwrap().is_empty() {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            send_message(&mut ws, &mut c, MessageType::Shutdown, &[]);
            while ws.read().is_ok() {}
        }),
    );
    let session = start_with(&app, &browser, &radio, options(&url));
    assert_eq!(finish(&session), Ok(HybridOutcome { requests: 1 }));
    server.join().unwrap();
    for _ in 0..200 {
        if !app.listener.closed.lock().unwrap().is_empty() {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        *app.listener.closed.lock().unwrap(),
        vec![ApprovalClosed::Cancelled]
    );
    assert!(app.key.passkeys().unwrap().is_empty());
}

#[test]
fn silence_after_the_handshake_times_out() {
    let app = app(false);
    let browser = Browser::new();
    let b = Browser {
        key: browser.key.clone(),
        qr: browser.qr.clone(),
    };
    let (radio, adverts) = Radio::new(false);
    let (url, server) = tunnel_server(
        Answer::Upgrade,
        adverts,
        Box::new(move |mut ws, adverts| {
            let _ = handshake(&b, &mut ws, &adverts);
            while ws.read().is_ok() {}
        }),
    );
    let session = start_with(
        &app,
        &browser,
        &radio,
        HybridOptions {
            message_timeout_ms: 300,
            ..options(&url)
        },
    );
    assert_eq!(
        finish(&session),
        Err(HybridError::TimedOut {
            waiting_for: HybridWait::BrowserMessage
        })
    );
    server.join().unwrap();
}

#[test]
fn default_options_are_the_runtimes() {
    let o = HybridOptions::default();
    assert_eq!(
        (
            o.domain_id,
            o.browser_timeout_ms,
            o.message_timeout_ms,
            o.connect_timeout_ms
        ),
        (0, 120_000, 60_000, 10_000)
    );
    assert_eq!(
        pocketkey_net::hybrid::Options::from(o),
        pocketkey_net::hybrid::Options::default()
    );
}

// ---------------------------------------------------------------- TLS

/// A private CA and a `localhost` server certificate it issued: (CA DER, server TLS config).
fn private_ca() -> (Vec<u8>, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![server.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    )
    .unwrap();
    (ca.der().to_vec(), Arc::new(config))
}

type TlsServerStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

fn tls_wrap(config: Arc<rustls::ServerConfig>) -> impl FnOnce(TcpStream) -> TlsServerStream {
    move |tcp| rustls::StreamOwned::new(rustls::ServerConnection::new(config).unwrap(), tcp)
}

fn wss(url: &str) -> String {
    url.replace("ws://127.0.0.1", "wss://localhost")
}

#[test]
fn wss_to_a_server_under_a_trusted_private_ca() {
    let app = app(false);
    let browser = Browser::new();
    let b = Browser {
        key: browser.key.clone(),
        qr: browser.qr.clone(),
    };
    let (ca, config) = private_ca();
    let (radio, adverts) = Radio::new(false);
    let (url, server) = tunnel_server_over(
        Answer::Upgrade,
        adverts,
        tls_wrap(config),
        Box::new(move |mut ws, adverts| {
            let (mut c, post) = handshake(&b, &mut ws, &adverts);
            assert_eq!(post.features, vec!["ctap".to_string()]);
            send_message(&mut ws, &mut c, MessageType::Shutdown, &[]);
            while ws.read().is_ok() {}
        }),
    );
    let session = start_with(
        &app,
        &browser,
        &radio,
        HybridOptions {
            trusted_certificates: vec![ca],
            ..options(&wss(&url))
        },
    );
    assert_eq!(finish(&session), Ok(HybridOutcome { requests: 0 }));
    assert_eq!(
        server.join().unwrap().unwrap(),
        format!("/cable/new/{}", browser.tunnel_hex())
    );
}

#[test]
fn wss_to_an_untrusted_server_is_refused() {
    let app = app(false);
    let browser = Browser::new();
    let (_, config) = private_ca();
    let (radio, adverts) = Radio::new(false);
    let (url, server) = tunnel_server_over(
        Answer::Upgrade,
        adverts,
        tls_wrap(config),
        Box::new(|_, _| {}),
    );
    // The Mozilla roots only: the private CA is unknown.
    let session = start_with(&app, &browser, &radio, options(&wss(&url)));
    match finish(&session) {
        Err(HybridError::TunnelUnreachable { detail }) => {
            assert!(detail.contains("certificate"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.join().unwrap(),
        None,
        "no websocket request got through"
    );
    assert!(radio.events().is_empty());
}

/// The app's key, except that makeCredential panics (an engine bug).
struct PanicsOnMakeCredential(Arc<SecurityKey>);

impl pocketkey_core::engine::Engine for PanicsOnMakeCredential {
    fn process(
        &self,
        kind: pocketkey_core::engine::RequestKind,
        payload: &[u8],
        cx: &pocketkey_core::engine::RequestContext,
    ) -> Vec<u8> {
        assert!(payload.first() != Some(&0x01), "an engine bug");
        pocketkey_core::engine::Engine::process(&*self.0, kind, payload, cx)
    }
}

#[test]
fn a_panicking_engine_answers_ctap1_err_other_and_the_session_goes_on() {
    let app = app(false);
    let browser = Browser::new();
    let b = Browser {
        key: browser.key.clone(),
        qr: browser.qr.clone(),
    };
    let (radio, adverts) = Radio::new(false);
    let (answers_tx, answers) = mpsc::channel();
    let (url, server) = tunnel_server(
        Answer::Upgrade,
        adverts,
        Box::new(move |mut ws, adverts| {
            let (mut c, _) = handshake(&b, &mut ws, &adverts);
            answers_tx
                .send(ctap(&mut ws, &mut c, &make_credential()))
                .unwrap();
            answers_tx.send(ctap(&mut ws, &mut c, &[0x04])).unwrap();
            send_message(&mut ws, &mut c, MessageType::Shutdown, &[]);
            while ws.read().is_ok() {}
        }),
    );
    let engine = Arc::new(PanicsOnMakeCredential(app.key.clone()));
    let advertiser = Arc::new(advertiser::ForeignAdvertiser(radio.clone()));
    let session = HybridSession::from(
        hybrid::start(&browser.text(), engine, advertiser, options(&url).into()).unwrap(),
    );
    assert_eq!(finish(&session), Ok(HybridOutcome { requests: 2 }));
    server.join().unwrap();
    assert_eq!(answers.recv().unwrap(), [0x7f], "CTAP1_ERR_OTHER");
    assert_eq!(answers.recv().unwrap()[0], 0x00, "getInfo after the panic");
}
