//! WebAuthn ceremonies of the console: an admin registers a passkey through a one-time link
//! (enrolment), and signs in with it. Verification is webauthn-rs's; the ceremony state
//! between start and finish lives in the database (any node can finish what another
//! started), is single use and expires after [`CEREMONY_MINUTES`].
//!
//! These endpoints take and answer JSON (the page's script calls them): a cross-site form
//! cannot send `application/json`, and the enrolment token in the path is itself the proof
//! that the caller holds the link.

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, AnyPool, Row};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Uuid,
};
use zeroize::Zeroizing;

use super::error::ConsoleError;
use super::session::{self, Role};
use super::{views, Shared};
use crate::error::ApiError;
use crate::{api, audit, clock, secret};

/// How long a started ceremony can be finished.
pub const CEREMONY_MINUTES: i64 = 5;
/// Where a new session lands.
const HOME: &str = "/console/keys";

fn json_body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload
        .map(|Json(v)| v)
        .map_err(|e| ApiError::bad_request("invalid_json", e.body_text()))
}

fn link_not_valid() -> ApiError {
    ApiError::not_found("this link is not valid")
}

fn ceremony_failed() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "passkey_not_accepted",
        "the passkey was not accepted; start again",
    )
}

/// Whether a stored expiry time is still ahead (a malformed one counts as passed).
fn unexpired(expires_at: &str) -> bool {
    clock::parse(expires_at).is_some_and(|t| t > clock::now())
}

/// A live admin invite: id, e-mail (if set by whoever made the link), role.
struct AdminInvite {
    id: String,
    email: Option<String>,
    role: Role,
}

async fn live_admin_invite(
    pool: &AnyPool,
    token: &str,
) -> Result<Option<AdminInvite>, sqlx::Error> {
    if !secret::looks_like_secret(token) {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT id, email, role, expires_at FROM console_admin_invites \
         WHERE token_hash = $1 AND used_at IS NULL",
    )
    .bind(secret::hash_secret(token))
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let expires_at: String = row.try_get(3)?;
    if !unexpired(&expires_at) {
        return Ok(None);
    }
    let role: String = row.try_get(2)?;
    Ok(Role::parse(&role).map(|role| AdminInvite {
        id: row.try_get(0).unwrap_or_default(),
        email: row.try_get(1).ok().flatten(),
        role,
    }))
}

async fn save_ceremony(
    pool: &AnyPool,
    kind: &str,
    subject: &str,
    state: serde_json::Value,
) -> Result<Zeroizing<String>, sqlx::Error> {
    let id = secret::new_secret();
    let now = clock::now();
    // Expired ceremonies nobody finished are swept here rather than by a timer.
    sqlx::query("DELETE FROM console_ceremonies WHERE expires_at < $1")
        .bind(clock::format(now))
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO console_ceremonies (id_hash, kind, subject, state_json, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(secret::hash_secret(&id))
    .bind(kind)
    .bind(subject)
    .bind(state.to_string())
    .bind(clock::format(
        now + time::Duration::minutes(CEREMONY_MINUTES),
    ))
    .execute(pool)
    .await?;
    Ok(id)
}

/// Removes the ceremony and returns its subject and state, if it exists, is of `kind` and
/// has not expired. Removing it first makes a ceremony single use.
async fn take_ceremony(
    conn: &mut AnyConnection,
    id: &str,
    kind: &str,
) -> Result<Option<(String, serde_json::Value)>, ApiError> {
    if !secret::looks_like_secret(id) {
        return Ok(None);
    }
    let id_hash = secret::hash_secret(id);
    let row = sqlx::query(
        "SELECT subject, state_json, expires_at FROM console_ceremonies \
         WHERE id_hash = $1 AND kind = $2",
    )
    .bind(&id_hash)
    .bind(kind)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    sqlx::query("DELETE FROM console_ceremonies WHERE id_hash = $1")
        .bind(&id_hash)
        .execute(&mut *conn)
        .await?;
    let expires_at: String = row.try_get(2)?;
    if !unexpired(&expires_at) {
        return Ok(None);
    }
    let state: String = row.try_get(1)?;
    let state = serde_json::from_str(&state).map_err(ApiError::internal)?;
    Ok(Some((row.try_get(0)?, state)))
}

#[derive(Serialize)]
struct Started<T> {
    ceremony: String,
    options: T,
}

#[derive(Serialize)]
struct Finished {
    redirect: &'static str,
}

fn signed_in(cookie: axum::http::HeaderValue) -> Response {
    (
        [(header::SET_COOKIE, cookie)],
        Json(Finished { redirect: HOME }),
    )
        .into_response()
}

// ---- enrolment: a one-time link → an admin with a passkey, signed in ----

pub async fn enrol_page(
    State(state): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
) -> Result<Response, ConsoleError> {
    if !state.app.activate_limit.take(addr.ip()) {
        return Err(ConsoleError::Status(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests; try again in a minute.".into(),
        ));
    }
    let invite = live_admin_invite(&state.app.pool, &token)
        .await?
        .ok_or(ConsoleError::LinkNotValid)?;
    Ok(Html(views::enrol(
        &state,
        invite.email.as_deref(),
        invite.role.label(),
    )?)
    .into_response())
}

#[derive(Deserialize)]
pub struct EnrolStart {
    /// Asked only when the link was made without one (`init`'s).
    email: Option<String>,
    display_name: String,
}

pub async fn enrol_start(
    State(state): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    payload: Result<Json<EnrolStart>, JsonRejection>,
) -> Result<Response, ApiError> {
    if !state.app.activate_limit.take(addr.ip()) {
        return Err(ApiError::rate_limited());
    }
    let req = json_body(payload)?;
    let pool = &state.app.pool;
    let invite = live_admin_invite(pool, &token)
        .await?
        .ok_or_else(link_not_valid)?;
    let email = invite.email.or(req.email).unwrap_or_default();
    let email = api::parse_email(email.trim())?.to_string();
    let display_name = req.display_name.trim().to_string();
    api::check_display_name(&display_name)?;
    let taken = sqlx::query("SELECT 1 FROM console_admins WHERE email = $1")
        .bind(&email)
        .fetch_optional(pool)
        .await?;
    if taken.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "admin_exists",
            "an admin with this e-mail address exists already",
        ));
    }
    let mut handle = [0u8; 16];
    OsRng.fill_bytes(&mut handle);
    let user_handle = Uuid::from_bytes(handle);
    let (options, registration) = state
        .webauthn
        .start_passkey_registration(user_handle, &email, &display_name, None)
        .map_err(ApiError::internal)?;
    let ceremony = save_ceremony(
        pool,
        "enrol",
        &invite.id,
        serde_json::json!({
            "registration": registration,
            "email": email,
            "display_name": display_name,
            "user_handle": user_handle.to_string(),
        }),
    )
    .await?;
    Ok(Json(Started {
        ceremony: ceremony.to_string(),
        options,
    })
    .into_response())
}

