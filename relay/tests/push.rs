//! The FCM and APNs clients against local endpoints that check the request shape and the
//! authentication: FCM's service-account RS256 JWT (verified with the public key) exchanged for
//! an access token, then the HTTP v1 send; APNs over HTTP/2 without TLS (h2c: TLS is
//! impractical for a local endpoint), its ES256 provider token verified with the public key.
//! And the dispatch of [`PushService`] by the target's provider.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::EncodePrivateKey as _;
use pocketkey_core::pairing::encoding::b64u_decode;
use pocketkey_core::pairing::mailbox::MailboxId;
use pocketkey_core::pairing::relay::{ApnsEnvironment, PushProvider as Kind, PushTarget, WakeId};
use pocketkey_relay::push::http::{self, HttpVersion};
use pocketkey_relay::push::{
    ApnsConfig, ApnsProvider, FcmAuth, FcmConfig, FcmCredentials, FcmProvider, HttpError, PushError,
};
use pocketkey_relay::{PushProvider, PushService};
use rand_core::OsRng;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request as the endpoint saw it.
#[derive(Debug)]
struct Seen {
    version: hyper::Version,
    method: String,
    path: String,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

type Answer = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;
/// An answer with headers: status, headers, body.
type FullAnswer = Arc<dyn Fn(&Seen) -> (u16, Vec<(&'static str, String)>, String) + Send + Sync>;

/// A local endpoint (HTTP/1.1 or h2c) recording requests and answering with `answer`.
async fn endpoint(http2: bool, answer: Answer) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    endpoint_with_headers(
        http2,
        Arc::new(move |seen: &Seen| {
            let (status, body) = answer(seen);
            (status, Vec::new(), body)
        }),
    )
    .await
}

/// [`endpoint`] whose answers may carry headers (Retry-After).
async fn endpoint_with_headers(
    http2: bool,
    answer: FullAnswer,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let tx = tx.clone();
                    let answer = answer.clone();
                    async move {
                        let version = request.version();
                        let method = request.method().to_string();
                        let path = request.uri().path().to_string();
                        let headers = request.headers().clone();
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .unwrap()
                            .to_bytes()
                            .to_vec();
                        let seen = Seen {
                            version,
                            method,
                            path,
                            headers,
                            body,
                        };
                        let (status, headers, body) = answer(&seen);
                        tx.send(seen).unwrap();
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        for (name, value) in headers {
                            response.headers_mut().insert(name, value.parse().unwrap());
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let io = TokioIo::new(stream);
                if http2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    (addr, rx)
}

fn json_part(part: &str) -> serde_json::Value {
    serde_json::from_slice(&b64u_decode(part).expect("base64url")).expect("JSON")
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

const MAILBOX: MailboxId = MailboxId([0x5a; 16]);
const WAKE: WakeId = WakeId([0xc3; 16]);

#[tokio::test]
async fn apns_request_shape_and_es256_token() {
    let key = p256::SecretKey::random(&mut OsRng);
    let verifying = p256::ecdsa::VerifyingKey::from(key.public_key());
    let pem = key.to_pkcs8_pem(Default::default()).unwrap().to_string();
    // The endpoint checks the provider token's signature itself; a bad one gets 403.
    let check: Answer = Arc::new(move |seen: &Seen| {
        let auth = header(seen, "authorization");
        let Some(jwt) = auth.strip_prefix("bearer ") else {
            return (403, r#"{"reason":"MissingProviderToken"}"#.into());
        };
        let parts: Vec<&str> = jwt.split('.').collect();
        let signature =
            p256::ecdsa::Signature::from_slice(&b64u_decode(parts[2]).unwrap()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        match verifying.verify(input.as_bytes(), &signature) {
            Ok(()) => (200, String::new()),
            Err(_) => (403, r#"{"reason":"InvalidProviderToken"}"#.into()),
        }
    });
    let (addr, mut seen) = endpoint(true, check).await;
    let apns = ApnsProvider::new(ApnsConfig {
        key_pem: pem,
        key_id: "KEYID12345".into(),
        team_id: "TEAM123456".into(),
        topic: "org.pocketkey.app".into(),
        endpoint: Some(format!("http://{addr}")),
        alert: false,
    })
    .unwrap();
    let target = PushTarget {
        provider: Kind::Apns,
        target: "a1b2c3d4".repeat(8),
        environment: Some(ApnsEnvironment::Sandbox),
        wake: WAKE,
    };
    apns.check_target(&target).unwrap();
    apns.wake(&target).await.unwrap();
    let request = seen.recv().await.unwrap();
    assert_eq!(request.version, hyper::Version::HTTP_2);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/3/device/{}", "a1b2c3d4".repeat(8)));
    assert_eq!(header(&request, "apns-topic"), "org.pocketkey.app");
    // A background push (Apple requires priority 5 for it), without a collapse id (a
    // stable per-pairing value).
    assert_eq!(header(&request, "apns-push-type"), "background");
    assert_eq!(header(&request, "apns-priority"), "5");
    assert!(request.headers.get("apns-collapse-id").is_none());
    let jwt = header(&request, "authorization")
        .strip_prefix("bearer ")
        .unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        json_part(parts[0]),
        serde_json::json!({"alg": "ES256", "kid": "KEYID12345"})
    );
    let claims = json_part(parts[1]);
    assert_eq!(claims["iss"], "TEAM123456");
    assert!(claims["iat"].as_u64().unwrap() > 1_700_000_000);
    // Content-free and silent: the version and the wake id only.
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"aps": {"content-available": 1}, "v": 1, "w": WAKE.to_hex()})
    );

    // Signed with another key: the endpoint refuses, the provider reports it.
    let other = p256::SecretKey::random(&mut OsRng)
        .to_pkcs8_pem(Default::default())
        .unwrap()
        .to_string();
    let forged = ApnsProvider::new(ApnsConfig {
        key_pem: other,
        key_id: "KEYID12345".into(),
        team_id: "TEAM123456".into(),
        topic: "org.pocketkey.app".into(),
        endpoint: Some(format!("http://{addr}")),
        alert: false,
    })
    .unwrap();
    assert!(matches!(
        forged.wake(&target).await,
        Err(PushError::Failed(reason)) if reason.contains("InvalidProviderToken")
    ));
    // Not a device token.
    let bad = PushTarget {
        target: "not hex".into(),
        ..target
    };
    assert!(matches!(
        apns.check_target(&bad),
        Err(PushError::BadTarget(_))
    ));
}

#[tokio::test]
async fn fcm_service_account_token_exchange_and_send() {
    let key = rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let public = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.to_public_key());
    let pem = key.to_pkcs8_pem(Default::default()).unwrap().to_string();
    let addr_cell = Arc::new(std::sync::OnceLock::<SocketAddr>::new());
    let cell = addr_cell.clone();
    // The token endpoint verifies the assertion; the send endpoint wants its access token.
    let answer: Answer = Arc::new(move |seen: &Seen| {
        let addr = *cell.get().unwrap();
        if seen.path == "/token" {
            let body = String::from_utf8(seen.body.clone()).unwrap();
            let Some(jwt) = body.strip_prefix(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
            ) else {
                return (400, "{}".into());
            };
            let parts: Vec<&str> = jwt.split('.').collect();
            let signature =
                rsa::pkcs1v15::Signature::try_from(b64u_decode(parts[2]).unwrap().as_slice())
                    .unwrap();
            let input = format!("{}.{}", parts[0], parts[1]);
            if public.verify(input.as_bytes(), &signature).is_err() {
                return (401, r#"{"error":"invalid_grant"}"#.into());
            }
            let claims = json_part(parts[1]);
            let aud = format!("http://{addr}/token");
            if claims["iss"] != "relay@project.iam.gserviceaccount.com"
                || claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging"
                || claims["aud"] != aud.as_str()
                || claims["exp"].as_u64() != claims["iat"].as_u64().map(|t| t + 3600)
            {
                return (400, r#"{"error":"invalid_claims"}"#.into());
            }
            (
                200,
                r#"{"access_token":"ya29.local-token","expires_in":3599,"token_type":"Bearer"}"#
                    .into(),
            )
        } else if seen
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some("Bearer ya29.local-token")
        {
            (200, r#"{"name":"projects/demo-project/messages/1"}"#.into())
        } else {
            (401, "{}".into())
        }
    });
    let (addr, mut seen) = endpoint(false, answer).await;
    addr_cell.set(addr).unwrap();
    let credentials = FcmCredentials::from_json(
        &serde_json::json!({
            "type": "service_account",
            "client_email": "relay@project.iam.gserviceaccount.com",
            "private_key_id": "abc123",
            "private_key": pem,
            "token_uri": format!("http://{addr}/token"),
        })
        .to_string(),
    )
    .unwrap();
    let fcm = FcmProvider::new(FcmConfig {
        project: "demo-project".into(),
        endpoint: format!("http://{addr}"),
        auth: FcmAuth::ServiceAccount {
            credentials,
            token_endpoint: None,
        },
    })
    .unwrap();
    let target = PushTarget {
        provider: Kind::Fcm,
        target: "fcm-registration:token_123".into(),
        environment: None,
        wake: WAKE,
    };
    fcm.wake(&target).await.unwrap();
    let token_request = seen.recv().await.unwrap();
    assert_eq!(token_request.path, "/token");
    assert_eq!(
        header(&token_request, "content-type"),
        "application/x-www-form-urlencoded"
    );
    let send = seen.recv().await.unwrap();
    assert_eq!(send.method, "POST");
    assert_eq!(send.path, "/v1/projects/demo-project/messages:send");
    assert_eq!(header(&send, "authorization"), "Bearer ya29.local-token");
    let body: serde_json::Value = serde_json::from_slice(&send.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"message": {
            "token": "fcm-registration:token_123",
            "data": {"v": "1", "w": WAKE.to_hex()},
            "android": {"priority": "high", "ttl": "60s"},
        }})
    );
    assert!(
        body["message"].get("notification").is_none(),
        "a data message"
    );
    // The access token is cached: the second wake goes straight to send.
    fcm.wake(&target).await.unwrap();
    assert_eq!(
        seen.recv().await.unwrap().path,
        "/v1/projects/demo-project/messages:send"
    );

    // A static token the endpoint does not accept: reported as a failure.
    let stale = FcmProvider::new(FcmConfig {
        project: "demo-project".into(),
        endpoint: format!("http://{addr}"),
        auth: FcmAuth::AccessToken("ya29.stale".into()),
    })
    .unwrap();
    assert!(matches!(
        stale.wake(&target).await,
        Err(PushError::Failed(_))
    ));
    let _ = seen.recv().await.unwrap();

    // PushService picks the provider by the target's kind; kinds without one are refused.
    let service = PushService::new(None, Some(Arc::new(fcm)), None);
    service.check_target(&target).unwrap();
    service.wake(&target).await.unwrap();
    assert_eq!(
        seen.recv().await.unwrap().path,
        "/v1/projects/demo-project/messages:send"
    );
    let webhook = PushTarget {
        provider: Kind::Webhook,
        target: format!("http://{addr}/"),
        environment: None,
        wake: WAKE,
    };
    assert!(matches!(
        service.check_target(&webhook),
        Err(PushError::BadTarget(_))
    ));
    assert!(matches!(
        service.wake(&webhook).await,
        Err(PushError::BadTarget(_))
    ));
    assert!(service.try_acquire(MAILBOX));
    assert!(!service.try_acquire(MAILBOX));
    assert!(service.try_acquire(MailboxId([1; 16])));
}

#[tokio::test]
async fn apns_over_tls_with_alpn_h2_reuses_one_connection() {
    // A local APNs stand-in over TLS (certificate for 127.0.0.1, ALPN h2), counting connections.
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_der = certified.cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
        rustls::pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()),
    );
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert_der.clone()], key_der)
    .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tx, mut seen) = mpsc::unbounded_channel::<(hyper::Version, String)>();
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        tx.send((request.version(), request.uri().path().to_string()))
                            .unwrap();
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });

    let config = ApnsConfig {
        key_pem: p256::SecretKey::random(&mut OsRng)
            .to_pkcs8_pem(Default::default())
            .unwrap()
            .to_string(),
        key_id: "K".into(),
        team_id: "T".into(),
        topic: "org.pocketkey.app".into(),
        endpoint: Some(format!("https://{addr}")),
        alert: false,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let apns = ApnsProvider::new(config.clone())
        .unwrap()
        .with_client(pocketkey_relay::push::http::Client::with_roots(roots));
    let target = PushTarget {
        provider: Kind::Apns,
        target: "00ff".repeat(16),
        environment: None,
        wake: WAKE,
    };
    for _ in 0..3 {
        apns.wake(&target).await.unwrap();
        let (version, path) = seen.recv().await.unwrap();
        assert_eq!(version, hyper::Version::HTTP_2);
        assert_eq!(path, format!("/3/device/{}", "00ff".repeat(16)));
    }
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);

    // With the public roots only, the private certificate is refused.
    let untrusting = ApnsProvider::new(config).unwrap();
    assert!(matches!(
        untrusting.wake(&target).await,
        Err(PushError::Failed(reason)) if reason.contains("TLS")
    ));
}

