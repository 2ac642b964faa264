//! The HTTP server: the admin REST API under `/api/v1` and the activation page.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lettre::message::Mailbox;
use lettre::Address;
use serde::{Deserialize, Serialize};
use sqlx::{Row, SqlitePool};
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::limits::{self, Limiter};
use crate::org::OrgInfo;
use crate::{audit, clock, mail, pages, secret};

/// Largest request body accepted on any route.
pub const BODY_LIMIT: usize = 16 * 1024;
/// Default deadline for handling one request, body included (`serve --request-timeout`).
pub const REQUEST_TIMEOUT_SECS: u64 = 10;
/// How long an activation link works.
pub const INVITE_DAYS: i64 = 7;
const MAX_DISPLAY_NAME: usize = 128;
/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets, so an address at most 254.
const MAX_EMAIL: usize = 254;

pub struct AppState {
    pub pool: SqlitePool,
    pub org: OrgInfo,
    /// Without a trailing slash.
    pub public_url: String,
    pub outbox: PathBuf,
    pub mail_from: Mailbox,
    pub activate_limit: Limiter,
    pub auth_fail_limit: Limiter,
    /// Opens the CA and batch keys sealed at rest.
    pub sealer: pocketkey_core::crypto::seal::Sealer,
}

type Shared = Arc<AppState>;

pub fn router(state: Shared, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/invites", post(create_invite))
        .route("/invites/{id}/resend", post(resend_invite))
        .route("/keys", get(list_keys))
        .route("/attestation/root", get(attestation_root))
        .route("/audit", get(audit_export))
        .route("/device/activate", post(crate::activation::activate))
        .route("/device/challenge", post(crate::devices::challenge))
        .route("/device/sync", post(crate::devices::sync))
        .route("/keys/{id}/revoke", post(crate::lifecycle::revoke))
        .route("/keys/{id}/suspend", post(crate::lifecycle::suspend))
        .route("/keys/{id}/resume", post(crate::lifecycle::resume));
    Router::new()
        .nest("/api/v1", api)
        .route("/activate/{token}", get(activation_page))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(declared_size_cap))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Rejects a declared oversize body before reading it; bodies without a length are cut off
/// by `DefaultBodyLimit` in the extractor (same typed 413).
async fn declared_size_cap(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return ApiError::too_large().into_response();
    }
    next.run(req).await
}

/// The path as it may be logged: activation tokens are secrets and never reach the log.
fn loggable_path(path: &str) -> &str {
    if path.starts_with("/activate/") {
        "/activate/<token>"
    } else {
        path
    }
}

async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = loggable_path(req.uri().path()).to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        "request"
    );
    response
}

fn client_ip(parts: &Parts) -> std::net::IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// An admin authenticated by an API key; `actor` names it in the audit log.
pub struct Admin {
    pub actor: String,
}

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let ip = client_ip(parts);
        if !state.auth_fail_limit.allows(ip) {
            return Err(ApiError::rate_limited());
        }
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| secret::looks_like_secret(k));
        let row = match presented {
            Some(key) => {
                sqlx::query("SELECT name FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
                    .bind(secret::hash_secret(key))
                    .fetch_optional(&state.pool)
                    .await?
            }
            None => None,
        };
        match row {
            Some(row) => Ok(Admin {
                actor: format!("api-key:{}", row.try_get::<String, _>(0)?),
            }),
            None => {
                state.auth_fail_limit.take(ip);
                tracing::warn!(%ip, "API request with a missing or wrong API key");
                Err(ApiError::unauthorized())
            }
        }
    }
}

