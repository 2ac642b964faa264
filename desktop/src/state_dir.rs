//! Where the desktop key keeps its master key and its files: the state directory, a 0600 key
//! file, or the OS keyring.
//!
//! The key's bytes go from the file or the keyring straight into [`MasterKey`]'s own heap
//! buffer; every intermediate buffer is a `Zeroizing` one, so no copy outlives its use.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pocketkey_core::crypto::master_key::{KeyProvider, KeyProviderError, MasterKey};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// Keyring service name.
pub const KEYRING_SERVICE: &str = "pocketkey";
/// Name of the key file inside the state directory.
pub const KEY_FILE_NAME: &str = "master.key";
/// Name of the credential store inside the state directory.
pub const STORE_FILE_NAME: &str = "pocketkey.sqlite";

const KEY_LEN: usize = 32;

const KEYRING_HINT: &str =
    "without --keyring the key is kept in a 0600 file in the state directory";

/// Why `--keyring` cannot work on a Linux desktop without a Secret Service.
pub const NO_SECRET_SERVICE: &str = "--keyring needs a Secret Service (GNOME Keyring, KWallet) \
     on the session bus; none found — use the key file (default)";

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("cannot find a data directory (HOME is not set): pass --state-dir")]
    NoHome,
    #[error("cannot create the state directory {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot resolve the state directory {}: {source}", path.display())]
    Resolve { path: PathBuf, source: io::Error },
    #[error("cannot read the state directory {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
}

/// The platform data directory of the program `app` (`pocketkey`, `pocketkey-bridge`):
/// `$XDG_DATA_HOME/<app>`, else `~/.local/share/<app>` (`~/Library/Application Support/<app>`
/// on macOS).
pub fn default_state_dir(app: &str) -> Result<PathBuf, StateDirError> {
    state_dir_from(
        app,
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
    )
}

fn state_dir_from(
    app: &str,
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf, StateDirError> {
    if !cfg!(target_os = "macos") {
        if let Some(xdg) = xdg.map(PathBuf::from).filter(|p| p.is_absolute()) {
            return Ok(xdg.join(app));
        }
    }
    let home = home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .ok_or(StateDirError::NoHome)?;
    if cfg!(target_os = "macos") {
        Ok(home.join("Library/Application Support").join(app))
    } else {
        Ok(home.join(".local/share").join(app))
    }
}

/// The state directory a program runs in: `dir`, or `app`'s default; created (0700) if
/// missing, a warning printed if others can read it. Returns its canonical path.
pub fn open_state_dir(dir: Option<PathBuf>, app: &str) -> Result<PathBuf, StateDirError> {
    let dir = match dir {
        Some(dir) => dir,
        None => default_state_dir(app)?,
    };
    let (dir, warning) = prepare_state_dir(&dir)?;
    if let Some(warning) = warning {
        eprintln!("{warning}");
    }
    Ok(dir)
}

/// Creates the state directory (mode 0700, parents as needed) and returns its canonical path
/// and, when it already existed with access for group or others, a warning to show.
pub fn prepare_state_dir(dir: &Path) -> Result<(PathBuf, Option<String>), StateDirError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StateDirError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
    let canonical = fs::canonicalize(dir).map_err(|source| StateDirError::Resolve {
        path: dir.to_path_buf(),
        source,
    })?;
    let meta = fs::metadata(&canonical).map_err(|source| StateDirError::Read {
        path: canonical.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(StateDirError::NotADirectory(canonical));
    }
    let mode = meta.permissions().mode() & 0o777;
    let warning = (mode & 0o077 != 0).then(|| {
        format!(
            "warning: the state directory {} is accessible to other users (mode {mode:03o}); \
             consider `chmod 700 {}`",
            canonical.display(),
            canonical.display()
        )
    });
    Ok((canonical, warning))
}

/// The master key in a file of 32 raw bytes, mode 0600, created on first use.
#[derive(Debug, Clone)]
pub struct FileKeyProvider {
    path: PathBuf,
}

impl FileKeyProvider {
    /// The key file `master.key` inside `state_dir`.
    pub fn in_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(KEY_FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> io::Result<Option<MasterKey>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let shown = self.path.display();
        if !meta.is_file() {
            return Err(io::Error::other(format!("{shown} is not a regular file")));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(io::Error::other(format!(
                "refusing to use the key file {shown}: it is readable by group or others (mode {mode:03o}); \
                 if nobody else could have read it, run `chmod 600 {shown}`"
            )));
        }
        if meta.len() != KEY_LEN as u64 {
            return Err(io::Error::other(format!(
                "the key file {shown} is damaged: {} bytes instead of {KEY_LEN}",
                meta.len()
            )));
        }
        let mut bytes = Zeroizing::new(vec![0u8; KEY_LEN]);
        file.read_exact(&mut bytes)?;
        let key = MasterKey::from_slice(&bytes).expect("KEY_LEN bytes were read");
        Ok(Some(key))
    }

    /// Writes a new key to a private temporary file, then links it into place: the key file
    /// either does not exist or is complete, and a concurrent creator wins cleanly.
    fn create(&self) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{KEY_FILE_NAME}.{}.{:08x}.tmp",
            std::process::id(),
            OsRng.next_u32()
        ));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let key = MasterKey::generate();
            file.write_all(key.expose())?;
            file.sync_all()?;
            drop(file);
            match fs::hard_link(&tmp, &self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            File::open(dir)?.sync_all()
        })();
        let _ = fs::remove_file(&tmp);
        result
    }
}