/// An endpoint that accepts the connection but never answers: the client gives up with its
/// own typed timeout, the limit the caller set.
#[tokio::test]
async fn an_endpoint_that_never_answers_is_a_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (held_tx, mut held) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            // Keep the socket open and silent until the test ends.
            held_tx.send(stream).unwrap();
        }
    });
    let client = pocketkey_relay::push::http::Client::default();
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let request = http::Request::post(
            format!("http://{addr}/wake"),
            vec![],
            b"{}".to_vec(),
            version,
        );
        // The outer bound only turns a client that ignores its timeout into a failure
        // instead of a hang; it asserts nothing about how long the timeout took.
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.send(request, std::time::Duration::from_millis(300)),
        )
        .await
        .expect("the client did not give up by itself");
        assert!(
            matches!(outcome, Err(HttpError::TimedOut)),
            "{version:?}: {outcome:?}"
        );
        assert!(held.recv().await.is_some(), "{version:?}: never connected");
    }
}

/// An HTTP/2 endpoint (h2c) that answers the first request of each connection and drops the
/// connection, unanswered, at the second: the client's kept connection breaks under the
/// second wake, which still arrives, over a new connection.
#[tokio::test]
async fn a_dropped_http2_connection_is_replaced_for_the_next_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (answered_tx, mut answered) = mpsc::unbounded_channel::<(usize, String)>();
    tokio::spawn(async move {
        for connection in 1.. {
            let (stream, _) = listener.accept().await.unwrap();
            let answered_tx = answered_tx.clone();
            tokio::spawn(async move {
                let (drop_tx, drop_rx) = tokio::sync::oneshot::channel::<()>();
                let drop_tx = Arc::new(std::sync::Mutex::new(Some(drop_tx)));
                let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (answered_tx, drop_tx) = (answered_tx.clone(), drop_tx.clone());
                    let n = requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        let path = request.uri().path().to_string();
                        if n == 0 {
                            answered_tx.send((connection, path)).unwrap();
                        } else {
                            let tx = drop_tx.lock().unwrap().take();
                            if let Some(tx) = tx {
                                let _ = tx.send(());
                            }
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = conn => {}
                    _ = drop_rx => {} // the connection and its socket are dropped here
                }
            });
        }
    });

    let client = pocketkey_relay::push::http::Client::default();
    for (i, path) in ["/first", "/second"].into_iter().enumerate() {
        let request = http::Request::post(
            format!("http://{addr}{path}"),
            vec![],
            b"{}".to_vec(),
            HttpVersion::Http2,
        );
        let response = client
            .send(request, std::time::Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(response.status, StatusCode::OK);
    }
    assert_eq!(answered.recv().await, Some((1, "/first".to_string())));
    assert_eq!(answered.recv().await, Some((2, "/second".to_string())));
}

