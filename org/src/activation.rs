//! `POST /api/v1/device/activate`: a phone redeems its activation link (docs/org.md,
//! "Activation").
//!
//! The phone sends `{"request": base64(JSON), "signature": base64(DER ECDSA)}`: the signature
//! is by the device key named inside the request, over `org_protocol::activate_signed_bytes`
//! of the exact request bytes. The server checks the signature, the CSR of the enterprise
//! attestation key and the token, then in one transaction marks the token used, turns the key
//! `invited → active`, stores the device's public key and certificate, and audits
//! `key.activate`. Anything refused stores nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePrivateKey;
use pocketkey_core::attestation::verify_csr;
use pocketkey_core::crypto::sealed_box;
use pocketkey_core::org_protocol;
use rand_core::{OsRng, RngCore};
use sqlx::Row;
use zeroize::Zeroizing;

use crate::api::AppState;
use crate::error::ApiError;
use crate::org::Policy;
use crate::{audit, ca, clock, secret};

/// Device names and platforms: 1 to this many characters, no control characters.
const MAX_DEVICE_TEXT: usize = 128;

pub use pocketkey_core::org_protocol::wire::{ActivateRequest, Activated, SealedBatchKey, Signed};

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

fn b64(field: &'static str, value: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(value)
        .map_err(|_| bad("invalid_request", format!("{field} is not base64")))
}

/// Whether `signature` (DER ECDSA P-256 SHA-256) by `public_key` (SEC1) signs `message`.
pub fn check_signature(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), ApiError> {
    let bad_sig = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the request is not signed by the device key",
        )
    };
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| bad_sig())?;
    let signature = p256::ecdsa::DerSignature::try_from(signature).map_err(|_| bad_sig())?;
    key.verify(message, &signature).map_err(|_| bad_sig())
}

fn check_text(field: &'static str, value: &str) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n == 0
        || n > MAX_DEVICE_TEXT
        || value.chars().any(char::is_control)
        || value.trim().is_empty()
    {
        return Err(bad(
            "invalid_request",
            format!("{field} must be 1 to {MAX_DEVICE_TEXT} characters without control characters"),
        ));
    }
    Ok(())
}

fn point(field: &'static str, value: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = b64(field, value)?;
    p256::PublicKey::from_sec1_bytes(&bytes)
        .ok()
        .filter(|_| bytes.len() == 65)
        .map(|_| bytes)
        .ok_or_else(|| {
            bad(
                "invalid_request",
                format!("{field} is not an uncompressed P-256 point"),
            )
        })
}

/// Unknown and superseded tokens: one neutral answer, as on the activation page.
fn link_not_valid() -> ApiError {
    ApiError::not_found_code("link_not_valid", "this activation link is not valid")
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, ApiError> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    B64.decode(body.trim()).map_err(ApiError::internal)
}

