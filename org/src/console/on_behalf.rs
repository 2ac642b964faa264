//! A user's page and registering one of their keys with an account on their behalf
//! (docs/org.md, "Registering on the user's behalf"). The admin pastes the relying party's
//! creation options (Graph's creationOptions answer); the registration is started and read
//! by the same functions as the REST API's (`registrations::start`, `registrations::load`).
//! The registration's page polls its JSON status until the phone answers, then shows the
//! Graph body to copy.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use sqlx::Row;

use super::error::ConsoleError;
use super::forms::Post;
use super::session::Session;
use super::{views, Shared};
use crate::registrations::{self, NewRegistration, Registration};

/// The origin Microsoft Entra ID's passkeys are registered for, the form's default.
pub const DEFAULT_ORIGIN: &str = "https://login.microsoft.com";

/// One of the user's keys, as their page lists it.
pub struct UserKey {
    pub id: String,
    pub status: String,
    pub device_name: Option<String>,
    pub activated_at: Option<String>,
    pub last_seen_at: Option<String>,
    pub last_wake: Option<crate::api::LastWake>,
}

/// A registration started for one of the user's keys.
pub struct UserRegistration {
    pub id: String,
    pub rp_id: String,
    pub status: String,
    pub created_at: String,
}

pub struct UserPage {
    pub email: String,
    pub display_name: String,
    pub keys: Vec<UserKey>,
    pub registrations: Vec<UserRegistration>,
}

fn no_such_key() -> ConsoleError {
    ConsoleError::Status(StatusCode::NOT_FOUND, "No such key.".into())
}

/// `GET /console/keys/{id}`: the page of the user the key belongs to, with all their keys
/// (same e-mail address) and the registrations made for them, newest first.
pub async fn user_page(
    State(state): State<Shared>,
    Path(id): Path<String>,
    session: Session,
) -> Result<Response, ConsoleError> {
    let pool = &state.app.pool;
    let row = sqlx::query("SELECT email, display_name FROM keys WHERE id = $1")
        .bind(&id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(no_such_key)?;
    let (email, display_name): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    let keys = sqlx::query(
        "SELECT id, status, device_name, activated_at, last_seen_at, last_wake_at, \
         last_wake_outcome, last_wake_refusal FROM keys WHERE email = $1 ORDER BY created_at, id",
    )
    .bind(&email)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(UserKey {
            id: r.try_get(0)?,
            status: r.try_get(1)?,
            device_name: r.try_get(2)?,
            activated_at: r.try_get(3)?,
            last_seen_at: r.try_get(4)?,
            last_wake: crate::api::LastWake::from_columns(r, 5)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let registrations = sqlx::query(
        "SELECT r.id, r.rp_id, r.status, r.created_at, r.expires_at \
         FROM registrations r JOIN keys k ON k.id = r.key_id WHERE k.email = $1 \
         ORDER BY r.created_at DESC, r.id LIMIT 50",
    )
    .bind(&email)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        let expires_at: String = r.try_get(4)?;
        Ok(UserRegistration {
            id: r.try_get(0)?,
            rp_id: r.try_get(1)?,
            status: registrations::effective_status(r.try_get(2)?, &expires_at),
            created_at: r.try_get(3)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let page = UserPage {
        email,
        display_name,
        keys,
        registrations,
    };
    Ok(Html(views::user(&state, &session, &page)?).into_response())
}

#[derive(Deserialize)]
pub struct RegisterForm {
    /// The relying party's creation options as pasted: JSON text.
    #[serde(default)]
    creation_options: String,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    display_name: String,
    /// The Graph user the server posts the result to (blank: it does not post).
    #[serde(default)]
    graph_user: String,
}

/// `POST /console/keys/{id}/registrations`: starts a registration (owner and key
/// administrator), then shows its page.
pub async fn start(
    State(state): State<Shared>,
    Path(key_id): Path<String>,
    Post { session, form }: Post<RegisterForm>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.manages_keys())?;
    let creation_options = serde_json::from_str(form.creation_options.trim()).map_err(|e| {
        ConsoleError::bad_request(format!(
            "the creation options are not JSON ({e}); paste the relying party's answer as it came"
        ))
    })?;
    let created = registrations::start(
        &state.app,
        &session.actor(),
        &key_id,
        NewRegistration {
            creation_options,
            origin: form.origin.trim().to_string(),
            display_name: form.display_name.trim().to_string(),
            graph_user: Some(form.graph_user.trim().to_string()).filter(|u| !u.is_empty()),
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/console/registrations/{}", created.id)).into_response())
}

/// `GET /console/registrations/{id}`: the registration's status, watched by the page's
/// script while it is pending; the Graph body once completed. Every role may look.
pub async fn page(
    State(state): State<Shared>,
    Path(id): Path<String>,
    session: Session,
) -> Result<Response, ConsoleError> {
    let registration = registrations::load(&state.app.pool, id).await?;
    let graph_body = graph_body_text(&registration)?;
    Ok(Html(views::registration(
        &state,
        &session,
        &registration,
        graph_body.as_deref(),
    )?)
    .into_response())
}

/// `GET /console/registrations/{id}/status`: what the page polls, the REST API's answer.
pub async fn status(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _session: Session,
) -> Result<Json<Registration>, ConsoleError> {
    Ok(Json(registrations::load(&state.app.pool, id).await?))
}

/// The Graph body, indented for reading and copying.
fn graph_body_text(r: &Registration) -> Result<Option<String>, ConsoleError> {
    r.graph_body
        .as_ref()
        .map(|b| serde_json::to_string_pretty(b).map_err(ConsoleError::internal))
        .transpose()
}
