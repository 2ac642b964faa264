//! The phone's side of its organisation server (docs/org.md): redeeming an activation link
//! and syncing status, over HTTPS. Shared by the CLI (`pocketkey activate`, `pocketkey org
//! sync`) and the app facade (`SecurityKey.activate`), so both speak the same protocol; the
//! bytes signed and sealed are defined in `pocketkey_core::org_protocol`.

mod http;
pub mod jobs;
pub mod unpair;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use pocketkey_core::attestation::make_csr;
use pocketkey_core::crypto::es256::{EcdhKey, Es256Key};
use pocketkey_core::crypto::sealed_box::{self, SealedBox};
use pocketkey_core::org_protocol;
use pocketkey_core::org_protocol::wire::{
    ActivateRequest, Activated, Challenge, ChallengeRequest, PushRegistration, Signed,
    SyncAnswer as SyncAnswerWire, SyncRequest,
};
use pocketkey_core::store::{OrgAttestation, OrgIdentity, OrgPolicy, OrgStatus};
use serde::Deserialize;
use url::Url;

pub use http::is_loopback;

/// Why talking to the organisation server failed, typed for the app and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgClientError {
    #[error("not an activation link: {0}")]
    InvalidLink(String),
    #[error("this activation link is not valid (unknown or replaced by a newer invite)")]
    LinkNotValid,
    #[error("this activation link has expired; ask your IT department for a new invite")]
    Expired,
    #[error("this activation link was already used")]
    Used,
    #[error("this key was revoked by the organisation")]
    Revoked,
    #[error("the organisation server cannot be reached: {0}")]
    Network(String),
    #[error("the organisation server refused the request: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("the organisation server's answer is not valid: {0}")]
    Protocol(String),
}

/// An activation link: the server it names and the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ActivationLink {
    /// The server's base URL (everything before `/activate`).
    pub server: Url,
    pub token: String,
}

impl std::fmt::Debug for ActivationLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActivationLink({}, <token>)", self.server)
    }
}

impl ActivationLink {
    /// Parses `<server>/activate/<token>` (what the server mails) or
    /// `<server>/activate?token=<token>`. `http://` only for a server on loopback.
    pub fn parse(link: &str) -> Result<Self, OrgClientError> {
        let bad = |why: &str| OrgClientError::InvalidLink(why.to_string());
        let url = Url::parse(link.trim()).map_err(|_| bad("not a URL"))?;
        if !(url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url))) {
            return Err(bad("the link must be https://"));
        }
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(bad("unexpected parts in the link"));
        }
        let path = url.path();
        let at = path
            .rfind("/activate")
            .ok_or_else(|| bad("no /activate in the link"))?;
        let (prefix, rest) = path.split_at(at);
        let rest = &rest["/activate".len()..];
        let tokens: Vec<String> = url
            .query_pairs()
            .filter(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .collect();
        let token = match (rest.trim_end_matches('/'), tokens.as_slice()) {
            (segment, []) if segment.starts_with('/') && !segment[1..].contains('/') => {
                segment[1..].to_string()
            }
            ("", [one]) => one.clone(),
            _ => return Err(bad("no token in the link")),
        };
        if token.is_empty()
            || token.len() > 256
            || !token.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(bad("malformed token"));
        }
        let mut server = url.clone();
        server.set_query(None);
        server.set_path(if prefix.is_empty() { "/" } else { prefix });
        Ok(Self { server, token })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    message: String,
}

fn protocol(why: impl std::fmt::Display) -> OrgClientError {
    OrgClientError::Protocol(why.to_string())
}

fn unb64(value: &str) -> Result<Vec<u8>, OrgClientError> {
    B64.decode(value).map_err(protocol)
}

/// The typed error for a non-2xx answer.
fn refusal(status: u16, body: &[u8]) -> OrgClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => match e.error.as_str() {
            "link_not_valid" => OrgClientError::LinkNotValid,
            "link_expired" => OrgClientError::Expired,
            "link_used" => OrgClientError::Used,
            "key_revoked" => OrgClientError::Revoked,
            _ => OrgClientError::Refused {
                code: e.error,
                message: e.message,
            },
        },
        Err(_) => OrgClientError::Protocol(format!("HTTP {status} without a typed error")),
    }
}

fn chain(list: &[String]) -> Result<Vec<Vec<u8>>, OrgClientError> {
    if list.is_empty() {
        return Err(protocol("an empty certificate chain"));
    }
    list.iter().map(|c| unb64(c)).collect()
}

