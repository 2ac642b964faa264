//! Device authentication and sync (docs/org.md, "Device authentication"): a phone proves it
//! holds the device key it activated with by signing a single-use challenge.
//!
//! `POST /api/v1/device/challenge {"key_id"}` → `{"nonce", "expires_at"}`: 256 random bits,
//! stored in `device_nonces` (any server node can check the answer), valid
//! [`NONCE_MINUTES`]. `POST /api/v1/device/sync {"key_id", "nonce", "signature"}`: the nonce
//! is deleted first (single use, even when the signature then fails), then the signature
//! over `org_protocol::sync_signed_bytes` is checked with the stored device key. The answer is
//! the key's status (with the reason when suspended or revoked), the organisation's name and
//! policy, and the jobs waiting for the phone (registrations on the user's behalf). `last_seen_at` is updated.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use pocketkey_core::org_protocol;
use sqlx::Row;

use crate::activation::check_signature;
use crate::api::AppState;
use crate::error::ApiError;
use crate::{clock, policy, secret};

/// How long a challenge may be answered.
pub const NONCE_MINUTES: i64 = 5;
/// Challenges one key may have outstanding; more are refused until some expire.
pub const MAX_OUTSTANDING: i64 = 8;

pub use pocketkey_core::org_protocol::wire::{
    Challenge, ChallengeRequest, SyncAnswer, SyncRequest,
};

fn unknown_device() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unknown_device",
        "no activated key has this id",
    )
}

pub(crate) fn challenge_invalid() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "challenge_invalid",
        "the challenge is unknown, used or expired; ask for a new one",
    )
}

pub async fn challenge(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    payload: Result<Json<ChallengeRequest>, JsonRejection>,
) -> Result<Json<Challenge>, ApiError> {
    if !state.activate_limit.take(addr.ip()) {
        return Err(ApiError::rate_limited());
    }
    let req = crate::api::body(payload)?;
    let mut tx = state.pool.begin().await?;
    sqlx::query("SELECT key_id FROM devices WHERE key_id = $1")
        .bind(&req.key_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(unknown_device)?;
    let now = clock::now_string();
    sqlx::query("DELETE FROM device_nonces WHERE key_id = $1 AND expires_at <= $2")
        .bind(&req.key_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    let outstanding: i64 = sqlx::query("SELECT COUNT(*) FROM device_nonces WHERE key_id = $1")
        .bind(&req.key_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    if outstanding >= MAX_OUTSTANDING {
        return Err(ApiError::rate_limited());
    }
    let nonce = secret::new_secret().to_string();
    let expires_at = clock::format(clock::now() + time::Duration::minutes(NONCE_MINUTES));
    sqlx::query("INSERT INTO device_nonces (nonce, key_id, expires_at) VALUES ($1, $2, $3)")
        .bind(&nonce)
        .bind(&req.key_id)
        .bind(&expires_at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(Challenge { nonce, expires_at }))
}

/// The device a challenge–response authenticates: its key's status and status reason.
pub struct AuthenticatedDevice {
    pub status: String,
    pub reason: Option<String>,
}

/// Checks that `key_id`'s device key signed `signed` (built from the nonce) with `signature`
/// (base64 DER), over a nonce this server gave it. The nonce is spent first, whatever
/// follows: an answer is tried once. Sync and the registration results authenticate here.
pub async fn authenticate(
    state: &AppState,
    key_id: &str,
    nonce: &str,
    signature: &str,
    signed: &[u8],
) -> Result<AuthenticatedDevice, ApiError> {
    let signature = B64
        .decode(signature)
        .map_err(|_| ApiError::bad_request("invalid_request", "signature is not base64"))?;
    let mut tx = state.pool.begin().await?;
    let spent = sqlx::query(
        "DELETE FROM device_nonces WHERE nonce = $1 AND key_id = $2 RETURNING expires_at",
    )
    .bind(nonce)
    .bind(key_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let expires_at: String = spent.ok_or_else(challenge_invalid)?.try_get(0)?;
    if clock::parse(&expires_at).is_none_or(|t| t <= clock::now()) {
        return Err(challenge_invalid());
    }
    let row = sqlx::query(
        "SELECT d.public_key, k.status, k.status_reason FROM devices d \
         JOIN keys k ON k.id = d.key_id WHERE d.key_id = $1",
    )
    .bind(key_id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(unknown_device)?;
    let (public_key, status, reason): (String, String, Option<String>) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    let public_key = hex::decode(public_key).map_err(ApiError::internal)?;
    check_signature(&public_key, signed, &signature)?;
    sqlx::query("UPDATE keys SET last_seen_at = $1 WHERE id = $2")
        .bind(clock::now_string())
        .bind(key_id)
        .execute(&state.pool)
        .await?;
    Ok(AuthenticatedDevice { status, reason })
}

pub async fn sync(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    payload: Result<Json<SyncRequest>, JsonRejection>,
) -> Result<Json<SyncAnswer>, ApiError> {
    if !state.activate_limit.take(addr.ip()) {
        return Err(ApiError::rate_limited());
    }
    let req = crate::api::body(payload)?;
    let device = authenticate(
        &state,
        &req.key_id,
        &req.nonce,
        &req.signature,
        &org_protocol::sync_signed_bytes(&req.key_id, &req.nonce),
    )
    .await?;
    let policy = policy::load(&state.pool)
        .await
        .map_err(ApiError::internal)?;
    // Only an active key is given work; a suspended one gets its jobs when resumed.
    let jobs = if device.status == "active" {
        crate::registrations::pending_jobs(&state.pool, &req.key_id).await?
    } else {
        Vec::new()
    };
    Ok(Json(SyncAnswer {
        org_name: state.org.name.clone(),
        status: device.status,
        reason: device.reason,
        policy,
        jobs,
    }))
}
