//! `GET /pair/v1/<hex M>` (docs/pairing-protocol.md §3.1): checks the handshake, the path
//! (400), the tombstone (410) and the connection caps (429 per address, 503), then answers 101
//! and leaves the socket to [`crate::pairing::run`], which sends the CHALLENGE and checks the
//! ATTACH.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use tracing::warn;

use super::admit::{reserve, Client};
use super::handshake::{Handshake, Pair};
use super::Reject;
use crate::Shared;
use pocketkey_core::pairing::mailbox::{parse_path, LEGACY_TOKEN_HEADER};

pub(super) async fn attach(
    State(shared): State<Arc<Shared>>,
    handshake: Handshake<Pair>,
    client: Client,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    if headers.contains_key(LEGACY_TOKEN_HEADER) {
        return Err(Reject::new(
            StatusCode::BAD_REQUEST,
            "attach tokens are no longer accepted: update PocketKey (attach answers a challenge)",
        ));
    }
    let mailbox = parse_path(uri.path())
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
    let slot = reserve(&shared, &client, true)?;
    let response = handshake.switching_protocols();
    shared.tasks.spawn(crate::pairing::run(
        shared.clone(),
        mailbox,
        handshake.on_upgrade,
        client.peer,
        slot,
    ));
    Ok(response)
}
