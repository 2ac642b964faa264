//! `POST /api/v1/device/push` (docs/org.md, "Wake-ups"): the phone registers where the server
//! wakes it, authenticated like a sync (a single-use challenge signed with the device key,
//! over `org_protocol::push_signed_bytes`). One target per key: a new registration replaces
//! the old one. The target is checked by the provider it names (a webhook URL against
//! `--webhook-allow`) before it is stored; a server without that provider refuses it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use pocketkey_core::org_protocol;
use pocketkey_core::org_protocol::wire::PushRegistration;
use pocketkey_core::pairing::relay::{
    ApnsEnvironment, PushProvider as ProviderKind, PushTarget, WakeId, MAX_PUSH_TARGET_LEN,
};
use serde::Serialize;

use crate::api::AppState;
use crate::error::ApiError;
use crate::{clock, devices};

#[derive(Serialize, utoipa::ToSchema)]
pub struct PushRegistered {
    provider: String,
}

fn bad_target(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("bad_push_target", why.to_string())
}

/// The typed target of a registration, or why it is not one.
fn parse(req: &PushRegistration) -> Result<PushTarget, ApiError> {
    let provider = ProviderKind::parse(&req.provider)
        .ok_or_else(|| bad_target("provider must be fcm, apns or webhook"))?;
    if req.target.is_empty() || req.target.len() > MAX_PUSH_TARGET_LEN {
        return Err(bad_target(format!(
            "target must be 1..={MAX_PUSH_TARGET_LEN} bytes"
        )));
    }
    let environment = match (&req.environment, provider) {
        (None, _) => None,
        (Some(env), ProviderKind::Apns) => Some(
            ApnsEnvironment::parse(env)
                .ok_or_else(|| bad_target("environment must be production or sandbox"))?,
        ),
        (Some(_), _) => return Err(bad_target("environment is for APNs targets only")),
    };
    let wake =
        WakeId::from_hex(&req.wake).ok_or_else(|| bad_target("wake must be 32 hex digits"))?;
    Ok(PushTarget {
        provider,
        target: req.target.clone(),
        environment,
        wake,
    })
}

pub async fn register(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    payload: Result<Json<PushRegistration>, JsonRejection>,
) -> Result<Json<PushRegistered>, ApiError> {
    if !state.activate_limit.take(addr.ip()) {
        return Err(ApiError::rate_limited());
    }
    let req = crate::api::body(payload)?;
    let target = parse(&req)?;
    let environment = target.environment.map(ApnsEnvironment::as_str);
    let device = devices::authenticate(
        &state,
        &req.key_id,
        &req.nonce,
        &req.signature,
        &org_protocol::push_signed_bytes(
            &req.key_id,
            &req.nonce,
            target.provider.as_str(),
            &target.target,
            environment.unwrap_or(""),
            &req.wake,
        ),
    )
    .await?;
    // A revoked key has nothing more to be told.
    if device.status == "revoked" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "key_revoked",
            "this key was revoked by the organisation",
        ));
    }
    state.wake.check_target(&target).map_err(bad_target)?;
    let mut tx = state.pool.begin().await?;
    sqlx::query("DELETE FROM push_targets WHERE key_id = $1")
        .bind(&req.key_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO push_targets (key_id, provider, target, environment, wake_id, registered_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&req.key_id)
    .bind(target.provider.as_str())
    .bind(&target.target)
    .bind(environment)
    .bind(target.wake.to_hex())
    .bind(clock::now_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(PushRegistered {
        provider: target.provider.as_str().into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(
        provider: &str,
        target: &str,
        env: Option<&str>,
        wake: &str,
    ) -> PushRegistration {
        PushRegistration {
            key_id: "k".into(),
            nonce: "n".into(),
            signature: "s".into(),
            provider: provider.into(),
            target: target.into(),
            environment: env.map(str::to_owned),
            wake: wake.into(),
        }
    }

    #[test]
    fn a_registration_names_a_provider_a_target_and_a_wake_id() {
        let wake = "ab".repeat(16);
        assert!(parse(&registration(
            "webhook",
            "http://127.0.0.1:9/w",
            None,
            &wake
        ))
        .is_ok());
        let apns = parse(&registration("apns", "00ff", Some("sandbox"), &wake)).unwrap();
        assert_eq!(apns.environment, Some(ApnsEnvironment::Sandbox));
        for bad in [
            registration("sms", "x", None, &wake),
            registration("fcm", "", None, &wake),
            registration("fcm", &"x".repeat(MAX_PUSH_TARGET_LEN + 1), None, &wake),
            registration("fcm", "t", Some("sandbox"), &wake),
            registration("apns", "00ff", Some("staging"), &wake),
            registration("fcm", "t", None, "abcd"),
        ] {
            let error = parse(&bad).unwrap_err();
            assert_eq!(error.code, "bad_push_target");
        }
    }
}
