//! The caBLE v2 routes (docs/relay.md §1–§2): `new` registers a tunnel and hands the phone's
//! socket to its task; `connect` claims it and hands the browser's socket to the same task, or
//! across nodes to the browser's half here.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::header::HeaderValue;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

use super::admit::{reserve, Client};
use super::handshake::{Cable, Handshake, ROUTING_ID_HEADER};
use super::Reject;
use crate::ids::{parse_route, Route, RouteError, RoutingId, TunnelId};
use crate::registry::{ClaimError, RegisterError};
use crate::tunnel::{self, Join, NewTunnel};
use crate::Shared;

/// The ids of a `/cable/…` path, parsed by [`parse_route`] (the path the router matched, not
/// percent-decoded): 400 with its reason when malformed.
fn route(parts: &Parts) -> Result<Route, Reject> {
    parse_route(parts.uri.path()).map_err(|error| match error {
        RouteError::Unknown => Reject::new(StatusCode::NOT_FOUND, "not found"),
        RouteError::Malformed(reason) => Reject::new(StatusCode::BAD_REQUEST, reason),
    })
}

/// The tunnel id of `/cable/new/<TUNNEL ID>`.
pub(super) struct NewPath(TunnelId);

impl<S: Send + Sync> FromRequestParts<S> for NewPath {
    type Rejection = Reject;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Reject> {
        match route(parts)? {
            Route::New(tunnel) => Ok(Self(tunnel)),
            _ => Err(Reject::new(StatusCode::NOT_FOUND, "not found")),
        }
    }
}

/// The ids of `/cable/connect/<ROUTING ID>/<TUNNEL ID>`.
pub(super) struct ConnectPath(RoutingId, TunnelId);

impl<S: Send + Sync> FromRequestParts<S> for ConnectPath {
    type Rejection = Reject;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Reject> {
        match route(parts)? {
            Route::Connect(routing, tunnel) => Ok(Self(routing, tunnel)),
            _ => Err(Reject::new(StatusCode::NOT_FOUND, "not found")),
        }
    }
}

/// `new`: reserve a slot, register the tunnel, answer 101 with its routing id, and leave the
/// socket to the tunnel's task.
pub(super) async fn open(
    State(shared): State<Arc<Shared>>,
    NewPath(tunnel): NewPath,
    handshake: Handshake<Cable>,
    client: Client,
) -> Result<Response, Reject> {
    let unavailable = |reason| Reject::new(StatusCode::SERVICE_UNAVAILABLE, reason);
    if shared.shutdown.is_cancelled() {
        return Err(unavailable("relay shutting down"));
    }
    let slot = reserve(&shared, &client, false)?;
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
        phone = %client.peer,
        "tunnel created"
    );
    let mut response = handshake.switching_protocols();
    response.headers_mut().insert(
        ROUTING_ID_HEADER,
        HeaderValue::from_str(&routing.to_string()).expect("hex is a valid header value"),
    );
    shared.tasks.spawn(tunnel::run(
        shared.clone(),
        NewTunnel {
            tunnel,
            routing,
            on_upgrade: handshake.on_upgrade,
            joins,
            permit,
            slot,
            created,
        },
    ));
    Ok(response)
}

/// `connect`: claim the waiting tunnel, hand the browser's upgrade to its task, answer 101.
pub(super) async fn join(
    State(shared): State<Arc<Shared>>,
    ConnectPath(routing, tunnel): ConnectPath,
    handshake: Handshake<Cable>,
    client: Client,
) -> Result<Response, Reject> {
    let not_found = || Reject::new(StatusCode::NOT_FOUND, "no such tunnel");
    let slot = reserve(&shared, &client, false)?;
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
    let response = handshake.switching_protocols();
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
            shared.tasks.spawn(crate::remote_tunnel::run_browser(
                shared.clone(),
                owner,
                tunnel,
                handshake.on_upgrade,
                inbox,
                slot,
            ));
            return Ok(response);
        }
    }
    // Registered but not waiting here: its phone just left (its task is removing it), or,
    // with a shared registry, another node holds it.
    let joins = shared.rendezvous.take(&tunnel).ok_or_else(not_found)?;
    joins
        .send(Join::Local {
            on_upgrade: handshake.on_upgrade,
            peer: client.peer,
            slot,
        })
        .map_err(|_| not_found())?;
    Ok(response)
}
