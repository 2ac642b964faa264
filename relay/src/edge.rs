//! The HTTP/1.1 edge: accepts connections, checks each request (path, method, websocket
//! handshake, subprotocol) and answers it — with an error status before any upgrade, or with
//! 101 and the tunnel's routing state updated.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, info, warn};

use crate::ids::{parse_route, Route, RouteError, RoutingId, TunnelId};
use crate::limits::{ClientKey, ConnSlot, SlotError};
use crate::registry::{ClaimError, RegisterError};
use crate::tunnel::{self, Join, NewTunnel};
use crate::Shared;
use pocketkey_core::pairing::mailbox::{
    parse_path, LEGACY_TOKEN_HEADER, PATH_PREFIX as PAIR_PATH_PREFIX,
    SUBPROTOCOL as PAIR_SUBPROTOCOL,
};

/// The websocket subprotocol of caBLE v2 tunnels.
pub const SUBPROTOCOL: &str = "fido.cable";
/// The response header carrying the routing id of a new tunnel.
pub const ROUTING_ID_HEADER: &str = "x-cable-routing-id";

/// Largest request head accepted (request line and headers).
const MAX_HEAD: usize = 16 * 1024;

type Body = Full<Bytes>;

/// Accepts connections until shutdown.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                shared
                    .tasks
                    .spawn(serve_connection(stream, peer, shared.clone()));
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

/// Serves one connection: one request (every other answer than 101 says `Connection: close`;
/// hyper's `keep_alive(false)` would overwrite the `Connection: Upgrade` of a 101).
async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let shutdown = shared.shutdown.clone();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.handshake_timeout)
        .max_buf_size(MAX_HEAD);
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, peer, request).await) }
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

/// A request refused before any upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reject {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl Reject {
    fn new(status: StatusCode, reason: &'static str) -> Self {
        Self { status, reason }
    }

    fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Body::from(format!("{}\n", self.reason)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        match self.status {
            StatusCode::METHOD_NOT_ALLOWED => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            StatusCode::UPGRADE_REQUIRED => {
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            _ => {}
        }
        response
    }
}

async fn handle(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Response<Body> {
    match respond(shared, peer, &mut request).await {
        Ok(response) => response,
        Err(reject) => {
            if reject.status == StatusCode::NOT_FOUND
                && !request.uri().path().starts_with("/cable/")
                && !request.uri().path().starts_with(PAIR_PATH_PREFIX)
            {
                debug!(%peer, status = reject.status.as_u16(), reason = reject.reason, "request refused");
            } else {
                info!(%peer, status = reject.status.as_u16(), reason = reject.reason, "request refused");
            }
            reject.into_response()
        }
    }
}

/// The address the per-client limits count: the TCP peer's, or with `client_ip_header` the
/// one the reverse proxy wrote (the peer's when the header is missing or not an address).
fn client_key(shared: &Shared, peer: SocketAddr, headers: &HeaderMap) -> ClientKey {
    let forwarded = shared.config.client_ip_header.as_deref().and_then(|name| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<std::net::IpAddr>()
            .ok()
    });
    ClientKey::of(forwarded.unwrap_or(peer.ip()))
}

/// Reserves a websocket slot for the request's client (and, for a pairing connection, one of
/// the node's pairing connections) before the upgrade is answered.
fn reserve(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    pairing: bool,
) -> Result<ConnSlot, Reject> {
    let client = client_key(shared, peer, headers);
    let max_pairing = pairing.then_some(shared.pairing_limits.max_connections);
    shared
        .connections
        .reserve(client, shared.config.max_connections_per_ip, max_pairing)
        .map_err(|error| match error {
            SlotError::PerClient => Reject::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from this address",
            ),
            SlotError::Total => {
                Reject::new(StatusCode::SERVICE_UNAVAILABLE, "too many connections")
            }
        })
}

async fn respond(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    request: &mut Request<Incoming>,
) -> Result<Response<Body>, Reject> {
    if request.uri().path().starts_with(PAIR_PATH_PREFIX) {
        return attach_mailbox(shared, peer, request).await;
    }
    let route = parse_route(request.uri().path()).map_err(|error| match error {
        RouteError::Unknown => Reject::new(StatusCode::NOT_FOUND, "not found"),
        RouteError::Malformed(reason) => Reject::new(StatusCode::BAD_REQUEST, reason),
    })?;
    if request.method() != Method::GET {
        return Err(Reject::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served",
        ));
    }
    match route {
        Route::Health => {
            let mut response = Response::new(Body::from("ok\n"));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            Ok(response)
        }
        Route::New(tunnel) => {
            let accept = check_handshake(request.version(), request.headers(), SUBPROTOCOL)?;
            open_tunnel(shared, peer, request, tunnel, accept).await
        }
        Route::Connect(routing, tunnel) => {
            let accept = check_handshake(request.version(), request.headers(), SUBPROTOCOL)?;
            join_tunnel(shared, peer, request, routing, tunnel, accept).await
        }
    }
}

