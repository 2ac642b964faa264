//! `pocketkey-bridge`, the desktop pairing tool (`docs/pairing-protocol.md`,
//! `docs/architecture.md` §2.1): presents a virtual FIDO security key (CTAPHID over UDP for
//! tests and FIDO tools) that is really the paired phone. INIT/PING/WINK/CANCEL and getInfo
//! are answered here (getInfo from the phone's cached `Hello`); everything else goes to the
//! phone through the relay, with KEEPALIVE from the phone's `Pending` messages.
//!
//! The CTAPHID device loop, its transports and the master-key file are `pocketkey-desktop`'s,
//! shared with the `pocketkey` command line.

mod confirm;
mod link;
mod qr;
mod served;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use clap::Parser;
use pocketkey_core::crypto::master_key::{KeyProvider, MasterKey};
use pocketkey_core::pairing::store::FILE_NAME;
use pocketkey_core::pairing::{PairingRecord, PairingStore, Role};

use crate::link::{select_phone, ForwardingEngine, Link, LinkConfig};
use pocketkey_desktop::ctaphid_loop::Options;
use pocketkey_desktop::device::{self, Device, DeviceArgs};
use pocketkey_desktop::engine::{self, WaitingForUser};
use pocketkey_desktop::{signals, state_dir};

#[derive(Debug, Parser)]
#[command(
    name = "pocketkey-bridge",
    version,
    about = "PocketKey desktop pairing tool: a virtual FIDO security key that is really your phone",
    after_help = "Without --udp the key is a USB security key created through /dev/uhid (Linux)."
)]
struct Cli {
    #[command(flatten)]
    device: DeviceArgs,

    /// The pairing relay's base URL (wss://host[/path]; ws:// only on loopback). Needed to pair.
    /// Repeatable: the nodes of one relay deployment, in order of preference; the first goes
    /// in pairing codes, and the pairing is served through whichever of them attaches (the
    /// next is tried when one fails).
    #[arg(long, value_name = "URL")]
    relay: Vec<String>,

    /// Where the pairing records and their keys live. Default: $XDG_DATA_HOME/pocketkey-bridge.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Keep the master key (which seals the pairing keys) in the 0600 file master.key in the
    /// state directory, for machines without an OS keyring (servers, containers, tests).
    /// Default: the OS keyring (the Secret Service on Linux, the Keychain on macOS), so that a
    /// copy of the state directory alone cannot act as this computer.
    #[arg(long)]
    key_file: bool,

    /// This computer's name, shown on the phone.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// Also write the pairing QR code to FILE as a PNG image (owner-only, mode 0600: it holds
    /// the pairing secret).
    #[arg(long, value_name = "FILE")]
    qr_png: Option<PathBuf>,

    /// Print each pairing URL as a `pair: <url>` line on standard output even when it is not a
    /// terminal (for scripts and tests). The URL holds the pairing secret: without this flag it
    /// is printed only to a terminal, never into a log.
    #[arg(long)]
    print_url: bool,

    /// How long to show pairing codes, in seconds, across the new codes shown after a failed
    /// or expired one. Then, with no phone paired, the bridge exits with an error; with
    /// --pair-another it serves the phone it already had.
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    offer_for: u64,

    /// How long a request waits for the phone before the browser gets
    /// CTAP2_ERR_USER_ACTION_TIMEOUT.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    phone_timeout: u64,

    /// Serve the phone paired under NAME (default: the one served last, else the newest
    /// pairing). Another paired phone takes over if this one revokes the pairing (in a
    /// session: a relay's word only suspends it, see --resume).
    #[arg(long, value_name = "NAME")]
    phone: Option<String>,

    /// Show a pairing code even though a phone is paired, to pair another one; the new phone
    /// is then served only if you answer yes to "Serve ... from now on instead?". Needs --relay.
    #[arg(long, requires = "relay")]
    pair_another: bool,

    /// Answer yes to every question (pair with the phone that shows this code? serve the new
    /// phone?) without asking, and say so on standard error. For tests only: anyone who scans
    /// the code pairs. Without it, answers are lines on standard input (y or yes; anything
    /// else, the end of the input, or no answer within 2 minutes is no).
    #[arg(long)]
    auto_confirm: bool,

