//! CSV import of users: `email,display_name[,groups]` pasted into the console, previewed with
//! an answer for every row (a dry run that changes nothing), then invited. The commit parses
//! and checks the text again rather than trusting the preview, and invites each good row
//! through the same function as the REST API (each its own transaction and audit entry).

use std::collections::HashSet;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use sqlx::Row;

use super::error::ConsoleError;
use super::forms::Post;
use super::session::Session;
use super::{views, Shared};
use crate::api;

/// Rows one import takes (the request body limit, 16 KiB, usually ends it sooner).
pub const MAX_ROWS: usize = 1000;

/// One line of the file and what will happen to it.
pub struct ImportRow {
    /// 1-based line in the pasted text.
    pub line: u64,
    pub email: String,
    pub display_name: String,
    /// Shown in the preview; the server keeps no groups yet.
    pub groups: Vec<String>,
    /// Why this row will not be invited; `None` when it will be.
    pub error: Option<String>,
}

impl ImportRow {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Parses and checks `text` against the inventory (`taken`: e-mail addresses, lower case,
/// with a key that is not revoked). Errors are per row; only an unreadable file is an error.
pub fn check(text: &str, taken: &HashSet<String>) -> Result<Vec<ImportRow>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("the CSV cannot be read: {e}"))?;
        // The line where the record starts, counted in the text itself: on CRLF text (what
        // browsers send from a textarea) the csv crate places a record at the `\n` before it.
        let line = record.position().map_or(i as u64 + 1, |p| {
            let bytes = text.as_bytes();
            let mut start = usize::try_from(p.byte())
                .unwrap_or(bytes.len())
                .min(bytes.len());
            while bytes.get(start).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
                start += 1;
            }
            bytes[..start].iter().filter(|&&b| b == b'\n').count() as u64 + 1
        });
        let field = |n: usize| record.get(n).unwrap_or("").to_string();
        if i == 0 && field(0).eq_ignore_ascii_case("email") {
            continue; // a header row
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(format!("at most {MAX_ROWS} rows per import"));
        }
        let (email, display_name) = (field(0), field(1));
        let groups: Vec<String> = field(2)
            .split(';')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(String::from)
            .collect();
        let error = if !(2..=3).contains(&record.len()) {
            Some(format!(
                "{} columns; expected email,display_name[,groups]",
                record.len()
            ))
        } else if let Err(e) = api::parse_email(&email) {
            Some(e.message)
        } else if let Err(e) = api::check_display_name(&display_name) {
            Some(e.message)
        } else if !seen.insert(email.to_lowercase()) {
            Some("this address is on an earlier row".into())
        } else if taken.contains(&email.to_lowercase()) {
            Some("this address already has an invitation or a key".into())
        } else {
            None
        };
        rows.push(ImportRow {
            line,
            email,
            display_name,
            groups,
            error,
        });
    }
    Ok(rows)
}

async fn taken(pool: &sqlx::AnyPool) -> Result<HashSet<String>, sqlx::Error> {
    sqlx::query("SELECT email FROM keys WHERE status <> 'revoked'")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get::<String, _>(0)?.to_lowercase()))
        .collect()
}

pub async fn page(State(state): State<Shared>, session: Session) -> Result<Response, ConsoleError> {
    session.require(session.role.manages_keys())?;
    Ok(Html(views::import(&state, &session, "", None, None)?).into_response())
}

#[derive(Deserialize)]
pub struct ImportForm {
    csv: String,
}

pub async fn preview(
    State(state): State<Shared>,
    Post { session, form }: Post<ImportForm>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.manages_keys())?;
    let rows =
        check(&form.csv, &taken(&state.app.pool).await?).map_err(ConsoleError::bad_request)?;
    Ok(Html(views::import(
        &state,
        &session,
        &form.csv,
        Some(&rows),
        None,
    )?)
    .into_response())
}

pub async fn commit(
    State(state): State<Shared>,
    Post { session, form }: Post<ImportForm>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.manages_keys())?;
    let mut rows =
        check(&form.csv, &taken(&state.app.pool).await?).map_err(ConsoleError::bad_request)?;
    let actor = session.actor();
    let mut invited = 0;
    for row in rows.iter_mut().filter(|r| r.ok()) {
        match api::invite_user(&state.app, &actor, &row.email, &row.display_name).await {
            Ok(_) => invited += 1,
            Err(e) => row.error = Some(e.message),
        }
    }
    Ok(Html(views::import(
        &state,
        &session,
        "",
        Some(&rows),
        Some(invited),
    )?)
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_row_gets_its_own_reason_and_good_rows_pass() {
        let taken = HashSet::from(["old@acme.example".to_string()]);
        let text = "email,display_name,groups\n\
                    alice@acme.example,Alice,eng;ops\n\
                    not-an-address,Bob\n\
                    \"carol@acme.example\",\"Carol, Jr.\"\n\
                    ALICE@acme.example,Alice again\n\
                    old@acme.example,Old\n\
                    dave@acme.example\n\
                    \n";
        let rows = check(text, &taken).unwrap();
        // Browsers send a textarea's lines with CRLF: the same lines are named.
        let crlf = check(&text.replace('\n', "\r\n"), &taken).unwrap();
        let lines = |rows: &[ImportRow]| rows.iter().map(|r| r.line).collect::<Vec<_>>();
        assert_eq!(lines(&crlf), lines(&rows));
        let summary: Vec<(u64, &str, bool)> = rows
            .iter()
            .map(|r| (r.line, r.email.as_str(), r.ok()))
            .collect();
        assert_eq!(
            summary,
            [
                (2, "alice@acme.example", true),
                (3, "not-an-address", false),
                (4, "carol@acme.example", true),
                (5, "ALICE@acme.example", false),
                (6, "old@acme.example", false),
                (7, "dave@acme.example", false),
            ]
        );
        assert_eq!(rows[0].groups, ["eng", "ops"]);
        assert_eq!(rows[2].display_name, "Carol, Jr.");
        assert!(rows[3].error.as_deref().unwrap().contains("earlier row"));
        assert!(rows[5].error.as_deref().unwrap().contains("1 columns"));
    }
}
