//! The OpenAPI 3.1 document of the HTTP API, served at `GET /api/v1/openapi.json`.
//!
//! The operations are declared here on stubs, one per route, with the request and response
//! types the handlers use (their schemas derive from the same structs). A test checks that
//! every route `api::router` registers is declared.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::activation::{ActivateRequest, Activated, SealedBatchKey, Signed};
use crate::api::{AuditQuery, InviteCreated, KeyEntry, KeyPage, KeysQuery, LastWake, NewInvite};
use crate::creation_options::{Rp, User};
use crate::devices::{Challenge, ChallengeRequest, SyncAnswer, SyncRequest};
use crate::error::ErrorBody;
use crate::lifecycle::{ReasonBody, StatusChanged};
use crate::org::Policy;
use crate::push_targets::PushRegistered;
use crate::registrations::{
    GraphBody, GraphCredential, GraphPost, GraphResponse, Job, NewRegistration, Registration,
    RegistrationCreated, RegistrationJob, RegistrationResult, ResultAccepted,
};
use pocketkey_core::org_protocol::wire::PushRegistration;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pocketkey-org",
        description = "PocketKey organisation server: invites, inventory, attestation root, \
                       audit log. Errors are `ErrorBody` with a stable `error` code (docs/org.md). \
                       Every route may also answer 405, 408 (request deadline), 413 (body over \
                       16 KiB) and 500."
    ),
    paths(
        create_invite,
        resend_invite,
        list_keys,
        attestation_root,
        audit_export,
        openapi_json,
        activation_page,
        assetlinks,
        apple_app_site_association,
        device_activate,
        device_challenge,
        device_sync,
        device_push,
        revoke_key,
        suspend_key,
        resume_key,
        create_registration,
        get_registration,
        device_registration_result
    ),
    components(schemas(
        ErrorBody, NewInvite, InviteCreated, KeyEntry, LastWake, KeyPage, Signed, ActivateRequest,
        Activated, SealedBatchKey, Policy, ChallengeRequest, Challenge, SyncRequest, SyncAnswer,
        PushRegistration, PushRegistered,
        ReasonBody, StatusChanged, NewRegistration, RegistrationCreated, Registration, GraphBody, GraphPost,
        GraphCredential, GraphResponse, Job, RegistrationJob, Rp, User, RegistrationResult,
        ResultAccepted
    )),
    modifiers(&ApiKeyAuth),
    tags(
        (name = "invites"), (name = "inventory"), (name = "organisation"), (name = "activation"),
        (name = "devices"), (name = "lifecycle"), (name = "registrations"), (name = "app links")
    )
)]
struct Doc;

/// `Authorization: Bearer <api key>` as the security scheme named `api_key`.
struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

static JSON: LazyLock<String> = LazyLock::new(|| {
    Doc::openapi()
        .to_pretty_json()
        .expect("the document serialises")
});

/// `GET /api/v1/openapi.json` (no API key: the document holds nothing secret).
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str()).into_response()
}

