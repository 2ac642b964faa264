//! The server posts a completed registration's `graph_body` to Microsoft Graph itself
//! (docs/org.md, "Registering on the user's behalf"). With `serve --graph-url BASE
//! --graph-token-file PATH`, a registration made with `"graph_user": ID` is posted, once the
//! phone has completed it, to `BASE/users/ID/authentication/fido2Methods` with
//! `Authorization: Bearer <the file's token>`. The file is read at each post, so whatever
//! renews the token (Graph's last about an hour) replaces the file; the token is never
//! logged, stored or shown.
//!
//! Several nodes: completing a registration marks its post `due` in the same transaction; a
//! node takes it with one conditional UPDATE (`due` → `posting`), so it is posted once, and
//! writes the outcome (`posted` or `failed`, with Graph's HTTP status and error code) to the
//! row and the audit log. A node that dies mid-post leaves it `posting`: it is not posted
//! again (Graph may have taken it), and the admin sees it was not confirmed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pocketkey_push::http::{Client, HttpError, HttpVersion, Request};
use sqlx::{AnyPool, Row};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::{audit, clock, lookout, registrations};

/// The longest one post may take.
const POST_DEADLINE: Duration = Duration::from_secs(30);
/// How often the poster looks for posts it was not told of (another node's completions).
const LOOK_EVERY: Duration = Duration::from_secs(30);
/// Posts taken per look.
const BATCH: i64 = 20;
/// A Graph user id or user principal name: `graph_user`'s longest.
const MAX_USER: usize = 256;
/// The token file's largest size (Graph's access tokens are a few KiB).
const MAX_TOKEN: u64 = 64 * 1024;

/// Where and with what the server posts to Graph.
pub struct GraphPoster {
    base: url::Url,
    token_file: PathBuf,
    client: Client,
    notify: Notify,
}

impl std::fmt::Debug for GraphPoster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphPoster")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl GraphPoster {
    /// `base` (e.g. `https://graph.microsoft.com/v1.0`): `https://`, or `http://` to a
    /// loopback address only (tests, a local proxy).
    pub fn new(base: &str, token_file: PathBuf) -> Result<Self, String> {
        let url = url::Url::parse(base).map_err(|e| format!("--graph-url: {e}"))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err("--graph-url must be https:// (http:// only to loopback)".into()),
        }
        if url.cannot_be_a_base() || url.query().is_some() || !url.username().is_empty() {
            return Err("--graph-url must be a plain base URL, without query or user".into());
        }
        Ok(Self {
            base: url,
            token_file,
            client: Client::default(),
            notify: Notify::new(),
        })
    }

    /// Tells the poster that a post was made due (call after the commit).
    pub fn committed(&self) {
        self.notify.notify_one();
    }

    /// `BASE/users/{user}/authentication/fido2Methods`, the user id one path segment.
    fn url_for(&self, user: &str) -> String {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked: a base URL")
            .pop_if_empty()
            .extend(["users", user, "authentication", "fido2Methods"]);
        url.into()
    }

    fn token(&self) -> Result<Zeroizing<String>, &'static str> {
        use std::io::Read as _;
        let file = std::fs::File::open(&self.token_file).map_err(|_| "token file unreadable")?;
        let mut raw = Zeroizing::new(String::new());
        file.take(MAX_TOKEN)
            .read_to_string(&mut raw)
            .map_err(|_| "token file unreadable")?;
        let token = Zeroizing::new(raw.trim().to_string());
        // A header value: visible ASCII only.
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("token file empty or not a token");
        }
        Ok(token)
    }
}

/// Checks a registration's `graph_user`: a Graph user id (a GUID) or user principal name.
pub fn check_user(user: &str) -> Result<(), ApiError> {
    // At least one letter or digit: never a `.` or `..` path segment.
    let ok = (1..=MAX_USER).contains(&user.len())
        && user.bytes().any(|b| b.is_ascii_alphanumeric())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_graph_user",
            format!("graph_user is a Graph user id or principal name: 1 to {MAX_USER} of A-Z a-z 0-9 . _ @ -"),
        ))
    }
}

/// The poster: runs until the process ends.
pub async fn run(pool: AnyPool, poster: Arc<GraphPoster>) {
    let failure = "graph posts: cannot read the posts due";
    lookout::run(&poster.notify, LOOK_EVERY, failure, || look(&pool, &poster)).await;
}