/// Redeems `link`: makes the device key and the enterprise attestation key, asks the server
/// to activate, and returns the identity to store (status active). Nothing is stored here.
pub fn activate(
    link: &ActivationLink,
    device_name: &str,
    platform: &str,
) -> Result<OrgIdentity, OrgClientError> {
    let device_key = Es256Key::generate();
    // The batch key is sealed to a one-time key, so the device key only ever signs.
    let box_key = EcdhKey::generate();
    let enterprise_key = Es256Key::generate();
    let csr = make_csr(&enterprise_key, "PocketKey Enterprise").map_err(protocol)?;
    let request = serde_json::to_vec(&ActivateRequest {
        token: link.token.clone(),
        device_public_key: B64.encode(device_key.public_point()),
        box_public_key: B64.encode(box_key.public_point()),
        csr: B64.encode(&csr),
        device_name: device_name.to_string(),
        platform: platform.to_string(),
    })
    .map_err(protocol)?;
    let signature = device_key.sign(&org_protocol::activate_signed_bytes(&request));
    let body = serde_json::to_vec(&Signed {
        request: B64.encode(&request),
        signature: B64.encode(signature),
    })
    .map_err(protocol)?;
    let (status, answer) =
        http::exchange(&link.server, "POST", "/api/v1/device/activate", Some(&body))?;
    if status != 200 {
        return Err(refusal(status, &answer));
    }
    let activated: Activated = serde_json::from_slice(&answer).map_err(protocol)?;
    let sealed = SealedBox {
        ephemeral: unb64(&activated.batch_key.ephemeral)?
            .try_into()
            .map_err(|_| protocol("bad ephemeral key"))?,
        nonce: unb64(&activated.batch_key.nonce)?
            .try_into()
            .map_err(|_| protocol("bad nonce"))?,
        ciphertext: unb64(&activated.batch_key.ciphertext)?,
    };
    let batch_scalar = sealed_box::open(
        &box_key,
        &sealed,
        &org_protocol::batch_key_context(&activated.key_id),
    )
    .map_err(protocol)?;
    let batch_key = Es256Key::from_scalar(&batch_scalar).map_err(protocol)?;
    Ok(OrgIdentity {
        org_name: activated.org_name,
        server_url: link.server.to_string(),
        key_id: activated.key_id,
        status: OrgStatus::Active,
        device_key,
        batch: Some(OrgAttestation {
            key: batch_key,
            chain: chain(&activated.batch_chain)?,
        }),
        enterprise: Some(OrgAttestation {
            key: enterprise_key,
            chain: chain(&activated.enterprise_chain)?,
        }),
        policy: activated.policy,
        push_wake: None,
    })
}

/// What the server says of this key at a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAnswer {
    pub org_name: String,
    pub status: OrgStatus,
    /// Why it was suspended or revoked, as the admin wrote it.
    pub reason: Option<String>,
    pub policy: OrgPolicy,
    /// Registrations the organisation asks this key to make on the user's behalf.
    pub jobs: Vec<jobs::RegistrationJob>,
}

/// Asks the server where this key stands: fetches a single-use challenge and answers it with
/// the device key (docs/org.md, "Device authentication"). Changes nothing locally.
pub fn sync(identity: &OrgIdentity) -> Result<SyncAnswer, OrgClientError> {
    let server =
        Url::parse(&identity.server_url).map_err(|e| OrgClientError::InvalidLink(e.to_string()))?;
    let nonce = challenge(&server, &identity.key_id)?;
    let signature = identity
        .device_key
        .sign(&org_protocol::sync_signed_bytes(&identity.key_id, &nonce));
    let body = serde_json::to_vec(&SyncRequest {
        key_id: identity.key_id.clone(),
        nonce,
        signature: B64.encode(signature),
    })
    .map_err(protocol)?;
    let (status, answer) = http::exchange(&server, "POST", "/api/v1/device/sync", Some(&body))?;
    if status != 200 {
        return Err(refusal(status, &answer));
    }
    let wire: SyncAnswerWire = serde_json::from_slice(&answer).map_err(protocol)?;
    // "invited" cannot follow an activation; anything unknown is the server's fault.
    let status = OrgStatus::parse(&wire.status)
        .ok_or_else(|| protocol(format!("unknown key status {:?}", wire.status)))?;
    Ok(SyncAnswer {
        org_name: wire.org_name,
        status,
        reason: wire.reason,
        policy: wire.policy,
        jobs: jobs::registrations(wire.jobs),
    })
}

