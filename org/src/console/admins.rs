//! Console administrators: the one-time links that let a person register an admin passkey
//! (printed by `init` for the first owner, made by an owner in the console for the others),
//! and the owners' page that lists admins and makes those links.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use sqlx::{AnyPool, Row};
use zeroize::Zeroizing;

use super::error::ConsoleError;
use super::forms::{Csrf, Post};
use super::pages::NoticeQuery;
use super::session::{Role, Session};
use super::{views, Shared};
use crate::{api, audit, clock, secret};

/// How long a one-time admin link works.
pub const ADMIN_LINK_HOURS: i64 = 24;

/// Makes a one-time link token for a new admin with `role` (for `email`, or for whoever opens
/// it and gives their address, as `init`'s link does). Only the token's hash is stored.
/// `actor` is audited; `None` for `init`'s own link, which belongs to the `org.init` entry
/// (its use is audited as `console.admin.enrol`).
pub async fn create_admin_link(
    pool: &AnyPool,
    role: Role,
    email: Option<&str>,
    actor: Option<&str>,
) -> Result<Zeroizing<String>, sqlx::Error> {
    let token = secret::new_secret();
    let id = secret::new_id();
    let expires_at = clock::format(clock::now() + time::Duration::hours(ADMIN_LINK_HOURS));
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO console_admin_invites (id, token_hash, email, role, created_by, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(secret::hash_secret(&token))
    .bind(email)
    .bind(role.as_str())
    .bind(actor.unwrap_or(crate::org::CLI_ACTOR))
    .bind(clock::now_string())
    .bind(&expires_at)
    .execute(&mut *tx)
    .await?;
    if let Some(actor) = actor {
        audit::append(
            &mut tx,
            actor,
            "console.admin_link.create",
            &id,
            serde_json::json!({ "email": email, "role": role.as_str(), "expires_at": expires_at }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(token)
}

pub struct AdminRow {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: &'static str,
    pub created_at: String,
}

async fn list(pool: &AnyPool) -> Result<Vec<AdminRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT email, display_name, role, created_at, id FROM console_admins \
         ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get(2)?;
            Ok(AdminRow {
                email: r.try_get(0)?,
                display_name: r.try_get(1)?,
                role: Role::parse(&role).map_or("?", Role::label),
                created_at: r.try_get(3)?,
                id: r.try_get(4)?,
            })
        })
        .collect()
}

pub async fn page(
    State(state): State<Shared>,
    session: Session,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.is_owner())?;
    let admins = list(&state.app.pool).await?;
    let notice = match q.notice.as_deref() {
        Some("role-changed") => Some("Role changed."),
        Some("removed") => Some("Admin removed; their sessions ended."),
        _ => None,
    };
    Ok(Html(views::admins(&state, &session, &admins, None, notice)?).into_response())
}

#[derive(Deserialize)]
pub struct NewAdmin {
    email: String,
    role: String,
}

pub async fn invite(
    State(state): State<Shared>,
    Post { session, form }: Post<NewAdmin>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.is_owner())?;
    let email = api::parse_email(form.email.trim())?.to_string();
    let role = Role::parse(&form.role).ok_or_else(|| ConsoleError::bad_request("unknown role"))?;
    let token =
        create_admin_link(&state.app.pool, role, Some(&email), Some(&session.actor())).await?;
    let link = Zeroizing::new(format!("{}{}", state.app.public_url, super::ENROL_PREFIX) + &token);
    let admins = list(&state.app.pool).await?;
    Ok(Html(views::admins(&state, &session, &admins, Some(&link), None)?).into_response())
}

/// The condition that keeps one owner: the admin is not an owner, or another owner remains.
/// Run after `audit::append` in the same transaction: on PostgreSQL that append queues every
/// audited change on one lock, so two owners demoting each other at once are taken in turn.
const NOT_THE_LAST_OWNER: &str = "(role <> 'owner' OR \
     (SELECT COUNT(*) FROM console_admins WHERE role = 'owner') > 1)";

fn last_owner() -> ConsoleError {
    ConsoleError::Status(
        StatusCode::CONFLICT,
        "The console needs an owner: make another admin an owner first; nothing was changed."
            .into(),
    )
}

fn no_such_admin() -> ConsoleError {
    ConsoleError::Status(StatusCode::NOT_FOUND, "No such admin.".into())
}

/// The admin's e-mail address and role.
async fn admin(conn: &mut sqlx::AnyConnection, id: &str) -> Result<(String, String), ConsoleError> {
    let row = sqlx::query("SELECT email, role FROM console_admins WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(no_such_admin)?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

/// `POST /console/admins/{id}/role` (owners): another role for an admin, never leaving the
/// console without an owner; audited as `console.admin.role`.
pub async fn change_role(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Post { session, form }: Post<RoleForm>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.is_owner())?;
    let role = Role::parse(&form.role).ok_or_else(|| ConsoleError::bad_request("unknown role"))?;
    let mut tx = state.app.pool.begin().await?;
    let (email, from) = admin(&mut tx, &id).await?;
    audit::append(
        &mut tx,
        &session.actor(),
        "console.admin.role",
        &id,
        serde_json::json!({ "email": email, "from": from, "to": role.as_str() }),
    )
    .await?;
    let guard = if role == Role::Owner {
        "1 = 1"
    } else {
        NOT_THE_LAST_OWNER
    };
    let updated = sqlx::query(&format!(
        "UPDATE console_admins SET role = $1 WHERE id = $2 AND {guard}"
    ))
    .bind(role.as_str())
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(last_owner()); // the transaction, audit entry included, rolls back
    }
    tx.commit().await?;
    Ok(Redirect::to("/console/admins?notice=role-changed").into_response())
}

/// `POST /console/admins/{id}/remove` (owners): the admin, their passkeys and sessions go
/// (they are signed out at once), never the last owner; audited as `console.admin.remove`.
pub async fn remove(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Post { session, .. }: Post<Csrf>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.is_owner())?;
    let mut tx = state.app.pool.begin().await?;
    let (email, role) = admin(&mut tx, &id).await?;
    audit::append(
        &mut tx,
        &session.actor(),
        "console.admin.remove",
        &id,
        serde_json::json!({ "email": email, "role": role }),
    )
    .await?;
    let keeps_an_owner = sqlx::query(&format!(
        "SELECT COUNT(*) FROM console_admins WHERE id = $1 AND {NOT_THE_LAST_OWNER}"
    ))
    .bind(&id)
    .fetch_one(&mut *tx)
    .await?
    .try_get::<i64, _>(0)?
        == 1;
    if !keeps_an_owner {
        return Err(last_owner()); // the transaction, audit entry included, rolls back
    }
    // Sessions and passkeys reference the admin: they go first.
    for table in ["console_sessions", "console_passkeys"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE admin_id = $1"))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM console_admins WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Redirect::to("/console/admins?notice=removed").into_response())
}
