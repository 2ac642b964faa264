//! SCIM discovery (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas`,
//! which a directory reads to learn what this server supports. Authenticated with the same
//! `scim` API key as the resources (RFC 7644 §4 lets a server ask for it).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::scim::{admin, scim_json, Directory, ScimError, GROUP, LIST, MAX_COUNT, USER};
use crate::error::ApiError;

type Shared = std::sync::Arc<crate::api::AppState>;

const SERVICE_PROVIDER_CONFIG: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

fn base(state: &Shared) -> String {
    format!("{}/scim/v2", state.public_url.trim_end_matches('/'))
}

fn list(resources: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        json!({
            "schemas": [LIST],
            "totalResults": resources.len(),
            "itemsPerPage": resources.len(),
            "startIndex": 1,
            "Resources": resources,
        }),
    )
}

/// RFC 7643 §5: what this server implements of RFC 7644.
pub async fn service_provider_config(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
) -> Result<Response, ScimError> {
    admin(who)?;
    Ok(scim_json(
        StatusCode::OK,
        json!({
            "schemas": [SERVICE_PROVIDER_CONFIG],
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            // Only `eq` on userName, externalId (users) and displayName (groups).
            "filter": { "supported": true, "maxResults": MAX_COUNT },
            "changePassword": { "supported": false },
            "sort": { "supported": false },
            "etag": { "supported": false },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "An API key of scope scim (pocketkey-org api-key create --scope scim) \
                                in Authorization: Bearer",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{}/ServiceProviderConfig", base(&state)),
            },
        }),
    ))
}

fn resource_types(state: &Shared) -> Vec<Value> {
    [
        ("User", "/Users", "People the organisation invites", USER),
        ("Group", "/Groups", "Groups of users", GROUP),
    ]
    .into_iter()
    .map(|(id, endpoint, description, schema)| {
        json!({
            "schemas": [RESOURCE_TYPE],
            "id": id,
            "name": id,
            "endpoint": endpoint,
            "description": description,
            "schema": schema,
            "meta": {
                "resourceType": "ResourceType",
                "location": format!("{}/ResourceTypes/{id}", base(state)),
            },
        })
    })
    .collect()
}

/// RFC 7643 §6: the resource types, Users and Groups.
pub async fn list_resource_types(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
) -> Result<Response, ScimError> {
    admin(who)?;
    Ok(list(resource_types(&state)))
}

pub async fn read_resource_type(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    admin(who)?;
    resource_types(&state)
        .into_iter()
        .find(|t| t["id"] == id.as_str())
        .map(|t| scim_json(StatusCode::OK, t))
        .ok_or_else(ScimError::not_found)
}

/// One attribute's definition (RFC 7643 §7); sub-attributes for a complex one.
fn attribute(name: &str, kind: &str, required: bool, description: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "description": description,
        "required": required,
        "caseExact": false,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    })
}

fn schemas(state: &Shared) -> Vec<Value> {
    let mut user_name = attribute(
        "userName",
        "string",
        true,
        "The user's e-mail address; the invitation goes there.",
    );
    user_name["uniqueness"] = json!("server");
    let mut emails = attribute(
        "emails",
        "complex",
        false,
        "E-mail addresses; the primary one is the userName when userName is not one.",
    );
    emails["multiValued"] = json!(true);
    emails["subAttributes"] = json!([
        attribute("value", "string", false, "The address."),
        attribute("type", "string", false, "work, home or other."),
        attribute("primary", "boolean", false, "The primary address."),
    ]);
    let mut name = attribute("name", "complex", false, "The user's name.");
    name["mutability"] = json!("writeOnly");
    name["returned"] = json!("never");
    name["subAttributes"] = json!([
        attribute("formatted", "string", false, "The full name."),
        attribute("givenName", "string", false, "The given name."),
        attribute("familyName", "string", false, "The family name."),
    ]);
    let user_attributes = json!([
        user_name,
        attribute(
            "displayName",
            "string",
            false,
            "The name shown for the user."
        ),
        attribute(
            "active",
            "boolean",
            false,
            "false suspends the user's keys and ends open invitations; true resumes them.",
        ),
        emails,
        name,
    ]);
    let mut members = attribute("members", "complex", false, "The group's users.");
    members["multiValued"] = json!(true);
    members["subAttributes"] = json!([
        {
            "name": "value", "type": "string", "multiValued": false, "required": false,
            "caseExact": true, "mutability": "immutable", "returned": "default",
            "uniqueness": "none", "description": "The user's id.",
        },
        attribute("display", "string", false, "The user's display name."),
    ]);
    let mut group_name = attribute("displayName", "string", true, "The group's name.");
    group_name["uniqueness"] = json!("server");
    [
        (USER, "User", "User Account", user_attributes),
        (GROUP, "Group", "Group", json!([group_name, members])),
    ]
    .into_iter()
    .map(|(id, name, description, attributes)| {
        json!({
            "schemas": [SCHEMA],
            "id": id,
            "name": name,
            "description": description,
            "attributes": attributes,
            "meta": {
                "resourceType": "Schema",
                "location": format!("{}/Schemas/{id}", base(state)),
            },
        })
    })
    .collect()
}

/// RFC 7643 §7: the attributes this server takes of Users and Groups.
pub async fn list_schemas(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
) -> Result<Response, ScimError> {
    admin(who)?;
    Ok(list(schemas(&state)))
}

pub async fn read_schema(
    State(state): State<Shared>,
    who: Result<Directory, ApiError>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    admin(who)?;
    schemas(&state)
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .map(|s| scim_json(StatusCode::OK, s))
        .ok_or_else(ScimError::not_found)
}
