//! Joining an organisation from its invite (docs/org.md): `SecurityKey.activate(link)`.
//! The protocol is `pocketkey_net::org`, the same code path as `pocketkey activate`.

use pocketkey_core::store::OrgStatus;
use pocketkey_net::org::{self as client, ActivationLink};

use crate::errors::PocketKeyError;
use crate::security_key::{lock, SecurityKey};
use crate::types::AttestationKind;

/// What the organisation's inventory calls this platform.
fn platform() -> &'static str {
    match std::env::consts::OS {
        "android" => "android",
        "ios" => "ios",
        other => other,
    }
}

#[uniffi::export]
impl SecurityKey {
    /// Joins the organisation whose invite holds `link` (`https://…/activate/<token>`, as
    /// `classify_scan` recognises it) and returns the organisation's name. From then on the
    /// key attests as the organisation's. Blocks on the network: call it off the main thread.
    /// `device_name` is what the organisation's inventory shows (default: "Phone").
    #[uniffi::method(default(device_name = None))]
    pub fn activate(
        &self,
        link: String,
        device_name: Option<String>,
    ) -> Result<String, PocketKeyError> {
        let link = ActivationLink::parse(&link)?;
        if let Some(existing) = lock(&self.side)
            .load_org_identity()
            .map_err(PocketKeyError::storage)?
        {
            if existing.status != OrgStatus::Revoked {
                return Err(PocketKeyError::AlreadyActivated {
                    organisation: existing.org_name,
                });
            }
        }
        // The network first, without holding the engine: requests go on meanwhile.
        let identity =
            client::activate(&link, device_name.as_deref().unwrap_or("Phone"), platform())?;
        let attestation = identity
            .attestation_config()
            .map_err(PocketKeyError::storage)?;
        // Lock order: engine, then side (settings are written through side only under both).
        let mut engine = lock(&self.engine);
        let mut side = lock(&self.side);
        side.save_org_identity(&identity)
            .map_err(PocketKeyError::storage)?;
        let mut settings = side.load_settings().map_err(PocketKeyError::storage)?;
        // The policy tightens the key's settings (alwaysUv, minimum PIN length), and
        // activation is the organisation's enablement of enterprise attestation for its RPs
        // (CTAP 2.1 §7.1, vendor-facilitated).
        let mut changed = identity.policy.enforce(&mut settings);
        if !identity.policy.enterprise_rp_ids.is_empty() && !settings.enterprise_attestation {
            settings.enterprise_attestation = true;
            changed = true;
        }
        if changed {
            side.save_settings(&settings)
                .map_err(PocketKeyError::storage)?;
        }
        engine.set_always_uv_locked(identity.locks_always_uv());
        if let Some(attestation) = attestation {
            engine.set_attestation(attestation);
            *lock(&self.attestation) = AttestationKind::Batch;
        }
        Ok(identity.org_name)
    }
}
