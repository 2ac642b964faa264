//! Who a request is from, and the websocket slot it holds from before its 101 until its
//! connection ends (so that concurrent upgrades cannot overshoot a cap).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::Reject;
use crate::limits::{ClientKey, ConnSlot, SlotError};
use crate::Shared;

/// The TCP peer, and the address the per-client limits count: the peer's, or with
/// `client_ip_header` the one the reverse proxy wrote (the peer's when the header is missing
/// or not an address).
pub(super) struct Client {
    pub peer: SocketAddr,
    pub key: ClientKey,
}

impl FromRequestParts<Arc<Shared>> for Client {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Response> {
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, shared)
            .await
            .map_err(IntoResponse::into_response)?;
        let forwarded = shared.config.client_ip_header.as_deref().and_then(|name| {
            parts
                .headers
                .get(name)?
                .to_str()
                .ok()?
                .trim()
                .parse::<IpAddr>()
                .ok()
        });
        Ok(Self {
            peer,
            key: ClientKey::of(forwarded.unwrap_or(peer.ip())),
        })
    }
}

/// Reserves a websocket slot for the client (and, for a pairing connection, one of the node's
/// pairing connections).
pub(super) fn reserve(shared: &Shared, client: &Client, pairing: bool) -> Result<ConnSlot, Reject> {
    let max_pairing = pairing.then_some(shared.pairing_limits.max_connections);
    shared
        .connections
        .reserve(
            client.key,
            shared.config.max_connections_per_ip,
            max_pairing,
        )
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