#[derive(Deserialize)]
pub struct EnrolFinish {
    ceremony: String,
    credential: RegisterPublicKeyCredential,
}

#[derive(Deserialize)]
struct EnrolState {
    registration: PasskeyRegistration,
    email: String,
    display_name: String,
    user_handle: String,
}

pub async fn enrol_finish(
    State(state): State<Shared>,
    Path(token): Path<String>,
    payload: Result<Json<EnrolFinish>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(payload)?;
    let pool = &state.app.pool;
    let invite = live_admin_invite(pool, &token)
        .await?
        .ok_or_else(link_not_valid)?;
    let mut tx = pool.begin().await?;
    let (subject, saved) = take_ceremony(&mut tx, &req.ceremony, "enrol")
        .await?
        .filter(|(subject, _)| *subject == invite.id)
        .ok_or_else(ceremony_failed)?;
    let saved: EnrolState = serde_json::from_value(saved).map_err(ApiError::internal)?;
    let passkey = match state
        .webauthn
        .finish_passkey_registration(&req.credential, &saved.registration)
    {
        Ok(passkey) => passkey,
        Err(e) => {
            tracing::info!(error = %e, "admin passkey registration refused");
            // The ceremony stays consumed: a failed attempt starts again from the link.
            tx.commit().await?;
            return Err(ceremony_failed());
        }
    };
    let now = clock::now_string();
    // Single use: only the first finish marks the link used; a replay finds it used.
    let used = sqlx::query(
        "UPDATE console_admin_invites SET used_at = $1 WHERE id = $2 AND used_at IS NULL",
    )
    .bind(&now)
    .bind(&subject)
    .execute(&mut *tx)
    .await?;
    if used.rows_affected() != 1 {
        return Err(link_not_valid());
    }
    let admin_id = secret::new_id();
    sqlx::query(
        "INSERT INTO console_admins (id, email, display_name, role, user_handle, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&admin_id)
    .bind(&saved.email)
    .bind(&saved.display_name)
    .bind(invite.role.as_str())
    .bind(&saved.user_handle)
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    store_passkey(&mut tx, &admin_id, &passkey, &now).await?;
    audit::append(
        &mut tx,
        &format!("admin:{}", saved.email),
        "console.admin.enrol",
        &admin_id,
        serde_json::json!({ "email": saved.email, "role": invite.role.as_str(), "link": subject }),
    )
    .await?;
    let cookie = session::start(&mut tx, state.cookies, &admin_id).await?;
    tx.commit().await?;
    Ok(signed_in(cookie))
}

async fn store_passkey(
    conn: &mut AnyConnection,
    admin_id: &str,
    passkey: &Passkey,
    now: &str,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO console_passkeys (cred_id, admin_id, passkey_json, created_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(hex::encode(passkey.cred_id().as_ref() as &[u8]))
    .bind(admin_id)
    .bind(serde_json::to_string(passkey).map_err(ApiError::internal)?)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

// ---- sign-in: e-mail address, then the passkey ----

pub async fn sign_in_page(State(state): State<Shared>) -> Result<Response, ConsoleError> {
    Ok(Html(views::sign_in(&state)?).into_response())
}

#[derive(Deserialize)]
pub struct SignInStart {
    email: String,
}

async fn passkeys_of(conn: &mut AnyConnection, admin_id: &str) -> Result<Vec<Passkey>, ApiError> {
    let rows = sqlx::query("SELECT passkey_json FROM console_passkeys WHERE admin_id = $1")
        .bind(admin_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            let json: String = r.try_get(0)?;
            serde_json::from_str(&json).map_err(ApiError::internal)
        })
        .collect()
}

pub async fn sign_in_start(
    State(state): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    payload: Result<Json<SignInStart>, JsonRejection>,
) -> Result<Response, ApiError> {
    let ip = addr.ip();
    if !state.app.auth_fail_limit.allows(ip) {
        return Err(ApiError::rate_limited());
    }
    let req = json_body(payload)?;
    let pool = &state.app.pool;
    let admin = sqlx::query("SELECT id FROM console_admins WHERE email = $1")
        .bind(req.email.trim())
        .fetch_optional(pool)
        .await?;
    let mut conn = pool.acquire().await?;
    let (admin_id, passkeys) = match admin {
        Some(row) => {
            let id: String = row.try_get(0)?;
            let passkeys = passkeys_of(&mut conn, &id).await?;
            (id, passkeys)
        }
        None => (String::new(), Vec::new()),
    };
    drop(conn);
    if passkeys.is_empty() {
        state.app.auth_fail_limit.take(ip);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown_admin",
            "no console admin with a passkey has this e-mail address",
        ));
    }
    let (options, authentication) = state
        .webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(ApiError::internal)?;
    let ceremony = save_ceremony(
        pool,
        "sign_in",
        &admin_id,
        serde_json::json!({ "authentication": authentication }),
    )
    .await?;
    Ok(Json(Started {
        ceremony: ceremony.to_string(),
        options,
    })
    .into_response())
}