/// `new`: reserve a slot, register the tunnel, answer 101 with its routing id, and leave the
/// socket to the tunnel's task.
async fn open_tunnel(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    request: &mut Request<Incoming>,
    tunnel: TunnelId,
    accept: String,
) -> Result<Response<Body>, Reject> {
    let unavailable = |reason| Reject::new(StatusCode::SERVICE_UNAVAILABLE, reason);
    if shared.shutdown.is_cancelled() {
        return Err(unavailable("relay shutting down"));
    }
    let slot = reserve(shared, peer, request.headers(), false)?;
    let permit = shared
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| unavailable("too many open tunnels"))?;
    let routing = shared
        .registry
        .register(tunnel, shared.config.tunnel_lifetime)
        .await
        .map_err(|error| match error {
            RegisterError::Exists => Reject::new(
                StatusCode::CONFLICT,
                "a tunnel with this id is already open",
            ),
            RegisterError::Unavailable(error) => {
                warn!(%error, "tunnel registry unavailable");
                unavailable("tunnel registry unavailable")
            }
        })?;
    let created = Instant::now();
    let (joins_tx, joins) = oneshot::channel();
    shared.rendezvous.insert(tunnel, joins_tx);
    info!(
        event = "created",
        tunnel = %tunnel.short(),
        routing_id = %routing,
        phone = %peer,
        "tunnel created"
    );
    let on_upgrade = hyper::upgrade::on(request);
    shared.tasks.spawn(tunnel::run(
        shared.clone(),
        NewTunnel {
            tunnel,
            routing,
            on_upgrade,
            joins,
            permit,
            slot,
            created,
        },
    ));
    let mut response = switching_protocols(accept);
    response.headers_mut().insert(
        ROUTING_ID_HEADER,
        HeaderValue::from_str(&routing.to_string()).expect("hex is a valid header value"),
    );
    Ok(response)
}

/// `connect`: claim the waiting tunnel, hand the browser's upgrade to its task, answer 101.
async fn join_tunnel(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    request: &mut Request<Incoming>,
    routing: RoutingId,
    tunnel: TunnelId,
    accept: String,
) -> Result<Response<Body>, Reject> {
    let not_found = || Reject::new(StatusCode::NOT_FOUND, "no such tunnel");
    let slot = reserve(shared, peer, request.headers(), false)?;
    let claimed = match &shared.mesh {
        // With Redis the registry also says which node holds the phone.
        Some(mesh) => mesh.claim_on(routing, tunnel).await.map(Some),
        None => shared.registry.claim(routing, tunnel).await.map(|()| None),
    };
    let owner = claimed.map_err(|error| match error {
        ClaimError::NotFound => not_found(),
        ClaimError::AlreadyJoined => {
            Reject::new(StatusCode::GONE, "the tunnel has already been joined")
        }
        ClaimError::Unavailable(error) => {
            warn!(%error, "tunnel registry unavailable");
            Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "tunnel registry unavailable",
            )
        }
    })?;
    if let (Some(mesh), Some(owner)) = (&shared.mesh, owner) {
        if owner != mesh.node() {
            // The phone is on another node: this node runs the browser's half. The inbox is
            // open before JOIN, which the phone's node may answer with data at once.
            let inbox = shared.remote_tunnels.open(tunnel);
            let joined = crate::remote_tunnel::send_join(mesh, &owner, tunnel).await;
            let refused = match joined {
                Ok(true) => None,
                Ok(false) => Some(not_found()),
                Err(error) => {
                    warn!(%error, "redis unavailable");
                    Some(Reject::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "tunnel registry unavailable",
                    ))
                }
            };
            if let Some(refused) = refused {
                shared.remote_tunnels.close_now(&tunnel);
                return Err(refused);
            }
            let on_upgrade = hyper::upgrade::on(request);
            shared.tasks.spawn(crate::remote_tunnel::run_browser(
                shared.clone(),
                owner,
                tunnel,
                on_upgrade,
                inbox,
                slot,
            ));
            return Ok(switching_protocols(accept));
        }
    }
    // Registered but not waiting here: its phone just left (its task is removing it), or,
    // with a shared registry, another node holds it.
    let joins = shared.rendezvous.take(&tunnel).ok_or_else(not_found)?;
    let on_upgrade = hyper::upgrade::on(request);
    joins
        .send(Join::Local {
            on_upgrade,
            peer,
            slot,
        })
        .map_err(|_| not_found())?;
    Ok(switching_protocols(accept))
}