    /// List the paired phones (name, relay, pairing id), the one served by default first,
    /// and exit.
    #[arg(long)]
    list: bool,

    /// Revoke the pairing with the phone NAME and exit: a listening phone is told in a session
    /// and forgets it; otherwise the relay is told, and the phone suspends the pairing when it
    /// next attaches. NAME may be left out when one phone is paired.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "", conflicts_with = "list")]
    unpair: Option<String>,

    /// Rename the paired phone NAME to NEW_NAME (on this computer only) and exit.
    #[arg(long, num_args = 2, value_names = ["NAME", "NEW_NAME"], conflicts_with_all = ["list", "unpair"])]
    rename: Option<Vec<String>>,

    /// Resume the suspended pairing with the phone NAME and exit; the next start attaches
    /// again. A pairing is suspended, not deleted, when the relay says the phone removed it
    /// (the relay cannot prove that). NAME may be left out when one phone is paired.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "",
          conflicts_with_all = ["list", "unpair", "rename"])]
    resume: Option<String>,
}

/// The product name the system shows for the USB key.
const DEVICE_NAME: &str = "PocketKey (phone)";

fn default_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .unwrap_or_else(|| "This computer".to_string())
}

/// Where a pairing code goes.
pub struct ShowCode<'a> {
    /// `--print-url`: the `pair:` line even when stdout is not a terminal.
    pub print_url: bool,
    /// `--qr-png`.
    pub png: Option<&'a Path>,
}

/// Shows one pairing code. The URL holds the pairing secret, so it goes only where a person
/// looks: `pair: <url>` and the QR drawing on stdout when it is a terminal (or the `pair:`
/// line alone with `--print-url`), and the PNG, created owner-only, with `--qr-png`. Standard
/// error (which journald keeps) only says that a code is shown.
pub fn show_pairing_url(url: &str, show: &ShowCode, valid_for: Duration) {
    let terminal = std::io::stdout().is_terminal();
    if terminal || show.print_url {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "pair: {url}");
        let _ = out.flush();
        if terminal {
            match qr::terminal(url) {
                Ok(drawing) => {
                    let _ = write!(out, "{drawing}");
                    let _ = writeln!(out, "scan this code with PocketKey on your phone");
                    let _ = out.flush();
                }
                Err(e) => eprintln!("{e}"),
            }
        }
    }
    if let Some(path) = show.png {
        match qr::write_png(url, path) {
            Ok(()) => eprintln!("pairing QR code written to {}", path.display()),
            Err(e) => eprintln!("{e}"),
        }
    }
    let shown = if terminal || show.print_url || show.png.is_some() {
        ""
    } else {
        " (not printed: standard output is not a terminal; use --print-url or --qr-png)"
    };
    eprintln!(
        "showing a pairing code for {}{shown}",
        link::describe_duration(valid_for)
    );
}

/// Tells the relays about unpairings they missed (relay down at the time), so the phones
/// forget them too; says what is still pending.
fn retry_revocations(store: &PairingStore) -> Result<(), String> {
    let pending = store.pending_revocations().map_err(|e| e.to_string())?;
    if pending.is_empty() {
        return Ok(());
    }
    eprintln!(
        "telling the relay about {} earlier unpairing(s)…",
        pending.len()
    );
    let told =
        pocketkey_net::revocation::retry_pending_revocations(store).map_err(|e| e.to_string())?;
    for name in &told {
        eprintln!("unpaired: {name} (the relay was told now)");
    }
    for record in pending.iter().filter(|r| !told.contains(&r.name)) {
        eprintln!(
            "unpaired: {} (the relay could not be told yet; retried at the next start)",
            record.name
        );
    }
    Ok(())
}

/// What `--list` / `--unpair` / `--rename` asked for.
enum Manage {
    List,
    Unpair(Option<String>),
    Resume(Option<String>),
    Rename { name: String, new_name: String },
}

impl Manage {
    fn from_cli(cli: &Cli) -> Option<Self> {
        if cli.list {
            return Some(Manage::List);
        }
        if let Some(name) = &cli.unpair {
            return Some(Manage::Unpair(Some(name.clone()).filter(|n| !n.is_empty())));
        }
        if let Some(name) = &cli.resume {
            return Some(Manage::Resume(Some(name.clone()).filter(|n| !n.is_empty())));
        }
        match cli.rename.as_deref() {
            Some([name, new_name]) => Some(Manage::Rename {
                name: name.clone(),
                new_name: new_name.clone(),
            }),
            _ => None,
        }
    }
}

