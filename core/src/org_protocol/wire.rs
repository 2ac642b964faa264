//! The JSON bodies a phone and its organisation server exchange (docs/org.md, "Activation",
//! "Device authentication", "Registering on the user's behalf"), defined once so the two
//! sides cannot drift. With the `openapi` feature (the server's build) they also describe
//! themselves to utoipa; the phone's build carries no OpenAPI code.
//!
//! Binary values are base64 (standard) for keys, signatures and certificates, base64url
//! without padding for WebAuthn values (credential ids, user ids, hashes), as each field says.

use serde::{Deserialize, Serialize};

use crate::store::OrgPolicy;

/// The signed envelope of device requests: `request` is the base64 JSON body, `signature`
/// the device key's ES256 signature (DER, base64) over `activate_signed_bytes(request)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Signed {
    pub request: String,
    pub signature: String,
}

/// `POST /api/v1/device/activate`'s inner request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The activation token: a bearer secret until used, so never printed (no Debug).
    pub token: String,
    /// The device key, uncompressed SEC1, base64: signs this request and later ones.
    pub device_public_key: String,
    /// A one-time P-256 key the batch key is sealed to, uncompressed SEC1, base64.
    pub box_public_key: String,
    /// PKCS#10 for the enterprise attestation key, DER, base64.
    pub csr: String,
    pub device_name: String,
    pub platform: String,
}

/// The batch attestation key sealed to the phone's box key (`crypto::sealed_box`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SealedBatchKey {
    pub ephemeral: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// The answer to an activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Activated {
    pub org_name: String,
    pub key_id: String,
    /// DER certificates, base64, leaf first; the root is `GET /attestation/root`.
    pub batch_chain: Vec<String>,
    pub batch_key: SealedBatchKey,
    pub enterprise_chain: Vec<String>,
    pub policy: OrgPolicy,
}

/// `POST /api/v1/device/challenge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    pub key_id: String,
}

/// A single-use nonce for the device key to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Challenge {
    pub nonce: String,
    pub expires_at: String,
}

/// `POST /api/v1/device/sync`: the nonce and the device key's signature over
/// `sync_signed_bytes(key_id, nonce)`, DER, base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    pub key_id: String,
    pub nonce: String,
    pub signature: String,
}

/// Where the key stands, and the work waiting for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncAnswer {
    pub org_name: String,
    /// `active`, `suspended` or `revoked`.
    pub status: String,
    /// Why it was suspended or revoked, as the admin wrote it.
    pub reason: Option<String>,
    pub policy: OrgPolicy,
    /// Work for the phone: the pending registrations on the user's behalf.
    #[serde(default)]
    pub jobs: Vec<Job>,
}

/// One piece of work in a sync answer, told apart by `kind`. A kind this phone does not know
/// reads as `Unknown` and is left for a newer phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    Registration(RegistrationJob),
    #[serde(other)]
    Unknown,
}

/// The relying party of a registration job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRp {
    pub id: String,
    pub name: String,
}

/// The account of a registration job; `id` is base64url without padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobUser {
    pub id: String,
    pub name: String,
    pub display_name: String,
}

/// A registration the organisation asks the key to make on the user's behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationJob {
    pub id: String,
    /// For the approval prompt: "<org> asks to register this key with <rp> for <account>".
    pub org_name: String,
    pub origin: String,
    pub rp: JobRp,
    pub user: JobUser,
    /// SHA-256 of the clientDataJSON the server built, base64url.
    pub client_data_hash: String,
    /// COSE algorithms, most preferred first.
    pub algorithms: Vec<i64>,
    /// Credential ids (base64url) the RP already knows for this user.
    pub exclude_credentials: Vec<String>,
    pub resident_key: bool,
    /// `required`, `preferred` or `discouraged`.
    pub user_verification: String,
    /// `none`, `indirect`, `direct` or `enterprise`.
    pub attestation: String,
    pub expires_at: String,
}

/// `POST /api/v1/device/registrations/{id}`: the outcome of a job, signed by the device key
/// over `registration_signed_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegistrationResult {
    pub key_id: String,
    pub nonce: String,
    /// Base64 DER signature by the device key.
    pub signature: String,
    /// `completed` or `denied`.
    pub outcome: String,
    /// Base64url; with `completed` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// Base64url; with `completed` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_object: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> RegistrationJob {
        RegistrationJob {
            id: "r1".into(),
            org_name: "Acme IT".into(),
            origin: "https://login.microsoft.com".into(),
            rp: JobRp {
                id: "login.microsoft.com".into(),
                name: "Microsoft".into(),
            },
            user: JobUser {
                id: "AQID".into(),
                name: "alice@acme.example".into(),
                display_name: "Alice".into(),
            },
            client_data_hash: "Bw".into(),
            algorithms: vec![-7],
            exclude_credentials: vec![],
            resident_key: true,
            user_verification: "required".into(),
            attestation: "direct".into(),
            expires_at: "2026-12-07T18:00:00Z".into(),
        }
    }

    #[test]
    fn a_job_carries_its_kind_and_an_unknown_kind_is_kept_apart() {
        let json = serde_json::to_value(Job::Registration(job())).unwrap();
        assert_eq!(json["kind"], "registration");
        assert_eq!(json["rp"]["id"], "login.microsoft.com");
        let back: Job = serde_json::from_value(json).unwrap();
        assert_eq!(back, Job::Registration(job()));
        let later: Job = serde_json::from_str(r#"{"kind":"wipe","at":"now"}"#).unwrap();
        assert_eq!(later, Job::Unknown);
    }

    #[test]
    fn a_denied_result_has_no_credential_fields() {
        let denied = RegistrationResult {
            key_id: "k".into(),
            nonce: "n".into(),
            signature: "s".into(),
            outcome: "denied".into(),
            credential_id: None,
            attestation_object: None,
        };
        let json = serde_json::to_value(&denied).unwrap();
        assert!(json.get("credential_id").is_none());
        assert_eq!(
            serde_json::from_value::<RegistrationResult>(json).unwrap(),
            denied
        );
    }
}

/// `POST /api/v1/device/push`: where the organisation wakes this phone, with the nonce and the
/// device key's signature over `push_signed_bytes(...)`, DER, base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PushRegistration {
    pub key_id: String,
    pub nonce: String,
    pub signature: String,
    /// `fcm`, `apns` or `webhook`.
    pub provider: String,
    /// The FCM registration token, the APNs device token (hex) or the webhook URL.
    pub target: String,
    /// APNs only: `production` or `sandbox`.
    pub environment: Option<String>,
    /// 32 hex digits the phone chose; every wake-up carries it.
    pub wake: String,
}
