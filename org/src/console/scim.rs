//! SCIM 2.0 user provisioning (RFC 7643 resources, RFC 7644 protocol) at `/scim/v2/Users`
//! (discovery in `scim_discovery.rs`), for
//! a directory such as Entra ID or Okta, authenticated with an API key of scope `scim` (`Authorization: Bearer`).
//!
//! A user the directory creates is invited (the same invite as the REST API's); deactivating
//! (`active: false`) or deleting a user suspends its active keys and ends its open invitation
//! links, and keeps the record; reactivating it resumes the keys the directory suspended. Entra ID sends `active` either as the string `"False"` (without
//! its `aadOptscim062020` flag) or as a boolean (with it), in either of two PATCH shapes (a
//! `path` and a value, or an object of attributes without a path): all are taken.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use crate::api::{self, AppState};
use crate::api_keys::Scope;
use crate::error::ApiError;
use crate::lifecycle::{self, Action, Cause, Change};
use crate::{audit, clock, secret};

type Shared = std::sync::Arc<AppState>;

pub(super) const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub(super) const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(super) const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// Most resources one list response carries (RFC 7644 §3.4.2.4 lets the server cap `count`).
pub(super) const MAX_COUNT: usize = 100;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/Users", get(list).post(create))
        .route(
            "/Groups",
            get(super::scim_groups::list).post(super::scim_groups::create),
        )
        .route(
            "/Groups/{id}",
            get(super::scim_groups::read)
                .patch(super::scim_groups::patch)
                .delete(super::scim_groups::delete),
        )
        .route(
            "/Users/{id}",
            get(read).put(replace).patch(patch).delete(delete),
        )
        .route(
            "/ServiceProviderConfig",
            get(super::scim_discovery::service_provider_config),
        )
        .route(
            "/ResourceTypes",
            get(super::scim_discovery::list_resource_types),
        )
        .route(
            "/ResourceTypes/{id}",
            get(super::scim_discovery::read_resource_type),
        )
        .route("/Schemas", get(super::scim_discovery::list_schemas))
        .route("/Schemas/{id}", get(super::scim_discovery::read_schema))
        .fallback(|| async {
            ScimError {
                status: StatusCode::NOT_FOUND,
                scim_type: None,
                detail: "this server provisions /Users and /Groups (see /ServiceProviderConfig)"
                    .into(),
            }
        })
        .with_state(state)
}

/// RFC 7644 §3.12 error body.
#[derive(Debug)]
pub struct ScimError {
    pub(super) status: StatusCode,
    pub(super) scim_type: Option<&'static str>,
    pub(super) detail: String,
}

impl ScimError {
    pub(super) fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }
    pub(super) fn not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            scim_type: None,
            detail: "no such resource".into(),
        }
    }
}

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        let scim_type = (e.status == StatusCode::BAD_REQUEST).then_some("invalidValue");
        Self {
            status: e.status,
            scim_type,
            detail: e.message,
        }
    }
}

impl From<sqlx::Error> for ScimError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e).into()
    }
}

pub(super) fn scim_json(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/scim+json")],
        body.to_string(),
    )
        .into_response()
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        scim_json(self.status, body)
    }
}

/// A directory authenticated by an API key of scope `scim`; `actor` names it in the audit log.
/// A missing or wrong key is `401`, a valid key of another scope `403`: an admin's key does
/// not provision users, so a leaked directory key and an admin key stay apart.
pub struct Directory {
    pub actor: String,
}

impl FromRequestParts<Shared> for Directory {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let key = api::api_key(parts, state).await?;
        if key.scope != Scope::Scim {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "SCIM takes an API key of scope scim (this one is {}): \
                     pocketkey-org api-key create --scope scim",
                    key.scope
                ),
            ));
        }
        Ok(Directory {
            actor: format!("api-key:{}", key.name),
        })
    }
}

/// The directory, or SCIM's 401 / 403.
pub(super) fn admin(who: Result<Directory, ApiError>) -> Result<Directory, ScimError> {
    who.map_err(ScimError::from)
}

