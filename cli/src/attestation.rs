//! Provisioned attestation, kept in `<state dir>/attestation/`:
//! `root.der` (the trust anchor to give relying parties), `batch.der` + `batch.key`, and
//! optionally `enterprise.der` + `enterprise.key` + `enterprise-rp-ids` (one RP id a line).
//! Private keys are sealed under the master key like every other secret at rest.

use std::fs;
use std::path::{Path, PathBuf};

use pocketkey_core::attestation::{provision_batch, AttestationConfig, AttestationKey};
use pocketkey_core::authenticator::POCKETKEY_AAGUID;
use pocketkey_core::crypto::es256::Es256Key;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::crypto::seal::{Purpose, Sealer};

pub const DIR_NAME: &str = "attestation";

fn aad(name: &str) -> Vec<u8> {
    format!("attestation:{name}").into_bytes()
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn save_key(dir: &Path, name: &str, key: &AttestationKey, sealer: &Sealer) -> Result<(), String> {
    write_new(
        &dir.join(format!("{name}.key")),
        &sealer.seal(key.key.scalar(), &aad(name)),
    )?;
    write_new(&dir.join(format!("{name}.der")), &key.chain[0])
}

fn load_key(dir: &Path, name: &str, sealer: &Sealer) -> Result<Option<AttestationKey>, String> {
    let key_path = dir.join(format!("{name}.key"));
    if !key_path.exists() {
        return Ok(None);
    }
    let sealed =
        fs::read(&key_path).map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
    let bytes = sealer
        .open(&sealed, &aad(name))
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    let key = Es256Key::from_scalar(&bytes)
        .map_err(|_| format!("{}: not a P-256 key", key_path.display()))?;
    let cert_path = dir.join(format!("{name}.der"));
    let cert =
        fs::read(&cert_path).map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?;
    Ok(Some(AttestationKey {
        key,
        chain: vec![cert],
    }))
}

/// Creates a root, a batch key and (with RP ids) an enterprise key. Refuses to overwrite.
pub fn provision(
    state_dir: &Path,
    master: &MasterKey,
    organization: &str,
    country: &str,
    enterprise_rp_ids: &[String],
) -> Result<PathBuf, String> {
    let dir = state_dir.join(DIR_NAME);
    if dir.exists() {
        return Err(format!(
            "{} already exists: attestation is provisioned once (remove the folder to start over)",
            dir.display()
        ));
    }
    let provisioned = provision_batch(
        organization,
        country,
        POCKETKEY_AAGUID,
        !enterprise_rp_ids.is_empty(),
    )
    .map_err(|e| e.to_string())?;
    fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let sealer = Sealer::new(master, Purpose::Store);
    save_key(&dir, "batch", &provisioned.batch, &sealer)?;
    if let Some(enterprise) = &provisioned.enterprise {
        save_key(&dir, "enterprise", enterprise, &sealer)?;
        write_new(
            &dir.join("enterprise-rp-ids"),
            format!("{}\n", enterprise_rp_ids.join("\n")).as_bytes(),
        )?;
    }
    let root = dir.join("root.der");
    write_new(&root, &provisioned.root_certificate)?;
    Ok(root)
}

/// What is provisioned in `state_dir`, or an empty config (self attestation) if nothing is.
pub fn load(state_dir: &Path, master: &MasterKey) -> Result<AttestationConfig, String> {
    let dir = state_dir.join(DIR_NAME);
    let sealer = Sealer::new(master, Purpose::Store);
    let batch = load_key(&dir, "batch", &sealer)?;
    let enterprise = match load_key(&dir, "enterprise", &sealer)? {
        Some(key) => {
            let path = dir.join("enterprise-rp-ids");
            let ids = fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let ids = ids
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            Some((key, ids))
        }
        None => None,
    };
    Ok(AttestationConfig {
        batch,
        enterprise,
        // `pocketkey attestation` keeps the platform-managed requests CTAP 2.1 §7.1 allows.
        vendor_facilitated_only: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provision_then_load_round_trips_and_refuses_a_second_run() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::from_bytes([3; 32]);
        provision(
            dir.path(),
            &master,
            "Example",
            "US",
            &["corp.example".into()],
        )
        .unwrap();
        let cfg = load(dir.path(), &master).unwrap();
        assert!(cfg.batch.is_some());
        let (_, ids) = cfg.enterprise.unwrap();
        assert_eq!(ids, vec!["corp.example".to_string()]);
        assert!(provision(dir.path(), &master, "Example", "US", &[]).is_err());
        let wrong = MasterKey::from_bytes([4; 32]);
        assert!(
            load(dir.path(), &wrong).is_err(),
            "sealed keys need the master key"
        );
        let sealed = fs::read(dir.path().join(DIR_NAME).join("batch.key")).unwrap();
        let plain = load(dir.path(), &master)
            .unwrap()
            .batch
            .unwrap()
            .key
            .scalar()
            .to_vec();
        assert!(
            !sealed.windows(8).any(|w| plain.windows(8).any(|p| p == w)),
            "key is not in the clear"
        );
    }

    #[test]
    fn nothing_provisioned_means_self_attestation() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = load(dir.path(), &MasterKey::from_bytes([3; 32])).unwrap();
        assert!(cfg.batch.is_none() && cfg.enterprise.is_none());
    }
}
