//! The organisation record and the admin actions the command line performs on it.

use sqlx::{AnyPool, Row};
use zeroize::Zeroizing;

use crate::api_keys::{self, Scope};
use crate::{audit, ca, clock, secret};

/// The organisation's policy (one type with the phone's): phones receive it at activation
/// and each sync, and enforce it.
pub use pocketkey_core::store::OrgPolicy as Policy;

/// The policy a new organisation starts with: user verification required, PINs of 6 or more.
pub fn default_policy() -> Policy {
    Policy {
        enterprise_rp_ids: Vec::new(),
        user_verification_required: true,
        min_pin_length: 6,
        allowed_rp_ids: Vec::new(),
    }
}

/// What the server needs of the organisation at run time.
#[derive(Debug, Clone)]
pub struct OrgInfo {
    pub name: String,
    pub root_cert_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("an organisation already exists here ({0}); init runs once")]
    Exists(String),
    #[error("no organisation here: run `pocketkey-org init --state-dir DIR --name ORG` first")]
    Missing,
    #[error("the organisation name must be 1 to 128 characters without control characters")]
    BadName,
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Other(String),
}

pub const CLI_ACTOR: &str = "cli";

pub async fn load(pool: &AnyPool) -> Result<OrgInfo, OrgError> {
    let row = sqlx::query("SELECT name, root_cert_pem FROM org WHERE id = 1")
        .fetch_optional(pool)
        .await?
        .ok_or(OrgError::Missing)?;
    Ok(OrgInfo {
        name: row.try_get(0)?,
        root_cert_pem: row.try_get(1)?,
    })
}

pub fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=128).contains(&n) && !name.chars().any(char::is_control) && !name.trim().is_empty()
}

/// Creates the organisation: its CA, batch key and default policy. Refuses when one exists.
pub async fn init(
    pool: &AnyPool,
    name: &str,
    sealer: &pocketkey_core::crypto::seal::Sealer,
) -> Result<(), OrgError> {
    if !valid_name(name) {
        return Err(OrgError::BadName);
    }
    if let Ok(existing) = load(pool).await {
        return Err(OrgError::Exists(existing.name));
    }
    let ca = ca::create(name, sealer).map_err(OrgError::Other)?;
    let policy = serde_json::to_string(&default_policy()).expect("policy serialises");
    let mut tx = pool.begin().await?;
    // The CHECK (id = 1) primary key makes a racing second init fail here.
    sqlx::query(
        "INSERT INTO org (id, name, created_at, root_cert_pem, root_key_sealed, \
         batch_cert_pem, batch_key_sealed, policy_json) VALUES (1, $1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(name)
    .bind(clock::now_string())
    .bind(&ca.root_cert_pem)
    .bind(&ca.root_key_sealed)
    .bind(&ca.batch_cert_pem)
    .bind(&ca.batch_key_sealed)
    .bind(&policy)
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        CLI_ACTOR,
        "org.init",
        name,
        serde_json::json!({ "policy": default_policy() }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates an API key named `name` with `scope`, expiring after `expires_in_days` if given,
/// for `actor` (the audit log's); returns the secret (shown once, stored hashed).
pub async fn create_api_key(
    pool: &AnyPool,
    name: &str,
    scope: Scope,
    expires_in_days: Option<u32>,
    actor: &str,
) -> Result<Zeroizing<String>, OrgError> {
    if !valid_name(name) {
        return Err(OrgError::Other(
            "the API key name must be 1 to 128 characters without control characters".into(),
        ));
    }
    let expires_at = match expires_in_days {
        Some(days @ 1..=api_keys::MAX_EXPIRES_IN_DAYS) => {
            Some(clock::format(clock::in_days(days.into())))
        }
        Some(_) => {
            return Err(OrgError::Other(format!(
                "--expires-in-days must be 1 to {}",
                api_keys::MAX_EXPIRES_IN_DAYS
            )))
        }
        None => None,
    };
    load(pool).await?;
    let secret = secret::new_secret();
    let id = secret::new_id();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO api_keys (id, name, key_hash, created_at, scope, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(name)
    .bind(secret::hash_secret(&secret))
    .bind(clock::now_string())
    .bind(scope.as_str())
    .bind(&expires_at)
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        actor,
        "api_key.create",
        &id,
        serde_json::json!({ "name": name, "scope": scope.as_str(), "expires_at": expires_at }),
    )
    .await?;
    tx.commit().await?;
    Ok(secret)
}

/// Revokes API key `id`; false if there is no such key or it was revoked already.
pub async fn revoke_api_key(pool: &AnyPool, id: &str, actor: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done =
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(clock::now_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    audit::append(&mut tx, actor, "api_key.revoke", id, serde_json::json!({})).await?;
    tx.commit().await?;
    Ok(true)
}
