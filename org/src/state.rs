//! The state directory: the SQLite database, the master key file, the default outbox.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use pocketkey_core::crypto::master_key::{KeyProvider, MasterKey};
use pocketkey_core::crypto::seal::{Purpose, Sealer};
use pocketkey_desktop::state_dir::{prepare_state_dir, FileKeyProvider};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::SqlitePool;

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

/// Opens the database and brings its schema up to date.
pub async fn connect(dir: &Path, open: Open) -> Result<SqlitePool, String> {
    let path = db_path(dir);
    if open == Open::Existing && !path.exists() {
        return Err(format!(
            "no organisation in {}: run `pocketkey-org init --state-dir DIR --name ORG` first",
            dir.display()
        ));
    }
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .map_err(|e| format!("bad database path {}: {e}", path.display()))?
        .create_if_missing(open == Open::Create)
        .foreign_keys(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    // One connection: SQLite serialises writers anyway, and the audit chain's
    // read-last-then-append is then never interleaved on this node.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    crate::migrations::migrator()
        .await
        .map_err(|e| format!("bad embedded migrations: {e}"))?
        .run(&pool)
        .await
        .map_err(|e| format!("cannot migrate {}: {e}", path.display()))?;
    Ok(pool)
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
