//! `pocketkey`: PocketKey's engine on a desktop, a software FIDO2 security key.

mod approver;
mod attestation;
mod hybrid;
mod org;
mod org_jobs;
mod pairing;
mod webhook;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use pocketkey_core::approver::Approver;
use pocketkey_core::crypto::master_key::{KeyProvider, MasterKey};

use pocketkey_desktop::ctaphid_loop::Options;
use pocketkey_desktop::device::{self, Device, DeviceArgs};
use pocketkey_desktop::engine::{self, DesktopKey, EngineConfig};
use pocketkey_desktop::signals;
use pocketkey_desktop::state_dir::{self, FileKeyProvider, KeyringKeyProvider};

#[derive(Debug, Parser)]
#[command(
    name = "pocketkey",
    version,
    about = "PocketKey on a desktop: a software FIDO2 security key"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the security key, serving CTAPHID over a transport until Ctrl-C.
    Serve(ServeArgs),
    /// Provision attestation: an organisation root, a batch key and (with --enterprise-rp-id)
    /// an enterprise key. Without it, registrations carry self attestation.
    Attestation(AttestationArgs),
    /// Act as the phone for a browser's "use a phone or tablet" QR code (FIDO hybrid): print
    /// the advert as `advert: <hex>` on standard output, serve the browser through the tunnel,
    /// exit 0 when the browser ends the session.
    Hybrid(hybrid::HybridArgs),
    /// Pair with a computer from the `pocketkey://pair?…` URL its pairing tool shows.
    Pair(pairing::PairArgs),
    /// Stay connected to every paired computer and answer its requests with this key.
    Listen(pairing::ListenArgs),
    /// List the paired computers.
    Pairings(pairing::ListArgs),
    /// Revoke the pairing with a computer (by name).
    Unpair(pairing::UnpairArgs),
    /// Serve a suspended pairing again (the relay said the computer removed it, which the
    /// relay cannot prove).
    Resume(pairing::ResumeArgs),
    /// Rename a paired computer (on this phone only).
    Rename(pairing::RenameArgs),
    /// Join an organisation from the Activate link of its invite mail; prints
    /// `activated: <ORG>`. From then on the key attests as the organisation's.
    Activate(org::ActivateArgs),
    /// The organisation this key belongs to.
    #[command(subcommand)]
    Org(org::OrgCommand),
}

#[derive(Debug, Args)]
struct AttestationArgs {
    /// Organisation name for the certificates (subject O).
    #[arg(long, value_name = "NAME")]
    org: String,

    /// Two-letter country code for the certificates (subject C).
    #[arg(long, value_name = "CC", default_value = "US")]
    country: String,

    /// An RP id that may receive enterprise attestation (repeatable). Creates an enterprise
    /// key; a platform must still enable it with authenticatorConfig.
    #[arg(long = "enterprise-rp-id", value_name = "RP_ID")]
    enterprise_rp_ids: Vec<String>,

    /// The state directory (as for `serve`).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Master key from the OS keyring (as for `serve`).
    #[arg(long)]
    keyring: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Without --uhid the key serves CTAPHID over UDP on 127.0.0.1:8111.")]
struct ServeArgs {
    #[command(flatten)]
    device: DeviceArgs,

    /// Where the credential store (and the key file, without --keyring) live. Created with
    /// mode 0700. Default: $XDG_DATA_HOME/pocketkey or ~/.local/share/pocketkey.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Approve every request without asking (verified). For unattended tests only.
    #[arg(long)]
    auto_approve: bool,

    /// Keep the master key in the OS keyring (service "pocketkey", user = the state
    /// directory) instead of the 0600 file master.key in the state directory: the Secret
    /// Service (GNOME Keyring, KWallet) on the session bus on Linux, the Keychain on macOS.
    #[arg(long)]
    keyring: bool,

