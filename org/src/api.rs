//! The HTTP server: the admin REST API under `/api/v1` and the activation page.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::{header, request::Parts, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lettre::message::Mailbox;
use lettre::Address;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};
use tower_http::timeout::TimeoutLayer;

use crate::api_keys::{self, Scope};
use crate::app_links::{apple_app_site_association as aasa, assetlinks};
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
    pub pool: AnyPool,
    pub org: OrgInfo,
    /// Without a trailing slash.
    pub public_url: String,
    pub mailer: mail::Mailer,
    pub mail_from: Mailbox,
    pub activate_limit: Limiter,
    pub auth_fail_limit: Limiter,
    /// Opens the CA and batch keys sealed at rest.
    pub sealer: pocketkey_core::crypto::seal::Sealer,
    /// The apps that open activation links (`/.well-known/`).
    pub app_links: crate::app_links::AppLinks,
    /// Push wake-ups to the phones.
    pub wake: Arc<crate::wake::Waker>,
    /// Posts completed registrations to Graph (`serve --graph-url`).
    pub graph: Option<Arc<crate::graph_post::GraphPoster>>,
}

type Shared = Arc<AppState>;

/// The whole server: the REST API, the activation page, `console` (the admin console's
/// routes, under `/console`) and `scim` (under `/scim/v2`), all behind the same limits and
/// request log.
pub fn router(state: Shared, console: Router, scim: Router, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/invites", post(create_invite))
        .route("/invites/{id}/resend", post(resend_invite))
        .route("/keys", get(list_keys))
        .route("/attestation/root", get(attestation_root))
        .route("/audit", get(audit_export))
        .route("/openapi.json", get(crate::openapi::serve))
        .route("/device/activate", post(crate::activation::activate))
        .route("/device/challenge", post(crate::devices::challenge))
        .route("/device/sync", post(crate::devices::sync))
        .route("/device/push", post(crate::push_targets::register))
        .route("/keys/{id}/revoke", post(crate::lifecycle::revoke))
        .route("/keys/{id}/suspend", post(crate::lifecycle::suspend))
        .route("/keys/{id}/resume", post(crate::lifecycle::resume))
        .route(
            "/keys/{id}/registrations",
            post(crate::registrations::create),
        )
        .route("/registrations/{id}", get(crate::registrations::get))
        .route(
            "/device/registrations/{id}",
            post(crate::registrations::post_result),
        );
    Router::new()
        .nest("/api/v1", api)
        .route("/activate/{token}", get(activation_page))
        .route("/.well-known/assetlinks.json", get(assetlinks))
        .route("/.well-known/apple-app-site-association", get(aasa))
        .nest_service("/console", console)
        .nest_service("/scim/v2", scim)
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

/// The path as it may be logged: activation and admin enrolment tokens are secrets and never
/// reach the log.
fn loggable_path(path: &str) -> &str {
    if path.starts_with("/activate/") {
        "/activate/<token>"
    } else if path.starts_with(crate::console::ENROL_PREFIX) {
        "/console/enrol/<token>"
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

/// An admin authenticated by an API key; `actor` names it in the audit log. A `read`
/// key is refused (403) on every method but GET and HEAD, and a `scim` key on every route,
/// here: a directory's key provisions users over SCIM and does nothing else.
pub struct Admin {
    pub actor: String,
}

/// The valid API key of a request, or `401` (counted against the failed-key limit).
pub async fn api_key(parts: &Parts, state: &AppState) -> Result<api_keys::Valid, ApiError> {
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
    let valid = match presented {
        Some(key) => api_keys::check(&state.pool, key).await?,
        None => None,
    };
    valid.ok_or_else(|| {
        state.auth_fail_limit.take(ip);
        tracing::warn!(%ip, "API request with a missing or wrong API key");
        ApiError::unauthorized()
    })
}

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let key = api_key(parts, state).await?;
        let refused = |why: &str| Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", why));
        match key.scope {
            Scope::Read if !matches!(parts.method, Method::GET | Method::HEAD) => {
                refused("this API key is read-only: it may only GET")
            }
            Scope::Scim => refused("this API key is for SCIM (/scim/v2) only"),
            Scope::Read | Scope::Admin => Ok(Admin {
                actor: format!("api-key:{}", key.name),
            }),
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    email: String,
    display_name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InviteCreated {
    id: String,
    expires_at: String,
}

pub fn parse_email(email: &str) -> Result<Address, ApiError> {
    let bad = || ApiError::bad_request("invalid_email", "email is not a valid e-mail address");
    if email.len() > MAX_EMAIL {
        return Err(bad());
    }
    Address::from_str(email).map_err(|_| bad())
}

pub fn check_display_name(name: &str) -> Result<(), ApiError> {
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

    /// Sends the invite mail with a fresh link (SMTP, or the outbox). A mail server that is
    /// down or refuses is `502 mail_failed`; the caller then stores nothing.
    async fn send_invite(
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
        match self.mailer.send(&file, message).await {
            Ok(()) => {
                tracing::info!(invite = invite_id, "invite mail sent");
                Ok(())
            }
            Err(e @ mail::SendError::Smtp(_)) => {
                tracing::warn!(invite = invite_id, error = %e, "invite mail not sent");
                Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "mail_failed",
                    "the mail server did not accept the invite; nothing was stored, try again",
                ))
            }
            Err(e) => Err(ApiError::internal(e)),
        }
    }
}

async fn create_invite(
    State(state): State<Shared>,
    admin: Admin,
    payload: Result<Json<NewInvite>, JsonRejection>,
) -> Result<(StatusCode, Json<InviteCreated>), ApiError> {
    let req = body(payload)?;
    let created = invite_user(&state, &admin.actor, &req.email, &req.display_name).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Invites a user: an inventory entry (`invited`), an invite, its audit entry and the mail.
/// The REST API and the console both invite through here.
pub async fn invite_user(
    state: &AppState,
    actor: &str,
    email: &str,
    display_name: &str,
) -> Result<InviteCreated, ApiError> {
    let email = parse_email(email)?;
    check_display_name(display_name)?;
    let (invite_id, key_id) = (secret::new_id(), secret::new_id());
    let token = secret::new_secret();
    let now = clock::now_string();
    let expires_at = clock::format(clock::in_days(INVITE_DAYS));
    // The mail goes first, holding no database connection or lock while a mail server
    // answers: if it fails nothing is stored, and a mail whose rows then fail to commit only
    // holds a link that answers "not valid".
    state
        .send_invite(&invite_id, &email, display_name, &token, &expires_at)
        .await?;
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "INSERT INTO keys (id, email, display_name, status, created_at) \
         VALUES ($1, $2, $3, 'invited', $4)",
    )
    .bind(&key_id)
    .bind(email.to_string())
    .bind(display_name)
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
        actor,
        "invite.create",
        &invite_id,
        serde_json::json!({ "key_id": key_id, "email": email.to_string(), "expires_at": expires_at }),
    )
    .await?;
    tx.commit().await?;
    Ok(InviteCreated {
        id: invite_id,
        expires_at,
    })
}

async fn resend_invite(
    State(state): State<Shared>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<InviteCreated>, ApiError> {
    resend(&state, &admin.actor, id).await.map(Json)
}

/// Sends invite `id` again with a new link; the previous link stops working. The REST API and
/// the console both resend through here.
pub async fn resend(state: &AppState, actor: &str, id: String) -> Result<InviteCreated, ApiError> {
    let row = sqlx::query(
        "SELECT k.email, k.display_name, k.status, i.used_at FROM invites i \
         JOIN keys k ON k.id = i.key_id WHERE i.id = $1",
    )
    .bind(&id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("no such invite"))?;
    let (email, name, status, used_at): (String, String, String, Option<String>) = (
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    );
    let used = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "invite_used",
            "this invite was already used; the key is in the inventory",
        )
    };
    if used_at.is_some() || status != "invited" {
        return Err(used());
    }
    let email = parse_email(&email)?;
    let token = secret::new_secret();
    let expires_at = clock::format(clock::in_days(INVITE_DAYS));
    // As for a new invite, the mail goes before any write: no lock waits on a mail server,
    // and a refused mail leaves the previous link working.
    state
        .send_invite(&id, &email, &name, &token, &expires_at)
        .await?;
    let mut tx = state.pool.begin().await?;
    // Replacing the hash is what invalidates the previous link; the conditions repeat the
    // check above, for an invite used while the mail was on its way.
    let replaced = sqlx::query(
        "UPDATE invites SET token_hash = $1, expires_at = $2 WHERE id = $3 AND used_at IS NULL \
         AND key_id IN (SELECT id FROM keys WHERE status = 'invited')",
    )
    .bind(secret::hash_secret(&token))
    .bind(&expires_at)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    if replaced.rows_affected() != 1 {
        return Err(used());
    }
    audit::append(
        &mut tx,
        actor,
        "invite.resend",
        &id,
        serde_json::json!({ "email": email.to_string(), "expires_at": expires_at }),
    )
    .await?;
    tx.commit().await?;
    Ok(InviteCreated { id, expires_at })
}

