//! A key's lifecycle after activation: the admin's revoke, suspend and resume
//! (`POST /api/v1/keys/{id}/revoke|suspend|resume`), each audited with its reason and actor.
//!
//! Transitions: `invited | active | suspended → revoked` (final; a revoked invite's link
//! answers `key_revoked`), `active → suspended`, `suspended → active`. Anything else is
//! `409 invalid_transition` and changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::api::{Admin, AppState};
use crate::error::ApiError;
use crate::{audit, clock};

/// Longest reason kept, in characters.
const MAX_REASON: usize = 256;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    reason: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusChanged {
    id: String,
    status: &'static str,
}

#[derive(Clone, Copy)]
enum Action {
    Revoke,
    Suspend,
    Resume,
}

impl Action {
    fn audit_name(self) -> &'static str {
        match self {
            Action::Revoke => "key.revoke",
            Action::Suspend => "key.suspend",
            Action::Resume => "key.resume",
        }
    }
    fn target(self) -> &'static str {
        match self {
            Action::Revoke => "revoked",
            Action::Suspend => "suspended",
            Action::Resume => "active",
        }
    }
    fn allowed_from(self, status: &str) -> bool {
        match self {
            Action::Revoke => matches!(status, "invited" | "active" | "suspended"),
            Action::Suspend => status == "active",
            Action::Resume => status == "suspended",
        }
    }
}

/// The reason from an optional JSON body (`{}` or empty for none); required to revoke.
fn reason(body: &Bytes, action: Action) -> Result<Option<String>, ApiError> {
    let parsed: ReasonBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReasonBody::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?
    };
    let bad = || {
        ApiError::bad_request(
            "invalid_reason",
            format!("reason must be 1 to {MAX_REASON} characters without control characters"),
        )
    };
    match parsed.reason {
        Some(r) => {
            let n = r.chars().count();
            if n == 0 || n > MAX_REASON || r.chars().any(char::is_control) || r.trim().is_empty() {
                return Err(bad());
            }
            Ok(Some(r))
        }
        None if matches!(action, Action::Revoke) => Err(bad()),
        None => Ok(None),
    }
}

async fn change(
    state: &AppState,
    admin: Admin,
    id: String,
    body: Bytes,
    action: Action,
) -> Result<Json<StatusChanged>, ApiError> {
    let reason = reason(&body, action)?;
    let mut tx = state.pool.begin().await?;
    let status: String = sqlx::query("SELECT status FROM keys WHERE id = $1")
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("no such key"))?
        .try_get(0)?;
    if !action.allowed_from(&status) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_transition",
            format!("a {status} key cannot become {}", action.target()),
        ));
    }
    let now = clock::now_string();
    // The status is checked again in the update, so a racing change cannot be overwritten.
    let updated = sqlx::query(
        "UPDATE keys SET status = $1, status_reason = $2, status_actor = $3, \
         status_changed_at = $4 WHERE id = $5 AND status = $6",
    )
    .bind(action.target())
    .bind(&reason)
    .bind(&admin.actor)
    .bind(&now)
    .bind(&id)
    .bind(&status)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_transition",
            "the key changed meanwhile; read it again",
        ));
    }
    audit::append(
        &mut tx,
        &admin.actor,
        action.audit_name(),
        &id,
        serde_json::json!({ "from": status, "reason": reason }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(StatusChanged {
        id,
        status: action.target(),
    }))
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<StatusChanged>, ApiError> {
    change(&state, admin, id, body, Action::Revoke).await
}

pub async fn suspend(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<StatusChanged>, ApiError> {
    change(&state, admin, id, body, Action::Suspend).await
}

pub async fn resume(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<StatusChanged>, ApiError> {
    change(&state, admin, id, body, Action::Resume).await
}