async fn look(pool: &AnyPool, poster: &Arc<GraphPoster>) -> Result<(), sqlx::Error> {
    let due: Vec<(String, String)> = sqlx::query(
        "SELECT id, graph_user FROM registrations WHERE graph_post = 'due' \
         ORDER BY finished_at, id LIMIT $1",
    )
    .bind(BATCH)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
    .collect::<Result<_, sqlx::Error>>()?;
    for (id, user) in due {
        // One node takes it.
        let taken = sqlx::query(
            "UPDATE registrations SET graph_post = 'posting', graph_post_at = $2 \
             WHERE id = $1 AND graph_post = 'due'",
        )
        .bind(&id)
        .bind(clock::now_string())
        .execute(pool)
        .await?
        .rows_affected();
        if taken == 1 {
            let (pool, poster) = (pool.clone(), poster.clone());
            tokio::spawn(async move { post(&pool, &poster, &id, &user).await });
        }
    }
    Ok(())
}

/// What a post came to: (`posted` | `failed`, the detail kept for the admin).
async fn attempt(poster: &GraphPoster, body: Vec<u8>, user: &str) -> (&'static str, String) {
    let token = match poster.token() {
        Ok(token) => token,
        Err(why) => return ("failed", why.into()),
    };
    let request = Request::post(
        poster.url_for(user),
        vec![
            ("authorization".into(), format!("Bearer {}", token.as_str())),
            ("content-type".into(), "application/json".into()),
        ],
        body,
        HttpVersion::Http1,
    );
    match poster.client.send(request, POST_DEADLINE).await {
        Ok(response) if response.status.is_success() => {
            ("posted", format!("HTTP {}", response.status.as_u16()))
        }
        Ok(response) => (
            "failed",
            match graph_error_code(&response.body) {
                Some(code) => format!("HTTP {} {code}", response.status.as_u16()),
                None => format!("HTTP {}", response.status.as_u16()),
            },
        ),
        Err(HttpError::TimedOut) => ("failed", "no answer within 30 s".into()),
        Err(_) => ("failed", "Graph unreachable".into()),
    }
}

/// Graph's `{"error": {"code": …}}`, if it is a plain word (never its message, which may
/// quote the request).
fn graph_error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("error")?.get("code")?.as_str()?;
    let plain = code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    plain.then(|| code.to_string())
}

async fn post(pool: &AnyPool, poster: &GraphPoster, id: &str, user: &str) {
    let body = match registrations::load(pool, id.to_string()).await {
        Ok(registration) => registration.graph_body.map(|b| serde_json::to_vec(&b)),
        Err(error) => {
            tracing::warn!(registration = %id, error = %error.message, "graph post: cannot read the registration");
            return;
        }
    };
    let (outcome, detail) = match body {
        Some(Ok(body)) => attempt(poster, body, user).await,
        _ => ("failed", "no graph_body".into()),
    };
    if outcome == "posted" {
        tracing::info!(registration = %id, %detail, "graph post: posted");
    } else {
        tracing::warn!(registration = %id, %detail, "graph post: failed");
    }
    if let Err(error) = record(pool, id, outcome, &detail).await {
        tracing::warn!(registration = %id, %error, "graph post: cannot record the outcome");
    }
}

async fn record(pool: &AnyPool, id: &str, outcome: &str, detail: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE registrations SET graph_post = $2, graph_post_at = $3, graph_post_detail = $4 \
         WHERE id = $1 AND graph_post = 'posting'",
    )
    .bind(id)
    .bind(outcome)
    .bind(clock::now_string())
    .bind(detail)
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        "server",
        "registration.graph_post",
        id,
        serde_json::json!({ "outcome": outcome, "detail": detail }),
    )
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_url_is_https_or_loopback_and_the_user_one_segment() {
        let poster =
            GraphPoster::new("https://graph.microsoft.com/v1.0/", PathBuf::from("t")).unwrap();
        assert_eq!(
            poster.url_for("alice@acme.example"),
            "https://graph.microsoft.com/v1.0/users/alice@acme.example/authentication/fido2Methods"
        );
        assert!(GraphPoster::new("http://127.0.0.1:9/v1.0", PathBuf::from("t")).is_ok());
        for bad in [
            "http://graph.example/v1.0",
            "ftp://graph.example/",
            "https://u:p@graph.example/",
            "https://graph.example/?x=1",
            "mailto:x@y",
        ] {
            assert!(GraphPoster::new(bad, PathBuf::from("t")).is_err(), "{bad}");
        }
        assert!(check_user("0f9c1d2e-aaaa-4bbb-8ccc-123456789abc").is_ok());
        for bad in ["", "..", ".", "a/b", "a?b", "..%2f", &"a".repeat(257)] {
            assert_eq!(check_user(bad).unwrap_err().code, "invalid_graph_user");
        }
    }

    #[test]
    fn only_a_plain_graph_error_code_is_kept() {
        assert_eq!(
            graph_error_code(br#"{"error":{"code":"badRequest","message":"token=x"}}"#),
            Some("badRequest".into())
        );
        assert_eq!(graph_error_code(br#"{"error":{"code":"a b"}}"#), None);
        assert_eq!(graph_error_code(b"<html>"), None);
    }
}