/// The JSON body, or the typed error for a body that is too large or not the expected JSON.
pub fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match payload {
        Ok(Json(value)) => Ok(value),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::too_large()),
        Err(e) => Err(ApiError::bad_request("invalid_json", e.body_text())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewInvite {
    email: String,
    display_name: String,
}

#[derive(Serialize)]
struct InviteCreated {
    id: String,
    expires_at: String,
}

fn parse_email(email: &str) -> Result<Address, ApiError> {
    let bad = || ApiError::bad_request("invalid_email", "email is not a valid e-mail address");
    if email.len() > MAX_EMAIL {
        return Err(bad());
    }
    Address::from_str(email).map_err(|_| bad())
}

fn check_display_name(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    if n == 0
        || n > MAX_DISPLAY_NAME
        || name.chars().any(char::is_control)
        || name.trim().is_empty()
    {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            format!("display_name must be 1 to {MAX_DISPLAY_NAME} characters without control characters"),
        ));
    }
    Ok(())
}

impl AppState {
    fn link(&self, token: &str) -> String {
        format!("{}/activate/{token}", self.public_url)
    }

    /// Writes the invite mail with a fresh link to the outbox.
    fn send_invite(
        &self,
        invite_id: &str,
        email: &Address,
        name: &str,
        token: &str,
        expires_at: &str,
    ) -> Result<(), ApiError> {
        let link = self.link(token);
        let message = mail::build(
            &self.mail_from,
            &mail::Invite {
                org_name: &self.org.name,
                to_email: email,
                to_name: name,
                link: &link,
                expires_at,
            },
        )
        .map_err(ApiError::internal)?;
        // One file per sending: a resend leaves the old mail (whose link no longer works).
        let file = format!("invite-{invite_id}-{}", secret::new_id());
        mail::write_outbox(&self.outbox, &file, &message).map_err(ApiError::internal)?;
        tracing::info!(invite = invite_id, "invite mail written to the outbox");
        Ok(())
    }
}

async fn create_invite(
    State(state): State<Shared>,
    admin: Admin,
    payload: Result<Json<NewInvite>, JsonRejection>,
) -> Result<(StatusCode, Json<InviteCreated>), ApiError> {
    let req = body(payload)?;
    let email = parse_email(&req.email)?;
    check_display_name(&req.display_name)?;
    let (invite_id, key_id) = (secret::new_id(), secret::new_id());
    let token = secret::new_secret();
    let now = clock::now_string();
    let expires_at = clock::format(clock::in_days(INVITE_DAYS));
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "INSERT INTO keys (id, email, display_name, status, created_at) \
         VALUES ($1, $2, $3, 'invited', $4)",
    )
    .bind(&key_id)
    .bind(email.to_string())
    .bind(&req.display_name)
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO invites (id, key_id, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&invite_id)
    .bind(&key_id)
    .bind(secret::hash_secret(&token))
    .bind(&now)
    .bind(&expires_at)
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        &admin.actor,
        "invite.create",
        &invite_id,
        serde_json::json!({ "key_id": key_id, "email": email.to_string(), "expires_at": expires_at }),
    )
    .await?;
    // The mail is written before the commit: if writing fails nothing is stored, and a
    // mail whose commit failed only holds a link that answers "not valid".
    state.send_invite(&invite_id, &email, &req.display_name, &token, &expires_at)?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(InviteCreated {
            id: invite_id,
            expires_at,
        }),
    ))
}

async fn resend_invite(
    State(state): State<Shared>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<InviteCreated>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let row = sqlx::query(
        "SELECT k.email, k.display_name, k.status, i.used_at FROM invites i \
         JOIN keys k ON k.id = i.key_id WHERE i.id = $1",
    )
    .bind(&id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("no such invite"))?;
    let (email, name, status, used_at): (String, String, String, Option<String>) = (
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    );
    if used_at.is_some() || status != "invited" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invite_used",
            "this invite was already used; the key is in the inventory",
        ));
    }
    let email = parse_email(&email)?;
    let token = secret::new_secret();
    let expires_at = clock::format(clock::in_days(INVITE_DAYS));
    // Replacing the hash is what invalidates the previous link.
    sqlx::query("UPDATE invites SET token_hash = $1, expires_at = $2 WHERE id = $3")
        .bind(secret::hash_secret(&token))
        .bind(&expires_at)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        &admin.actor,
        "invite.resend",
        &id,
        serde_json::json!({ "email": email.to_string(), "expires_at": expires_at }),
    )
    .await?;
    state.send_invite(&id, &email, &name, &token, &expires_at)?;
    tx.commit().await?;
    Ok(Json(InviteCreated { id, expires_at }))
}

