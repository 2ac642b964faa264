//! The state directory (the embedded SQLite database, the master key file, the default outbox)
//! and the connection to whichever database `--database` names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pocketkey_core::crypto::master_key::{KeyProvider, MasterKey};
use pocketkey_core::crypto::seal::{Purpose, Sealer};
use pocketkey_desktop::state_dir::{prepare_state_dir, FileKeyProvider};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection};

const APP: &str = "pocketkey-org";
const DB_FILE: &str = "org.db";
/// Sealing subkeys of this server are derived with this salt, apart from the phone engine's.
const SEAL_SALT: &[u8] = b"pocketkey-org";

/// `$XDG_STATE_HOME/pocketkey-org`, else `~/.local/state/pocketkey-org`.
pub fn default_state_dir() -> Result<PathBuf, String> {
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(xdg.join(APP));
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .map(|home| home.join(".local/state").join(APP))
        .ok_or_else(|| "cannot find a state directory (HOME is not set): pass --state-dir".into())
}

/// The state directory to use (created 0700 if missing), canonical.
pub fn open_dir(dir: Option<PathBuf>) -> Result<PathBuf, String> {
    let dir = match dir {
        Some(dir) => dir,
        None => default_state_dir()?,
    };
    let (dir, warning) = prepare_state_dir(&dir).map_err(|e| e.to_string())?;
    if let Some(warning) = warning {
        eprintln!("{warning}");
    }
    Ok(dir)
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join(DB_FILE)
}

/// How [`connect`] treats a missing database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// `init`: create it.
    Create,
    /// Every other command: there is no organisation without one, so say so, create nothing.
    Existing,
}

/// Which database a `--database` URL (or its absence) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded default: `<state dir>/org.db`, or the file of a `sqlite://` URL.
    Sqlite(PathBuf),
    /// A PostgreSQL server shared by any number of `serve` processes.
    Postgres(String),
}

impl Database {
    /// `None` is the state directory's SQLite file.
    pub fn parse(url: Option<&str>, dir: &Path) -> Result<Self, String> {
        let Some(url) = url else {
            return Ok(Self::Sqlite(db_path(dir)));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if !path.is_empty() {
                return Ok(Self::Sqlite(PathBuf::from(path)));
            }
        }
        // The URL may carry a password: it is not echoed back.
        Err("--database must be a postgres://, postgresql:// or sqlite://PATH URL".into())
    }

    pub fn backend(&self) -> crate::migrations::Backend {
        match self {
            Self::Sqlite(_) => crate::migrations::Backend::Sqlite,
            Self::Postgres(_) => crate::migrations::Backend::Postgres,
        }
    }

    /// How the database is named in messages: never with the URL's credentials.
    fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(_) => "the PostgreSQL database (--database)".into(),
        }
    }
}

/// Connections a PostgreSQL pool keeps per node at most.
const PG_MAX_CONNECTIONS: u32 = 8;

/// Opens the database and brings its schema up to date.
///
/// One pool type for both backends (sqlx's `Any` driver), so every query is written once
/// with `$N` placeholders and the types both take (TEXT, BIGINT, bytes); docs/org.md says
/// why this over one pool type per backend.
pub async fn connect(database: &Database, open: Open) -> Result<AnyPool, String> {
    sqlx::any::install_default_drivers();
    let name = database.describe();
    let pool = match database {
        Database::Sqlite(path) => {
            if open == Open::Existing && !path.exists() {
                let dir = path.parent().unwrap_or(path);
                return Err(format!(
                    "no organisation in {}: run `pocketkey-org init --state-dir DIR --name ORG` first",
                    dir.display()
                ));
            }
            let mode = if open == Open::Create { "rwc" } else { "rw" };
            let url = sqlite_url(path, mode)?;
            // One connection: SQLite serialises writers anyway, and a second connection's
            // deferred transaction could not upgrade to a writer once another one wrote.
            AnyPoolOptions::new()
                .max_connections(1)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // Readers do not block the writer; sqlx's own default leaves the mode alone.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await
        }
        Database::Postgres(url) => {
            // One connection first: a pool that cannot connect says only "timed out", while
            // this says why (refused, authentication, no such database).
            AnyConnection::connect(url)
                .await
                .map_err(|e| format!("cannot open {name}: {e}"))?
                .close()
                .await
                .map_err(|e| format!("cannot open {name}: {e}"))?;
            AnyPoolOptions::new()
                .max_connections(PG_MAX_CONNECTIONS)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
        }
    }
    .map_err(|e| format!("cannot open {name}: {e}"))?;
    crate::migrations::migrator(database.backend())
        .await
        .map_err(|e| format!("bad embedded migrations: {e}"))?
        .run(&pool)
        .await
        .map_err(|e| format!("cannot migrate {name}: {e}"))?;
    Ok(pool)
}

/// `sqlite://<path>?mode=…`, the path percent-encoded where a URL needs it.
fn sqlite_url(path: &Path, mode: &str) -> Result<String, String> {
    let path = path
        .to_str()
        .ok_or_else(|| format!("the database path {} is not UTF-8", path.display()))?;
    let mut encoded = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'%' | b'?' | b'#' | b' ' => encoded.push_str(&format!("%{b:02X}")),
            _ => encoded.push(b as char),
        }
    }
    Ok(format!("sqlite://{encoded}?mode={mode}"))
}

/// The master key in `<dir>/master.key` (32 bytes, 0600), created on first use.
pub fn master_key(dir: &Path) -> Result<MasterKey, String> {
    FileKeyProvider::in_dir(dir)
        .master_key()
        .map_err(|e| e.to_string())
}

/// Seals this server's secrets at rest (the CA and batch private keys).
pub fn sealer(master: &MasterKey) -> Sealer {
    Sealer::with_salt(master, Purpose::Store, SEAL_SALT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_pick_the_backend_and_a_refused_one_is_not_echoed() {
        let dir = Path::new("/state");
        assert_eq!(
            Database::parse(None, dir),
            Ok(Database::Sqlite(PathBuf::from("/state/org.db")))
        );
        assert_eq!(
            Database::parse(Some("sqlite:///srv/org.db?mode=rw"), dir),
            Ok(Database::Sqlite(PathBuf::from("/srv/org.db")))
        );
        for url in ["postgres://u@h/db", "postgresql://u@h/db"] {
            assert_eq!(
                Database::parse(Some(url), dir),
                Ok(Database::Postgres(url.into()))
            );
        }
        for bad in ["mysql://u:hunter2@h/db", "sqlite://", "hunter2"] {
            let e = Database::parse(Some(bad), dir).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
        let pg = Database::Postgres("postgres://u:hunter2@h/db".into());
        assert!(!pg.describe().contains("hunter2"));
    }

    #[test]
    fn sqlite_urls_escape_what_a_url_would_misread() {
        assert_eq!(
            sqlite_url(Path::new("/a b/x?y#z%.db"), "rw").unwrap(),
            "sqlite:///a%20b/x%3Fy%23z%25.db?mode=rw"
        );
    }
}
