//! One program at a time on a store: an exclusive lock on `<store file>.lock`.
//!
//! Several programs on one store cannot be made safe piece by piece: the three-strikes PIN
//! rule, the pinUvAuthToken and the credential-ID sealer live in each program's memory, and
//! a reset in one would leave the others' alive. So the first program to open a store holds
//! an exclusive advisory lock (`flock` on unix, `LockFileEx` on Windows, through
//! [`std::fs::File::try_lock`]) on a lock file beside it until it closes the store or dies;
//! the kernel drops the lock of a killed process. The holder writes its pid and command into
//! the file, so a second program is told who to stop.
//!
//! Within one process, every open of the same store shares one lock (the apps' bindings
//! keep a second connection for reads while the engine waits for the user).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::types::StoreError;

/// Appended to the store file's name to name its lock file.
pub const LOCK_SUFFIX: &str = ".lock";

/// The lock of one store, held until the last store handle of this process drops it.
#[derive(Debug)]
pub(super) struct StoreLock {
    // Closing the file releases the lock.
    _file: File,
}

/// Locks this process holds, by canonical store path.
static HELD: Mutex<Vec<(PathBuf, Weak<StoreLock>)>> = Mutex::new(Vec::new());

impl StoreLock {
    /// Takes (or shares, within this process) the lock of the store file `store`, which
    /// must exist. Fails with [`StoreError::InUse`] naming the holder.
    pub(super) fn acquire(store: &Path) -> Result<Arc<Self>, StoreError> {
        let canonical = std::fs::canonicalize(store).map_err(|e| {
            StoreError::Database(format!("cannot resolve {}: {e}", store.display()))
        })?;
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        held.retain(|(_, lock)| lock.strong_count() > 0);
        if let Some(lock) = held
            .iter()
            .find(|(path, _)| *path == canonical)
            .and_then(|(_, lock)| lock.upgrade())
        {
            return Ok(lock);
        }
        let lock = Arc::new(Self::take(&canonical)?);
        held.push((canonical, Arc::downgrade(&lock)));
        Ok(lock)
    }

    /// Locks the file for this open alone (no sharing within the process).
    fn take(store: &Path) -> Result<Self, StoreError> {
        let mut name = store.file_name().unwrap_or_default().to_os_string();
        name.push(LOCK_SUFFIX);
        let path = store.with_file_name(name);
        let shown = path.display();
        let mut file = open_lock_file(&path)
            .map_err(|e| StoreError::Database(format!("cannot open {shown}: {e}")))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut written = String::new();
                // The holder may be between truncating and writing: then it is unnamed.
                let _ = file.read_to_string(&mut written);
                return Err(StoreError::InUse {
                    holder: describe_holder(&written),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(StoreError::Database(format!("cannot lock {shown}: {e}")))
            }
        }
        file.set_len(0)
            .and_then(|()| file.write_all(holder_record().as_bytes()))
            .map_err(|e| StoreError::Database(format!("cannot write {shown}: {e}")))?;
        Ok(Self { _file: file })
    }
}

#[cfg(unix)]
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false) // the holder's record stays until we hold the lock
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// What the holder writes into the lock file: its pid, then its command, one per line.
fn holder_record() -> String {
    format!("{}\n{}\n", std::process::id(), this_command())
}

/// This program's name and, when it has one, its subcommand (`pocketkey serve`): enough to
/// say which program to stop, and never the rest of the command line (it may hold secrets,
/// such as a hybrid QR code).
fn this_command() -> String {
    let mut args = std::env::args_os();
    let program = args
        .next()
        .as_deref()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown program".into());
    let subcommand = args.next().and_then(|a| a.into_string().ok()).filter(|a| {
        a.len() <= 32
            && a.starts_with(|c: char| c.is_ascii_alphabetic())
            && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    match subcommand {
        Some(sub) => format!("{program} {sub}"),
        None => program,
    }
}

/// "`pocketkey serve` (pid 1234)" from a lock file's record.
fn describe_holder(record: &str) -> String {
    let mut lines = record.lines();
    let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
    let command = lines
        .next()
        .map(|l| {
            l.chars()
                .filter(|c| !c.is_control())
                .take(80)
                .collect::<String>()
        })
        .filter(|c| !c.is_empty());
    match (command, pid) {
        (Some(command), Some(pid)) => format!("`{command}` (pid {pid})"),
        (None, Some(pid)) => format!("another program (pid {pid})"),
        _ => "another program".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_takes_of_one_file_conflict_and_name_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.sqlite");
        File::create(&store).unwrap();
        let first = StoreLock::take(&store).unwrap();
        assert!(dir.path().join("s.sqlite.lock").is_file());
        match StoreLock::take(&store) {
            Err(StoreError::InUse { holder }) => {
                let expected = format!("`{}` (pid {})", this_command(), std::process::id());
                assert_eq!(holder, expected);
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        StoreLock::take(&store).unwrap();
    }

    #[test]
    fn the_record_names_program_and_pid_only() {
        assert_eq!(
            describe_holder("1234\npocketkey serve\n"),
            "`pocketkey serve` (pid 1234)"
        );
        assert_eq!(describe_holder("1234\n"), "another program (pid 1234)");
        assert_eq!(describe_holder(""), "another program");
        assert_eq!(describe_holder("x\ny\n"), "another program");
        assert_eq!(
            describe_holder("7\nevil\u{1b}[2Jname\n"),
            "`evil[2Jname` (pid 7)"
        );
    }

    #[test]
    fn opens_within_one_process_share_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.sqlite");
        File::create(&store).unwrap();
        let a = StoreLock::acquire(&store).unwrap();
        let b = StoreLock::acquire(&dir.path().join(".").join("s.sqlite")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        // Released with the last handle: a fresh take succeeds.
        StoreLock::take(&store).unwrap();
    }
}
