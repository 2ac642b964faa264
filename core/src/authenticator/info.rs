//! authenticatorGetInfo (CTAP 2.1 §6.4).

use crate::credential_id::{MAX_CRED_BLOB_LEN, MAX_ID_LEN};
use crate::ctap::get_info::Response;
use crate::ctap::ok_with;
use crate::store::MAX_DISCOVERABLE_CREDENTIALS;

use super::config::MAX_MIN_PIN_LENGTH_RP_IDS;
use super::large_blobs::MAX_SERIALIZED_LARGE_BLOB_ARRAY;
use super::{Authenticator, Reply};

/// uvModality bits (FIDO Registry §3.1): fingerprint | faceprint, what phones offer.
const UV_MODALITY: u64 = 0x02 | 0x10;

impl Authenticator {
    pub(crate) fn info(&self) -> Result<Response, crate::store::StoreError> {
        let settings = self.store.load_settings()?;
        let mut options = vec![
            ("rk", true),
            ("up", true),
            ("clientPin", settings.pin_hash.is_some()),
            ("pinUvAuthToken", true),
            ("credMgmt", true),
            ("credentialMgmtPreview", true),
            ("authnrCfg", true),
            ("largeBlobs", true),
            // With alwaysUv every makeCredential needs UV (§7.2.4).
            ("makeCredUvNotRqd", !settings.always_uv),
            ("setMinPINLength", true),
            ("alwaysUv", settings.always_uv),
        ];
        let builtin_uv = self.has_builtin_uv()?;
        if builtin_uv {
            options.push(("uv", true));
        }
        if self.config.attestation.enterprise.is_some() {
            options.push(("ep", settings.enterprise_attestation));
        }
        let count = self.store.credential_count()?;
        // CTAP 2.1 §7.2 (Always Require User Verification): with alwaysUv on, CTAP1/U2F is
        // disabled, so "U2F_V2" leaves the versions list (see u2f.rs).
        let mut versions = vec!["U2F_V2", "FIDO_2_0", "FIDO_2_1"];
        if settings.always_uv {
            versions.retain(|v| *v != "U2F_V2");
        }
        Ok(Response {
            versions,
            extensions: vec![
                "credBlob",
                "credProtect",
                "hmac-secret",
                "largeBlobKey",
                "minPinLength",
            ],
            aaguid: self.config.aaguid,
            options,
            max_msg_size: self.config.max_msg_size as u64,
            pin_uv_auth_protocols: vec![2, 1],
            max_credential_count_in_list: max_credential_count_in_list(self.config.max_msg_size),
            max_credential_id_length: MAX_ID_LEN as u64,
            transports: self.config.transports.clone(),
            algorithms: vec![-7, -8],
            max_serialized_large_blob_array: MAX_SERIALIZED_LARGE_BLOB_ARRAY as u64,
            force_pin_change: settings.force_pin_change,
            min_pin_length: settings.min_pin_length.into(),
            firmware_version: self.config.firmware_version,
            max_cred_blob_length: MAX_CRED_BLOB_LEN as u64,
            max_rp_ids_for_set_min_pin_length: MAX_MIN_PIN_LENGTH_RP_IDS as u64,
            // Both describe getPinUvAuthTokenUsingUvWithPermissions, which only a key with
            // built-in user verification offers (§6.4, §6.5.5.7.3).
            preferred_platform_uv_attempts: builtin_uv.then_some(1),
            uv_modality: builtin_uv.then_some(UV_MODALITY),
            remaining_discoverable_credentials: MAX_DISCOVERABLE_CREDENTIALS
                .saturating_sub(count)
                .into(),
        })
    }

    pub(crate) fn get_info(&self) -> Reply {
        Ok(ok_with(self.info()?.to_value()))
    }
}

/// How many credential descriptors of the longest ID this key makes fit in one request of
/// `max_msg_size`, at most 64. Platforms split allowLists by maxCredentialCountInList (CTAP 2.1
/// §6.4), so a full batch must fit. A descriptor `{"id": bstr, "type": "public-key"}` is
/// 1 (map) + 3 ("id") + 2 (bstr head) + the ID + 5 ("type") + 11 ("public-key") bytes; 512
/// bytes are kept for the rest of a getAssertion (rpId, clientDataHash, options, extensions,
/// pinUvAuthParam).
fn max_credential_count_in_list(max_msg_size: usize) -> u64 {
    let descriptor = 1 + 3 + 2 + MAX_ID_LEN + 5 + 11;
    (max_msg_size.saturating_sub(512) / descriptor).clamp(1, 64) as u64
}