pub async fn activate(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    payload: Result<Json<Signed>, JsonRejection>,
) -> Result<Json<Activated>, ApiError> {
    if !state.activate_limit.take(addr.ip()) {
        return Err(ApiError::rate_limited());
    }
    let envelope = crate::api::body(payload)?;
    // The key that signs is named inside the request: parse first, then check the signature.
    let request_bytes = b64("request", &envelope.request)?;
    let req: ActivateRequest = serde_json::from_slice(&request_bytes)
        .map_err(|e| bad("invalid_request", format!("bad activation request: {e}")))?;
    let device_key = point("device_public_key", &req.device_public_key)?;
    let box_key = point("box_public_key", &req.box_public_key)?;
    check_signature(
        &device_key,
        &org_protocol::activate_signed_bytes(&request_bytes),
        &b64("signature", &envelope.signature)?,
    )?;
    check_text("device_name", &req.device_name)?;
    check_text("platform", &req.platform)?;
    let csr = b64("csr", &req.csr)?;
    let attestation_point = verify_csr(&csr).map_err(|e| bad("invalid_csr", e.to_string()))?;
    if attestation_point[..] == device_key[..] || attestation_point[..] == box_key[..] {
        return Err(bad(
            "invalid_csr",
            "the attestation key must differ from the device key",
        ));
    }
    if !secret::looks_like_secret(&req.token) {
        return Err(link_not_valid());
    }

    let mut tx = state.pool.begin().await?;
    let row = sqlx::query(
        "SELECT i.id, i.key_id, i.expires_at, i.used_at, k.status FROM invites i \
         JOIN keys k ON k.id = i.key_id WHERE i.token_hash = $1",
    )
    .bind(secret::hash_secret(&req.token))
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(link_not_valid)?;
    let (invite_id, key_id, expires_at, used_at, status): (
        String,
        String,
        String,
        Option<String>,
        String,
    ) = (
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    );
    // Whoever presents a known token holds its 256 random bits, so naming why it no longer
    // works tells a guesser nothing (a guess only ever meets `link_not_valid`).
    if status == "revoked" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "key_revoked",
            "this key was revoked by the organisation",
        ));
    }
    if used_at.is_some() || status != "invited" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "link_used",
            "this activation link was already used",
        ));
    }
    // A malformed stored time counts as expired.
    if clock::parse(&expires_at).is_none_or(|t| t <= clock::now()) {
        return Err(ApiError::new(
            StatusCode::GONE,
            "link_expired",
            "this activation link has expired; ask for a new invite",
        ));
    }
    let now = clock::now_string();
    // Single use: only the request that flips used_at from NULL goes on.
    let marked = sqlx::query("UPDATE invites SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
        .bind(&now)
        .bind(&invite_id)
        .execute(&mut *tx)
        .await?;
    if marked.rows_affected() != 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "link_used",
            "this activation link was already used",
        ));
    }

    let org = sqlx::query(
        "SELECT name, root_key_sealed, batch_cert_pem, batch_key_sealed, policy_json \
         FROM org WHERE id = 1",
    )
    .fetch_one(&mut *tx)
    .await?;
    let (org_name, root_key_sealed, batch_cert_pem, batch_key_sealed, policy_json): (
        String,
        Vec<u8>,
        String,
        Vec<u8>,
        String,
    ) = (
        org.try_get(0)?,
        org.try_get(1)?,
        org.try_get(2)?,
        org.try_get(3)?,
        org.try_get(4)?,
    );
    let policy: Policy = serde_json::from_str(&policy_json).map_err(ApiError::internal)?;
    let mut serial = [0u8; 16];
    OsRng.fill_bytes(&mut serial);
    let enterprise_der = ca::issue_enterprise(
        &org_name,
        &root_key_sealed,
        &state.sealer,
        &attestation_point,
        &serial,
    )
    .map_err(ApiError::internal)?;
    let batch_pkcs8 = state
        .sealer
        .open(&batch_key_sealed, ca::BATCH_KEY_AAD)
        .map_err(ApiError::internal)?;
    let batch_scalar = Zeroizing::new(
        p256::SecretKey::from_pkcs8_der(&batch_pkcs8)
            .map_err(ApiError::internal)?
            .to_bytes()
            .to_vec(),
    );
    let sealed = sealed_box::seal_to(
        &box_key,
        &batch_scalar,
        &org_protocol::batch_key_context(&key_id),
    )
    .map_err(ApiError::internal)?;

    // `status = 'invited'` again here: a revoke racing this activation on another node wins.
    let activated = sqlx::query(
        "UPDATE keys SET status = 'active', device_name = $1, platform = $2, activated_at = $3, \
         last_seen_at = $3, status_changed_at = $3, status_actor = $4 \
         WHERE id = $5 AND status = 'invited'",
    )
    .bind(&req.device_name)
    .bind(&req.platform)
    .bind(&now)
    .bind(format!("device:{key_id}"))
    .bind(&key_id)
    .execute(&mut *tx)
    .await?;
    if activated.rows_affected() != 1 {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "key_revoked",
            "this key was revoked by the organisation",
        ));
    }
    let enterprise_pem = {
        let body = B64.encode(&enterprise_der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    };
    let serial_hex = hex::encode(serial);
    sqlx::query(
        "INSERT INTO devices (key_id, public_key, enterprise_serial, enterprise_cert_pem, \
         created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key_id)
    .bind(hex::encode(&device_key))
    .bind(&serial_hex)
    .bind(&enterprise_pem)
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        &format!("device:{key_id}"),
        "key.activate",
        &key_id,
        serde_json::json!({
            "device_name": req.device_name,
            "platform": req.platform,
            "enterprise_serial": serial_hex,
        }),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(key = %key_id, "key activated");
    Ok(Json(Activated {
        org_name,
        key_id,
        batch_chain: vec![B64.encode(pem_to_der(&batch_cert_pem)?)],
        batch_key: SealedBatchKey {
            ephemeral: B64.encode(sealed.ephemeral),
            nonce: B64.encode(sealed.nonce),
            ciphertext: B64.encode(&sealed.ciphertext),
        },
        enterprise_chain: vec![B64.encode(&enterprise_der)],
        policy,
    }))
}
