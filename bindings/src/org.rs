//! Joining an organisation from its invite (docs/org.md): `SecurityKey.activate(link)`.
//! The protocol is `pocketkey_net::org`, the same code path as `pocketkey activate`.

use pocketkey_core::attestation::AttestationConfig;
use pocketkey_core::authenticator::Authenticator;
use pocketkey_core::pairing::relay::{PushTarget, WakeId};
use pocketkey_core::store::{OrgIdentity, OrgStatus, Store};
use pocketkey_net::org::jobs::{self, printable, Outcome, RegistrationJob, RegistrationJobExt};
use pocketkey_net::org::unpair::unpair_computers;
use pocketkey_net::org::{self as client, ActivationLink, OrgClientError};

use crate::approvals::OnBehalfSlot;
use crate::errors::PocketKeyError;
use crate::pairing::{PushNotRegistered, PushProblem};
use crate::security_key::{lock, SecurityKey};
use crate::types::{AttestationKind, OnBehalf};

/// The organisation's answers to `POST /api/v1/device/push` that stay the same however often
/// the same target is sent (docs/org.md, "Wake-ups"): a target its providers refuse, a request
/// it cannot read or that is too large, a key it does not know or whose signature it does not
/// accept.
/// `rate_limited`, `challenge_invalid` (the single-use challenge was spent or expired), server
/// errors and codes not listed here are worth another try.
const PUSH_REFUSED_FOR_GOOD: &[&str] = &[
    "bad_push_target",
    "invalid_json",
    "unknown_device",
    "bad_signature",
    "payload_too_large",
];

/// Whether registering the same push target with the organisation again can help.
fn push_problem(e: &OrgClientError) -> PushProblem {
    match e {
        OrgClientError::Revoked => PushProblem::Refused {
            reason: e.to_string(),
        },
        OrgClientError::Refused { code, message }
            if PUSH_REFUSED_FOR_GOOD.contains(&code.as_str()) =>
        {
            PushProblem::Refused {
                reason: printable(message),
            }
        }
        _ => PushProblem::TryLater,
    }
}

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
        apply(&mut engine, &mut side, &identity, attestation)?;
        *lock(&self.attestation) = AttestationKind::Batch;
        Ok(identity.org_name)
    }

    /// Asks the organisation where this key stands (proving the device key with a
    /// single-use challenge), applies it and returns it for the app to show: suspended or
    /// revoked, the organisation's sites are refused; revoked, its attestation keys and
    /// certificates are deleted for good. Blocks on the network: call it off the main thread.
    ///
    /// An active key then runs the organisation's registrations on the user's behalf through
    /// the engine: each is an approval prompt (operation `Register`, the RP's id, the account
    /// as `user_name`, the organisation's name as `requester`) that the app shows as "<ORG>
    /// asks to register this key with <RP> for <account>" and answers with `answer`, as any
    /// other. Their outcomes are in the returned state's `registrations`.
    pub fn sync_organisation(&self) -> Result<OrganisationState, PocketKeyError> {
        let Some(mut identity) = lock(&self.side)
            .load_org_identity()
            .map_err(PocketKeyError::storage)?
        else {
            return Err(PocketKeyError::NoOrganisation);
        };
        let mut answer = client::sync(&identity).map_err(|e| match e {
            e @ (OrgClientError::Refused { .. } | OrgClientError::Protocol(_)) => {
                PocketKeyError::OrganisationSyncFailed {
                    detail: e.to_string(),
                }
            }
            other => other.into(),
        })?;
        let reason = answer.reason.clone();
        let pending = std::mem::take(&mut answer.jobs);
        let was_revoked = identity.status == OrgStatus::Revoked;
        client::apply(&mut identity, answer);
        let attestation = identity
            .attestation_config()
            .map_err(PocketKeyError::storage)?;
        {
            let mut engine = lock(&self.engine);
            let mut side = lock(&self.side);
            // A `register_push` during the request may have stored a newer wake id.
            if let Some(current) = side.load_org_identity().map_err(PocketKeyError::storage)? {
                identity.push_wake = current.push_wake;
            }
            side.save_org_identity(&identity)
                .map_err(PocketKeyError::storage)?;
            let batch = attestation.as_ref().is_some_and(|a| a.batch.is_some());
            apply(&mut engine, &mut side, &identity, attestation)?;
            *lock(&self.attestation) = if batch {
                AttestationKind::Batch
            } else {
                AttestationKind::SelfAttestation
            };
        }
        // Revocation unpairs the computers the organisation's key served (docs/org.md).
        let unpaired_computers = if identity.status == OrgStatus::Revoked && !was_revoked {
            let unpaired =
                unpair_computers(&lock(&self.pairings), pocketkey_core::clock::unix_now())
                    .map_err(|e| PocketKeyError::StorageFailed {
                        detail: e.to_string(),
                    })?;
            unpaired.done.into_iter().chain(unpaired.pending).collect()
        } else {
            Vec::new()
        };
        // The engine lock is free again: each job takes it as a computer's request would.
        let registrations = if identity.status == OrgStatus::Active {
            pending
                .iter()
                .map(|job| self.register_on_behalf(&identity, job))
                .collect()
        } else {
            Vec::new()
        };
        Ok(OrganisationState {
            registrations,
            unpaired_computers,
            name: identity.org_name,
            status: match identity.status {
                OrgStatus::Active => OrganisationStatus::Active,
                OrgStatus::Suspended => OrganisationStatus::Suspended,
                OrgStatus::Revoked => OrganisationStatus::Revoked,
            },
            reason,
        })
    }
}

