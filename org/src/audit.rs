//! The audit log: append-only and hash-chained. Each entry's hash is SHA-256 over a
//! domain tag and every field of the entry, each length-prefixed, including the previous
//! entry's hash; the first entry's previous hash is all zeros. Changing, removing or
//! reordering any entry breaks the chain at that entry (see docs/org.md).

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Connection, Row};

use crate::clock;

/// The previous hash of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const DOMAIN: &[u8] = b"pocketkey-org audit v1";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// A JSON object with the action's details (never a secret).
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Entry {
    /// The hash this entry should carry, from its other fields.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        let seq = self.seq.to_string();
        for field in [
            seq.as_str(),
            &self.at,
            &self.actor,
            &self.action,
            &self.subject,
            &self.detail,
            &self.prev_hash,
        ] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// How often an append retries after another writer took its `seq`.
const APPEND_ATTEMPTS: usize = 16;
/// The PostgreSQL advisory lock appenders queue on (any fixed number: "PKAUDIT" in ASCII).
const PG_APPEND_LOCK: i64 = 0x0050_4b41_5544_4954;

/// Appends an entry on `conn` (inside the caller's transaction, so the action and its audit
/// entry commit together).
///
/// Two nodes appending at once both read the same last entry and both try its `seq + 1`; the
/// primary key lets one in and refuses the other (on PostgreSQL, once the first commits).
/// The loser rolls back to a savepoint taken before its read (its own transaction, the
/// action, survives), reads the new end of the chain and tries again.
///
/// Entries are serial by nature (each hashes the one before, which must be committed first),
/// so on PostgreSQL appenders also queue on a transaction-scoped advisory lock: without it
/// every commit wakes all waiting appenders to race for one `seq`, and a busy one can lose
/// every round. The retry remains for writers that do not take the lock.
pub async fn append(
    conn: &mut AnyConnection,
    actor: &str,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) -> Result<Entry, sqlx::Error> {
    let detail = detail.to_string();
    if conn.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME {
        // Released at the end of the caller's transaction. Wrapped in a count: sqlx's `Any`
        // driver has no type for the function's `void` result.
        sqlx::query("SELECT count(*) FROM (SELECT pg_advisory_xact_lock($1)) AS queued")
            .bind(PG_APPEND_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let mut attempt = 1;
    loop {
        let mut savepoint = conn.begin().await?;
        match try_append(&mut savepoint, actor, action, subject, &detail).await {
            Ok(entry) => {
                savepoint.commit().await?;
                return Ok(entry);
            }
            Err(sqlx::Error::Database(e))
                if e.is_unique_violation() && attempt < APPEND_ATTEMPTS =>
            {
                savepoint.rollback().await?;
                tracing::info!(attempt, "audit seq taken by another node; appending again");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn try_append(
    conn: &mut AnyConnection,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> Result<Entry, sqlx::Error> {
    let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (seq, prev_hash) = match last {
        Some(row) => (row.try_get::<i64, _>(0)? + 1, row.try_get::<String, _>(1)?),
        None => (1, GENESIS.to_string()),
    };
    let mut entry = Entry {
        seq,
        at: clock::now_string(),
        actor: actor.into(),
        action: action.into(),
        subject: subject.into(),
        detail: detail.into(),
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    sqlx::query(
        "INSERT INTO audit (seq, at, actor, action, subject, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry.seq)
    .bind(&entry.at)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.subject)
    .bind(&entry.detail)
    .bind(&entry.prev_hash)
    .bind(&entry.hash)
    .execute(&mut *conn)
    .await?;
    Ok(entry)
}

/// The columns of an [`Entry`], in the order [`from_row`] reads them.
pub const COLUMNS: &str = "seq, at, actor, action, subject, detail, prev_hash, hash";

pub fn from_row(r: &sqlx::any::AnyRow) -> Result<Entry, sqlx::Error> {
    Ok(Entry {
        seq: r.try_get(0)?,
        at: r.try_get(1)?,
        actor: r.try_get(2)?,
        action: r.try_get(3)?,
        subject: r.try_get(4)?,
        detail: r.try_get(5)?,
        prev_hash: r.try_get(6)?,
        hash: r.try_get(7)?,
    })
}

/// Every entry in order.
pub async fn all(pool: &sqlx::AnyPool) -> Result<Vec<Entry>, sqlx::Error> {
    after(pool, 0).await
}

/// The entries after entry `seq`, in order.
pub async fn after(pool: &sqlx::AnyPool, seq: i64) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq"
    ))
    .bind(seq)
    .fetch_all(pool)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// The first entry where the chain breaks, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub seq: i64,
    pub reason: &'static str,
}

/// Checks the chain; the number of entries when intact.
pub fn verify(entries: &[Entry]) -> Result<usize, Broken> {
    verify_after(0, GENESIS, entries)
}

/// Checks that `entries` continue a chain whose entry `seq` has hash `hash` (0 and
/// [`GENESIS`]: the start); the number of entries when intact.
pub fn verify_after(seq: i64, hash: &str, entries: &[Entry]) -> Result<usize, Broken> {
    let mut prev = hash.to_string();
    for (i, e) in entries.iter().enumerate() {
        let broken = |reason| Err(Broken { seq: e.seq, reason });
        if e.seq != seq + i as i64 + 1 {
            return broken("sequence number out of order (an entry is missing)");
        }
        if e.prev_hash != prev {
            return broken("previous hash does not match the entry before it");
        }
        if e.compute_hash() != e.hash {
            return broken("hash does not match the entry's content");
        }
        prev = e.hash.clone();
    }
    Ok(entries.len())
}

pub fn to_ndjson(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| serde_json::to_string(e).expect("entries serialise") + "\n")
        .collect()
}

/// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn to_csv(entries: &[Entry]) -> String {
    let mut out = String::from("seq,at,actor,action,subject,detail,prev_hash,hash\r\n");
    for e in entries {
        let seq = e.seq.to_string();
        let fields = [
            &seq[..],
            &e.at,
            &e.actor,
            &e.action,
            &e.subject,
            &e.detail,
            &e.prev_hash,
            &e.hash,
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Entry> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let mut e = Entry {
                    seq,
                    at: "2026-01-01T00:00:00Z".into(),
                    actor: "cli".into(),
                    action: "invite.create".into(),
                    subject: format!("s{seq}"),
                    detail: "{\"a\":1}".into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = e.compute_hash();
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_damage_names_its_entry() {
        assert_eq!(verify(&chain(3)), Ok(3));
        let mut edited = chain(3);
        edited[1].actor = "someone else".into();
        assert_eq!(verify(&edited).unwrap_err().seq, 2);
        let mut removed = chain(3);
        removed.remove(1);
        assert_eq!(verify(&removed).unwrap_err().seq, 3);
        let mut rehashed = chain(3);
        rehashed[0].detail = "{}".into();
        rehashed[0].hash = rehashed[0].compute_hash();
        assert_eq!(verify(&rehashed).unwrap_err().seq, 2);
    }

    #[test]
    fn csv_quotes_fields_with_commas_and_quotes() {
        let csv = to_csv(&chain(1));
        assert!(csv.contains(",\"{\"\"a\"\":1}\","), "{csv}");
    }
}
