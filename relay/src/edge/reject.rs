//! A request refused before any upgrade: its status, the reason sent as the body, and the log
//! line it leaves.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{debug, info};

use pocketkey_core::pairing::mailbox::PATH_PREFIX as PAIR_PATH_PREFIX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reject {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl Reject {
    pub(crate) fn new(status: StatusCode, reason: &'static str) -> Self {
        Self { status, reason }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let mut response = (self.status, format!("{}\n", self.reason)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
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
        // For `log`, which sees the response, not the handler's result.
        response.extensions_mut().insert(self);
        response
    }
}

/// Logs each refusal with the client's address: at info level, except a 404 outside the
/// relay's own paths (scanners), at debug level.
pub(super) async fn log(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let ours = path.starts_with("/cable/") || path.starts_with(PAIR_PATH_PREFIX);
    let response = next.run(request).await;
    if let Some(reject) = response.extensions().get::<Reject>() {
        let status = reject.status.as_u16();
        if reject.status == StatusCode::NOT_FOUND && !ours {
            debug!(%peer, status, reason = reject.reason, "request refused");
        } else {
            info!(%peer, status, reason = reject.reason, "request refused");
        }
    }
    response
}
