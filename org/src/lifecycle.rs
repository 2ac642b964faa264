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
use sqlx::{AnyConnection, Row};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
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
    pub fn target(self) -> &'static str {
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

/// Who caused a status change, kept in `keys.status_cause`: SCIM reactivation resumes only
/// the keys whose last change was the directory's suspension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// An admin, through the REST API or the console.
    Admin,
    /// The directory, over SCIM (a user deactivated or deleted, or reactivated).
    Directory,
    /// The stale-key policy.
    Policy,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Admin => "admin",
            Cause::Directory => "directory",
            Cause::Policy => "policy",
        }
    }
}

/// One status change of one key, as the audit log records it.
pub struct Change<'a> {
    pub action: Action,
    /// How the audit log names who asked (`admin:<e-mail>`, `api-key:<name>`, `policy:stale`).
    pub actor: &'a str,
    pub reason: Option<&'a str>,
    pub cause: Cause,
}

/// `reason` checked: 1 to [`MAX_REASON`] characters, no control characters, not blank;
/// required to revoke. The REST API and the console both check it here.
pub fn check_reason(reason: Option<String>, action: Action) -> Result<Option<String>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_reason",
            format!("reason must be 1 to {MAX_REASON} characters without control characters"),
        )
    };
    match reason {
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

/// The reason from an optional JSON body (`{}` or empty for none).
fn reason(body: &Bytes, action: Action) -> Result<Option<String>, ApiError> {
    let parsed: ReasonBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReasonBody::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?
    };
    check_reason(parsed.reason, action)
}

fn changed_meanwhile() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "invalid_transition",
        "the key changed meanwhile; read it again",
    )
}

/// Changes key `id`'s status in the caller's transaction and audits it; the REST API, the
/// console and SCIM all change a key through here. Returns the status it had. An unknown key
/// is `404`, a transition the status does not allow `409 invalid_transition`; either way
/// nothing is written.
pub async fn change_key(
    conn: &mut AnyConnection,
    id: &str,
    change: &Change<'_>,
) -> Result<String, ApiError> {
    let status: String = sqlx::query("SELECT status FROM keys WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ApiError::not_found("no such key"))?
        .try_get(0)?;
    if !change.action.allowed_from(&status) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_transition",
            format!("a {status} key cannot become {}", change.action.target()),
        ));
    }
    if !write(conn, id, &status, change, None).await? {
        return Err(changed_meanwhile());
    }
    Ok(status)
}

/// The one `UPDATE` of a key's status, and its audit entry. It applies only while the key's
/// status is still `from` (and, with `seen_before`, while it was last seen before that time),
/// so two requests or two server nodes racing cannot both apply it. Returns whether it did.
async fn write(
    conn: &mut AnyConnection,
    id: &str,
    from: &str,
    change: &Change<'_>,
    seen_before: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let now = clock::now_string();
    let updated = sqlx::query(
        "UPDATE keys SET status = $1, status_reason = $2, status_actor = $3, \
         status_changed_at = $4, status_cause = $5 WHERE id = $6 AND status = $7 \
         AND ($8 IS NULL OR COALESCE(last_seen_at, activated_at, created_at) < $8)",
    )
    .bind(change.action.target())
    .bind(change.reason)
    .bind(change.actor)
    .bind(&now)
    .bind(change.cause.as_str())
    .bind(id)
    .bind(from)
    .bind(seen_before)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(false);
    }
    // The phone learns of the change at its next sync; a wake-up makes that now.
    crate::wake::owe(&mut *conn, id, crate::wake::Cause::KeyStatus).await?;
    audit::append(
        conn,
        change.actor,
        change.action.audit_name(),
        id,
        serde_json::json!({ "from": from, "reason": change.reason, "cause": change.cause.as_str() }),
    )
    .await?;
    Ok(true)
}

/// Suspends key `id` for the stale-key policy if it is still active and was last seen (or
/// else activated) before `cutoff`. Returns whether it did.
pub async fn suspend_if_unseen(
    conn: &mut AnyConnection,
    id: &str,
    cutoff: &str,
    change: &Change<'_>,
) -> Result<bool, sqlx::Error> {
    write(conn, id, "active", change, Some(cutoff)).await
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
    change_key(
        &mut tx,
        &id,
        &Change {
            action,
            actor: &admin.actor,
            reason: reason.as_deref(),
            cause: Cause::Admin,
        },
    )
    .await?;
    tx.commit().await?;
    state.wake.committed();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_required_to_revoke_and_checked_when_given() {
        assert!(check_reason(None, Action::Revoke).is_err());
        assert_eq!(check_reason(None, Action::Suspend).unwrap(), None);
        for bad in ["", "   ", "line\nbreak", &"x".repeat(MAX_REASON + 1)] {
            assert!(
                check_reason(Some(bad.to_string()), Action::Suspend).is_err(),
                "{bad:?}"
            );
        }
        let ok = "é".repeat(MAX_REASON); // counted in characters, not bytes
        assert_eq!(
            check_reason(Some(ok.clone()), Action::Revoke).unwrap(),
            Some(ok)
        );
    }

    /// The conditional update that lets several nodes apply the stale-key policy: the second
    /// attempt on a key, and any attempt on a key seen since the cutoff, changes nothing.
    #[tokio::test]
    async fn the_stale_suspension_applies_once_and_never_to_a_key_seen_since() {
        use crate::state::{self, Database, Open};
        let dir = tempfile::tempdir().unwrap();
        let db = Database::Sqlite(dir.path().join("org.db"));
        let pool = state::connect(&db, Open::Create).await.unwrap();
        for (id, seen) in [
            ("old", "2026-01-01T00:00:00Z"),
            ("seen", "2026-03-01T00:00:00Z"),
        ] {
            sqlx::query(
                "INSERT INTO keys (id, email, display_name, status, created_at, last_seen_at) \
                 VALUES ($1, 'a@acme.example', 'A', 'active', '2025-01-01T00:00:00Z', $2)",
            )
            .bind(id)
            .bind(seen)
            .execute(&pool)
            .await
            .unwrap();
        }
        let change = Change {
            action: Action::Suspend,
            actor: "policy:stale",
            reason: Some("stale"),
            cause: Cause::Policy,
        };
        let cutoff = "2026-02-01T00:00:00Z";
        let mut conn = pool.acquire().await.unwrap();
        for (id, applies) in [
            ("old", true),
            ("old", false),  // another node, later: already suspended
            ("seen", false), // signed in after the cutoff
        ] {
            let done = suspend_if_unseen(&mut conn, id, cutoff, &change).await;
            assert_eq!(done.unwrap(), applies, "{id}");
        }
        drop(conn);
        let audited: Vec<String> =
            sqlx::query("SELECT subject FROM audit WHERE action = 'key.suspend'")
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get(0).unwrap())
                .collect();
        assert_eq!(audited, ["old"]);
        let seen: String = sqlx::query("SELECT status FROM keys WHERE id = 'seen'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        assert_eq!(seen, "active");
    }

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        assert!(Action::Revoke.allowed_from("invited"));
        assert!(Action::Revoke.allowed_from("suspended"));
        assert!(!Action::Revoke.allowed_from("revoked"));
        assert!(Action::Suspend.allowed_from("active"));
        assert!(!Action::Suspend.allowed_from("invited"));
        assert!(Action::Resume.allowed_from("suspended"));
        assert!(!Action::Resume.allowed_from("revoked"));
    }
}
