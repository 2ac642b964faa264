//! Console sessions and their cookies, CSRF tokens, and admin roles.
//!
//! The session cookie holds 256 random bits; the database keeps only their SHA-256, so a
//! copy of the database signs nobody in, and every server node sees every session. A session
//! ends after [`IDLE_MINUTES`] without a request or [`ABSOLUTE_HOURS`] after sign-in,
//! whichever comes first. The CSRF token of a session is derived from its id (so it is bound
//! to the session and needs no storage) and must come back in every form.

use axum::extract::{FromRequestParts, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use subtle::ConstantTimeEq;
use url::Url;
use zeroize::Zeroizing;

use super::error::ConsoleError;
use super::forms::{Csrf, Post};
use super::Shared;
use crate::{audit, clock, secret};

pub const IDLE_MINUTES: i64 = 30;
pub const ABSOLUTE_HOURS: i64 = 12;
const CSRF_DOMAIN: &[u8] = b"pocketkey-org console csrf v1";

/// Whether cookies get `Secure` (and the `__Host-` name prefix that requires it).
#[derive(Debug, Clone, Copy)]
pub struct CookiePolicy {
    pub secure: bool,
}

impl CookiePolicy {
    /// `Secure` always, except for a public URL of `http://localhost` (or a loopback
    /// address), where browsers treat the origin as secure but a `Secure` cookie would not
    /// come back over plain HTTP from every browser.
    pub fn for_public_url(url: &Url) -> Self {
        let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        Self {
            secure: !(url.scheme() == "http" && loopback),
        }
    }

    /// The cookie's name: `__Host-` binds it to this exact origin (no Domain, path /).
    pub fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_string()
        }
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path /, `Secure` per policy.
    pub fn set(&self, base: &str, value: &str, max_age_secs: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}",
            self.name(base)
        ))
        .expect("cookie names and hex values are valid header text")
    }

    pub fn clear(&self, base: &str) -> HeaderValue {
        self.set(base, "", 0)
    }
}

pub const SESSION_COOKIE: &str = "pkc_session";

/// The value of cookie `name` in the request, if any.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    KeyAdmin,
    Auditor,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Self::Owner),
            "key_admin" => Some(Self::KeyAdmin),
            "auditor" => Some(Self::Auditor),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::KeyAdmin => "key_admin",
            Self::Auditor => "auditor",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Self::Owner => "Owner",
            Self::KeyAdmin => "Key administrator",
            Self::Auditor => "Auditor (read only)",
        }
    }
    /// Invite users, resend invites (and later suspend and revoke keys).
    pub fn manages_keys(self) -> bool {
        matches!(self, Self::Owner | Self::KeyAdmin)
    }
    /// API keys and other admins.
    pub fn is_owner(self) -> bool {
        self == Self::Owner
    }
}

/// A signed-in admin.
pub struct Session {
    pub id_hash: String,
    pub admin_id: String,
    pub email: String,
    pub role: Role,
    pub csrf: String,
}

impl Session {
    /// How the admin appears in the audit log.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.email)
    }
    pub fn require(&self, allowed: bool) -> Result<(), ConsoleError> {
        if allowed {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden)
        }
    }
    /// Checks a form's CSRF token against this session's, in constant time.
    pub fn check_csrf(&self, presented: &str) -> Result<(), ConsoleError> {
        if presented.as_bytes().ct_eq(self.csrf.as_bytes()).into() {
            Ok(())
        } else {
            Err(ConsoleError::Csrf)
        }
    }
}

fn csrf_for(session_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(CSRF_DOMAIN);
    h.update(session_id.as_bytes());
    hex::encode(h.finalize())
}

fn alive(created_at: &str, last_seen_at: &str) -> bool {
    let now = clock::now();
    let within = |t: &str, d: time::Duration| clock::parse(t).is_some_and(|t| t + d > now);
    within(created_at, time::Duration::hours(ABSOLUTE_HOURS))
        && within(last_seen_at, time::Duration::minutes(IDLE_MINUTES))
}

