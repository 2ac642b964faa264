//! Registering a key on the user's behalf (docs/org.md, "Registering on the user's behalf").
//!
//! `POST /api/v1/keys/{id}/registrations {"creation_options", "origin", "display_name"}`: the
//! admin hands over a relying party's creation options (Microsoft Graph's creationOptions
//! answer) for an active key. The server checks them and the origin, builds the
//! clientDataJSON and stores the registration `pending` with the job the phone will be sent
//! at its next sync. The phone makes the credential with its engine and posts the outcome to
//! `POST /api/v1/device/registrations/{id}`, authenticated by its device key over a
//! single-use challenge. `GET /api/v1/registrations/{id}` then answers the status and, once
//! completed, `graph_body`: what Graph's `POST /users/{id}/authentication/fido2Methods` takes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ciborium::value::Value as Cbor;
use pocketkey_core::org_protocol;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use crate::api::{Admin, AppState};
use crate::creation_options;
use crate::error::ApiError;
use crate::{audit, clock, secret};

/// How long a registration waits for the phone. Graph's own challenge lives 5 minutes by
/// default (longer when asked for), so the admin should fetch the options just before.
pub const REGISTRATION_MINUTES: i64 = 10;
/// Registrations one key may have pending at once.
pub const MAX_PENDING_PER_KEY: i64 = 8;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRegistration {
    /// Graph's `creationOptions` answer as it came (`publicKey`, possibly in `value`).
    #[schema(value_type = Object)]
    pub creation_options: serde_json::Value,
    /// The origin the relying party expects, e.g. `https://login.microsoft.com`.
    pub origin: String,
    /// The name the relying party shows for the key (Graph's `displayName`).
    pub display_name: String,
    /// The Graph user (id or principal name) the server posts `graph_body` to once the
    /// phone completes the registration; only on a server started with `--graph-url`.
    #[serde(default)]
    pub graph_user: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RegistrationCreated {
    pub id: String,
    pub expires_at: String,
}

pub use pocketkey_core::org_protocol::wire::{Job, RegistrationJob, RegistrationResult};

#[derive(Serialize, utoipa::ToSchema)]
pub struct ResultAccepted {
    id: String,
    status: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GraphResponse {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(rename = "attestationObject")]
    attestation_object: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GraphCredential {
    id: String,
    response: GraphResponse,
    #[serde(rename = "clientExtensionResults")]
    #[schema(value_type = Object)]
    client_extension_results: serde_json::Map<String, serde_json::Value>,
}

/// The body of Graph's `POST /users/{id}/authentication/fido2Methods`; binary values are
/// base64url without padding, as Graph's webauthnPublicKeyCredential documents.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GraphBody {
    #[serde(rename = "displayName")]
    display_name: String,
    #[serde(rename = "publicKeyCredential")]
    public_key_credential: GraphCredential,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Registration {
    pub id: String,
    pub key_id: String,
    /// `pending`, `completed`, `denied` or `expired`.
    pub status: String,
    pub rp_id: String,
    pub origin: String,
    pub created_at: String,
    pub expires_at: String,
    pub finished_at: Option<String>,
    /// Once `completed`.
    pub graph_body: Option<GraphBody>,
    /// The server's own post to Graph, for a registration made with `graph_user`.
    pub graph_post: Option<GraphPost>,
}

/// Where the server's post of `graph_body` to Graph is.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GraphPost {
    /// The Graph user it goes to.
    pub user: String,
    /// `waiting` (for the phone), `due`, `posting`, `posted` or `failed`.
    pub status: String,
    /// When it was taken or finished.
    pub at: Option<String>,
    /// Graph's answer (`HTTP 201`, `HTTP 401 InvalidAuthenticationToken`) or why none came.
    pub detail: Option<String>,
}

fn key_not_active(status: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "key_not_active",
        format!("the key is {status}; only an active key registers"),
    )
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(key_id): Path<String>,
    payload: Result<Json<NewRegistration>, JsonRejection>,
) -> Result<(StatusCode, Json<RegistrationCreated>), ApiError> {
    let req = crate::api::body(payload)?;
    let created = start(&state, &admin.actor, &key_id, req).await?;
    Ok((StatusCode::ACCEPTED, Json(created)))
}

