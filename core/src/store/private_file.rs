//! Database files readable by their owner only.

use std::path::Path;

/// Creates a database file with owner-only permissions if it does not exist yet (the
/// credential store and the pairing store). SQLite gives its `-wal` and `-shm` files the same
/// permissions as the database file. The error says which file.
#[cfg(unix)]
pub(crate) fn create_private_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

#[cfg(not(unix))]
pub(crate) fn create_private_file(_path: &Path) -> Result<(), String> {
    Ok(()) // SQLite creates it (SQLITE_OPEN_CREATE)
}
