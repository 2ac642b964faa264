//! `pocketkey activate '<link>'` and the organisation identity every command's key uses
//! (docs/org.md): the protocol is `pocketkey_net::org`, shared with the app facade.

use std::path::{Path, PathBuf};

use clap::Args;
use pocketkey_core::attestation::AttestationConfig;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::store::{OrgStatus, Store};
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
    if !identity.policy.enterprise_rp_ids.is_empty() {
        // The organisation enabling enterprise attestation for its RPs is what CTAP 2.1 §7.1
        // leaves to the vendor: activation is the administrative enablement.
        let mut settings = store.load_settings().map_err(|e| e.to_string())?;
        settings.enterprise_attestation = true;
        store.save_settings(&settings).map_err(|e| e.to_string())?;
    }
    println!("activated: {}", identity.org_name);
    Ok(())
}

/// The organisation's attestation for the key in `dir`, while it is active there.
pub fn attestation(dir: &Path, master: &MasterKey) -> Result<Option<AttestationConfig>, String> {
    let path = dir.join(state_dir::STORE_FILE_NAME);
    if !path.exists() {
        return Ok(None);
    }
    let store = open_store(dir, master)?;
    match store.load_org_identity().map_err(|e| e.to_string())? {
        Some(identity) => identity.attestation_config().map_err(|e| e.to_string()),
        None => Ok(None),
    }
}