// ---- Provider error statuses: what FCM and APNs document, and what the relay does with them.

/// One answer of a local endpoint: status, headers, body.
type Canned = (u16, Vec<(&'static str, String)>, String);

/// Answers the requests with `answers` in turn (the last one repeats).
fn in_turn(answers: Vec<Canned>) -> FullAnswer {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Arc::new(move |_: &Seen| {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        answers[i.min(answers.len() - 1)].clone()
    })
}

fn canned(status: u16, body: &str) -> Canned {
    (status, Vec::new(), body.to_string())
}

fn retry_after(status: u16, value: &str, body: &str) -> Canned {
    (
        status,
        vec![("retry-after", value.to_string())],
        body.to_string(),
    )
}

/// FCM HTTP v1 error bodies, in the shape of firebase.google.com/docs/cloud-messaging/error-codes.
const FCM_UNREGISTERED: &str = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
const FCM_INVALID_TOKEN: &str = r#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}"#;
const FCM_BAD_TOKEN_FIELD: &str = r#"{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"Invalid registration token"}]}]}}"#;
const FCM_BAD_DATA_FIELD: &str = r#"{"error":{"code":400,"message":"Invalid value at 'message.data[0].value'","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.data[0].value","description":"Invalid value"}]}]}}"#;
const FCM_QUOTA: &str = r#"{"error":{"code":429,"message":"Quota exceeded.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"QUOTA_EXCEEDED"}]}}"#;
const FCM_SENT: &str = r#"{"name":"projects/demo-project/messages/1"}"#;

fn fcm_at(addr: SocketAddr) -> FcmProvider {
    FcmProvider::new(FcmConfig {
        project: "demo-project".into(),
        endpoint: format!("http://{addr}"),
        auth: FcmAuth::AccessToken("ya29.local-token".into()),
    })
    .unwrap()
}

fn apns_at(addr: SocketAddr) -> ApnsProvider {
    let key = p256::SecretKey::random(&mut OsRng);
    ApnsProvider::new(ApnsConfig {
        key_pem: key.to_pkcs8_pem(Default::default()).unwrap().to_string(),
        key_id: "KEYID12345".into(),
        team_id: "TEAM123456".into(),
        topic: "org.pocketkey.app".into(),
        endpoint: Some(format!("http://{addr}")),
        alert: false,
    })
    .unwrap()
}

fn fcm_target(token: &str) -> PushTarget {
    PushTarget {
        provider: Kind::Fcm,
        target: token.into(),
        environment: None,
        wake: WAKE,
    }
}

fn apns_target(token: &str) -> PushTarget {
    PushTarget {
        provider: Kind::Apns,
        target: token.into(),
        environment: Some(ApnsEnvironment::Sandbox),
        wake: WAKE,
    }
}

/// A wake through FCM (HTTP/1.1) answered `answer`, and the error it gave.
async fn fcm_refused(answer: Canned) -> PushError {
    let (addr, mut seen) = endpoint_with_headers(false, in_turn(vec![answer])).await;
    let error = fcm_at(addr)
        .wake(&fcm_target("fcm-token:1"))
        .await
        .unwrap_err();
    assert_eq!(seen.recv().await.unwrap().version, hyper::Version::HTTP_11);
    error
}

/// A wake through APNs (h2c) answered `answer`, and the error it gave.
async fn apns_refused(answer: Canned) -> PushError {
    let (addr, mut seen) = endpoint_with_headers(true, in_turn(vec![answer])).await;
    let error = apns_at(addr)
        .wake(&apns_target(&"ab".repeat(32)))
        .await
        .unwrap_err();
    assert_eq!(seen.recv().await.unwrap().version, hyper::Version::HTTP_2);
    error
}

#[tokio::test]
async fn fcm_unregistered_and_invalid_token_answers_are_unregistered() {
    for (status, body) in [
        (404, FCM_UNREGISTERED),
        (400, FCM_INVALID_TOKEN),
        (400, FCM_BAD_TOKEN_FIELD),
    ] {
        let error = fcm_refused(canned(status, body)).await;
        assert!(
            matches!(&error, PushError::Unregistered(m) if m.starts_with(&format!("FCM answered {status}"))),
            "{status} {body}: {error:?}"
        );
    }
    // A 400 about another field, or a 404 that does not name the token, says nothing of the
    // token: a failure, the target kept.
    for (status, body) in [(400, FCM_BAD_DATA_FIELD), (404, "")] {
        let error = fcm_refused(canned(status, body)).await;
        assert!(
            matches!(error, PushError::Failed(_)),
            "{status} {body}: {error:?}"
        );
    }
}

#[tokio::test]
async fn apns_unregistered_and_bad_device_token_are_unregistered() {
    for (status, body) in [
        (
            410,
            r#"{"reason":"Unregistered","timestamp":1700000000000}"#,
        ),
        (400, r#"{"reason":"BadDeviceToken"}"#),
    ] {
        let error = apns_refused(canned(status, body)).await;
        assert!(
            matches!(&error, PushError::Unregistered(m) if m.starts_with(&format!("APNs answered {status}"))),
            "{status} {body}: {error:?}"
        );
    }
    let error = apns_refused(canned(400, r#"{"reason":"BadTopic"}"#)).await;
    assert!(matches!(error, PushError::Failed(_)), "{error:?}");
}

#[tokio::test]
async fn a_429_is_throttled_for_the_retry_after_asked() {
    let hour = std::time::Duration::from_secs(3600);
    let error = fcm_refused(retry_after(429, "3600", FCM_QUOTA)).await;
    assert!(
        matches!(error, PushError::Throttled { retry_after, .. } if retry_after == hour),
        "{error:?}"
    );
    // Retry-After as an HTTP-date an hour from now (RFC 9110 §10.2.3).
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + hour);
    let error = fcm_refused(retry_after(429, &date, FCM_QUOTA)).await;
    assert!(
        matches!(error, PushError::Throttled { retry_after, .. }
            if retry_after <= hour && retry_after > hour - std::time::Duration::from_secs(120)),
        "{error:?}"
    );
    // No Retry-After: FCM's documented minimum backoff of one minute; APNs the same.
    let minute = pocketkey_relay::push::DEFAULT_RETRY_AFTER;
    assert_eq!(minute, std::time::Duration::from_secs(60));
    let error = fcm_refused(canned(429, FCM_QUOTA)).await;
    assert!(
        matches!(error, PushError::Throttled { retry_after, .. } if retry_after == minute),
        "{error:?}"
    );
    let error = apns_refused(canned(429, r#"{"reason":"TooManyRequests"}"#)).await;
    assert!(
        matches!(error, PushError::Throttled { retry_after, .. } if retry_after == minute),
        "{error:?}"
    );
}

/// After a 429 the service sends nothing more to that target before Retry-After: the next
/// wakes are answered Throttled at once and the endpoint sees no request; another target of
/// the same provider still gets its wake.
#[tokio::test]
async fn no_wake_goes_to_a_throttled_target_before_retry_after() {
    for http2 in [false, true] {
        let answers = vec![
            retry_after(429, "3600", r#"{"reason":"TooManyRequests"}"#),
            canned(200, FCM_SENT),
        ];
        let (addr, mut seen) = endpoint_with_headers(http2, in_turn(answers)).await;
        let (service, held, other) = if http2 {
            let apns: Arc<dyn PushProvider> = Arc::new(apns_at(addr));
            let service = PushService::new(None, None, Some(apns));
            (
                service,
                apns_target(&"ab".repeat(32)),
                apns_target(&"cd".repeat(32)),
            )
        } else {
            let fcm: Arc<dyn PushProvider> = Arc::new(fcm_at(addr));
            let service = PushService::new(None, Some(fcm), None);
            (
                service,
                fcm_target("fcm-token:1"),
                fcm_target("fcm-token:2"),
            )
        };
        let first = service.wake(&held).await;
        assert!(
            matches!(first, Err(PushError::Throttled { .. })),
            "{first:?}"
        );
        assert!(seen.recv().await.is_some());
        for _ in 0..3 {
            let again = service.wake(&held).await;
            assert!(
                matches!(again, Err(PushError::Throttled { retry_after, .. })
                    if retry_after > std::time::Duration::from_secs(3000)),
                "{again:?}"
            );
        }
        // The endpoint records a request before answering it, so a wake that had gone out
        // would already be in the channel.
        assert!(seen.try_recv().is_err(), "a throttled target was sent to");
        service.wake(&other).await.unwrap();
        assert!(seen.recv().await.is_some());
    }
}

/// Retry-After: 0 holds nothing: the next wake goes out.
#[tokio::test]
async fn a_429_with_retry_after_zero_lets_the_next_wake_through() {
    let answers = vec![retry_after(429, "0", FCM_QUOTA), canned(200, FCM_SENT)];
    let (addr, mut seen) = endpoint_with_headers(false, in_turn(answers)).await;
    let fcm: Arc<dyn PushProvider> = Arc::new(fcm_at(addr));
    let service = PushService::new(None, Some(fcm), None);
    let target = fcm_target("fcm-token:1");
    assert!(matches!(
        service.wake(&target).await,
        Err(PushError::Throttled { .. })
    ));
    service.wake(&target).await.unwrap();
    assert!(seen.recv().await.is_some());
    assert!(seen.recv().await.is_some());
}

/// A relay whose FCM provider is the local endpoint at `addr` (no 3 s spacing between wakes),
/// and a bridge attached to a mailbox whose phone registered FCM token `token` and left.
async fn relay_with_registered_fcm(
    addr: SocketAddr,
    token: &str,
) -> (pocketkey_relay::RelayHandle, common::Ws) {
    use common::mailbox::{attach, frame, pairing, put};
    use pocketkey_core::pairing::relay::{frame_type, RelayFrame};
    use pocketkey_core::pairing::Role;

    let fcm: Arc<dyn PushProvider> = Arc::new(fcm_at(addr));
    let push = PushService::new(None, Some(fcm), None).with_interval(std::time::Duration::ZERO);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = pocketkey_relay::serve_with(
        listener,
        pocketkey_relay::Config::default(),
        pocketkey_relay::Services {
            push: Arc::new(push),
            ..Default::default()
        },
    )
    .unwrap();
    let relay_addr = relay.local_addr();
    let (_, _, keys) = pairing();
    let mut bridge = attach(relay_addr, &keys, Role::Bridge).await;
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    let mut phone = attach(relay_addr, &keys, Role::Phone).await;
    assert_eq!(frame(&mut phone).await, RelayFrame::Peer { present: true });
    assert_eq!(frame(&mut bridge).await, RelayFrame::Peer { present: true });
    put(&mut phone, RelayFrame::PushRegister(fcm_target(token))).await;
    assert_eq!(
        frame(&mut phone).await,
        RelayFrame::Ack(frame_type::PUSH_REGISTER)
    );
    drop(phone);
    assert_eq!(
        frame(&mut bridge).await,
        RelayFrame::Peer { present: false }
    );
    (relay, bridge)
}

/// The WAKE_RESULT the relay answers the bridge's next WAKE with.
async fn wake_result(bridge: &mut common::Ws) -> pocketkey_core::pairing::relay::WakeResult {
    use common::mailbox::{frame, put};
    use pocketkey_core::pairing::relay::RelayFrame;
    put(bridge, RelayFrame::Wake).await;
    match frame(bridge).await {
        RelayFrame::WakeResult(result) => result,
        other => panic!("not a WAKE_RESULT: {other:?}"),
    }
}

/// A token FCM calls UNREGISTERED is dropped from the mailbox: that wake fails, the next one
/// finds no push target, and FCM is not asked again.
#[tokio::test]
async fn the_relay_drops_a_target_its_provider_calls_unregistered() {
    use pocketkey_core::pairing::relay::WakeResult;
    let (addr, mut seen) =
        endpoint_with_headers(false, in_turn(vec![canned(404, FCM_UNREGISTERED)])).await;
    let (relay, mut bridge) = relay_with_registered_fcm(addr, "fcm-token:dead").await;
    assert_eq!(wake_result(&mut bridge).await, WakeResult::ProviderFailed);
    assert!(seen.recv().await.is_some());
    assert_eq!(wake_result(&mut bridge).await, WakeResult::NoPushTarget);
    assert!(seen.try_recv().is_err(), "the dropped token was pushed to");
    relay.shutdown().await;
}

/// A failure that says nothing of the token (a 500) keeps the target: the next wake is sent.
#[tokio::test]
async fn the_relay_keeps_a_target_after_a_provider_failure() {
    use pocketkey_core::pairing::relay::WakeResult;
    let answers = vec![canned(500, "{}"), canned(200, FCM_SENT)];
    let (addr, mut seen) = endpoint_with_headers(false, in_turn(answers)).await;
    let (relay, mut bridge) = relay_with_registered_fcm(addr, "fcm-token:1").await;
    assert_eq!(wake_result(&mut bridge).await, WakeResult::ProviderFailed);
    assert_eq!(wake_result(&mut bridge).await, WakeResult::PushSent);
    assert!(seen.recv().await.is_some());
    assert!(seen.recv().await.is_some());
    relay.shutdown().await;
}

/// FCM's 429 with Retry-After reaches the bridge as RATE_LIMITED, and the next wakes are held
/// by the relay without a request to FCM.
#[tokio::test]
async fn the_relay_holds_wakes_after_a_429_until_retry_after() {
    use pocketkey_core::pairing::relay::WakeResult;
    let answers = vec![retry_after(429, "3600", FCM_QUOTA), canned(200, FCM_SENT)];
    let (addr, mut seen) = endpoint_with_headers(false, in_turn(answers)).await;
    let (relay, mut bridge) = relay_with_registered_fcm(addr, "fcm-token:1").await;
    assert_eq!(wake_result(&mut bridge).await, WakeResult::RateLimited);
    assert!(seen.recv().await.is_some());
    assert_eq!(wake_result(&mut bridge).await, WakeResult::RateLimited);
    assert!(
        seen.try_recv().is_err(),
        "FCM was asked again before Retry-After"
    );
    relay.shutdown().await;
}
