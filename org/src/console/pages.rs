//! The console's pages: keys and users, audit log, API keys, attestation root.
//! Each action calls the same function the REST API does, with the admin as the actor.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use sqlx::Row;

use super::error::ConsoleError;
use super::forms::{Csrf, Post};
use super::session::Session;
use super::{audit_log, keys_list, views, Shared};
use crate::{api, audit, clock, org};

pub async fn home(_session: Session) -> Redirect {
    Redirect::to("/console/keys")
}

/// Notices a page shows after an action; chosen from this list, never echoed from the URL.
fn notice(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "invited" => Some("Invitation sent."),
        "resent" => Some("Invitation sent again; the previous link no longer works."),
        "revoked" => Some("API key revoked."),
        "suspended" => Some("Key suspended."),
        "resumed" => Some("Key resumed."),
        "key-revoked" => Some("Key revoked."),
        _ => None,
    }
}

#[derive(Deserialize, Default)]
pub struct KeyFilter {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub status: String,
    /// The stale-keys report: active keys not seen for this many days (blank: no filter).
    #[serde(default)]
    pub stale_days: String,
    pub notice: Option<String>,
    /// The page: keys after this key's id (blank: from the first).
    #[serde(default)]
    pub after: String,
    /// Keys per page (blank: the default).
    #[serde(default)]
    pub limit: String,
}

impl KeyFilter {
    /// The last-seen time before which an active key is stale, if the report is asked for.
    fn stale_before(&self) -> Result<Option<String>, ConsoleError> {
        let days = self.stale_days.trim();
        if days.is_empty() {
            return Ok(None);
        }
        let days: u16 = days
            .parse()
            .map_err(|_| ConsoleError::bad_request("days must be a whole number up to 65535"))?;
        Ok(Some(clock::format(
            clock::now() - time::Duration::days(i64::from(days)),
        )))
    }
}

pub struct KeyRow {
    pub entry: api::KeyEntry,
    /// The open invite to resend, while the key is still `invited`.
    pub invite_id: Option<String>,
}

pub async fn keys(
    State(state): State<Shared>,
    session: Session,
    Query(filter): Query<KeyFilter>,
) -> Result<Response, ConsoleError> {
    let search = filter.q.trim().to_lowercase();
    let stale_before = filter.stale_before()?;
    let limit = match filter.limit.trim() {
        "" => keys_list::PAGE,
        l => l
            .parse()
            .ok()
            .filter(|n| (1..=keys_list::PAGE_MAX).contains(n))
            .ok_or_else(|| {
                ConsoleError::bad_request(format!(
                    "limit is a whole number, 1 to {}",
                    keys_list::PAGE_MAX
                ))
            })?,
    };
    let after = Some(filter.after.trim()).filter(|a| !a.is_empty());
    let (rows, next) = keys_list::page(
        &state.app.pool,
        &keys_list::Query {
            search: &search,
            status: filter.status.trim(),
            stale_before: stale_before.as_deref(),
            after,
            limit,
        },
    )
    .await?;
    let notice = notice(filter.notice.as_deref());
    Ok(Html(views::keys(
        &state, &session, &filter, &rows, notice, next, limit,
    )?)
    .into_response())
}

#[derive(Deserialize)]
pub struct NewInvite {
    email: String,
    display_name: String,
}

pub async fn invite(
    State(state): State<Shared>,
    Post { session, form }: Post<NewInvite>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.manages_keys())?;
    api::invite_user(
        &state.app,
        &session.actor(),
        form.email.trim(),
        form.display_name.trim(),
    )
    .await?;
    Ok(Redirect::to("/console/keys?notice=invited").into_response())
}

pub async fn resend(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Post { session, .. }: Post<Csrf>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.manages_keys())?;
    api::resend(&state.app, &session.actor(), id).await?;
    Ok(Redirect::to("/console/keys?notice=resent").into_response())
}

