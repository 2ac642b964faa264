//! The keys page's actions: suspend, resume and revoke a key (revoke after a confirmation
//! page that asks for the reason). Each goes through the same status change as the REST
//! API's (`lifecycle::change_key`), with the admin as the actor; auditors may not.

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use sqlx::Row;

use super::error::ConsoleError;
use super::forms::Post;
use super::session::Session;
use super::{views, Shared};
use crate::lifecycle::{self, Action, Cause, Change};

#[derive(Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    reason: String,
}

/// Who a key belongs to and its status, for the confirmation page.
pub struct KeySummary {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub status: String,
}

async fn act(
    state: &Shared,
    session: &Session,
    id: &str,
    form: ReasonForm,
    action: Action,
) -> Result<(), ConsoleError> {
    session.require(session.role.manages_keys())?;
    // A blank field is no reason (optional for suspend and resume, required to revoke).
    let reason = Some(form.reason.trim().to_string()).filter(|r| !r.is_empty());
    let reason = lifecycle::check_reason(reason, action)?;
    let actor = session.actor();
    let mut tx = state.app.pool.begin().await?;
    lifecycle::change_key(
        &mut tx,
        id,
        &Change {
            action,
            actor: &actor,
            reason: reason.as_deref(),
            cause: Cause::Admin,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn suspend(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Post { session, form }: Post<ReasonForm>,
) -> Result<Response, ConsoleError> {
    act(&state, &session, &id, form, Action::Suspend).await?;
    Ok(Redirect::to("/console/keys?notice=suspended").into_response())
}

pub async fn resume(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Post { session, form }: Post<ReasonForm>,
) -> Result<Response, ConsoleError> {
    act(&state, &session, &id, form, Action::Resume).await?;
    Ok(Redirect::to("/console/keys?notice=resumed").into_response())
}

pub async fn revoke(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Post { session, form }: Post<ReasonForm>,
) -> Result<Response, ConsoleError> {
    act(&state, &session, &id, form, Action::Revoke).await?;
    Ok(Redirect::to("/console/keys?notice=key-revoked").into_response())
}

/// `GET`: the page that asks for the reason and confirms a revocation (it cannot be undone).
pub async fn confirm_revoke(
    State(state): State<Shared>,
    Path(id): Path<String>,
    session: Session,
) -> Result<Response, ConsoleError> {
    session.require(session.role.manages_keys())?;
    let row = sqlx::query("SELECT id, email, display_name, status FROM keys WHERE id = $1")
        .bind(&id)
        .fetch_optional(&state.app.pool)
        .await?
        .ok_or_else(|| {
            ConsoleError::Status(axum::http::StatusCode::NOT_FOUND, "No such key.".into())
        })?;
    let key = KeySummary {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        display_name: row.try_get(2)?,
        status: row.try_get(3)?,
    };
    Ok(Html(views::confirm_revoke(&state, &session, &key)?).into_response())
}