#[derive(Deserialize)]
pub struct SignInFinish {
    ceremony: String,
    credential: PublicKeyCredential,
}

#[derive(Deserialize)]
struct SignInState {
    authentication: PasskeyAuthentication,
}

pub async fn sign_in_finish(
    State(state): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    payload: Result<Json<SignInFinish>, JsonRejection>,
) -> Result<Response, ApiError> {
    let ip = addr.ip();
    if !state.app.auth_fail_limit.allows(ip) {
        return Err(ApiError::rate_limited());
    }
    let req = json_body(payload)?;
    let mut tx = state.app.pool.begin().await?;
    let Some((admin_id, saved)) = take_ceremony(&mut tx, &req.ceremony, "sign_in").await? else {
        state.app.auth_fail_limit.take(ip);
        return Err(ceremony_failed());
    };
    let saved: SignInState = serde_json::from_value(saved).map_err(ApiError::internal)?;
    let result = match state
        .webauthn
        .finish_passkey_authentication(&req.credential, &saved.authentication)
    {
        Ok(result) => result,
        Err(e) => {
            tracing::info!(error = %e, "admin sign-in refused");
            tx.commit().await?;
            state.app.auth_fail_limit.take(ip);
            return Err(ceremony_failed());
        }
    };
    let now = clock::now_string();
    let cred_id = hex::encode(result.cred_id().as_ref() as &[u8]);
    // The signature counter and backup state move on with each use (WebAuthn §6.1.1).
    for mut passkey in passkeys_of(&mut tx, &admin_id).await? {
        if passkey.update_credential(&result).is_some() {
            sqlx::query(
                "UPDATE console_passkeys SET passkey_json = $1, last_used_at = $2 \
                 WHERE cred_id = $3",
            )
            .bind(serde_json::to_string(&passkey).map_err(ApiError::internal)?)
            .bind(&now)
            .bind(&cred_id)
            .execute(&mut *tx)
            .await?;
        }
    }
    let email: String = sqlx::query("SELECT email FROM console_admins WHERE id = $1")
        .bind(&admin_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    audit::append(
        &mut tx,
        &format!("admin:{email}"),
        "console.sign_in",
        &admin_id,
        serde_json::json!({}),
    )
    .await?;
    let cookie = session::start(&mut tx, state.cookies, &admin_id).await?;
    tx.commit().await?;
    Ok(signed_in(cookie))
}