/// Checks the options and stores the registration `pending` for `key_id`'s next sync; the
/// REST API and the console both start one here, `actor` being the admin.
pub async fn start(
    state: &AppState,
    actor: &str,
    key_id: &str,
    req: NewRegistration,
) -> Result<RegistrationCreated, ApiError> {
    crate::api::check_display_name(&req.display_name)?;
    if let Some(user) = &req.graph_user {
        if state.graph.is_none() {
            return Err(ApiError::bad_request(
                "graph_not_configured",
                "this server posts to Graph only when started with --graph-url",
            ));
        }
        crate::graph_post::check_user(user)?;
    }
    let options = creation_options::parse(&req.creation_options)?;
    let (origin, host) = creation_options::parse_origin(&req.origin)?;
    creation_options::check_rp_id(&options.rp.id, &host)?;
    let client_data = creation_options::client_data_json(&options.challenge, &origin);
    let id = secret::new_id();
    let now = clock::now_string();
    let expires_at = clock::format(clock::now() + time::Duration::minutes(REGISTRATION_MINUTES));
    let job = Job::Registration(RegistrationJob {
        id: id.clone(),
        org_name: state.org.name.clone(),
        origin: origin.clone(),
        rp: options.rp.clone(),
        user: options.user.clone(),
        client_data_hash: B64URL.encode(Sha256::digest(client_data.as_bytes())),
        algorithms: options.algorithms,
        exclude_credentials: options.exclude_credentials,
        resident_key: options.resident_key,
        user_verification: options.user_verification,
        attestation: options.attestation,
        expires_at: expires_at.clone(),
    });
    let job_json = serde_json::to_string(&job).map_err(ApiError::internal)?;

    let mut tx = state.pool.begin().await?;
    // The job's place in the key's order: the key's count of jobs, taken in this transaction
    // (a refusal below rolls it back). Times are to the second; this order is exact.
    let key = sqlx::query(
        "UPDATE keys SET jobs_made = jobs_made + 1 WHERE id = $1 RETURNING status, jobs_made",
    )
    .bind(key_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("no such key"))?;
    let (status, job_seq): (String, i64) = (key.try_get(0)?, key.try_get(1)?);
    if status != "active" {
        return Err(key_not_active(&status));
    }
    let pending: i64 = sqlx::query(
        "SELECT COUNT(*) FROM registrations WHERE key_id = $1 AND status = 'pending' \
         AND expires_at > $2",
    )
    .bind(key_id)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    if pending >= MAX_PENDING_PER_KEY {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_pending",
            format!("the key has {MAX_PENDING_PER_KEY} registrations pending; wait for them"),
        ));
    }
    sqlx::query(
        "INSERT INTO registrations (id, key_id, status, rp_id, origin, display_name, job_json, \
         client_data_json, created_by, created_at, expires_at, job_seq, graph_user) \
         VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&id)
    .bind(key_id)
    .bind(&options.rp.id)
    .bind(&origin)
    .bind(&req.display_name)
    .bind(&job_json)
    .bind(&client_data)
    .bind(actor)
    .bind(&now)
    .bind(&expires_at)
    .bind(job_seq)
    .bind(&req.graph_user)
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        actor,
        "registration.create",
        &id,
        serde_json::json!({
            "key_id": key_id,
            "rp_id": options.rp.id,
            "origin": origin,
            "account": options.user.name,
            "expires_at": expires_at,
        }),
    )
    .await?;
    crate::wake::owe(&mut tx, key_id, crate::wake::Cause::Job).await?;
    tx.commit().await?;
    state.wake.committed();
    Ok(RegistrationCreated { id, expires_at })
}

