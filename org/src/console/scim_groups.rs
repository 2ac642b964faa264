//! SCIM 2.0 groups at `/scim/v2/Groups` (RFC 7643 §4.2): a directory's groups and which of
//! its provisioned users are members. Kept for the directory (and later per-group policy);
//! membership changes nothing about a user's keys. Entra ID changes members with
//! `{"op": "Add"|"Remove", "path": "members", "value": [{"value": "<user id>"}]}`, others with
//! a filter path (`members[value eq "<user id>"]`): both are taken.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use super::scim::{
    admin, as_text, parse_body, parse_filter, patch_operations, scim_json, Directory, ScimError,
    GROUP, LIST, MAX_COUNT,
};
use crate::api::{self, AppState};
use crate::error::ApiError;
use crate::{audit, clock, secret};

type Shared = std::sync::Arc<AppState>;

#[derive(Clone)]
struct Group {
    id: String,
    display_name: String,
    external_id: Option<String>,
    created_at: String,
    updated_at: String,
    /// Member user ids.
    members: BTreeSet<String>,
}

impl Group {
    async fn to_json(
        &self,
        conn: &mut AnyConnection,
        public_url: &str,
    ) -> Result<Value, ScimError> {
        let mut members = Vec::new();
        for id in &self.members {
            let name: Option<String> = sqlx::query(
                "SELECT user_name FROM scim_users WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
            if let Some(name) = name {
                members.push(json!({
                    "value": id,
                    "display": name,
                    "$ref": format!("{public_url}/scim/v2/Users/{id}"),
                }));
            }
        }
        let mut v = json!({
            "schemas": [GROUP],
            "id": self.id,
            "displayName": self.display_name,
            "members": members,
            "meta": {
                "resourceType": "Group",
                "created": self.created_at,
                "lastModified": self.updated_at,
                "location": format!("{public_url}/scim/v2/Groups/{}", self.id),
            },
        });
        if let Some(x) = &self.external_id {
            v["externalId"] = json!(x);
        }
        Ok(v)
    }
}

async fn load(conn: &mut AnyConnection, id: &str) -> Result<Group, ScimError> {
    let row = sqlx::query(
        "SELECT id, display_name, external_id, created_at, updated_at FROM scim_groups WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(ScimError::not_found)?;
    let members = sqlx::query("SELECT user_id FROM scim_group_members WHERE group_id = $1")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    Ok(Group {
        id: row.try_get(0)?,
        display_name: row.try_get(1)?,
        external_id: row.try_get(2)?,
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
        members,
    })
}

/// The user ids in a `members` value: a list of `{"value": id}` (or one such object).
async fn member_ids(conn: &mut AnyConnection, value: &Value) -> Result<Vec<String>, ScimError> {
    let items = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![value],
        _ => {
            return Err(ScimError::bad(
                "invalidValue",
                "members must be a list of {\"value\": id}",
            ))
        }
    };
    let mut ids = Vec::new();
    for item in items {
        let id = item.get("value").and_then(Value::as_str).ok_or_else(|| {
            ScimError::bad("invalidValue", "a member needs a \"value\" (a user id)")
        })?;
        let known = sqlx::query("SELECT 1 FROM scim_users WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        if known.is_none() {
            return Err(ScimError::bad("invalidValue", format!("no user {id}")));
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

fn group_name(value: &Value) -> Result<String, ScimError> {
    let name = as_text(value, "displayName")?;
    api::check_display_name(&name)?;
    Ok(name)
}

/// Writes the group and its member list back, and audits the change.
async fn save(
    conn: &mut AnyConnection,
    actor: &str,
    action: &str,
    before: Option<&Group>,
    group: &mut Group,
) -> Result<(), ScimError> {
    group.updated_at = clock::now_string();
    let taken = sqlx::query("SELECT 1 FROM scim_groups WHERE display_name = $1 AND id <> $2")
        .bind(&group.display_name)
        .bind(&group.id)
        .fetch_optional(&mut *conn)
        .await?;
    if taken.is_some() {
        return Err(ScimError {
            status: StatusCode::CONFLICT,
            scim_type: Some("uniqueness"),
            detail: "a group with this displayName exists".into(),
        });
    }
    sqlx::query(
        "INSERT INTO scim_groups (id, display_name, external_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
         display_name = excluded.display_name, external_id = excluded.external_id, \
         updated_at = excluded.updated_at",
    )
    .bind(&group.id)
    .bind(&group.display_name)
    .bind(&group.external_id)
    .bind(&group.created_at)
    .bind(&group.updated_at)
    .execute(&mut *conn)
    .await?;
    let old = before.map(|b| b.members.clone()).unwrap_or_default();
    let added: Vec<&String> = group.members.difference(&old).collect();
    let removed: Vec<&String> = old.difference(&group.members).collect();
    for id in &added {
        sqlx::query("INSERT INTO scim_group_members (group_id, user_id) VALUES ($1, $2)")
            .bind(&group.id)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    for id in &removed {
        sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1 AND user_id = $2")
            .bind(&group.id)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    audit::append(
        conn,
        actor,
        action,
        &group.id,
        json!({ "display_name": group.display_name, "members_added": added, "members_removed": removed }),
    )
    .await?;
    Ok(())
}

pub async fn create(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let who = admin(who)?;
    let body = parse_body(&body)?;
    let display_name = group_name(body.get("displayName").unwrap_or(&Value::Null))?;
    let mut tx = state.pool.begin().await?;
    let members = match body.get("members") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(v) => member_ids(&mut tx, v).await?.into_iter().collect(),
    };
    let now = clock::now_string();
    let mut group = Group {
        id: secret::new_id(),
        display_name,
        external_id: body
            .get("externalId")
            .and_then(Value::as_str)
            .map(String::from),
        created_at: now.clone(),
        updated_at: now,
        members,
    };
    save(&mut tx, &who.actor, "scim.group.create", None, &mut group).await?;
    let json = group.to_json(&mut tx, &state.public_url).await?;
    tx.commit().await?;
    Ok(scim_json(StatusCode::CREATED, json))
}

#[derive(Deserialize)]
pub struct ListQuery {
    filter: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<usize>,
    count: Option<usize>,
}

pub async fn list(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ScimError> {
    admin(who)?;
    let Query(q) = query.map_err(|e| ScimError::bad("invalidValue", e.body_text()))?;
    let mut conn = state.pool.acquire().await?;
    let ids: Vec<String> = match q.filter.as_deref() {
        Some(filter) => {
            let (column, value) = parse_filter(filter)?;
            if column == "user_name" {
                return Err(ScimError::bad(
                    "invalidFilter",
                    "groups are found by displayName or externalId",
                ));
            }
            sqlx::query(&format!(
                "SELECT id FROM scim_groups WHERE {column} = $1 ORDER BY created_at, id"
            ))
            .bind(value)
            .fetch_all(&mut *conn)
            .await?
        }
        None => {
            sqlx::query("SELECT id FROM scim_groups ORDER BY created_at, id")
                .fetch_all(&mut *conn)
                .await?
        }
    }
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    let start = q.start_index.unwrap_or(1).max(1);
    let count = q.count.unwrap_or(MAX_COUNT).min(MAX_COUNT);
    let mut page = Vec::new();
    for id in ids.iter().skip(start - 1).take(count) {
        let group = load(&mut conn, id).await?;
        page.push(group.to_json(&mut conn, &state.public_url).await?);
    }
    Ok(scim_json(
        StatusCode::OK,
        json!({
            "schemas": [LIST],
            "totalResults": ids.len(),
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        }),
    ))
}

pub async fn read(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    admin(who)?;
    let mut conn = state.pool.acquire().await?;
    let group = load(&mut conn, &id).await?;
    let json = group.to_json(&mut conn, &state.public_url).await?;
    Ok(scim_json(StatusCode::OK, json))
}

/// The user id in a filter path `members[value eq "<id>"]`.
fn member_filter(path: &str) -> Option<&str> {
    let inner = path.trim().strip_prefix("members[")?.strip_suffix(']')?;
    let (attr, rest) = inner.trim().split_once(' ')?;
    let (op, value) = rest.trim().split_once(' ')?;
    (attr == "value" && op.eq_ignore_ascii_case("eq"))
        .then(|| value.trim().strip_prefix('"')?.strip_suffix('"'))
        .flatten()
}

pub async fn patch(
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
    let mut group = before.clone();
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let value = op.get("value").unwrap_or(&Value::Null);
        let path = op.get("path").and_then(Value::as_str);
        match (kind.as_str(), path.map(str::to_ascii_lowercase).as_deref()) {
            ("add", Some("members")) => group.members.extend(member_ids(&mut tx, value).await?),
            ("replace", Some("members")) => {
                group.members = member_ids(&mut tx, value).await?.into_iter().collect();
            }
            ("remove", Some("members")) if value.is_null() => group.members.clear(),
            ("remove", Some("members")) => {
                for item in value.as_array().into_iter().flatten() {
                    if let Some(id) = item.get("value").and_then(Value::as_str) {
                        group.members.remove(id);
                    }
                }
            }
            ("remove", Some(_)) => {
                let member = path.and_then(member_filter).ok_or_else(|| {
                    ScimError::bad(
                        "invalidPath",
                        "remove takes members or members[value eq \"id\"]",
                    )
                })?;
                group.members.remove(member);
            }
            ("add" | "replace", Some("displayname")) => group.display_name = group_name(value)?,
            ("add" | "replace", Some("externalid")) => {
                group.external_id = Some(as_text(value, "externalId")?);
            }
            ("add" | "replace", None) => {
                let attrs = value.as_object().ok_or_else(|| {
                    ScimError::bad(
                        "invalidValue",
                        "an operation without a path needs an object",
                    )
                })?;
                for (attr, v) in attrs {
                    match attr.to_ascii_lowercase().as_str() {
                        "displayname" => group.display_name = group_name(v)?,
                        "externalid" => group.external_id = Some(as_text(v, "externalId")?),
                        "members" => group.members.extend(member_ids(&mut tx, v).await?),
                        _ => {}
                    }
                }
            }
            ("add" | "replace", Some(_)) => {}
            _ => {
                return Err(ScimError::bad(
                    "invalidSyntax",
                    format!("unknown operation {kind:?}; add, replace or remove"),
                ))
            }
        }
    }
    save(
        &mut tx,
        &who.actor,
        "scim.group.update",
        Some(&before),
        &mut group,
    )
    .await?;
    let json = group.to_json(&mut tx, &state.public_url).await?;
    tx.commit().await?;
    Ok(scim_json(StatusCode::OK, json))
}

pub async fn delete(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let who = admin(who)?;
    let mut tx = state.pool.begin().await?;
    let group = load(&mut tx, &id).await?;
    sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM scim_groups WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        &who.actor,
        "scim.group.delete",
        &id,
        json!({ "display_name": group.display_name }),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_filter_path_names_one_user() {
        assert_eq!(member_filter("members[value eq \"abc\"]"), Some("abc"));
        assert_eq!(member_filter("members[value EQ \"abc\"]"), Some("abc"));
        assert_eq!(member_filter("members[display eq \"abc\"]"), None);
        assert_eq!(member_filter("members"), None);
        assert_eq!(member_filter("emails[value eq \"abc\"]"), None);
    }
}