#[derive(Serialize)]
struct KeyEntry {
    id: String,
    email: String,
    display_name: String,
    status: String,
    created_at: String,
    activated_at: Option<String>,
    last_seen_at: Option<String>,
    device_name: Option<String>,
    platform: Option<String>,
    /// Why and by whom the status last changed (revoke, suspend, resume).
    status_reason: Option<String>,
    status_actor: Option<String>,
}

async fn list_keys(
    State(state): State<Shared>,
    _admin: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, email, display_name, status, created_at, activated_at, last_seen_at, \
         device_name, platform, status_reason, status_actor FROM keys ORDER BY created_at, id",
    )
    .fetch_all(&state.pool)
    .await?;
    let keys = rows
        .iter()
        .map(|r| {
            Ok(KeyEntry {
                id: r.try_get(0)?,
                email: r.try_get(1)?,
                display_name: r.try_get(2)?,
                status: r.try_get(3)?,
                created_at: r.try_get(4)?,
                activated_at: r.try_get(5)?,
                last_seen_at: r.try_get(6)?,
                device_name: r.try_get(7)?,
                platform: r.try_get(8)?,
                status_reason: r.try_get(9)?,
                status_actor: r.try_get(10)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(serde_json::json!({ "keys": keys })))
}

async fn attestation_root(State(state): State<Shared>, _admin: Admin) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-pem-file"),
        )],
        state.org.root_cert_pem.clone(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct AuditQuery {
    format: Option<String>,
}

async fn audit_export(
    State(state): State<Shared>,
    _admin: Admin,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let entries = audit::all(&state.pool).await?;
    let (content_type, text) = match query.format.as_deref().unwrap_or("ndjson") {
        "ndjson" => ("application/x-ndjson", audit::to_ndjson(&entries)),
        "csv" => ("text/csv; charset=utf-8", audit::to_csv(&entries)),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_format",
                "format must be ndjson or csv",
            ))
        }
    };
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

/// Whether `token` opens a live invite: known, unused, unexpired, key still invited.
async fn token_is_live(pool: &SqlitePool, token: &str) -> Result<bool, sqlx::Error> {
    if !secret::looks_like_secret(token) {
        return Ok(false);
    }
    let row = sqlx::query(
        "SELECT i.expires_at, i.used_at, k.status FROM invites i \
         JOIN keys k ON k.id = i.key_id WHERE i.token_hash = $1",
    )
    .bind(secret::hash_secret(token))
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let expires_at: String = row.try_get(0)?;
    let used_at: Option<String> = row.try_get(1)?;
    let status: String = row.try_get(2)?;
    let unexpired = clock::parse(&expires_at).is_some_and(|t| t > clock::now());
    Ok(unexpired && used_at.is_none() && status == "invited")
}

async fn activation_page(
    State(state): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
) -> Response {
    if !state.activate_limit.take(addr.ip()) {
        return (StatusCode::TOO_MANY_REQUESTS, Html(pages::too_many())).into_response();
    }
    match token_is_live(&state.pool, &token).await {
        Ok(true) => Html(pages::activation(&state.org.name, &state.link(&token))).into_response(),
        Ok(false) => (StatusCode::NOT_FOUND, Html(pages::not_valid())).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

pub fn limiters() -> (Limiter, Limiter) {
    (
        Limiter::new(limits::ACTIVATE_PER_IP, limits::ACTIVATE_GLOBAL),
        Limiter::new(limits::AUTH_FAIL_PER_IP, limits::AUTH_FAIL_GLOBAL),
    )
}