impl SecurityKey {
    /// Registers `target` with the organisation, for a key of one that is not revoked (a
    /// suspended key is still woken, for its resumption), and keeps its wake id for
    /// `handle_push`. `Some` when the organisation did not take it.
    pub(crate) fn register_organisation_push(
        &self,
        target: &PushTarget,
    ) -> Result<Option<PushNotRegistered>, PocketKeyError> {
        let Some(identity) = lock(&self.side)
            .load_org_identity()
            .map_err(PocketKeyError::storage)?
            .filter(|identity| identity.status != OrgStatus::Revoked)
        else {
            return Ok(None);
        };
        if let Err(e) = client::register_push(&identity, target) {
            return Ok(Some(PushNotRegistered {
                name: identity.org_name,
                problem: push_problem(&e),
            }));
        }
        // Reloaded: a sync may have changed the identity during the request.
        let mut side = lock(&self.side);
        if let Some(mut current) = side
            .load_org_identity()
            .map_err(PocketKeyError::storage)?
            .filter(|current| current.key_id == identity.key_id)
        {
            current.push_wake = Some(target.wake);
            side.save_org_identity(&current)
                .map_err(PocketKeyError::storage)?;
        }
        Ok(None)
    }

    /// The organisation's name when `wake` is the wake id last registered with it (and the
    /// key is not revoked: nothing more will come of a sync then).
    pub(crate) fn organisation_woken(
        &self,
        wake: WakeId,
    ) -> Result<Option<String>, PocketKeyError> {
        Ok(lock(&self.side)
            .load_org_identity()
            .map_err(PocketKeyError::storage)?
            .filter(|identity| identity.status != OrgStatus::Revoked)
            .filter(|identity| identity.push_wake == Some(wake))
            .map(|identity| identity.org_name))
    }

    /// One registration on the user's behalf: makeCredential through the engine (the app's
    /// approval prompt), then the outcome posted signed by the device key.
    fn register_on_behalf(
        &self,
        identity: &OrgIdentity,
        job: &RegistrationJob,
    ) -> OnBehalfRegistration {
        let made = job
            .make_credential_request(identity.enterprise.is_some())
            .and_then(|request| {
                let on_behalf = OnBehalf {
                    organisation: printable(&job.org_name),
                    account: printable(&job.user.name),
                };
                let answer = self.run(job.org_name.clone(), |engine, cx| {
                    // Inside `run`, the engine is ours: the slot marks this request's prompt only.
                    let _marked = OnBehalfScope::set(&self.on_behalf, on_behalf);
                    engine.process_cbor(&request, cx)
                });
                jobs::outcome_from_response(&answer)
            })
            .and_then(|outcome| jobs::post_outcome(identity, &job.id, &outcome).map(|()| outcome));
        OnBehalfRegistration {
            rp_id: job.rp.id.clone(),
            account: job.user.name.clone(),
            prompt: job.prompt(),
            outcome: match made {
                Ok(Outcome::Completed { .. }) => RegistrationOutcome::Completed,
                Ok(Outcome::Denied) => RegistrationOutcome::Denied,
                Err(e) => RegistrationOutcome::Failed {
                    detail: e.to_string(),
                },
            },
        }
    }
}