/// Marks the pending registrations past their time `expired` in their rows (ended at their
/// expiry), so that the table says what the API answers. One conditional UPDATE: safe on
/// several server nodes at once. Run before registrations are read and by the periodic sweep.
pub async fn expire_due(pool: &AnyPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE registrations SET status = 'expired', finished_at = expires_at \
         WHERE status = 'pending' AND expires_at <= $1",
    )
    .bind(clock::now_string())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The stored status, with a pending registration past its time reported `expired` (in case
/// it expired since [`expire_due`] last ran).
pub fn effective_status(status: String, expires_at: &str) -> String {
    let expired = clock::parse(expires_at).is_none_or(|t| t <= clock::now());
    if status == "pending" && expired {
        "expired".into()
    } else {
        status
    }
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Registration>, ApiError> {
    load(&state.pool, id).await.map(Json)
}

/// A registration as the REST API and the console show it: `graph_body` once completed.
pub async fn load(pool: &AnyPool, id: String) -> Result<Registration, ApiError> {
    expire_due(pool).await?;
    let row = sqlx::query(
        "SELECT key_id, status, rp_id, origin, display_name, client_data_json, credential_id, \
         attestation_object, created_at, expires_at, finished_at, graph_user, graph_post, \
         graph_post_at, graph_post_detail FROM registrations WHERE id = $1",
    )
    .bind(&id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| ApiError::not_found("no such registration"))?;
    let expires_at: String = row.try_get(9)?;
    let status = effective_status(row.try_get(1)?, &expires_at);
    let credential_id: Option<String> = row.try_get(6)?;
    let attestation_object: Option<String> = row.try_get(7)?;
    let graph_body = match (status.as_str(), credential_id, attestation_object) {
        ("completed", Some(credential_id), Some(attestation_object)) => {
            let client_data: String = row.try_get(5)?;
            Some(GraphBody {
                display_name: row.try_get(4)?,
                public_key_credential: GraphCredential {
                    id: credential_id,
                    response: GraphResponse {
                        client_data_json: B64URL.encode(client_data.as_bytes()),
                        attestation_object,
                    },
                    client_extension_results: serde_json::Map::new(),
                },
            })
        }
        _ => None,
    };
    let graph_user: Option<String> = row.try_get(11)?;
    let graph_post = match graph_user {
        Some(user) => {
            let post: Option<String> = row.try_get(12)?;
            Some(GraphPost {
                user,
                status: post.unwrap_or_else(|| "waiting".into()),
                at: row.try_get(13)?,
                detail: row.try_get(14)?,
            })
        }
        None => None,
    };
    Ok(Registration {
        id,
        key_id: row.try_get(0)?,
        status,
        rp_id: row.try_get(2)?,
        origin: row.try_get(3)?,
        created_at: row.try_get(8)?,
        expires_at,
        finished_at: row.try_get(10)?,
        graph_body,
        graph_post,
    })
}

/// The jobs a sync answer carries for `key_id`: its pending, unexpired registrations, in the
/// order they were made.
pub async fn pending_jobs(pool: &AnyPool, key_id: &str) -> Result<Vec<Job>, ApiError> {
    expire_due(pool).await?;
    let rows = sqlx::query(
        "SELECT job_json FROM registrations WHERE key_id = $1 AND status = 'pending' \
         AND expires_at > $2 ORDER BY job_seq",
    )
    .bind(key_id)
    .bind(clock::now_string())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let json: String = r.try_get(0)?;
            serde_json::from_str(&json).map_err(ApiError::internal)
        })
        .collect()
}

fn invalid_result(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_attestation", message)
}

/// What the server reads from the phone's attestation object before handing it on.
struct Attested {
    fmt: String,
    aaguid: [u8; 16],
}

/// Checks that `attestation_object` (WebAuthn L2 §6.5) is for `rp_id`, with the user present
/// (and verified when the RP required it), and that the credential in it is `credential_id`.
/// The attestation statement's signature is the relying party's to verify.
fn check_attestation(
    attestation_object: &[u8],
    credential_id: &[u8],
    rp_id: &str,
    uv_required: bool,
) -> Result<Attested, ApiError> {
    let value: Cbor = ciborium::from_reader(attestation_object)
        .map_err(|_| invalid_result("attestation_object is not CBOR"))?;
    let Cbor::Map(entries) = value else {
        return Err(invalid_result("attestation_object is not a map"));
    };
    let field = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v)
    };
    let fmt = field("fmt")
        .and_then(Cbor::as_text)
        .ok_or_else(|| invalid_result("attestation_object has no fmt"))?
        .to_string();
    if !field("attStmt").is_some_and(Cbor::is_map) {
        return Err(invalid_result("attestation_object has no attStmt"));
    }
    let auth_data = field("authData")
        .and_then(Cbor::as_bytes)
        .ok_or_else(|| invalid_result("attestation_object has no authData"))?;
    // rpIdHash (32) ‖ flags (1) ‖ signCount (4) ‖ aaguid (16) ‖ idLength (2) ‖ id ‖ key…
    // (WebAuthn L2 §6.1, §6.5.1).
    const FLAG_UP: u8 = 0x01;
    const FLAG_UV: u8 = 0x04;
    const FLAG_AT: u8 = 0x40;
    if auth_data.len() < 55 {
        return Err(invalid_result("authData is too short"));
    }
    if auth_data[..32] != Sha256::digest(rp_id.as_bytes())[..] {
        return Err(invalid_result("authData is for another RP id"));
    }
    let flags = auth_data[32];
    if flags & FLAG_AT == 0 || flags & FLAG_UP == 0 {
        return Err(invalid_result(
            "authData lacks attested credential data or user presence",
        ));
    }
    if uv_required && flags & FLAG_UV == 0 {
        return Err(invalid_result(
            "the RP required user verification and authData lacks it",
        ));
    }
    let aaguid: [u8; 16] = auth_data[37..53].try_into().expect("16 bytes");
    let id_len = u16::from_be_bytes([auth_data[53], auth_data[54]]) as usize;
    let id = auth_data
        .get(55..55 + id_len)
        .ok_or_else(|| invalid_result("authData's credential id is cut short"))?;
    if id != credential_id {
        return Err(invalid_result(
            "credential_id is not the credential in authData",
        ));
    }
    Ok(Attested { fmt, aaguid })
}

