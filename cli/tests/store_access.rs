//! Who may open a key's store, as programs see it: one `pocketkey` program per state
//! directory, and `--keyring` only where a Secret Service can keep the master key.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const POCKETKEY: &str = env!("CARGO_BIN_EXE_pocketkey");

/// `pocketkey serve --udp 127.0.0.1:0` on `dir`, returned once it serves (its store open).
struct Serving(Child);

impl Serving {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(POCKETKEY)
            .args([
                "serve",
                "--udp",
                "127.0.0.1:0",
                "--auto-approve",
                "--state-dir",
            ])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            let n = stderr.read_line(&mut line).unwrap();
            assert!(n > 0, "pocketkey serve ended before serving");
            if line.starts_with("PocketKey security key on") {
                break;
            }
        }
        // Keep draining, so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Self(child)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pocketkey(dir: &Path, args: &[&str]) -> Output {
    Command::new(POCKETKEY)
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_second_program_on_one_state_dir_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let first = Serving::start(dir.path());
    let holder = format!("in use by `pocketkey serve` (pid {})", first.0.id());

    let second = pocketkey(
        dir.path(),
        &["serve", "--udp", "127.0.0.1:0", "--auto-approve"],
    );
    assert!(!second.status.success(), "a second serve started");
    let message = stderr(&second);
    assert!(message.contains(&holder), "{message}");
    assert!(
        message.contains("pocketkey.sqlite"),
        "names the store: {message}"
    );

    // Any other program that opens the credential store is refused the same way.
    let listen = pocketkey(dir.path(), &["listen", "--auto-approve"]);
    assert!(!listen.status.success());
    assert!(stderr(&listen).contains(&holder), "{}", stderr(&listen));

    // Once the first is gone (even killed), the store is free again.
    drop(first);
    let _again = Serving::start(dir.path());
}

#[cfg(target_os = "linux")]
#[test]
fn keyring_without_a_session_bus_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(POCKETKEY)
        .args([
            "serve",
            "--udp",
            "127.0.0.1:0",
            "--auto-approve",
            "--keyring",
        ])
        .arg("--state-dir")
        .arg(dir.path())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "serve --keyring started without a bus"
    );
    let message = stderr(&out);
    assert!(
        message.contains(
            "--keyring needs a Secret Service (GNOME Keyring, KWallet) on the session bus; \
             none found — use the key file (default)"
        ),
        "{message}"
    );
    // Nothing was created in the key's place.
    assert!(!dir.path().join("master.key").exists());
    assert!(!dir.path().join("pocketkey.sqlite").exists());
}

/// A session bus with no Secret Service on it (a bare `dbus-run-session`): the same advice.
#[cfg(target_os = "linux")]
#[test]
fn keyring_on_a_bus_without_a_secret_service_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("dbus-run-session")
        .arg("--")
        .arg(POCKETKEY)
        .args([
            "serve",
            "--udp",
            "127.0.0.1:0",
            "--auto-approve",
            "--keyring",
        ])
        .arg("--state-dir")
        .arg(dir.path())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(Stdio::null())
        .output()
        .expect("dbus-run-session (Debian dbus-daemon) is installed by scripts/test.sh");
    assert!(
        !out.status.success(),
        "serve --keyring started without a Secret Service"
    );
    let message = stderr(&out);
    assert!(
        message.contains("--keyring needs a Secret Service (GNOME Keyring, KWallet)"),
        "{message}"
    );
    assert!(!dir.path().join("pocketkey.sqlite").exists());
}