/// SCIM bodies come as `application/scim+json` (or `application/json`): read as JSON either way.
pub(super) fn parse_body(body: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice(body).map_err(|e| ScimError::bad("invalidSyntax", e.to_string()))
}

/// A PATCH request's `Operations` (RFC 7644 §3.5.2): a non-empty list.
pub(super) fn patch_operations(body: &Value) -> Result<&Vec<Value>, ScimError> {
    body.get("Operations")
        .and_then(Value::as_array)
        .filter(|ops| !ops.is_empty())
        .ok_or_else(|| ScimError::bad("invalidSyntax", "Operations must be a non-empty list"))
}

/// `true`/`false`, or Entra's `"True"`/`"False"` strings.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

pub(super) fn as_text(v: &Value, attr: &str) -> Result<String, ScimError> {
    v.as_str()
        .map(|s| s.trim().to_string())
        .ok_or_else(|| ScimError::bad("invalidValue", format!("{attr} must be a string")))
}

#[derive(Clone)]
struct User {
    id: String,
    user_name: String,
    external_id: Option<String>,
    display_name: String,
    active: bool,
    created_at: String,
    updated_at: String,
}

impl User {
    fn to_json(&self, public_url: &str) -> Value {
        let mut v = json!({
            "schemas": [USER],
            "id": self.id,
            "userName": self.user_name,
            "displayName": self.display_name,
            "active": self.active,
            "emails": [{ "value": self.user_name, "type": "work", "primary": true }],
            "meta": {
                "resourceType": "User",
                "created": self.created_at,
                "lastModified": self.updated_at,
                "location": format!("{public_url}/scim/v2/Users/{}", self.id),
            },
        });
        if let Some(x) = &self.external_id {
            v["externalId"] = json!(x);
        }
        v
    }
}

const COLUMNS: &str = "id, user_name, external_id, display_name, active, created_at, updated_at";

fn user_from(r: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: r.try_get(0)?,
        user_name: r.try_get(1)?,
        external_id: r.try_get(2)?,
        display_name: r.try_get(3)?,
        active: r.try_get::<i64, _>(4)? != 0,
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
    })
}

async fn load(conn: &mut AnyConnection, id: &str) -> Result<User, ScimError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM scim_users WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(ScimError::not_found)?;
    Ok(user_from(&row)?)
}

/// The attributes of a user resource this server keeps, from a POST or PUT body.
struct Fields {
    user_name: String,
    external_id: Option<String>,
    display_name: String,
    active: bool,
}

fn fields(body: &Value) -> Result<Fields, ScimError> {
    let user_name = body
        .get("userName")
        .map(|v| as_text(v, "userName"))
        .transpose()?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "userName is required"))?;
    // The key is the user's e-mail: the primary work address, else userName (a UPN).
    let email = body
        .get("emails")
        .and_then(Value::as_array)
        .and_then(|emails| {
            emails
                .iter()
                .find(|e| e.get("primary").and_then(as_bool) == Some(true))
                .or(emails.first())
        })
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let user_name = api::parse_email(email.as_deref().unwrap_or(&user_name))?.to_string();
    let name = body.get("name");
    let given = name
        .and_then(|n| n.get("givenName"))
        .and_then(Value::as_str);
    let family = name
        .and_then(|n| n.get("familyName"))
        .and_then(Value::as_str);
    let display_name = body
        .get("displayName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            name.and_then(|n| n.get("formatted"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .or_else(|| match (given, family) {
            (None, None) => None,
            (g, f) => Some(format!("{} {}", g.unwrap_or(""), f.unwrap_or(""))),
        })
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| user_name.clone());
    api::check_display_name(&display_name)?;
    let active = match body.get("active") {
        None => true,
        Some(v) => as_bool(v)
            .ok_or_else(|| ScimError::bad("invalidValue", "active must be true or false"))?,
    };
    let external_id = match body.get("externalId") {
        None | Some(Value::Null) => None,
        Some(v) => Some(as_text(v, "externalId")?),
    };
    Ok(Fields {
        user_name,
        external_id,
        display_name,
        active,
    })
}