/// `GET /pair/v1/<hex M>` (docs/pairing-protocol.md §3.1): checks the handshake, the path
/// (400), the tombstone (410) and the connection caps (429 per address, 503), then answers 101
/// and leaves the socket to [`pairing::run`], which sends the CHALLENGE and checks the ATTACH.
async fn attach_mailbox(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    request: &mut Request<Incoming>,
) -> Result<Response<Body>, Reject> {
    if request.method() != Method::GET {
        return Err(Reject::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served",
        ));
    }
    let accept = check_handshake(request.version(), request.headers(), PAIR_SUBPROTOCOL)?;
    if request.headers().contains_key(LEGACY_TOKEN_HEADER) {
        return Err(Reject::new(
            StatusCode::BAD_REQUEST,
            "attach tokens are no longer accepted: update PocketKey (attach answers a challenge)",
        ));
    }
    let mailbox = parse_path(request.uri().path())
        .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "mailbox id must be 32 hex digits"))?;
    let unavailable = |reason| Reject::new(StatusCode::SERVICE_UNAVAILABLE, reason);
    match shared.mailboxes.is_tombstoned(mailbox).await {
        Ok(false) => {}
        Ok(true) => return Err(Reject::new(StatusCode::GONE, "this pairing was revoked")),
        Err(error) => {
            warn!(%error, "mailbox store unavailable");
            return Err(unavailable("mailbox store unavailable"));
        }
    }
    if shared.shutdown.is_cancelled() {
        return Err(unavailable("relay shutting down"));
    }
    let slot = reserve(shared, peer, request.headers(), true)?;
    let on_upgrade = hyper::upgrade::on(request);
    shared.tasks.spawn(crate::pairing::run(
        shared.clone(),
        mailbox,
        on_upgrade,
        peer,
        slot,
    ));
    let mut response = switching_protocols(accept);
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(PAIR_SUBPROTOCOL),
    );
    Ok(response)
}

fn switching_protocols(accept: String) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    response
}

/// Checks a websocket opening handshake (RFC 6455 §4.2.1) offering the `fido.cable`
/// subprotocol; returns the `Sec-WebSocket-Accept` value.
pub(crate) fn check_handshake(
    version: Version,
    headers: &HeaderMap,
    subprotocol: &'static str,
) -> Result<String, Reject> {
    let bad = |reason| Reject::new(StatusCode::BAD_REQUEST, reason);
    if version < Version::HTTP_11 {
        return Err(bad("a websocket upgrade needs HTTP/1.1"));
    }
    if !headers.contains_key(header::HOST) {
        return Err(bad("missing Host header"));
    }
    if !has_token(headers, &header::CONNECTION, |t| {
        t.eq_ignore_ascii_case("upgrade")
    }) || !has_token(headers, &header::UPGRADE, |t| {
        t.eq_ignore_ascii_case("websocket")
    }) {
        return Err(bad("not a websocket upgrade request"));
    }
    match headers.get(header::SEC_WEBSOCKET_VERSION) {
        None => return Err(bad("missing Sec-WebSocket-Version")),
        Some(version) if version.as_bytes() != b"13" => {
            return Err(Reject::new(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported websocket version (13 only)",
            ))
        }
        Some(_) => {}
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) if is_websocket_key(key.as_bytes()) => key,
        _ => return Err(bad("missing or malformed Sec-WebSocket-Key")),
    };
    if !has_token(headers, &header::SEC_WEBSOCKET_PROTOCOL, |t| {
        t == subprotocol
    }) {
        return Err(bad(if subprotocol == SUBPROTOCOL {
            "the fido.cable subprotocol is required"
        } else {
            "the pocketkey.pair.v1 subprotocol is required"
        }));
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// Whether a comma-separated list header (any of its occurrences) has a matching token.
fn has_token(
    headers: &HeaderMap,
    name: &header::HeaderName,
    matches: impl Fn(&str) -> bool,
) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| matches(token.trim()))
}

/// A base64-encoded 16-byte value: 22 base64 digits and `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const GOOD: &[(&str, &str)] = &[
        ("host", "relay.example"),
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "other, fido.cable"),
    ];

    fn without(name: &str) -> HeaderMap {
        let pairs: Vec<_> = GOOD.iter().copied().filter(|(n, _)| *n != name).collect();
        headers(&pairs)
    }

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut map = without(name);
        map.insert(name, HeaderValue::from_static(value));
        map
    }

    #[test]
    fn accepts_a_good_handshake() {
        // The sample of RFC 6455 §1.3.
        assert_eq!(
            check_handshake(Version::HTTP_11, &headers(GOOD), SUBPROTOCOL),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string())
        );
    }

    #[test]
    fn refuses_bad_handshakes() {
        let status = |version, map: &HeaderMap| {
            check_handshake(version, map, SUBPROTOCOL)
                .unwrap_err()
                .status
        };
        assert_eq!(
            status(Version::HTTP_10, &headers(GOOD)),
            StatusCode::BAD_REQUEST
        );
        for name in [
            "host",
            "connection",
            "upgrade",
            "sec-websocket-version",
            "sec-websocket-key",
            "sec-websocket-protocol",
        ] {
            assert_eq!(
                status(Version::HTTP_11, &without(name)),
                StatusCode::BAD_REQUEST,
                "{name}"
            );
        }
        assert_eq!(
            status(Version::HTTP_11, &with("sec-websocket-version", "8")),
            StatusCode::UPGRADE_REQUIRED
        );
        assert_eq!(
            status(Version::HTTP_11, &with("sec-websocket-key", "short==")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(
                Version::HTTP_11,
                &with("sec-websocket-protocol", "fido.cable.v3")
            ),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(
                Version::HTTP_11,
                &with("sec-websocket-protocol", "FIDO.CABLE")
            ),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(Version::HTTP_11, &with("upgrade", "h2c")),
            StatusCode::BAD_REQUEST
        );
    }
}
