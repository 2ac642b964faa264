//! Admin API keys: what each may do (its scope), until when, and checking a presented one.

use std::fmt;
use std::str::FromStr;

use sqlx::{AnyPool, Row};

use crate::{clock, secret};

/// What an API key may do. `read` keys may only read (GET); `admin` keys may do everything
/// but SCIM; `scim` keys may do SCIM (`/scim/v2`, a directory's provisioning) and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Read,
    Scim,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Read => "read",
            Self::Scim => "scim",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Self::Admin),
            "read" => Ok(Self::Read),
            "scim" => Ok(Self::Scim),
            other => Err(format!("unknown scope {other:?}: admin, read or scim")),
        }
    }
}

/// Longest lifetime `api-key create --expires-in-days` takes (ten years).
pub const MAX_EXPIRES_IN_DAYS: u32 = 3650;

/// A presented key that is known, not revoked and not expired.
pub struct Valid {
    pub name: String,
    pub scope: Scope,
}

/// Looks `presented` up by its hash. Unknown, revoked, expired and malformed keys are all
/// `None`: the caller answers them alike.
pub async fn check(pool: &AnyPool, presented: &str) -> Result<Option<Valid>, sqlx::Error> {
    if !secret::looks_like_secret(presented) {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT name, scope, expires_at FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(secret::hash_secret(presented))
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let expires_at: Option<String> = row.try_get(2)?;
    // A stored time that does not parse counts as expired.
    if let Some(at) = expires_at {
        if clock::parse(&at).is_none_or(|t| t <= clock::now()) {
            return Ok(None);
        }
    }
    let scope: String = row.try_get(1)?;
    Ok(Some(Valid {
        name: row.try_get(0)?,
        // The column's CHECK allows only these three.
        scope: scope
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scope_reads_back_as_itself_and_others_are_refused() {
        for scope in [Scope::Admin, Scope::Read, Scope::Scim] {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert!("root".parse::<Scope>().is_err());
        assert!("SCIM".parse::<Scope>().is_err());
    }
}