impl KeyProvider for FileKeyProvider {
    fn master_key(&self) -> Result<MasterKey, KeyProviderError> {
        let err = |e: io::Error| match e.kind() {
            // Our own messages already name the file.
            io::ErrorKind::Other => KeyProviderError(e.to_string()),
            _ => KeyProviderError(format!("{}: {e}", self.path.display())),
        };
        if let Some(key) = self.load().map_err(err)? {
            return Ok(key);
        }
        self.create().map_err(err)?;
        self.load().map_err(err)?.ok_or_else(|| {
            KeyProviderError(format!("{}: vanished after creation", self.path.display()))
        })
    }
}

/// The master key in the OS keyring (service "pocketkey", user = the canonical state dir):
/// the Keychain on macOS; on Linux the Secret Service (GNOME Keyring, KWallet) on the session
/// bus, which keeps it across reboots. Without a session bus it refuses at once
/// ([`NO_SECRET_SERVICE`]) rather than fall back to a store that forgets the key.
#[derive(Debug, Clone)]
pub struct KeyringKeyProvider {
    user: String,
    /// What to tell the user when no Secret Service answers (Linux), and after other keyring
    /// errors.
    no_service: &'static str,
    hint: &'static str,
}

impl KeyringKeyProvider {
    pub fn for_state_dir(canonical_state_dir: &Path) -> Self {
        Self {
            user: canonical_state_dir.to_string_lossy().into_owned(),
            no_service: NO_SECRET_SERVICE,
            hint: KEYRING_HINT,
        }
    }

    /// The same, with `no_service` as the error when no Secret Service answers and `hint`
    /// after other keyring errors (a program whose default is the keyring names its own file
    /// option there).
    pub fn advising(mut self, no_service: &'static str, hint: &'static str) -> Self {
        self.no_service = no_service;
        self.hint = hint;
        self
    }

    fn entry(&self) -> Result<keyring::Entry, KeyProviderError> {
        check_secret_service_bus(
            std::env::var_os("DBUS_SESSION_BUS_ADDRESS"),
            self.no_service,
        )?;
        keyring::Entry::new(KEYRING_SERVICE, &self.user)
            .map_err(|e| keyring_error("find", e, self.no_service, self.hint))
    }

