//! Console administrators: the one-time links that let a person register an admin passkey
//! (printed by `init` for the first owner, made by an owner in the console for the others),
//! and the owners' page that lists admins and makes those links.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use sqlx::{AnyPool, Row};
use zeroize::Zeroizing;

use super::error::ConsoleError;
use super::forms::Post;
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
    pub email: String,
    pub display_name: String,
    pub role: &'static str,
    pub created_at: String,
}

async fn list(pool: &AnyPool) -> Result<Vec<AdminRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT email, display_name, role, created_at FROM console_admins ORDER BY created_at",
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
            })
        })
        .collect()
}

pub async fn page(State(state): State<Shared>, session: Session) -> Result<Response, ConsoleError> {
    session.require(session.role.is_owner())?;
    let admins = list(&state.app.pool).await?;
    Ok(Html(views::admins(&state, &session, &admins, None)?).into_response())
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
    Ok(Html(views::admins(&state, &session, &admins, Some(&link))?).into_response())
}