/// The one paired phone called `name`, or the only one when no name is given; the error
/// names the phones there are.
fn one_phone<'a>(
    phones: &'a [PairingRecord],
    name: Option<&str>,
) -> Result<&'a PairingRecord, String> {
    let names = || {
        let list: Vec<&str> = phones.iter().map(|r| r.name.as_str()).collect();
        if list.is_empty() {
            "no phone is paired".to_string()
        } else {
            format!("paired: {}", list.join(", "))
        }
    };
    let mut found = phones.iter().filter(|r| name.is_none_or(|n| r.name == n));
    match (found.next(), found.next(), name) {
        (Some(record), None, _) => Ok(record),
        (None, _, Some(name)) => Err(format!("no phone named {name:?} ({})", names())),
        (None, _, None) => Err(names()),
        (Some(_), Some(_), None) => Err(format!("name the phone ({})", names())),
        (Some(_), Some(_), Some(name)) => Err(format!(
            "several phones are named {name:?}: rename one with --rename, or unpair them all \
             from the phones"
        )),
    }
}

/// `--list` / `--unpair [NAME]` / `--rename NAME NEW_NAME`.
fn manage(state_dir: &Path, key_file: bool, what: Manage) -> Result<(), String> {
    let master = master_key(state_dir, key_file)?;
    let path = state_dir.join(FILE_NAME);
    let store = PairingStore::open(&path, &master)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    retry_revocations(&store)?;
    let phones: Vec<PairingRecord> = store
        .list()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|r| r.role == Role::Bridge)
        .collect();
    match what {
        Manage::List => {
            // The phone served by default first (the one served last, else the newest), then
            // the others newest first. A suspended pairing says so in a fourth column.
            let mut phones = phones;
            if let Some(served) = served::ServedChoice::in_dir(state_dir).find(&phones) {
                phones.retain(|r| r.id != served.id);
                phones.insert(0, served);
            }
            for record in &phones {
                let state = if record.suspended_at.is_some() {
                    "\tsuspended"
                } else {
                    ""
                };
                println!(
                    "{}\t{}\t{}{state}",
                    record.name,
                    record.relay_url,
                    record.id.to_hex()
                );
            }
        }
        Manage::Unpair(name) => {
            let record = one_phone(&phones, name.as_deref())?;
            store
                .revoke(&record.id, pocketkey_core::clock::unix_now())
                .map_err(|e| e.to_string())?;
            // A listening phone is told in a session (it then deletes the pairing; told only
            // by the relay, it would suspend it).
            if pocketkey_net::pairing::revoke_with_phone(record).is_ok() {
                store.forget(&record.id).map_err(|e| e.to_string())?;
                println!("unpaired: {}", record.name);
            } else {
                println!(
                    "unpaired: {} (the relay could not be told yet; retried at the next start)",
                    record.name
                );
            }
        }
        Manage::Resume(name) => {
            let record = one_phone(&phones, name.as_deref())?;
            if record.suspended_at.is_none() {
                println!("not suspended: {}", record.name);
            } else {
                store.resume(&record.id).map_err(|e| e.to_string())?;
                println!("resumed: {}", record.name);
            }
        }
        Manage::Rename { name, new_name } => {
            let record = one_phone(&phones, Some(&name))?;
            store
                .rename(&record.id, &new_name)
                .map_err(|e| format!("cannot rename to {new_name:?}: {e}"))?;
            println!("renamed: {name} -> {new_name}");
        }
    }
    Ok(())
}

/// Why the default key store cannot work on a Linux machine without a Secret Service.
const NO_SECRET_SERVICE: &str = "the master key is kept in the OS keyring, which needs a Secret \
     Service (GNOME Keyring, KWallet) on the session bus; none found — start with --key-file \
     to keep it in a 0600 file in the state directory instead";
const KEYRING_HINT: &str = "--key-file keeps it in a 0600 file in the state directory instead";