/// Audit log filters; every one optional, all must match.
#[derive(Deserialize, Default)]
pub struct AuditFilter {
    /// Part of the actor or of the entry's details (an e-mail address, an admin).
    #[serde(default)]
    pub user: String,
    /// The relying party id in the entry's details (`rp_id`), exactly.
    #[serde(default)]
    pub rp: String,
    /// The action, or its prefix (`invite.` matches `invite.create` and `invite.resend`).
    #[serde(default)]
    pub action: String,
    /// From this time on (RFC 3339, or a date `YYYY-MM-DD`), inclusive.
    #[serde(default)]
    pub from: String,
    /// Before this time (RFC 3339, or a date: the whole day included).
    #[serde(default)]
    pub to: String,
    pub format: Option<String>,
    /// The page: entries before this sequence number (blank: from the newest).
    #[serde(default)]
    pub before: String,
    /// Entries per page (blank: the default).
    #[serde(default)]
    pub limit: String,
}

impl AuditFilter {
    fn bound(s: &str, end_of_day: bool) -> Result<Option<String>, ConsoleError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if let Some(t) = clock::parse(s) {
            return Ok(Some(clock::format(t)));
        }
        let format = time::format_description::parse_borrowed::<2>("[year]-[month]-[day]")
            .map_err(ConsoleError::internal)?;
        let day = time::Date::parse(s, &format).map_err(|_| {
            ConsoleError::bad_request("times are YYYY-MM-DD or RFC 3339 (2026-01-31T09:00:00Z)")
        })?;
        let day = if end_of_day {
            day.next_day().unwrap_or(day)
        } else {
            day
        };
        Ok(Some(clock::format(day.midnight().assume_utc())))
    }

    /// The time range's bounds, as stored times: from (inclusive), to (exclusive).
    pub fn bounds(&self) -> Result<(Option<String>, Option<String>), ConsoleError> {
        Ok((
            Self::bound(&self.from, false)?,
            Self::bound(&self.to, true)?,
        ))
    }

    /// The page asked for: before which entry, and how many.
    fn page(&self) -> Result<(Option<i64>, i64), ConsoleError> {
        let before =
            match self.before.trim() {
                "" => None,
                b => Some(b.parse().map_err(|_| {
                    ConsoleError::bad_request("before is an entry's sequence number")
                })?),
            };
        let limit = match self.limit.trim() {
            "" => audit_log::PAGE,
            l => l
                .parse()
                .ok()
                .filter(|n| (1..=audit_log::PAGE_MAX).contains(n))
                .ok_or_else(|| {
                    ConsoleError::bad_request(format!(
                        "limit is a whole number, 1 to {}",
                        audit_log::PAGE_MAX
                    ))
                })?,
        };
        Ok((before, limit))
    }

    /// The entries that match, of those given (the SQL query narrows them first).
    pub fn apply(&self, entries: Vec<audit::Entry>) -> Result<Vec<audit::Entry>, ConsoleError> {
        let (from, to) = self.bounds()?;
        let user = self.user.trim().to_lowercase();
        let (rp, action) = (self.rp.trim(), self.action.trim());
        Ok(entries
            .into_iter()
            .filter(|e| {
                user.is_empty()
                    || e.actor.to_lowercase().contains(&user)
                    || e.detail.to_lowercase().contains(&user)
            })
            .filter(|e| {
                rp.is_empty()
                    || serde_json::from_str::<serde_json::Value>(&e.detail)
                        .ok()
                        .and_then(|d| d.get("rp_id").and_then(|v| v.as_str()).map(|v| v == rp))
                        .unwrap_or(false)
            })
            .filter(|e| action.is_empty() || e.action.starts_with(action))
            // Stored times are RFC 3339 UTC at second precision, so they compare as text.
            .filter(|e| from.as_deref().is_none_or(|f| e.at.as_str() >= f))
            .filter(|e| to.as_deref().is_none_or(|t| e.at.as_str() < t))
            .collect())
    }
}

pub async fn audit(
    State(state): State<Shared>,
    session: Session,
    Query(filter): Query<AuditFilter>,
) -> Result<Response, ConsoleError> {
    let pool = &state.app.pool;
    let (before, limit) = filter.page()?;
    let chain = audit_log::verify(pool, &state.audit_chain).await?;
    let (shown, next) = audit_log::page(pool, &filter, before, limit).await?;
    Ok(Html(views::audit(
        &state, &session, &filter, &shown, &chain, next, limit,
    )?)
    .into_response())
}