/// The keys of `email` in `status`, and of those only the ones whose last change had `cause`.
async fn keys_of(
    conn: &mut AnyConnection,
    email: &str,
    status: &str,
    cause: Option<Cause>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(
        "SELECT id FROM keys WHERE lower(email) = lower($1) AND status = $2 \
         AND ($3 IS NULL OR status_cause = $3) ORDER BY created_at, id",
    )
    .bind(email)
    .bind(status)
    .bind(cause.map(Cause::as_str))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect()
}

/// Ends what a deactivated user could still use: its active keys become `suspended` (through
/// the same status change as an admin's, audited per key with the directory's actor and
/// `cause: directory`), its open invitation links expire now. Returns (keys suspended, links
/// ended).
async fn suspend_keys_of(
    conn: &mut AnyConnection,
    actor: &str,
    email: &str,
    reason: &str,
) -> Result<(u64, u64), ScimError> {
    let mut keys = 0;
    for id in keys_of(conn, email, "active", None).await? {
        let change = Change {
            action: Action::Suspend,
            actor,
            reason: Some(reason),
            cause: Cause::Directory,
        };
        lifecycle::change_key(conn, &id, &change).await?;
        keys += 1;
    }
    let links = sqlx::query(
        "UPDATE invites SET expires_at = $1 WHERE used_at IS NULL AND expires_at > $1 AND key_id IN \
         (SELECT id FROM keys WHERE lower(email) = lower($2) AND status = 'invited')",
    )
    .bind(clock::now_string())
    .bind(email)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((keys, links))
}

/// A reactivated user gets back the keys the directory suspended, and only those: a key whose
/// last change was an admin's suspension (or the stale-key policy's) stays suspended.
async fn resume_keys_of(
    conn: &mut AnyConnection,
    actor: &str,
    email: &str,
) -> Result<u64, ScimError> {
    let mut keys = 0;
    for id in keys_of(conn, email, "suspended", Some(Cause::Directory)).await? {
        let change = Change {
            action: Action::Resume,
            actor,
            reason: Some("the directory reactivated the user"),
            cause: Cause::Directory,
        };
        lifecycle::change_key(conn, &id, &change).await?;
        keys += 1;
    }
    Ok(keys)
}

