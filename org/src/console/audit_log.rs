//! The audit page's reads: the filters run in SQL, a page at a time (keyset paging on `seq`,
//! newest first), and the chain is verified incrementally: each view checks only the entries
//! appended since the last view on this server process, from the last verified entry's hash.
//! The first view after a start verifies the whole chain; `pocketkey-org audit verify` always
//! does.

use std::sync::Mutex;

use sqlx::AnyPool;

use super::error::ConsoleError;
use super::pages::AuditFilter;
use super::sql_filter::{like_escape, SqlFilter};
use crate::audit::{self, Broken, Entry, GENESIS};

/// Entries one page shows unless the request asks for fewer.
pub const PAGE: i64 = 100;
/// The most one page shows.
pub const PAGE_MAX: i64 = 500;

/// How far the chain is verified: up to entry `seq` with hash `hash`, or where it broke.
pub struct ChainCheck {
    seq: i64,
    hash: String,
    broken: Option<Broken>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_string(),
            broken: None,
        }
    }
}

/// Verifies the entries new since the last check; the number verified in all, or the break
/// (kept: a broken chain stays reported).
pub async fn verify(
    pool: &AnyPool,
    check: &Mutex<ChainCheck>,
) -> Result<Result<i64, Broken>, ConsoleError> {
    let (seq, hash) = {
        let c = check.lock().map_err(ConsoleError::internal)?;
        if let Some(b) = &c.broken {
            return Ok(Err(b.clone()));
        }
        (c.seq, c.hash.clone())
    };
    let new = audit::after(pool, seq).await?;
    let outcome = audit::verify_after(seq, &hash, &new);
    let mut c = check.lock().map_err(ConsoleError::internal)?;
    // Another request may have got further meanwhile; keep the furthest.
    match (outcome, new.last()) {
        (Err(b), _) => {
            c.broken = Some(b.clone());
            Ok(Err(b))
        }
        (Ok(_), Some(last)) if last.seq > c.seq => {
            c.seq = last.seq;
            c.hash = last.hash.clone();
            Ok(Ok(c.seq))
        }
        (Ok(_), _) => Ok(Ok(c.seq)),
    }
}

/// The filter's SQL condition and its values, in bind order. It may match more than the
/// filter does (the relying party is matched in the details' text); `AuditFilter::apply`
/// then keeps the exact matches.
fn condition(filter: &AuditFilter) -> Result<(String, Vec<String>), ConsoleError> {
    let (from, to) = filter.bounds()?;
    let mut filter_sql = SqlFilter::default();
    let user = filter.user.trim().to_lowercase();
    if !user.is_empty() {
        let pattern = format!("%{}%", like_escape(&user));
        filter_sql.and(
            "(lower(actor) LIKE {} ESCAPE '\\' OR lower(detail) LIKE {} ESCAPE '\\')",
            vec![pattern.clone(), pattern],
        );
    }
    let rp = filter.rp.trim();
    if !rp.is_empty() {
        filter_sql.and(
            "detail LIKE {} ESCAPE '\\'",
            vec![format!("%{}%", like_escape(rp))],
        );
    }
    let action = filter.action.trim();
    if !action.is_empty() {
        filter_sql.and(
            "action LIKE {} ESCAPE '\\'",
            vec![format!("{}%", like_escape(action))],
        );
    }
    if let Some(from) = from {
        filter_sql.and("at >= {}", vec![from]);
    }
    if let Some(to) = to {
        filter_sql.and("at < {}", vec![to]);
    }
    Ok(filter_sql.finish())
}

/// One page of matching entries, newest first, before entry `before` (none: from the
/// newest); and the `before` of the next page, if there are older entries.
pub async fn page(
    pool: &AnyPool,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<(Vec<Entry>, Option<i64>), ConsoleError> {
    let (mut sql, binds) = condition(filter)?;
    if before.is_some() {
        sql = format!("{sql} AND seq < ${}", binds.len() + 1);
    }
    // One more than asked: whether it exists says if there is a next page.
    let query = format!(
        "SELECT {} FROM audit WHERE {sql} ORDER BY seq DESC LIMIT {}",
        audit::COLUMNS,
        limit + 1
    );
    let mut q = sqlx::query(&query);
    for b in &binds {
        q = q.bind(b);
    }
    if let Some(before) = before {
        q = q.bind(before);
    }
    let mut rows = q
        .fetch_all(pool)
        .await?
        .iter()
        .map(audit::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|e| e.seq)
    } else {
        None
    };
    Ok((filter.apply(rows)?, next))
}

/// Every matching entry, oldest first (the export).
pub async fn all(pool: &AnyPool, filter: &AuditFilter) -> Result<Vec<Entry>, ConsoleError> {
    let (sql, binds) = condition(filter)?;
    let query = format!(
        "SELECT {} FROM audit WHERE {sql} ORDER BY seq",
        audit::COLUMNS
    );
    let mut q = sqlx::query(&query);
    for b in &binds {
        q = q.bind(b);
    }
    let rows = q
        .fetch_all(pool)
        .await?
        .iter()
        .map(audit::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    filter.apply(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_condition_numbers_its_values_and_escapes_like() {
        let filter = AuditFilter {
            user: "A_b%".into(),
            action: "invite.".into(),
            from: "2026-01-01".into(),
            ..Default::default()
        };
        let (sql, binds) = condition(&filter).unwrap();
        assert_eq!(
            sql,
            "(lower(actor) LIKE $1 ESCAPE '\\' OR lower(detail) LIKE $2 ESCAPE '\\') \
             AND action LIKE $3 ESCAPE '\\' AND at >= $4"
        );
        assert_eq!(
            binds,
            [
                "%a\\_b\\%%",
                "%a\\_b\\%%",
                "invite.%",
                "2026-01-01T00:00:00Z"
            ]
        );
        assert_eq!(condition(&AuditFilter::default()).unwrap().0, "1 = 1");
    }
}