fn unb64url(field: &str, value: Option<&String>) -> Result<Vec<u8>, ApiError> {
    let value = value
        .ok_or_else(|| ApiError::bad_request("invalid_request", format!("{field} is required")))?;
    B64URL
        .decode(value)
        .map_err(|_| ApiError::bad_request("invalid_request", format!("{field} is not base64url")))
}

/// `POST /api/v1/device/registrations/{id}`: the phone's outcome of a registration job.
pub async fn post_result(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    payload: Result<Json<RegistrationResult>, JsonRejection>,
) -> Result<Json<ResultAccepted>, ApiError> {
    if !state.activate_limit.take(addr.ip()) {
        return Err(ApiError::rate_limited());
    }
    let req = crate::api::body(payload)?;
    let (credential_id, attestation_object) = match req.outcome.as_str() {
        "completed" => (
            unb64url("credential_id", req.credential_id.as_ref())?,
            unb64url("attestation_object", req.attestation_object.as_ref())?,
        ),
        "denied" if req.credential_id.is_none() && req.attestation_object.is_none() => {
            (Vec::new(), Vec::new())
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "outcome is completed (with credential_id and attestation_object) or denied",
            ))
        }
    };
    let device = crate::devices::authenticate(
        &state,
        &req.key_id,
        &req.nonce,
        &req.signature,
        &org_protocol::registration_signed_bytes(
            &req.key_id,
            &req.nonce,
            &id,
            &req.outcome,
            &credential_id,
            &attestation_object,
        ),
    )
    .await?;
    let row = sqlx::query(
        "SELECT key_id, status, rp_id, expires_at, job_json FROM registrations WHERE id = $1",
    )
    .bind(&id)
    .fetch_optional(&state.pool)
    .await?;
    // Another device's registration is answered as an unknown one: its id tells nothing.
    let row = match row {
        Some(row) if row.try_get::<String, _>(0)? == req.key_id => row,
        _ => return Err(ApiError::not_found("no such registration for this key")),
    };
    let (rp_id, expires_at, job_json): (String, String, String) =
        (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
    match effective_status(row.try_get(1)?, &expires_at).as_str() {
        "pending" => {}
        "expired" => {
            return Err(ApiError::new(
                StatusCode::GONE,
                "registration_expired",
                "this registration expired; the admin may ask again",
            ))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "registration_closed",
                "this registration already has its outcome",
            ))
        }
    }
    if device.status != "active" {
        return Err(key_not_active(&device.status));
    }
    let Job::Registration(job) = serde_json::from_str(&job_json).map_err(ApiError::internal)?
    else {
        return Err(ApiError::internal("a stored job is not a registration"));
    };
    let (status, detail) = if req.outcome == "completed" {
        let attested = check_attestation(
            &attestation_object,
            &credential_id,
            &rp_id,
            job.user_verification == "required",
        )?;
        (
            "completed",
            serde_json::json!({
                "key_id": req.key_id, "rp_id": rp_id, "outcome": "completed",
                "fmt": attested.fmt, "aaguid": hex::encode(attested.aaguid),
            }),
        )
    } else {
        (
            "denied",
            serde_json::json!({ "key_id": req.key_id, "rp_id": rp_id, "outcome": "denied" }),
        )
    };
    let now = clock::now_string();
    let mut tx = state.pool.begin().await?;
    // `status = 'pending'` again: of two posts racing on two nodes, one wins.
    let updated = sqlx::query(
        "UPDATE registrations SET status = $1, credential_id = $2, attestation_object = $3, \
         finished_at = $4 WHERE id = $5 AND status = 'pending'",
    )
    .bind(status)
    .bind(req.credential_id.as_ref())
    .bind(req.attestation_object.as_ref())
    .bind(&now)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "registration_closed",
            "this registration already has its outcome",
        ));
    }
    audit::append(
        &mut tx,
        &format!("device:{}", req.key_id),
        if status == "completed" {
            "registration.complete"
        } else {
            "registration.deny"
        },
        &id,
        detail,
    )
    .await?;
    // A completed registration made with `graph_user` is now due to be posted to Graph.
    let graph_due = status == "completed"
        && sqlx::query(
            "UPDATE registrations SET graph_post = 'due' WHERE id = $1 AND graph_user IS NOT NULL",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
    tx.commit().await?;
    if let (true, Some(graph)) = (graph_due, &state.graph) {
        graph.committed();
    }
    Ok(Json(ResultAccepted {
        id,
        status: status.into(),
    }))
}
