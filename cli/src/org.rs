//! `pocketkey activate '<link>'` and the organisation identity every command's key uses
//! (docs/org.md): the protocol is `pocketkey_net::org`, shared with the app facade.

use std::path::{Path, PathBuf};

use clap::Args;
use pocketkey_core::attestation::AttestationConfig;
use pocketkey_core::clock::unix_now;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::pairing::PairingStore;
use pocketkey_core::store::{OrgIdentity, OrgStatus, Store};
use pocketkey_desktop::state_dir;
use pocketkey_net::org::{self as client, ActivationLink, OrgClientError};

#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// The Activate link from the invite mail (`https://…/activate/<token>`).
    link: String,
    /// The state directory (as for `serve`).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Master key from the OS keyring (as for `serve`).
    #[arg(long)]
    keyring: bool,
    /// The name the organisation's inventory shows for this device [default: the host name].
    #[arg(long, value_name = "NAME")]
    device_name: Option<String>,
}

fn open_store(dir: &Path, master: &MasterKey) -> Result<Store, String> {
    let path = dir.join(state_dir::STORE_FILE_NAME);
    Store::open(&path, master).map_err(|e| format!("cannot open {}: {e}", path.display()))
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "desktop".into())
}

/// A message a person can act on, for each way activation fails.
fn explain(e: OrgClientError) -> String {
    match e {
        OrgClientError::Expired => "activation failed: expired: this link has expired; ask your IT department for a new invite".into(),
        OrgClientError::Used => "activation failed: used: this link was already used".into(),
        OrgClientError::Revoked => "activation failed: revoked: the organisation revoked this key".into(),
        OrgClientError::LinkNotValid => "activation failed: this link is not valid (unknown, or replaced by a newer invite)".into(),
        OrgClientError::Network(why) => format!("activation failed: network: {why}"),
        other => format!("activation failed: {other}"),
    }
}

pub fn activate(args: ActivateArgs) -> Result<(), String> {
    let link = ActivationLink::parse(&args.link).map_err(explain)?;
    let dir = crate::open_state_dir(args.state_dir)?;
    let master = crate::master_key(&dir, args.keyring)?;
    let mut store = open_store(&dir, &master)?;
    if let Some(existing) = store.load_org_identity().map_err(|e| e.to_string())? {
        if existing.status != OrgStatus::Revoked {
            return Err(format!(
                "this key already belongs to {} ({}); it can join another organisation once revoked",
                existing.org_name,
                existing.status.as_str()
            ));
        }
    }
    let device_name = args.device_name.unwrap_or_else(host_name);
    let identity = client::activate(&link, &device_name, std::env::consts::OS).map_err(explain)?;
    store
        .save_org_identity(&identity)
        .map_err(|e| format!("activated, but cannot store the organisation identity: {e}"))?;
    apply_to_settings(&mut store, &identity)?;
    println!("activated: {}", identity.org_name);
    Ok(())
}

/// What the organisation identity in a state directory means for its key.
#[derive(Debug, Default)]
pub struct EngineParts {
    /// The organisation's attestation, while active.
    pub attestation: Option<AttestationConfig>,
    /// The organisation's RP ids, while suspended or revoked.
    pub refused_rp_ids: Vec<String>,
    /// The only RP ids credentials may be made for (the policy's allowed RPs, while active).
    pub registrable_rp_ids: Vec<String>,
    /// The policy requires user verification (while active).
    pub always_uv_locked: bool,
}

pub fn engine_parts(dir: &Path, master: &MasterKey) -> Result<EngineParts, String> {
    let path = dir.join(state_dir::STORE_FILE_NAME);
    if !path.exists() {
        return Ok(EngineParts::default());
    }
    let store = open_store(dir, master)?;
    match store.load_org_identity().map_err(|e| e.to_string())? {
        Some(identity) => Ok(EngineParts {
            attestation: identity.attestation_config().map_err(|e| e.to_string())?,
            refused_rp_ids: identity.refused_rp_ids(),
            registrable_rp_ids: identity.registrable_rp_ids(),
            always_uv_locked: identity.locks_always_uv(),
        }),
        None => Ok(EngineParts::default()),
    }
}