/// Marks the prompts of one request as on the user's behalf; clears the mark when the request
/// ends, even by a panic.
struct OnBehalfScope<'a>(&'a OnBehalfSlot);

impl<'a> OnBehalfScope<'a> {
    fn set(slot: &'a OnBehalfSlot, on_behalf: OnBehalf) -> Self {
        *lock(slot) = Some(on_behalf);
        Self(slot)
    }
}

impl Drop for OnBehalfScope<'_> {
    fn drop(&mut self) {
        *lock(self.0) = None;
    }
}

/// How a registration on the user's behalf ended on this phone.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum RegistrationOutcome {
    /// Approved, made and handed to the organisation.
    Completed,
    /// The person said no; the organisation was told.
    Denied,
    /// The key refused for another reason, or the server could not be told; the
    /// registration stays pending on the server until it expires.
    Failed { detail: String },
}

/// A registration the organisation asked for at this sync.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OnBehalfRegistration {
    pub rp_id: String,
    pub account: String,
    /// "<ORG> asks to register this key with <RP> for <account>".
    pub prompt: String,
    pub outcome: RegistrationOutcome,
}

/// Where the key stands with its organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum OrganisationStatus {
    Active,
    /// The organisation's sites are refused until it resumes the key.
    Suspended,
    /// The organisation's sites are refused and its attestation keys are deleted, for good.
    Revoked,
}

/// What `sync_organisation` learnt.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OrganisationState {
    pub name: String,
    pub status: OrganisationStatus,
    /// The administrator's reason for a suspension or revocation.
    pub reason: Option<String>,
    /// The registrations on the user's behalf this sync ran, in the server's order.
    pub registrations: Vec<OnBehalfRegistration>,
    /// The computers this sync unpaired, by name: a revocation unpairs every computer the
    /// key served (the app says so).
    pub unpaired_computers: Vec<String>,
}

/// Makes the running engine and the settings follow `identity`. Called with the engine and
/// side locks held (in that order).
fn apply(
    engine: &mut Authenticator,
    side: &mut Store,
    identity: &OrgIdentity,
    attestation: Option<AttestationConfig>,
) -> Result<(), PocketKeyError> {
    let mut settings = side.load_settings().map_err(PocketKeyError::storage)?;
    if identity.apply_to_settings(&mut settings) {
        side.save_settings(&settings)
            .map_err(PocketKeyError::storage)?;
    }
    engine.set_attestation(attestation.unwrap_or_default());
    engine.set_refused_rp_ids(identity.refused_rp_ids());
    engine.set_registrable_rp_ids(identity.registrable_rp_ids());
    engine.set_always_uv_locked(identity.locks_always_uv());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str) -> OrgClientError {
        OrgClientError::Refused {
            code: code.into(),
            message: format!("{code}\nsecond line"),
        }
    }

    #[test]
    fn a_refusal_that_would_come_again_is_refused_anything_else_is_worth_a_retry() {
        for code in PUSH_REFUSED_FOR_GOOD {
            assert_eq!(
                push_problem(&refused(code)),
                PushProblem::Refused {
                    reason: format!("{code}?second line")
                },
                "{code}"
            );
        }
        assert!(matches!(
            push_problem(&OrgClientError::Revoked),
            PushProblem::Refused { .. }
        ));
        for passing in [
            refused("rate_limited"),
            refused("challenge_invalid"),
            refused("internal"),
            refused("a_code_from_a_newer_server"),
            OrgClientError::Network("connection refused".into()),
            OrgClientError::Protocol("HTTP 502 without a typed error".into()),
        ] {
            assert_eq!(push_problem(&passing), PushProblem::TryLater, "{passing}");
        }
    }
}
