//! The HTTP/1.1 edge: accepts connections, serves each with hyper (header-read timeout, head
//! size limit, upgrades) and an axum [`Router`] that checks each request and answers it — with
//! an error status before any upgrade (docs/relay.md §2), or with 101 and the socket handed to
//! the tunnel's or the mailbox's task.
//!
//! Modules: `handshake` (the RFC 6455 opening handshake and the 101), `reject` (refusals and
//! their log), `admit` (the client's address and its connection slot), `cable` (caBLE
//! tunnels), `pair` (pairing mailboxes).

mod admit;
mod cable;
mod handshake;
mod pair;
mod reject;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::header::{self, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{middleware, Router};
use futures_util::TryFutureExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::{debug, warn};

use crate::ids::{parse_route, RouteError};
use crate::Shared;
pub use handshake::{ROUTING_ID_HEADER, SUBPROTOCOL};
use reject::Reject;

/// Largest request head accepted (request line and headers); beyond it hyper answers 431.
const MAX_HEAD: usize = 16 * 1024;

/// Accepts connections until shutdown.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let router = router(shared.clone());
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                shared.tasks.spawn(serve_connection(
                    stream,
                    peer,
                    router.clone(),
                    shared.config.handshake_timeout,
                    shared.shutdown.clone(),
                ));
            }
            Err(error) => {
                // Typically out of file descriptors: back off instead of spinning.
                warn!(%error, "accept failed");
                tokio::select! {
                    () = shared.shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// The routes, each GET only, and the checks every request passes first.
///
/// A declared body is refused (413) before routing: the relay reads none, and a body on a
/// websocket handshake has no meaning (RFC 9110 §9.3.1). The time limit bounds the answer
/// (the store and registry calls before a 101), apart from hyper's limit on reading the head.
fn router(shared: Arc<Shared>) -> Router {
    let timeout = shared.config.handshake_timeout;
    Router::new()
        .route("/healthz", only_get(health))
        .route("/cable/new/{tunnel}", only_get(cable::open))
        .route("/cable/connect/{routing}/{tunnel}", only_get(cable::join))
        .route("/pair/v1/", only_get(pair::attach))
        .route("/pair/v1/{*mailbox}", only_get(pair::attach))
        .method_not_allowed_fallback(wrong_method)
        .fallback(unknown_path)
        .layer(middleware::from_fn(reject::log))
        .layer(RequestBodyLimitLayer::new(0))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .with_state(shared)
}

/// A GET route; HEAD, which axum would otherwise hand to the GET handler, is refused like any
/// other method.
fn only_get<H, T>(handler: H) -> MethodRouter<Arc<Shared>>
where
    H: axum::handler::Handler<T, Arc<Shared>>,
    T: 'static,
{
    get(handler).head(wrong_method)
}

/// A routed path with another method: 405, unless its ids are malformed — a malformed
/// `/cable/…` id is 400 whatever the method.
async fn wrong_method(uri: Uri) -> Reject {
    match parse_route(uri.path()) {
        Err(RouteError::Malformed(reason)) => Reject::new(StatusCode::BAD_REQUEST, reason),
        _ => Reject::new(StatusCode::METHOD_NOT_ALLOWED, "only GET is served"),
    }
}

/// A path no route matches: 404, but 400 for a `/cable/…` path with extra or missing
/// segments, as for a malformed id.
async fn unknown_path(uri: Uri) -> Reject {
    match parse_route(uri.path()) {
        Err(RouteError::Malformed(reason)) => Reject::new(StatusCode::BAD_REQUEST, reason),
        _ => Reject::new(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `GET /healthz`: liveness for load balancers.
async fn health() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        "ok\n",
    )
        .into_response()
}

/// One request per connection: every answer but a 101 closes it, including the layers'
/// refusals (413, the time limit's 503); hyper's `keep_alive(false)` would overwrite the
/// `Connection: Upgrade` of a 101. `Allow` only on a 405: axum adds it to every answer of a
/// route refused by its method fallback, a 400 for a malformed id too.
fn one_request(mut response: Response) -> Response {
    let status = response.status();
    let headers = response.headers_mut();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if status != StatusCode::METHOD_NOT_ALLOWED {
        headers.remove(header::ALLOW);
    }
    response
}

/// Serves one connection: one request, or its upgrade.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    head_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(MAX_HEAD);
    let service = service_fn(move |mut request| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request).map_ok(one_request)
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                debug!(%peer, %error, "connection failed");
            }
        }
        () = shutdown.cancelled() => {}
    }
}