#[utoipa::path(post, path = "/api/v1/invites", tag = "invites",
    request_body = NewInvite,
    responses(
        (status = 201, description = "Invited; the mail is sent (SMTP) or in the outbox", body = InviteCreated),
        (status = 400, description = "invalid_json, invalid_email, invalid_display_name", body = ErrorBody),
        (status = 401, description = "unauthorized: missing, wrong or expired API key", body = ErrorBody),
        (status = 403, description = "forbidden: a read-scoped API key", body = ErrorBody),
        (status = 429, description = "rate_limited: too many failed API keys from this address", body = ErrorBody),
        (status = 502, description = "mail_failed: the SMTP server is down or refused; nothing stored", body = ErrorBody),
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn create_invite() {}

#[utoipa::path(post, path = "/api/v1/invites/{id}/resend", tag = "invites",
    params(("id" = String, Path, description = "The invite's id")),
    responses(
        (status = 200, description = "A new link is sent; the previous one stops working", body = InviteCreated),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: a read-scoped API key", body = ErrorBody),
        (status = 404, description = "not_found: no such invite", body = ErrorBody),
        (status = 409, description = "invite_used: the invite was already used", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 502, description = "mail_failed: nothing changed, the previous link still works", body = ErrorBody),
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn resend_invite() {}

#[utoipa::path(get, path = "/api/v1/keys", tag = "inventory",
    params(KeysQuery),
    responses(
        (status = 200, description = "One page of the inventory, oldest first", body = KeyPage),
        (status = 400, description = "invalid_query, invalid_limit, invalid_cursor", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn list_keys() {}

#[utoipa::path(get, path = "/api/v1/attestation/root", tag = "organisation",
    responses(
        (status = 200, description = "The organisation's attestation root certificate", body = String,
         content_type = "application/x-pem-file"),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn attestation_root() {}

#[utoipa::path(get, path = "/api/v1/audit", tag = "organisation",
    params(AuditQuery),
    responses(
        (status = 200, description = "The hash-chained audit log, one entry per line (NDJSON) \
         or row (CSV, RFC 4180): seq, at, actor, action, subject, detail, prev_hash, hash",
         content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
         )),
        (status = 400, description = "invalid_format, invalid_query", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn audit_export() {}

#[utoipa::path(post, path = "/api/v1/device/activate", tag = "devices",
    request_body(content = Signed, description = "`request` is the base64 JSON of an \
        `ActivateRequest`; `signature` its ES256 signature by the device key it names"),
    responses(
        (status = 200, description = "Activated: the organisation's certificates, the batch key \
         sealed to the request's box key, and the policy", body = Activated),
        (status = 400, description = "invalid_json, invalid_request, invalid_csr", body = ErrorBody),
        (status = 401, description = "bad_signature", body = ErrorBody),
        (status = 403, description = "key_revoked", body = ErrorBody),
        (status = 404, description = "link_not_valid: unknown or replaced token", body = ErrorBody),
        (status = 409, description = "link_used", body = ErrorBody),
        (status = 410, description = "link_expired", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn device_activate() {}

#[utoipa::path(post, path = "/api/v1/device/challenge", tag = "devices",
    request_body = ChallengeRequest,
    responses(
        (status = 200, description = "A single-use nonce for the next sync", body = Challenge),
        (status = 400, description = "invalid_json", body = ErrorBody),
        (status = 401, description = "unknown_device", body = ErrorBody),
        (status = 429, description = "rate_limited, or too many outstanding challenges", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn device_challenge() {}

#[utoipa::path(post, path = "/api/v1/device/sync", tag = "devices",
    request_body(content = SyncRequest, description = "the nonce and its ES256 signature by the \
        device key"),
    responses(
        (status = 200, description = "The key's status, the policy and pending jobs", body = SyncAnswer),
        (status = 400, description = "invalid_json", body = ErrorBody),
        (status = 401, description = "unknown_device, challenge_invalid, bad_signature", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn device_sync() {}

#[utoipa::path(post, path = "/api/v1/device/push", tag = "devices",
    request_body(content = PushRegistration, description = "the push target, a nonce and its \
        ES256 signature by the device key over them; replaces the key's target"),
    responses(
        (status = 200, description = "Stored: wake-ups go to this target", body = PushRegistered),
        (status = 400, description = "invalid_json, bad_push_target (malformed, or refused by \
         the server's providers: a webhook URL outside --webhook-allow)", body = ErrorBody),
        (status = 401, description = "unknown_device, challenge_invalid, bad_signature", body = ErrorBody),
        (status = 403, description = "key_revoked", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn device_push() {}

#[utoipa::path(post, path = "/api/v1/keys/{id}/revoke", tag = "lifecycle",
    params(("id" = String, Path, description = "The key's id")),
    request_body(content = ReasonBody, description = "optional"),
    responses(
        (status = 200, description = "Revoked (final)", body = StatusChanged),
        (status = 400, description = "invalid_json, invalid_reason", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: a read-scoped API key", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "invalid_transition", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn revoke_key() {}

#[utoipa::path(post, path = "/api/v1/keys/{id}/suspend", tag = "lifecycle",
    params(("id" = String, Path, description = "The key's id")),
    request_body(content = ReasonBody, description = "optional"),
    responses(
        (status = 200, description = "Suspended until resumed", body = StatusChanged),
        (status = 400, description = "invalid_json, invalid_reason", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: a read-scoped API key", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "invalid_transition", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn suspend_key() {}

#[utoipa::path(post, path = "/api/v1/keys/{id}/resume", tag = "lifecycle",
    params(("id" = String, Path, description = "The key's id")),
    request_body(content = ReasonBody, description = "optional"),
    responses(
        (status = 200, description = "Active again", body = StatusChanged),
        (status = 400, description = "invalid_json, invalid_reason", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: a read-scoped API key", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "invalid_transition", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn resume_key() {}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "organisation",
    responses((status = 200, description = "This document", content_type = "application/json")))]
#[allow(dead_code)]
fn openapi_json() {}

#[utoipa::path(get, path = "/activate/{token}", tag = "activation",
    params(("token" = String, Path, description = "The activation token from the invite mail")),
    responses(
        (status = 200, description = "A page with the link and its QR code, to scan with the phone",
         body = String, content_type = "text/html"),
        (status = 404, description = "The one neutral page for unknown, used, expired and \
         replaced links", body = String, content_type = "text/html"),
        (status = 429, description = "Too many lookups from this address", body = String,
         content_type = "text/html"),
    ))]
#[allow(dead_code)]
fn activation_page() {}

#[utoipa::path(post, path = "/api/v1/keys/{id}/registrations", tag = "registrations",
    params(("id" = String, Path, description = "The key's id")),
    request_body = NewRegistration,
    responses(
        (status = 202, description = "Pending until the phone's next sync (expires in 10 minutes)",
         body = RegistrationCreated),
        (status = 400, description = "invalid_json, invalid_display_name, \
         invalid_creation_options, invalid_origin, rp_id_mismatch, invalid_graph_user, \
         graph_not_configured", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: a read-scoped API key", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "key_not_active, too_many_pending", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn create_registration() {}

#[utoipa::path(get, path = "/api/v1/registrations/{id}", tag = "registrations",
    params(("id" = String, Path, description = "The registration's id")),
    responses(
        (status = 200, description = "Its status, and graph_body once completed", body = Registration),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn get_registration() {}

#[utoipa::path(post, path = "/api/v1/device/registrations/{id}", tag = "devices",
    params(("id" = String, Path, description = "The registration's id (from the sync's job)")),
    request_body = RegistrationResult,
    responses(
        (status = 200, description = "Outcome recorded", body = ResultAccepted),
        (status = 400, description = "invalid_json, invalid_request, invalid_attestation", body = ErrorBody),
        (status = 401, description = "unknown_device, challenge_invalid, bad_signature", body = ErrorBody),
        (status = 404, description = "not_found: no such registration for this key", body = ErrorBody),
        (status = 409, description = "registration_closed, key_not_active", body = ErrorBody),
        (status = 410, description = "registration_expired", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn device_registration_result() {}

#[utoipa::path(get, path = "/.well-known/assetlinks.json", tag = "app links",
    responses(
        (status = 200, description = "Android App Links: the Digital Asset Links statements for \
         the apps given with `serve --android-app`", content_type = "application/json"),
        (status = 404, description = "No Android app is configured", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn assetlinks() {}

#[utoipa::path(get, path = "/.well-known/apple-app-site-association", tag = "app links",
    responses(
        (status = 200, description = "iOS Universal Links: the apps given with \
         `serve --ios-app`, for the activation path", content_type = "application/json"),
        (status = 404, description = "No iOS app is configured", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn apple_app_site_association() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(METHOD, path)` of every operation in the document.
    fn documented() -> Vec<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(&JSON).unwrap();
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                ops.push((method.to_uppercase(), path.clone()));
            }
        }
        ops
    }

    /// Each `.route("PATH", METHOD(…))` in the router's source, nested ones with their
    /// prefix. Reading the source is the one way to list an axum router's routes.
    fn registered() -> Vec<(String, String)> {
        let source = include_str!("api.rs");
        let router = &source[source.find("pub fn router(").unwrap()..];
        let nested_until = router.find(".nest(\"/api/v1\"").unwrap();
        let mut routes = Vec::new();
        for (at, _) in router.match_indices(".route(") {
            // rustfmt puts a long route's path on a line of its own.
            let rest = router[at + 7..].trim_start();
            let Some(rest) = rest.strip_prefix('"') else {
                continue;
            };
            let path = &rest[..rest.find('"').unwrap()];
            let after = rest[path.len() + 1..].trim_start_matches([',', ' ', '\n']);
            let method = after[..after.find('(').unwrap()].to_uppercase();
            let prefix = if at < nested_until { "/api/v1" } else { "" };
            routes.push((method, format!("{prefix}{path}")));
        }
        routes
    }

    #[test]
    fn every_route_the_router_registers_is_documented_and_nothing_else() {
        let mut registered = registered();
        let mut documented = documented();
        registered.sort();
        documented.sort();
        assert!(registered.len() >= 7, "{registered:?}");
        assert_eq!(registered, documented);
    }

    #[test]
    fn the_document_is_openapi_3_1_with_the_bearer_scheme_and_error_schema() {
        let doc: serde_json::Value = serde_json::from_str(&JSON).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(
            doc["components"]["securitySchemes"]["api_key"]["scheme"],
            "bearer"
        );
        let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
        assert!(error["error"].is_object() && error["message"].is_object());
    }
}