impl FromRequestParts<Shared> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ConsoleError> {
        let refuse = if parts.method == Method::GET || parts.method == Method::HEAD {
            ConsoleError::SignIn
        } else {
            ConsoleError::SessionEnded
        };
        let Some(id) = read_cookie(&parts.headers, &state.cookies.name(SESSION_COOKIE))
            .filter(|id| secret::looks_like_secret(id))
            .map(Zeroizing::new)
        else {
            return Err(refuse);
        };
        let id_hash = secret::hash_secret(&id);
        let pool = &state.app.pool;
        let row = sqlx::query(
            "SELECT s.admin_id, s.created_at, s.last_seen_at, a.email, a.role \
             FROM console_sessions s JOIN console_admins a ON a.id = s.admin_id \
             WHERE s.id_hash = $1",
        )
        .bind(&id_hash)
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else { return Err(refuse) };
        let (created_at, last_seen_at): (String, String) = (row.try_get(1)?, row.try_get(2)?);
        if !alive(&created_at, &last_seen_at) {
            sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
                .bind(&id_hash)
                .execute(pool)
                .await?;
            return Err(refuse);
        }
        sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE id_hash = $2")
            .bind(clock::now_string())
            .bind(&id_hash)
            .execute(pool)
            .await?;
        let role: String = row.try_get(4)?;
        Ok(Session {
            csrf: csrf_for(&id),
            id_hash,
            admin_id: row.try_get(0)?,
            email: row.try_get(3)?,
            role: Role::parse(&role).ok_or_else(|| ConsoleError::internal("unknown role"))?,
        })
    }
}

/// Starts a session for `admin_id` on `conn` (the caller's transaction); returns the
/// `Set-Cookie` header value that carries it.
pub async fn start(
    conn: &mut AnyConnection,
    cookies: CookiePolicy,
    admin_id: &str,
) -> Result<HeaderValue, sqlx::Error> {
    let id = secret::new_secret();
    let now = clock::now_string();
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, admin_id, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $3)",
    )
    .bind(secret::hash_secret(&id))
    .bind(admin_id)
    .bind(&now)
    .execute(&mut *conn)
    .await?;
    Ok(cookies.set(SESSION_COOKIE, &id, ABSOLUTE_HOURS * 3600))
}

pub async fn sign_out(
    State(state): State<Shared>,
    Post { session, .. }: Post<Csrf>,
) -> Result<Response, ConsoleError> {
    let mut tx = state.app.pool.begin().await?;
    sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(&session.id_hash)
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        &session.actor(),
        "console.sign_out",
        &session.admin_id,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        [(header::SET_COOKIE, state.cookies.clear(SESSION_COOKIE))],
        Redirect::to("/console/login"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_secure_except_on_http_loopback() {
        let policy = |u: &str| CookiePolicy::for_public_url(&Url::parse(u).unwrap());
        assert!(policy("https://org.example").secure);
        assert!(policy("https://localhost:8443").secure);
        assert!(policy("http://org.example").secure);
        assert!(!policy("http://localhost:8080").secure);
        assert!(!policy("http://127.0.0.1:8080").secure);
        let set = policy("https://org.example").set(SESSION_COOKIE, "ab", 60);
        assert_eq!(
            set.to_str().unwrap(),
            "__Host-pkc_session=ab; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
    }

    #[test]
    fn sessions_end_when_idle_or_too_old() {
        let ago = |m: i64| clock::format(clock::now() - time::Duration::minutes(m));
        assert!(alive(&ago(60), &ago(1)));
        assert!(!alive(&ago(60), &ago(IDLE_MINUTES + 1)));
        assert!(!alive(&ago(ABSOLUTE_HOURS * 60 + 1), &ago(0)));
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        assert_ne!(csrf_for("a"), csrf_for("b"));
        assert_eq!(csrf_for("a"), csrf_for("a"));
    }
}