    /// Moves the key of `file` (if that file exists) into this keyring entry, then deletes
    /// the file: an install made with a key file beside its data keeps its data, and the key
    /// no longer sits on the disk. The file goes only once the keyring gave the same key back;
    /// an entry that already holds another key is an error and nothing changes. True if a
    /// file was moved.
    pub fn adopt_file(&self, file: &FileKeyProvider) -> Result<bool, KeyProviderError> {
        let shown = file.path.display();
        let Some(key) = file
            .load()
            .map_err(|e| KeyProviderError(format!("{shown}: {e}")))?
        else {
            return Ok(false);
        };
        let entry = self.entry()?;
        let held = match entry.get_secret() {
            Ok(secret) => Zeroizing::new(secret),
            Err(keyring::Error::NoEntry) => {
                entry
                    .set_secret(key.expose())
                    .map_err(|e| keyring_error("store", e, self.no_service, self.hint))?;
                Zeroizing::new(
                    entry
                        .get_secret()
                        .map_err(|e| keyring_error("read back", e, self.no_service, self.hint))?,
                )
            }
            Err(e) => return Err(keyring_error("read", e, self.no_service, self.hint)),
        };
        if held.as_slice() != key.expose().as_slice() {
            return Err(KeyProviderError(format!(
                "the OS keyring already holds another master key for {} than the key file \
                 {shown}; neither was changed",
                self.user
            )));
        }
        let dir = file.path.parent().unwrap_or(Path::new("."));
        fs::remove_file(&file.path)
            .and_then(|()| File::open(dir)?.sync_all())
            .map_err(|e| KeyProviderError(format!("{shown}: cannot delete it: {e}")))?;
        Ok(true)
    }
}