async fn create(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let who = admin(who)?;
    let f = fields(&parse_body(&body)?)?;
    let mut tx = state.pool.begin().await?;
    let exists = sqlx::query("SELECT 1 FROM scim_users WHERE lower(user_name) = lower($1)")
        .bind(&f.user_name)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_some() {
        return Err(ScimError {
            status: StatusCode::CONFLICT,
            scim_type: Some("uniqueness"),
            detail: "a user with this userName exists".into(),
        });
    }
    let now = clock::now_string();
    let user = User {
        id: secret::new_id(),
        user_name: f.user_name,
        external_id: f.external_id,
        display_name: f.display_name,
        active: f.active,
        created_at: now.clone(),
        updated_at: now,
    };
    sqlx::query(&format!(
        "INSERT INTO scim_users ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&user.id)
    .bind(&user.user_name)
    .bind(&user.external_id)
    .bind(&user.display_name)
    .bind(i64::from(user.active))
    .bind(&user.created_at)
    .bind(&user.updated_at)
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        &who.actor,
        "scim.user.create",
        &user.id,
        json!({ "email": user.user_name, "active": user.active }),
    )
    .await?;
    let has_key =
        sqlx::query("SELECT 1 FROM keys WHERE lower(email) = lower($1) AND status <> 'revoked'")
            .bind(&user.user_name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
    tx.commit().await?;
    // An active user without a key is invited, as an admin would (its own transaction).
    if user.active && !has_key {
        api::invite_user(&state, &who.actor, &user.user_name, &user.display_name).await?;
    }
    Ok(scim_json(
        StatusCode::CREATED,
        user.to_json(&state.public_url),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    filter: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<usize>,
    count: Option<usize>,
}

/// The filters directories send to find a resource before creating it: `userName eq "…"`,
/// `externalId eq "…"`, `displayName eq "…"` (groups). Anything else is `invalidFilter`
/// (RFC 7644 §3.4.2.2); each endpoint says which of them it takes.
pub(super) fn parse_filter(filter: &str) -> Result<(&'static str, String), ScimError> {
    let bad = || {
        ScimError::bad(
            "invalidFilter",
            "only userName eq \"…\" and externalId eq \"…\"",
        )
    };
    let (attr, rest) = filter.trim().split_once(' ').ok_or_else(bad)?;
    let (op, value) = rest.trim_start().split_once(' ').ok_or_else(bad)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(bad());
    }
    let value = value
        .trim()
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(bad)?
        .replace("\\\"", "\"");
    let column = if attr.eq_ignore_ascii_case("userName") {
        "user_name"
    } else if attr.eq_ignore_ascii_case("externalId") {
        "external_id"
    } else if attr.eq_ignore_ascii_case("displayName") {
        "display_name"
    } else {
        return Err(bad());
    };
    Ok((column, value))
}

async fn list(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ScimError> {
    admin(who)?;
    let Query(q) = query.map_err(|e| ScimError::bad("invalidValue", e.body_text()))?;
    let rows = match q.filter.as_deref() {
        Some(filter) => {
            let (column, value) = parse_filter(filter)?;
            // userName is case-insensitive (RFC 7643 §4.1.1); externalId is case-exact.
            let condition = match column {
                "user_name" => "lower(user_name) = lower($1)",
                "external_id" => "external_id = $1",
                _ => {
                    return Err(ScimError::bad(
                        "invalidFilter",
                        "users are found by userName or externalId",
                    ))
                }
            };
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM scim_users WHERE deleted_at IS NULL AND {condition} \
                 ORDER BY created_at, id"
            ))
            .bind(value)
            .fetch_all(&state.pool)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM scim_users WHERE deleted_at IS NULL ORDER BY created_at, id"
            ))
            .fetch_all(&state.pool)
            .await?
        }
    };
    let users = rows.iter().map(user_from).collect::<Result<Vec<_>, _>>()?;
    let start = q.start_index.unwrap_or(1).max(1);
    let count = q.count.unwrap_or(MAX_COUNT).min(MAX_COUNT);
    let page: Vec<Value> = users
        .iter()
        .skip(start - 1)
        .take(count)
        .map(|u| u.to_json(&state.public_url))
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        json!({
            "schemas": [LIST],
            "totalResults": users.len(),
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        }),
    ))
}

async fn read(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    admin(who)?;
    let mut conn = state.pool.acquire().await?;
    let user = load(&mut conn, &id).await?;
    Ok(scim_json(StatusCode::OK, user.to_json(&state.public_url)))
}

/// Writes `user` back and audits what changed; a user turned inactive has its keys suspended.
async fn save(
    conn: &mut AnyConnection,
    actor: &str,
    before: &User,
    user: &mut User,
) -> Result<(), ScimError> {
    user.updated_at = clock::now_string();
    sqlx::query(
        "UPDATE scim_users SET user_name = $1, external_id = $2, display_name = $3, active = $4, \
         updated_at = $5 WHERE id = $6",
    )
    .bind(&user.user_name)
    .bind(&user.external_id)
    .bind(&user.display_name)
    .bind(i64::from(user.active))
    .bind(&user.updated_at)
    .bind(&user.id)
    .execute(&mut *conn)
    .await?;
    let mut detail = json!({ "email": user.user_name, "active": user.active });
    if before.active && !user.active {
        let (keys, links) = suspend_keys_of(
            conn,
            actor,
            &user.user_name,
            "the directory deactivated the user",
        )
        .await?;
        detail["keys_suspended"] = json!(keys);
        detail["invite_links_ended"] = json!(links);
    }
    if !before.active && user.active {
        detail["keys_resumed"] = json!(resume_keys_of(conn, actor, &user.user_name).await?);
    }
    if before.display_name != user.display_name {
        detail["display_name"] = json!(user.display_name);
    }
    audit::append(conn, actor, "scim.user.update", &user.id, detail).await?;
    Ok(())
}

async fn replace(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let who = admin(who)?;
    let f = fields(&parse_body(&body)?)?;
    let mut tx = state.pool.begin().await?;
    let before = load(&mut tx, &id).await?;
    let mut user = User {
        user_name: f.user_name,
        external_id: f.external_id,
        display_name: f.display_name,
        active: f.active,
        ..before.clone()
    };
    save(&mut tx, &who.actor, &before, &mut user).await?;
    tx.commit().await?;
    Ok(scim_json(StatusCode::OK, user.to_json(&state.public_url)))
}