/// Inventory page sizes: `GET /keys?limit=` (default, largest).
pub const KEYS_PAGE_DEFAULT: u32 = 100;
pub const KEYS_PAGE_MAX: u32 = 1000;

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyEntry {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub status: String,
    pub created_at: String,
    pub activated_at: Option<String>,
    pub last_seen_at: Option<String>,
    pub device_name: Option<String>,
    pub platform: Option<String>,
    /// Why and by whom the status last changed (revoke, suspend, resume).
    pub status_reason: Option<String>,
    pub status_actor: Option<String>,
    /// The last wake-up sent to the key's phone, `null` before the first.
    pub last_wake: Option<LastWake>,
}

/// What became of the last wake-up of a key's phone (docs/org.md, "Wake-ups").
#[derive(Serialize, utoipa::ToSchema)]
pub struct LastWake {
    pub at: String,
    /// `sent` (the provider took it), `failed`, or `no_target` (the phone registered none).
    pub outcome: String,
    /// For `failed`, the class of the provider's refusal: `failed` (unreachable or refused),
    /// `unregistered` (the target is no longer valid; dropped), `throttled`, `bad_target`.
    pub refusal: Option<String>,
}

impl LastWake {
    /// From `last_wake_at, last_wake_outcome, last_wake_refusal` at columns `first..first + 3`.
    pub fn from_columns(r: &sqlx::any::AnyRow, first: usize) -> Result<Option<Self>, sqlx::Error> {
        let at: Option<String> = r.try_get(first)?;
        let outcome: Option<String> = r.try_get(first + 1)?;
        Ok(match (at, outcome) {
            (Some(at), Some(outcome)) => Some(Self {
                at,
                outcome,
                refusal: r.try_get(first + 2)?,
            }),
            _ => None,
        })
    }
}