/// The organisation identity of the state directory `dir`, if it has one.
pub fn identity(dir: &Path, master: &MasterKey) -> Result<Option<OrgIdentity>, String> {
    let path = dir.join(state_dir::STORE_FILE_NAME);
    if !path.exists() {
        return Ok(None);
    }
    open_store(dir, master)?
        .load_org_identity()
        .map_err(|e| e.to_string())
}

/// Applies the identity's consequences to the key's settings (policy, enterprise attestation).
fn apply_to_settings(store: &mut Store, identity: &OrgIdentity) -> Result<(), String> {
    let mut settings = store.load_settings().map_err(|e| e.to_string())?;
    if identity.apply_to_settings(&mut settings) {
        store.save_settings(&settings).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Revocation unpairs the computers this key served (docs/org.md, "Revocation"): one
/// `unpaired: <NAME>` line each on stdout, as `pocketkey unpair` prints.
fn unpair_computers(dir: &Path, master: &MasterKey) -> Result<(), String> {
    let path = dir.join(pocketkey_core::pairing::store::FILE_NAME);
    if !path.exists() {
        return Ok(());
    }
    let store = PairingStore::open(&path, master)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let unpaired = pocketkey_net::org::unpair::unpair_computers(&store, unix_now())
        .map_err(|e| format!("cannot unpair the computers: {e}"))?;
    for name in unpaired.done {
        println!("unpaired: {name}");
    }
    for name in unpaired.pending {
        println!("unpaired: {name} (the relay will be told later)");
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum OrgCommand {
    /// Ask the organisation where this key stands and apply it; prints
    /// `org: <ORG> status: <active|suspended|revoked>`.
    Sync(SyncArgs),
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The state directory (as for `serve`).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Master key from the OS keyring (as for `serve`).
    #[arg(long)]
    keyring: bool,
    /// Approve the organisation's registrations on the user's behalf without asking (for
    /// unattended tests); otherwise each one's prompt is answered at the terminal.
    #[arg(long)]
    auto_approve: bool,
}

pub fn run(command: OrgCommand) -> Result<(), String> {
    match command {
        OrgCommand::Sync(args) => sync(args),
    }
}

fn sync(args: SyncArgs) -> Result<(), String> {
    let dir = crate::open_state_dir(args.state_dir)?;
    let master = crate::master_key(&dir, args.keyring)?;
    sync_now(&dir, &master, args.auto_approve)
}

/// `pocketkey org sync` in state directory `dir`: asks the server, stores and applies its
/// answer, prints `org: <ORG> status: <STATUS>`, then runs the jobs (approved through the
/// desktop approver, or all with `auto_approve`). `pocketkey listen` runs it when woken.
pub fn sync_now(dir: &Path, master: &MasterKey, auto_approve: bool) -> Result<(), String> {
    let mut store = open_store(dir, master)?;
    let mut identity = store
        .load_org_identity()
        .map_err(|e| e.to_string())?
        .ok_or("this key belongs to no organisation: run `pocketkey activate '<link>'` first")?;
    let mut answer = client::sync(&identity).map_err(|e| format!("sync failed: {e}"))?;
    let reason = answer.reason.clone();
    let jobs = std::mem::take(&mut answer.jobs);
    let was_revoked = identity.status == OrgStatus::Revoked;
    client::apply(&mut identity, answer);
    store
        .save_org_identity(&identity)
        .map_err(|e| format!("cannot store the organisation's answer: {e}"))?;
    apply_to_settings(&mut store, &identity)?;
    println!(
        "org: {} status: {}",
        identity.org_name,
        identity.status.as_str()
    );
    if identity.status == OrgStatus::Revoked && !was_revoked {
        unpair_computers(&dir, &master)?;
    }
    let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
    match identity.status {
        OrgStatus::Active => {}
        OrgStatus::Suspended => eprintln!(
            "{} suspended this key{why}: it does not serve the organisation's sites until resumed",
            identity.org_name
        ),
        OrgStatus::Revoked => eprintln!(
            "{} revoked this key{why}: its attestation keys and certificates are deleted and it \
             no longer serves the organisation's sites",
            identity.org_name
        ),
    }
    if identity.status != OrgStatus::Active || jobs.is_empty() {
        return Ok(());
    }
    // The engine opens the store itself.
    drop(store);
    crate::org_jobs::run(dir, master, &identity, &jobs, auto_approve)
}