/// Applies one attribute of a PATCH to `user`. Attributes this server does not keep (title,
/// addresses, manager, …) are accepted and dropped, as directories send them routinely.
fn apply(user: &mut User, attr: &str, value: &Value) -> Result<(), ScimError> {
    match attr.to_ascii_lowercase().as_str() {
        "active" => {
            user.active = as_bool(value)
                .ok_or_else(|| ScimError::bad("invalidValue", "active must be true or false"))?;
        }
        "displayname" => {
            let name = as_text(value, "displayName")?;
            api::check_display_name(&name)?;
            user.display_name = name;
        }
        "externalid" => user.external_id = Some(as_text(value, "externalId")?),
        "username" => {
            user.user_name = api::parse_email(&as_text(value, "userName")?)?.to_string();
        }
        _ => {}
    }
    Ok(())
}

async fn patch(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let who = admin(who)?;
    let body = parse_body(&body)?;
    let ops = patch_operations(&body)?;
    let mut tx = state.pool.begin().await?;
    let before = load(&mut tx, &id).await?;
    let mut user = before.clone();
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let value = op.get("value").unwrap_or(&Value::Null);
        match (
            kind.to_ascii_lowercase().as_str(),
            op.get("path").and_then(Value::as_str),
        ) {
            ("replace" | "add", Some(path)) => apply(&mut user, path, value)?,
            // Entra's other shape: no path, an object of attributes.
            ("replace" | "add", None) => {
                let attrs = value.as_object().ok_or_else(|| {
                    ScimError::bad(
                        "invalidValue",
                        "an operation without a path needs an object",
                    )
                })?;
                for (attr, v) in attrs {
                    apply(&mut user, attr, v)?;
                }
            }
            ("remove", Some(path)) if path.eq_ignore_ascii_case("externalId") => {
                user.external_id = None;
            }
            ("remove", _) => {}
            _ => {
                return Err(ScimError::bad(
                    "invalidSyntax",
                    format!("unknown operation {kind:?}; add, replace or remove"),
                ))
            }
        }
    }
    save(&mut tx, &who.actor, &before, &mut user).await?;
    tx.commit().await?;
    Ok(scim_json(StatusCode::OK, user.to_json(&state.public_url)))
}

async fn delete(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let who = admin(who)?;
    let mut tx = state.pool.begin().await?;
    let user = load(&mut tx, &id).await?;
    let now = clock::now_string();
    sqlx::query("UPDATE scim_users SET active = 0, deleted_at = $1, updated_at = $1 WHERE id = $2")
        .bind(&now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    let (keys, links) = suspend_keys_of(
        &mut tx,
        &who.actor,
        &user.user_name,
        "the directory deleted the user",
    )
    .await?;
    audit::append(
        &mut tx,
        &who.actor,
        "scim.user.delete",
        &id,
        json!({ "email": user.user_name, "keys_suspended": keys, "invite_links_ended": links }),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_sends_active_as_a_string_or_a_boolean() {
        for (v, want) in [
            (json!(false), Some(false)),
            (json!("False"), Some(false)),
            (json!("true"), Some(true)),
            (json!(true), Some(true)),
            (json!("no"), None),
            (json!(0), None),
        ] {
            assert_eq!(as_bool(&v), want, "{v}");
        }
    }

    #[test]
    fn only_equality_filters_on_user_name_and_external_id() {
        assert_eq!(
            parse_filter("userName eq \"Alice@Acme.example\"").unwrap(),
            ("user_name", "Alice@Acme.example".to_string())
        );
        assert_eq!(
            parse_filter("externalId EQ \"a\\\"b\"").unwrap(),
            ("external_id", "a\"b".to_string())
        );
        for bad in ["userName co \"a\"", "title eq \"x\"", "userName eq a", ""] {
            assert_eq!(
                parse_filter(bad).unwrap_err().scim_type,
                Some("invalidFilter")
            );
        }
    }
}