/// Registers (or replaces) where the organisation server wakes this phone (docs/org.md,
/// "Wake-ups"): a single-use challenge, answered with the device key's signature over the
/// target. Wake-ups then carry `target.wake` and nothing else; on one, the phone syncs.
pub fn register_push(
    identity: &OrgIdentity,
    target: &pocketkey_core::pairing::relay::PushTarget,
) -> Result<(), OrgClientError> {
    let server =
        Url::parse(&identity.server_url).map_err(|e| OrgClientError::InvalidLink(e.to_string()))?;
    let nonce = challenge(&server, &identity.key_id)?;
    let environment = target.environment.map(|e| e.as_str());
    let wake = target.wake.to_hex();
    let signature = identity.device_key.sign(&org_protocol::push_signed_bytes(
        &identity.key_id,
        &nonce,
        target.provider.as_str(),
        &target.target,
        environment.unwrap_or(""),
        &wake,
    ));
    let body = serde_json::to_vec(&PushRegistration {
        key_id: identity.key_id.clone(),
        nonce,
        signature: B64.encode(signature),
        provider: target.provider.as_str().to_owned(),
        target: target.target.clone(),
        environment: environment.map(str::to_owned),
        wake,
    })
    .map_err(protocol)?;
    let (status, answer) = http::exchange(&server, "POST", "/api/v1/device/push", Some(&body))?;
    if status != 200 {
        return Err(refusal(status, &answer));
    }
    Ok(())
}

/// A single-use challenge for `key_id`.
fn challenge(server: &Url, key_id: &str) -> Result<String, OrgClientError> {
    let body = serde_json::to_vec(&ChallengeRequest {
        key_id: key_id.to_owned(),
    })
    .map_err(protocol)?;
    let (status, answer) = http::exchange(server, "POST", "/api/v1/device/challenge", Some(&body))?;
    if status != 200 {
        return Err(refusal(status, &answer));
    }
    let challenge: Challenge = serde_json::from_slice(&answer).map_err(protocol)?;
    Ok(challenge.nonce)
}

/// Brings the stored identity in line with the server's answer. A revoked key forgets the
/// organisation's attestation keys and certificates for good.
pub fn apply(identity: &mut OrgIdentity, answer: SyncAnswer) {
    identity.org_name = answer.org_name;
    identity.policy = answer.policy;
    if identity.status == OrgStatus::Revoked {
        // Final: a later answer cannot bring back keys that were deleted.
        return;
    }
    identity.status = answer.status;
    if answer.status == OrgStatus::Revoked {
        identity.drop_attestation();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";

    #[test]
    fn both_link_forms_parse_and_name_the_server() {
        let a = ActivationLink::parse(&format!("https://org.example/activate/{T}")).unwrap();
        assert_eq!(
            (a.server.as_str(), a.token.as_str()),
            ("https://org.example/", T)
        );
        let b = ActivationLink::parse(&format!("https://org.example:8443/keys/activate?token={T}"))
            .unwrap();
        assert_eq!(b.server.as_str(), "https://org.example:8443/keys");
        let c = ActivationLink::parse(&format!("http://127.0.0.1:9/activate/{T}")).unwrap();
        assert_eq!(c.server.as_str(), "http://127.0.0.1:9/");
        for bad in [
            format!("http://org.example/activate/{T}"),
            "https://org.example/activate/".to_string(),
            format!("https://org.example/activate/{T}/x"),
            format!("https://u:p@org.example/activate/{T}"),
            format!("https://org.example/activate?token={T}&token={T}"),
            "https://org.example/activate/a%2Fb".to_string(),
            "nonsense".to_string(),
        ] {
            assert!(
                matches!(
                    ActivationLink::parse(&bad),
                    Err(OrgClientError::InvalidLink(_))
                ),
                "{bad}"
            );
        }
        assert!(!format!("{a:?}").contains(T), "the token is never printed");
    }

    #[test]
    fn typed_refusals() {
        let body = |code: &str| format!(r#"{{"error":"{code}","message":"m"}}"#).into_bytes();
        assert_eq!(refusal(410, &body("link_expired")), OrgClientError::Expired);
        assert_eq!(refusal(409, &body("link_used")), OrgClientError::Used);
        assert_eq!(refusal(403, &body("key_revoked")), OrgClientError::Revoked);
        assert_eq!(
            refusal(404, &body("link_not_valid")),
            OrgClientError::LinkNotValid
        );
        assert!(matches!(
            refusal(400, &body("invalid_csr")),
            OrgClientError::Refused { .. }
        ));
        assert!(matches!(
            refusal(502, b"<html>"),
            OrgClientError::Protocol(_)
        ));
    }
}