pub async fn audit_export(
    State(state): State<Shared>,
    _session: Session,
    Query(filter): Query<AuditFilter>,
) -> Result<Response, ConsoleError> {
    let entries = audit_log::all(&state.app.pool, &filter).await?;
    let (content_type, name, text) = match filter.format.as_deref().unwrap_or("ndjson") {
        "ndjson" => (
            "application/x-ndjson",
            "audit.ndjson",
            audit::to_ndjson(&entries),
        ),
        "csv" => (
            "text/csv; charset=utf-8",
            "audit.csv",
            audit::to_csv(&entries),
        ),
        _ => return Err(ConsoleError::bad_request("format must be ndjson or csv")),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        text,
    )
        .into_response())
}

pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub scope: String,
    pub expires_at: Option<String>,
}

async fn api_key_rows(pool: &sqlx::AnyPool) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query(
        "SELECT id, name, created_at, revoked_at, scope, expires_at FROM api_keys \
         ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(ApiKeyRow {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            created_at: r.try_get(2)?,
            revoked_at: r.try_get(3)?,
            scope: r.try_get(4)?,
            expires_at: r.try_get(5)?,
        })
    })
    .collect()
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

pub async fn api_keys(
    State(state): State<Shared>,
    session: Session,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, ConsoleError> {
    let rows = api_key_rows(&state.app.pool).await?;
    let notice = notice(q.notice.as_deref());
    Ok(Html(views::api_keys(&state, &session, &rows, None, notice)?).into_response())
}

#[derive(Deserialize)]
pub struct NewApiKey {
    name: String,
    /// `admin`, `read` or `scim` (as `api-key create --scope`). Optional in the form's
    /// type so that a post without it meets the role check (403) before this one.
    #[serde(default)]
    scope: String,
    /// Whole days until the key stops working; blank for never.
    #[serde(default)]
    expires_in_days: String,
}

impl NewApiKey {
    fn scope(&self) -> Result<crate::api_keys::Scope, ConsoleError> {
        self.scope.parse().map_err(ConsoleError::bad_request)
    }
    fn expires_in_days(&self) -> Result<Option<u32>, ConsoleError> {
        let days = self.expires_in_days.trim();
        if days.is_empty() {
            return Ok(None);
        }
        // The range itself is checked by `org::create_api_key`, as for the CLI.
        days.parse().map(Some).map_err(|_| {
            ConsoleError::bad_request("the expiry is a whole number of days, or blank for never")
        })
    }
}

/// Creates an API key and shows its secret on this one response (never stored, never again).
pub async fn create_api_key(
    State(state): State<Shared>,
    Post { session, form }: Post<NewApiKey>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.is_owner())?;
    let pool = &state.app.pool;
    let secret = org::create_api_key(
        pool,
        form.name.trim(),
        form.scope()?,
        form.expires_in_days()?,
        &session.actor(),
    )
    .await
    .map_err(|e| match e {
        org::OrgError::Db(e) => ConsoleError::internal(e),
        other => ConsoleError::bad_request(other.to_string()),
    })?;
    let rows = api_key_rows(pool).await?;
    Ok(Html(views::api_keys(
        &state,
        &session,
        &rows,
        Some(&secret),
        None,
    )?)
    .into_response())
}

pub async fn revoke_api_key(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Post { session, .. }: Post<Csrf>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.is_owner())?;
    if !org::revoke_api_key(&state.app.pool, &id, &session.actor())
        .await
        .map_err(ConsoleError::internal)?
    {
        return Err(ConsoleError::Status(
            axum::http::StatusCode::NOT_FOUND,
            "No such API key, or it is revoked already.".into(),
        ));
    }
    Ok(Redirect::to("/console/api-keys?notice=revoked").into_response())
}

pub async fn attestation_root(State(state): State<Shared>, _session: Session) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"attestation-root.pem\"",
            ),
        ],
        state.app.org.root_cert_pem.clone(),
    )
        .into_response()
}
