//! `pocketkey-org policy set`: changes the organisation's policy, audited as `policy.change`.
//! Phones receive it when they activate and at each sync.

use sqlx::{AnyPool, Row};

use crate::org::{OrgError, Policy, CLI_ACTOR};
use crate::{audit, org};

/// What to change; `None` (or no RP ids given) keeps the current value.
#[derive(Debug, Default)]
pub struct Change {
    pub enterprise_rp_ids: Option<Vec<String>>,
    pub allowed_rp_ids: Option<Vec<String>>,
    pub user_verification_required: Option<bool>,
    pub min_pin_length: Option<u8>,
}

/// An RP id as WebAuthn uses it: a lower-case domain name.
fn valid_rp_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

pub async fn load(pool: &AnyPool) -> Result<Policy, OrgError> {
    let row = sqlx::query("SELECT policy_json FROM org WHERE id = 1")
        .fetch_optional(pool)
        .await?
        .ok_or(OrgError::Missing)?;
    serde_json::from_str(&row.try_get::<String, _>(0)?)
        .map_err(|e| OrgError::Other(format!("stored policy is not valid: {e}")))
}

/// A change that cannot be made: the field at fault (as `Change` names it) and why.
#[derive(Debug)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

/// Checks a change's values; nothing is stored.
pub fn check(change: &Change) -> Result<(), Invalid> {
    for (field, ids) in [
        ("enterprise_rp_ids", &change.enterprise_rp_ids),
        ("allowed_rp_ids", &change.allowed_rp_ids),
    ] {
        if let Some(id) = ids.iter().flatten().find(|id| !valid_rp_id(id)) {
            return Err(Invalid {
                field,
                message: format!("{id:?} is not an RP id (a lower-case domain name)"),
            });
        }
    }
    if let Some(n) = change.min_pin_length {
        // CTAP 2.1 §6.4: a PIN is at least 4 code points; 63 bytes is its most.
        if !(4..=63).contains(&n) {
            return Err(Invalid {
                field: "min_pin_length",
                message: "the minimum PIN length must be 4 to 63".into(),
            });
        }
    }
    Ok(())
}

pub async fn set(pool: &AnyPool, change: Change) -> Result<Policy, OrgError> {
    set_as(pool, change, CLI_ACTOR).await
}

/// Applies `change`, audited as `policy.change` with `actor`.
pub async fn set_as(pool: &AnyPool, change: Change, actor: &str) -> Result<Policy, OrgError> {
    org::load(pool).await?;
    check(&change).map_err(|e| OrgError::Other(e.message))?;
    let mut tx = pool.begin().await?;
    let row = sqlx::query("SELECT policy_json FROM org WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    let mut policy: Policy = serde_json::from_str(&row.try_get::<String, _>(0)?)
        .map_err(|e| OrgError::Other(format!("stored policy is not valid: {e}")))?;
    if let Some(ids) = change.enterprise_rp_ids {
        policy.enterprise_rp_ids = ids;
    }
    if let Some(ids) = change.allowed_rp_ids {
        policy.allowed_rp_ids = ids;
    }
    if let Some(uv) = change.user_verification_required {
        policy.user_verification_required = uv;
    }
    if let Some(n) = change.min_pin_length {
        policy.min_pin_length = n;
    }
    sqlx::query("UPDATE org SET policy_json = $1 WHERE id = 1")
        .bind(serde_json::to_string(&policy).expect("policy serialises"))
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        actor,
        "policy.change",
        "policy",
        serde_json::json!({ "policy": policy }),
    )
    .await?;
    tx.commit().await?;
    Ok(policy)
}