/// The inventory's columns, in the order [`KeyEntry::from_row`] reads them; `k` names `keys`.
pub const KEY_ENTRY_COLUMNS: &str = "k.id, k.email, k.display_name, k.status, k.created_at, \
     k.activated_at, k.last_seen_at, k.device_name, k.platform, k.status_reason, \
     k.status_actor, k.last_wake_at, k.last_wake_outcome, k.last_wake_refusal";

impl KeyEntry {
    /// The entry from a row whose first columns are [`KEY_ENTRY_COLUMNS`]. The REST
    /// inventory and the console's keys page both read keys this way.
    pub fn from_row(r: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        let last_wake = LastWake::from_columns(r, 11)?;
        Ok(Self {
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
            last_wake,
        })
    }
}

/// One page of the inventory.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyPage {
    pub keys: Vec<KeyEntry>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_after: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    /// Entries per page, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// The `next_after` of the previous page: entries after that key.
    after: Option<String>,
}

/// `GET /keys`: the inventory in pages.
async fn list_keys(
    State(state): State<Shared>,
    _admin: Admin,
    query: Result<Query<KeysQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<KeyPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(KEYS_PAGE_DEFAULT);
    if !(1..=KEYS_PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1 to {KEYS_PAGE_MAX}"),
        ));
    }
    inventory_page(&state.pool, limit, query.after.as_deref())
        .await
        .map(Json)
}

/// One page of the inventory, oldest first, by keyset: `(created_at, id)` after the key
/// `after`. The REST API's `GET /keys` reads through here.
pub async fn inventory_page(
    pool: &AnyPool,
    limit: u32,
    after: Option<&str>,
) -> Result<KeyPage, ApiError> {
    let columns = format!("SELECT {KEY_ENTRY_COLUMNS} FROM keys k");
    // One more than asked: whether it exists says if there is a next page.
    let fetch = i64::from(limit) + 1;
    let rows = match after {
        None => {
            sqlx::query(&format!("{columns} ORDER BY created_at, id LIMIT $1"))
                .bind(fetch)
                .fetch_all(pool)
                .await?
        }
        Some(after) => {
            let cursor = sqlx::query("SELECT created_at FROM keys WHERE id = $1")
                .bind(after)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_cursor",
                        "after must be a next_after this API gave",
                    )
                })?;
            let created_at: String = cursor.try_get(0)?;
            // A row-value comparison, not `a > x OR (a = x AND id > y)`: PostgreSQL turns
            // only the former into one index range, so a deep page costs what the first does.
            sqlx::query(&format!(
                "{columns} WHERE (created_at, id) > ($1, $2) ORDER BY created_at, id LIMIT $3"
            ))
            .bind(created_at)
            .bind(after)
            .bind(fetch)
            .fetch_all(pool)
            .await?
        }
    };
    let mut keys = rows
        .iter()
        .map(KeyEntry::from_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let next_after = if keys.len() > limit as usize {
        keys.truncate(limit as usize);
        keys.last().map(|k| k.id.clone())
    } else {
        None
    };
    Ok(KeyPage { keys, next_after })
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

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// `ndjson` (default) or `csv`.
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
async fn token_is_live(pool: &AnyPool, token: &str) -> Result<bool, sqlx::Error> {
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
