//! The bridge's master key at rest (issue 17 item 7): in the OS keyring by default, in a
//! 0600 file only with `--key-file`. Without a Secret Service the bridge refuses with an error
//! naming `--key-file` (no silent fallback to a file); with a real one (GNOME Keyring's
//! daemon on a private session bus) the key is kept there, and a `master.key` left by an
//! earlier bridge is moved into it and deleted.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::bridge::{text, BRIDGE};
use p256::SecretKey;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::pairing::store::FILE_NAME;
use pocketkey_core::pairing::{MailboxKeys, PairingRecord, PairingStore, Role};
use rand_core::OsRng;

const KEY: [u8; 32] = [0x5c; 32];

/// What the bridge says when there is no Secret Service.
const NO_SERVICE: &str = "needs a Secret Service (GNOME Keyring, KWallet) on the session bus; \
     none found — start with --key-file";

fn nothing_created(dir: &Path) {
    assert!(!dir.join("master.key").exists(), "a key file was created");
    assert!(!dir.join(FILE_NAME).exists(), "the store was created");
}

/// The bridge refused, naming `--key-file`, and created nothing in `dir`.
fn refused_without_a_keyring(out: &Output, dir: &Path) {
    assert!(
        !out.status.success(),
        "the bridge used a key without a keyring"
    );
    assert!(
        text(&out.stderr).contains(NO_SERVICE),
        "{}",
        text(&out.stderr)
    );
    nothing_created(dir);
}

#[test]
fn without_a_secret_service_the_bridge_refuses_and_names_key_file() {
    // No session bus at all (a service, a container, an ssh login).
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BRIDGE)
        .args(["--list", "--state-dir"])
        .arg(dir.path())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    refused_without_a_keyring(&out, dir.path());

    // A session bus with nobody answering for the Secret Service.
    let out = Command::new("dbus-run-session")
        .arg("--")
        .arg(BRIDGE)
        .args(["--list", "--state-dir"])
        .arg(dir.path())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .expect("dbus-run-session (Debian dbus-daemon) is installed by scripts/test.sh");
    refused_without_a_keyring(&out, dir.path());

    // The file when asked for.
    let out = Command::new(BRIDGE)
        .args(["--key-file", "--list", "--state-dir"])
        .arg(dir.path())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("master.key").exists());
}

/// A store whose key went into the keyring: `--key-file` refuses instead of making a new key
/// file that would never open it, and creates nothing.
#[test]
fn key_file_refuses_a_store_sealed_under_the_keyring() {
    let dir = tempfile::tempdir().unwrap();
    earlier_install(dir.path());
    // What a first start without --key-file leaves: the store, its key moved away.
    fs::remove_file(dir.path().join("master.key")).unwrap();
    let out = Command::new(BRIDGE)
        .args(["--key-file", "--list", "--state-dir"])
        .arg(dir.path())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("start without --key-file"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.path().join("master.key").exists(),
        "a key file was created"
    );
}

/// A state directory as an earlier bridge left it: `master.key` (the key `KEY`) beside a
/// pairings.db with one phone sealed under it.
fn earlier_install(dir: &Path) {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("master.key"))
        .unwrap();
    file.write_all(&KEY).unwrap();
    drop(file);
    let store = PairingStore::open(&dir.join(FILE_NAME), &MasterKey::from_bytes(KEY)).unwrap();
    let ours = SecretKey::random(&mut OsRng);
    let peer = SecretKey::random(&mut OsRng).public_key();
    store
        .insert(&PairingRecord {
            id: MailboxKeys::pairing(&ours, &peer, Role::Bridge).id(),
            role: Role::Bridge,
            name: "Old phone".into(),
            relay_url: "ws://127.0.0.1:1".into(),
            peer_static: peer,
            our_static: ours,
            created_at: 1,
            last_seen: None,
            peer_get_info: None,
            revoked_at: None,
            suspended_at: None,
        })
        .unwrap();
}

/// Runs `pocketkey-bridge --list` twice on `old`, once on `fresh`, then once more on `old`
/// after putting another key file there, inside one private session bus with GNOME Keyring's
/// Secret Service (unlocked with a throw-away password, its files in `home`). Each run's
/// output starts with `== ` and has a line `rc=<exit code>` (and, for the first three,
/// whether a `master.key` exists after it).
fn in_a_keyring_session(home: &Path, old: &Path, fresh: &Path) -> Output {
    let script = r#"
        printf 'throw-away' | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 97
        for dir in "$1" "$1" "$2"; do
            echo "== $dir"
            "$0" --list --state-dir "$dir" 2>&1
            echo "rc=$?"
            if [ -e "$dir/master.key" ]; then echo "key file: present"; else echo "key file: absent"; fi
        done
        echo "== another key file"
        head -c 32 /dev/urandom > "$1/master.key" && chmod 600 "$1/master.key"
        "$0" --list --state-dir "$1" 2>&1
        echo "rc=$?"
    "#;
    Command::new("dbus-run-session")
        .args(["--", "sh", "-c", script, BRIDGE])
        .arg(old)
        .arg(fresh)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_RUNTIME_DIR", home)
        .stdin(Stdio::null())
        .output()
        .expect("dbus-run-session (Debian dbus-daemon) is installed by scripts/test.sh")
}

#[test]
fn the_key_lives_in_a_real_secret_service_and_an_old_key_file_moves_there() {
    assert!(
        Command::new("gnome-keyring-daemon")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "gnome-keyring-daemon (Debian gnome-keyring) is installed by scripts/test.sh"
    );
    let home = tempfile::tempdir().unwrap();
    let old = tempfile::tempdir().unwrap();
    let fresh = tempfile::tempdir().unwrap();
    earlier_install(old.path());

    let out = in_a_keyring_session(home.path(), old.path(), fresh.path());
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    let runs: Vec<&str> = said.split("== ").skip(1).collect();
    assert_eq!(runs.len(), 4, "{said}");

    // First start on the old install: the key moves into the keyring, the file goes, and the
    // moved key opens the store.
    assert!(runs[0].contains("rc=0"), "{}", runs[0]);
    assert!(
        runs[0].contains("master key: moved from") && runs[0].contains("into the OS keyring"),
        "{}",
        runs[0]
    );
    assert!(
        runs[0].contains("Old phone\tws://127.0.0.1:1\t"),
        "{}",
        runs[0]
    );
    assert!(runs[0].contains("key file: absent"), "{}", runs[0]);
    // Later starts: from the keyring, no file.
    assert!(runs[1].contains("rc=0"), "{}", runs[1]);
    assert!(runs[1].contains("Old phone\t"), "{}", runs[1]);
    assert!(!runs[1].contains("moved"), "{}", runs[1]);
    assert!(runs[1].contains("key file: absent"), "{}", runs[1]);
    // A new install: a key in the keyring, none on the disk.
    assert!(runs[2].contains("rc=0"), "{}", runs[2]);
    assert!(runs[2].contains("key file: absent"), "{}", runs[2]);
    let names: Vec<_> = fs::read_dir(fresh.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
    // A key file that is not the key in the keyring: refused, nothing changed.
    assert!(!runs[3].contains("rc=0"), "{}", runs[3]);
    assert!(
        runs[3].contains("the OS keyring already holds another master key"),
        "{}",
        runs[3]
    );
    assert!(old.path().join("master.key").exists(), "the key file went");
}