    /// Honour the UDP "power cycle" datagram of the FIDO simulation convention (it forgets
    /// the PIN strikes and reopens the reset window) from loopback senders. For test tools
    /// only; without it the datagram is an ordinary, invalid report.
    #[arg(long, conflicts_with = "uhid")]
    allow_power_cycle: bool,

    /// Built-in user verification (the approval prompt's "verified" answer). With `off` the
    /// key claims none: getInfo has no `uv` option and the PIN is its only user verification,
    /// as on a plain CTAP 2.1 security key.
    #[arg(long, value_enum, value_name = "on|off", default_value = "on")]
    uv: Switch,
}

/// An on/off command-line setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

/// The program's name: its default state directory is named after it.
const APP: &str = "pocketkey";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Attestation(args) => provision_attestation(args),
        Command::Hybrid(args) => hybrid::run(args),
        Command::Pair(args) => pairing::pair(args),
        Command::Listen(args) => pairing::listen(args),
        Command::Pairings(args) => pairing::list(args),
        Command::Unpair(args) => pairing::unpair(args),
        Command::Resume(args) => pairing::resume(args),
        Command::Rename(args) => pairing::rename(args),
        Command::Activate(args) => org::activate(args),
        Command::Org(command) => org::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pocketkey: {message}");
            ExitCode::FAILURE
        }
    }
}

/// How every command configures the key of the state directory `dir`: its attestation, the
/// desktop transports, built-in UV on (`serve --uv off` turns it off).
pub(crate) fn key_config(dir: &Path, master: &MasterKey) -> Result<EngineConfig, String> {
    // An organisation the key is active with supplies its attestation; otherwise whatever
    // `pocketkey attestation` provisioned (or self attestation).
    let org = org::engine_parts(dir, master)?;
    let attestation = match org.attestation {
        Some(org) => org,
        None => attestation::load(dir, master)?,
    };
    let mut config = EngineConfig::new(attestation);
    config.refused_rp_ids = org.refused_rp_ids;
    config.registrable_rp_ids = org.registrable_rp_ids;
    config.always_uv_locked = org.always_uv_locked;
    Ok(config)
}

/// Opens the key of the state directory `dir` with `config`.
pub(crate) fn open_key(
    dir: &Path,
    master: &MasterKey,
    approver: Box<dyn Approver>,
    config: EngineConfig,
) -> Result<DesktopKey, String> {
    engine::open_engine(
        &dir.join(state_dir::STORE_FILE_NAME),
        master,
        approver,
        config,
    )
    .map_err(|e| e.to_string())
}

/// The state directory `dir`, or this program's default, ready to use.
pub(crate) fn open_state_dir(dir: Option<PathBuf>) -> Result<PathBuf, String> {
    state_dir::open_state_dir(dir, APP).map_err(|e| e.to_string())
}

/// The flag Ctrl-C and the termination signals raise.
pub(crate) fn stop_flag() -> Result<Arc<std::sync::atomic::AtomicBool>, String> {
    signals::stop_flag().map_err(|e| e.to_string())
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let stop = stop_flag()?;
    let state_dir = open_state_dir(args.state_dir)?;

    // Bind first: a busy port or a missing /dev/uhid should not cost a key or a store.
    let device = Device::open(&args.device, "PocketKey", device::DefaultTransport::Udp)
        .map_err(|e| e.to_string())?
        .allow_power_cycle(args.allow_power_cycle);

    let master = master_key(&state_dir, args.keyring)?;
    let approver = approver::desktop_approver(args.auto_approve);
    let mut config = key_config(&state_dir, &master)?;
    config.builtin_uv = args.uv == Switch::On;
    let attestation_kind = match (&config.attestation.batch, &config.attestation.enterprise) {
        (_, Some(_)) => "batch + enterprise",
        (Some(_), None) => "batch",
        (None, None) => "self",
    };
    let engine = open_key(&state_dir, &master, approver, config)?;
    drop(master);

    eprintln!("PocketKey security key on {}", device.describe());
    eprintln!("state directory: {}", state_dir.display());
    eprintln!("attestation: {attestation_kind}");
    if args.allow_power_cycle {
        eprintln!("power-cycle datagrams from this computer are honoured (--allow-power-cycle)");
    }
    if args.uv == Switch::Off {
        eprintln!("built-in user verification: off (--uv off; the PIN is the only UV)");
    }
    if args.auto_approve {
        eprintln!("auto-approving every request (--auto-approve)");
    } else {
        eprintln!("approve requests here (y = approve, p = presence only, n = deny)");
    }

    let options = Options {
        waiting_for_user: Some(engine.waiting()),
        ..Options::default()
    };
    device
        .run(engine, options, Arc::clone(&stop))
        .map_err(|e| format!("the security key's transport failed: {e}"))?;
    eprintln!("stopped");
    Ok(())
}