/// The master key: from the OS keyring, or with `--key-file` from `master.key` in the state
/// directory. A `master.key` found in the state directory on a start without `--key-file` is
/// moved into the keyring, and said so.
fn master_key(state_dir: &Path, key_file: bool) -> Result<MasterKey, String> {
    let file = state_dir::FileKeyProvider::in_dir(state_dir);
    if key_file {
        // A store without its key file was sealed under the keyring's key (moved there by an
        // earlier start): a new key file would never open it.
        let store = state_dir.join(FILE_NAME);
        if store.exists() && !file.path().exists() {
            return Err(format!(
                "{} is sealed under the master key in the OS keyring, not under a key file: \
                 start without --key-file (a new {} would not open it)",
                store.display(),
                file.path().display()
            ));
        }
        return file.master_key().map_err(|e| e.to_string());
    }
    let keyring = state_dir::KeyringKeyProvider::for_state_dir(state_dir)
        .advising(NO_SECRET_SERVICE, KEYRING_HINT);
    if keyring.adopt_file(&file).map_err(|e| e.to_string())? {
        eprintln!(
            "master key: moved from {} into the OS keyring (service \"{}\"); the file is deleted",
            file.path().display(),
            state_dir::KEYRING_SERVICE
        );
    }
    keyring.master_key().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pocketkey-bridge: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let stop = signals::stop_flag().map_err(|e| e.to_string())?;
    let state_dir = state_dir::open_state_dir(cli.state_dir.clone(), "pocketkey-bridge")
        .map_err(|e| e.to_string())?;
    if let Some(what) = Manage::from_cli(&cli) {
        return manage(&state_dir, cli.key_file, what);
    }
    let device = Device::open(&cli.device, DEVICE_NAME, device::DefaultTransport::Uhid)
        .map_err(|e| e.to_string())?;
    let master = master_key(&state_dir, cli.key_file)?;
    let store_path = state_dir.join(FILE_NAME);
    let store = PairingStore::open(&store_path, &master)
        .map_err(|e| format!("cannot open {}: {e}", store_path.display()))?;
    drop(master);
    retry_revocations(&store)?;
    let records = store.list().map_err(|e| e.to_string())?;
    if let Some(name) = &cli.phone {
        let phones: Vec<PairingRecord> = records
            .iter()
            .filter(|r| r.role == Role::Bridge)
            .cloned()
            .collect();
        one_phone(&phones, Some(name))?;
    }
    let paired = select_phone(records, None).is_some();
    if !paired && cli.relay.is_empty() {
        return Err("no phone is paired: give --relay URL to show a pairing code".into());
    }

    let name = cli.name.unwrap_or_else(default_name);
    let get_info = Arc::new(Mutex::new(None));
    let (to_link, requests) = mpsc::channel();
    let link = Link::new(
        LinkConfig {
            relay_url: cli.relay.first().cloned(),
            relay_nodes: (cli.relay.len() > 1).then(|| cli.relay.join(" ")),
            phone: cli.phone,
            pair_another: cli.pair_another,
            name,
            qr_png: cli.qr_png,
            print_url: cli.print_url,
            offer_for: Duration::from_secs(cli.offer_for),
            phone_timeout: Duration::from_secs(cli.phone_timeout),
            auto_confirm: cli.auto_confirm,
            served: served::ServedChoice::in_dir(&state_dir),
        },
        store,
        Arc::clone(&get_info),
        requests,
        Arc::clone(&stop),
    );
    let link_thread = thread::Builder::new()
        .name("pocketkey-link".into())
        .spawn(move || link.run())
        .map_err(|e| format!("cannot start: {e}"))?;

    eprintln!(
        "PocketKey bridge: virtual security key on {}",
        device.describe()
    );
    let waiting = WaitingForUser::new();
    let engine = ForwardingEngine {
        to_link,
        get_info,
        waiting: waiting.clone(),
    };
    let options = Options {
        waiting_for_user: Some(waiting),
        ..Options::default()
    };
    let result = device
        .run(engine, options, Arc::clone(&stop))
        .map_err(|e| format!("the virtual key's transport failed: {e}"));
    stop.store(true, Ordering::SeqCst);
    // The link's own reason to stop (no phone paired in time) is the one to report.
    let linked = link_thread
        .join()
        .unwrap_or_else(|_| Err("the link to the phone failed".into()));
    result.and(linked)
}
