//! The schema migrations in `org/migrations/`, compiled into the binary (so an installed
//! server needs no migrations folder, and the build needs sqlx's macros for none of it).
//!
//! One set of files serves both backends. They are written in the SQL both run (TEXT,
//! BIGINT, INTEGER, `$N` placeholders); the one word that differs is the byte-string type,
//! written `BLOB` (SQLite) and read as `BYTEA` on PostgreSQL (see docs/org.md).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// Version and file of each migration, in order. A new one is appended, never edited.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "devices", include_str!("../migrations/0002_devices.sql")),
    (
        3,
        "api key scope",
        include_str!("../migrations/0003_api_key_scope.sql"),
    ),
    (4, "console", include_str!("../migrations/0004_console.sql")),
    (
        5,
        "registrations",
        include_str!("../migrations/0005_registrations.sql"),
    ),
    (
        6,
        "status cause",
        include_str!("../migrations/0006_status_cause.sql"),
    ),
    (
        7,
        "push targets",
        include_str!("../migrations/0007_push_targets.sql"),
    ),
    (
        8,
        "orgnodes: wakes and job order",
        include_str!("../migrations/0008_orgnodes_wakes_jobs.sql"),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `sql` as `backend` runs it: on PostgreSQL each word `BLOB` becomes `BYTEA`.
pub fn dialect(sql: &str, backend: Backend) -> Cow<'_, str> {
    if backend == Backend::Sqlite {
        return Cow::Borrowed(sql);
    }
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find("BLOB") {
        let before = rest[..at].chars().next_back();
        let after = rest[at + 4..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(ident) || after.is_some_and(ident) {
            out.push_str("BLOB");
        } else {
            out.push_str("BYTEA");
        }
        rest = &rest[at + 4..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[derive(Debug)]
struct Embedded(Backend);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        let backend = self.0;
        Box::pin(async move {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Owned(dialect(sql, backend).into_owned()),
                        false,
                    )
                })
                .collect())
        })
    }
}

pub async fn migrator(backend: Backend) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(backend)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_word_blob_changes_and_only_on_postgres() {
        let sql = "a BLOB NOT NULL, b BLOBS, c MY_BLOB, d BLOB)";
        assert_eq!(dialect(sql, Backend::Sqlite), sql);
        assert_eq!(
            dialect(sql, Backend::Postgres),
            "a BYTEA NOT NULL, b BLOBS, c MY_BLOB, d BYTEA)"
        );
    }

    #[test]
    fn the_sqlite_migrations_are_the_files_unchanged() {
        // Their checksums are recorded in databases already made: they must not move.
        for &(_, _, sql) in MIGRATIONS {
            assert!(matches!(dialect(sql, Backend::Sqlite), Cow::Borrowed(_)));
        }
    }
}