fn provision_attestation(args: AttestationArgs) -> Result<(), String> {
    let state_dir = open_state_dir(args.state_dir)?;
    let master = master_key(&state_dir, args.keyring)?;
    let root = attestation::provision(
        &state_dir,
        &master,
        &args.org,
        &args.country,
        &args.enterprise_rp_ids,
    )?;
    eprintln!("attestation provisioned; give relying parties this root certificate:");
    println!("{}", root.display());
    Ok(())
}

pub(crate) fn master_key(
    state_dir: &std::path::Path,
    use_keyring: bool,
) -> Result<MasterKey, String> {
    if use_keyring {
        let key = KeyringKeyProvider::for_state_dir(state_dir)
            .master_key()
            .map_err(|e| e.to_string())?;
        eprintln!(
            "master key: OS keyring, service \"{}\"",
            state_dir::KEYRING_SERVICE
        );
        Ok(key)
    } else {
        let provider = FileKeyProvider::in_dir(state_dir);
        let key = provider.master_key().map_err(|e| e.to_string())?;
        eprintln!("master key: {}", provider.path().display());
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn udp_address_forms() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Serve(a) => a,
                _ => unreachable!("serve was parsed"),
            })
        };
        assert_eq!(parse(&["pocketkey", "serve"]).unwrap().device.udp, None);
        assert_eq!(
            parse(&["pocketkey", "serve", "--udp"]).unwrap().device.udp,
            Some("127.0.0.1:8111".parse().unwrap())
        );
        let a = parse(&[
            "pocketkey",
            "serve",
            "--udp",
            "127.0.0.1:9000",
            "--auto-approve",
            "--state-dir",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(a.device.udp, Some("127.0.0.1:9000".parse().unwrap()));
        assert!(a.auto_approve && !a.keyring);
        assert_eq!(a.uv, Switch::On, "built-in UV is on by default");
        assert_eq!(a.state_dir, Some(PathBuf::from("/tmp/x")));
        let off = parse(&["pocketkey", "serve", "--uv", "off"]).unwrap();
        assert_eq!(off.uv, Switch::Off);
        assert!(parse(&["pocketkey", "serve", "--uv", "maybe"]).is_err());
        assert!(parse(&["pocketkey", "serve", "--udp", "nonsense"]).is_err());
    }

    #[test]
    fn uhid_path_forms() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Serve(a) => a.device,
                _ => unreachable!("serve was parsed"),
            })
        };
        assert_eq!(parse(&["pocketkey", "serve"]).unwrap().uhid, None);
        assert_eq!(
            parse(&["pocketkey", "serve", "--uhid"]).unwrap().uhid,
            Some(PathBuf::from("/dev/uhid"))
        );
        assert_eq!(
            parse(&["pocketkey", "serve", "--uhid", "/tmp/u"])
                .unwrap()
                .uhid,
            Some(PathBuf::from("/tmp/u"))
        );
        assert!(
            parse(&["pocketkey", "serve", "--uhid", "--udp"]).is_err(),
            "one transport at a time"
        );
    }
}