/// The Secret Service lives on the session bus: no bus address, no keyring (a Linux desktop
/// session always sets it; a service, a container or an ssh login may not).
#[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd"))]
fn check_secret_service_bus(
    address: Option<std::ffi::OsString>,
    advice: &str,
) -> Result<(), KeyProviderError> {
    match address {
        Some(a) if !a.is_empty() => Ok(()),
        _ => Err(KeyProviderError(advice.into())),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd")))]
fn check_secret_service_bus(
    _: Option<std::ffi::OsString>,
    _: &str,
) -> Result<(), KeyProviderError> {
    Ok(())
}

/// A keyring failure, with what to do about it. On Linux a bus without a Secret Service (or
/// one that refuses access) ends here too.
fn keyring_error(
    action: &str,
    e: keyring::Error,
    no_service: &str,
    hint: &str,
) -> KeyProviderError {
    let advice = match e {
        keyring::Error::PlatformFailure(_) | keyring::Error::NoStorageAccess(_)
            if cfg!(any(
                target_os = "linux",
                target_os = "freebsd",
                target_os = "openbsd"
            )) =>
        {
            no_service
        }
        _ => hint,
    };
    KeyProviderError(format!(
        "cannot {action} the master key: OS keyring error: {e} ({advice})"
    ))
}

impl KeyProvider for KeyringKeyProvider {
    fn master_key(&self) -> Result<MasterKey, KeyProviderError> {
        let entry = self.entry()?;
        let from_secret = |secret: Vec<u8>| -> Result<MasterKey, KeyProviderError> {
            // Wrapped at once: the keyring's buffer is wiped when this returns.
            let secret = Zeroizing::new(secret);
            MasterKey::from_slice(&secret).ok_or_else(|| {
                KeyProviderError(format!(
                    "the keyring entry {KEYRING_SERVICE}/{} holds {} bytes, not a {KEY_LEN}-byte key",
                    self.user,
                    secret.len()
                ))
            })
        };
        match entry.get_secret() {
            Ok(secret) => from_secret(secret),
            Err(keyring::Error::NoEntry) => {
                let key = MasterKey::generate();
                entry
                    .set_secret(key.expose())
                    .map_err(|e| keyring_error("store", e, self.no_service, self.hint))?;
                // Read it back so two racing first starts agree on one key.
                from_secret(
                    entry
                        .get_secret()
                        .map_err(|e| keyring_error("read back", e, self.no_service, self.hint))?,
                )
            }
            Err(e) => Err(keyring_error("read", e, self.no_service, self.hint)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_prefers_xdg_data_home() {
        if cfg!(target_os = "macos") {
            return;
        }
        let from = |xdg: Option<&str>, home: Option<&str>| {
            state_dir_from("pocketkey", xdg.map(Into::into), home.map(Into::into))
        };
        let dir = from(Some("/x/data"), Some("/home/u")).unwrap();
        assert_eq!(dir, PathBuf::from("/x/data/pocketkey"));
        let dir = from(Some("relative"), Some("/home/u")).unwrap();
        assert_eq!(dir, PathBuf::from("/home/u/.local/share/pocketkey"));
        let dir = from(None, Some("/home/u")).unwrap();
        assert_eq!(dir, PathBuf::from("/home/u/.local/share/pocketkey"));
        assert!(from(None, None).is_err());
        let bridge = state_dir_from("pocketkey-bridge", None, Some("/home/u".into())).unwrap();
        assert_eq!(
            bridge,
            PathBuf::from("/home/u/.local/share/pocketkey-bridge")
        );
    }

    #[test]
    fn state_dir_is_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/pocketkey");
        let (canonical, warning) = prepare_state_dir(&dir).unwrap();
        assert!(warning.is_none());
        assert_eq!(
            fs::metadata(&canonical).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // Existing and open to others: a warning.
        fs::set_permissions(&canonical, fs::Permissions::from_mode(0o755)).unwrap();
        let (_, warning) = prepare_state_dir(&dir).unwrap();
        assert!(warning.unwrap().contains("chmod 700"));
    }

    #[test]
    fn key_file_is_created_0600_and_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = FileKeyProvider::in_dir(tmp.path());
        let first = provider.master_key().unwrap();
        let meta = fs::metadata(provider.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let second = FileKeyProvider::in_dir(tmp.path()).master_key().unwrap();
        assert_eq!(first.expose(), second.expose());
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE_NAME)]);
    }

    #[test]
    fn racing_creators_agree_on_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        *FileKeyProvider::in_dir(tmp.path())
                            .master_key()
                            .unwrap()
                            .expose()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn key_file_readable_by_others_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = FileKeyProvider::in_dir(tmp.path());
        provider.master_key().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            fs::set_permissions(provider.path(), fs::Permissions::from_mode(mode)).unwrap();
            let err = provider.master_key().unwrap_err().to_string();
            assert!(err.contains("readable by group or others"), "{err}");
            assert!(err.contains("chmod 600"), "{err}");
        }
        fs::set_permissions(provider.path(), fs::Permissions::from_mode(0o400)).unwrap();
        provider.master_key().unwrap();
    }

    #[test]
    fn damaged_key_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = FileKeyProvider::in_dir(tmp.path());
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(provider.path())
            .unwrap();
        let err = provider.master_key().unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn keyring_without_a_session_bus_is_refused_with_advice() {
        for address in [None, Some("".into())] {
            let err = check_secret_service_bus(address, NO_SECRET_SERVICE)
                .unwrap_err()
                .to_string();
            assert!(err.contains(NO_SECRET_SERVICE), "{err}");
        }
        check_secret_service_bus(
            Some("unix:path=/run/user/1000/bus".into()),
            NO_SECRET_SERVICE,
        )
        .unwrap();
    }

    #[test]
    fn key_path_that_is_a_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        DirBuilder::new()
            .mode(0o700)
            .create(tmp.path().join(KEY_FILE_NAME))
            .unwrap();
        assert!(FileKeyProvider::in_dir(tmp.path()).master_key().is_err());
    }
}
