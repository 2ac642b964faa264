//! The keys page's read: search, status and the stale-keys report run in SQL, a page at a
//! time by keyset on `(created_at, id)`, oldest first, as the REST API's inventory pages.

use sqlx::{AnyPool, Row};

use super::error::ConsoleError;
use super::pages::KeyRow;
use super::sql_filter::{like_escape, SqlFilter};
use crate::api::{KeyEntry, KEY_ENTRY_COLUMNS};

/// Keys one page shows unless the request asks for fewer.
pub const PAGE: i64 = 100;
/// The most one page shows.
pub const PAGE_MAX: i64 = 500;

/// What to list: each part optional, all must match.
pub struct Query<'a> {
    /// Part of the e-mail address or the display name, lower-case.
    pub search: &'a str,
    pub status: &'a str,
    /// Active keys last seen (else activated) before this time, or never.
    pub stale_before: Option<&'a str>,
    /// The page: keys after this one.
    pub after: Option<&'a str>,
    pub limit: i64,
}

/// One page of keys, and the `after` of the next page if there are more.
pub async fn page(
    pool: &AnyPool,
    q: &Query<'_>,
) -> Result<(Vec<KeyRow>, Option<String>), ConsoleError> {
    let mut filter = SqlFilter::default();
    if !q.search.is_empty() {
        let pattern = format!("%{}%", like_escape(q.search));
        filter.and(
            "(lower(k.email) LIKE {} ESCAPE '\\' OR lower(k.display_name) LIKE {} ESCAPE '\\')",
            vec![pattern.clone(), pattern],
        );
    }
    if !q.status.is_empty() {
        filter.and("k.status = {}", vec![q.status.to_string()]);
    }
    if let Some(before) = q.stale_before {
        filter.and(
            "k.status = 'active' AND (COALESCE(k.last_seen_at, k.activated_at) IS NULL \
             OR COALESCE(k.last_seen_at, k.activated_at) < {})",
            vec![before.to_string()],
        );
    }
    if let Some(after) = q.after {
        let exists: Option<String> = sqlx::query("SELECT created_at FROM keys WHERE id = $1")
            .bind(after)
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let created = exists
            .ok_or_else(|| ConsoleError::bad_request("after must name a key of a previous page"))?;
        filter.and(
            // A row-value comparison, as the REST inventory's: one index range on PostgreSQL.
            "(k.created_at, k.id) > ({}, {})",
            vec![created, after.to_string()],
        );
    }
    let (condition, binds) = filter.finish();
    // One more than asked: whether it exists says if there is a next page.
    let sql = format!(
        "SELECT {KEY_ENTRY_COLUMNS}, \
         (SELECT MAX(i.id) FROM invites i WHERE i.key_id = k.id AND i.used_at IS NULL) \
         FROM keys k WHERE {condition} ORDER BY k.created_at, k.id LIMIT {}",
        q.limit + 1
    );
    let mut query = sqlx::query(&sql);
    for b in &binds {
        query = query.bind(b);
    }
    let mut rows = query
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            let entry = KeyEntry::from_row(r)?;
            let invite: Option<String> = r.try_get(14)?;
            Ok(KeyRow {
                invite_id: invite.filter(|_| entry.status == "invited"),
                entry,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let next = if rows.len() as i64 > q.limit {
        rows.truncate(q.limit as usize);
        rows.last().map(|r| r.entry.id.clone())
    } else {
        None
    };
    Ok((rows, next))
}
