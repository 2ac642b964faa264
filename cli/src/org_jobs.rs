//! `pocketkey org sync` running the organisation's registrations on the user's behalf
//! (docs/org.md): each job is an authenticatorMakeCredential through this key's engine (the
//! same authenticator, attestation and policy as any registration), approved by the person at
//! the terminal, or by `--auto-approve`, against the prompt that names the organisation, the
//! RP and the account. The outcome goes back signed by the device key.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pocketkey_core::approver::{
    ApprovalOutcome, ApprovalRequest, Approver, Operation, Requester, UvBinding,
};
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::engine::{Engine, RequestContext, RequestKind};
use pocketkey_core::store::OrgIdentity;
use pocketkey_net::org::jobs::{self, Outcome, RegistrationJob, RegistrationJobExt};

/// Asks about one job: shows its prompt, then lets the desktop approver (the terminal prompt
/// or `--auto-approve`) answer, and only for the registration with the job's RP.
struct JobApprover {
    prompt: String,
    rp_id: String,
    /// One for every job of a sync: the terminal prompt reads its answers on one thread.
    inner: Arc<Mutex<Box<dyn Approver>>>,
}

impl JobApprover {
    fn inner(&self) -> MutexGuard<'_, Box<dyn Approver>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Approver for JobApprover {
    fn can_verify_user(&self) -> bool {
        self.inner().can_verify_user()
    }
    fn uv_binding(&self) -> UvBinding {
        self.inner().uv_binding()
    }
    fn approve(&mut self, request: &ApprovalRequest, cancel: &CancelToken) -> ApprovalOutcome {
        // The engine asks about exactly the registration the prompt describes; anything else
        // is not what the person would be approving.
        if request.operation != Operation::Register
            || request.rp_id.as_deref() != Some(self.rp_id.as_str())
        {
            return ApprovalOutcome::Denied;
        }
        eprintln!("{}", self.prompt);
        self.inner().approve(request, cancel)
    }
}

/// Runs one job through the key of `dir` and posts the outcome; returns it for the summary.
fn run_one(
    dir: &Path,
    master: &MasterKey,
    identity: &OrgIdentity,
    job: &RegistrationJob,
    approver: &Arc<Mutex<Box<dyn Approver>>>,
) -> Result<&'static str, String> {
    let approver = Box::new(JobApprover {
        prompt: job.prompt(),
        rp_id: job.rp.id.clone(),
        inner: approver.clone(),
    });
    let config = crate::key_config(dir, master)?;
    let key = crate::open_key(dir, master, approver, config)?;
    let request = job
        .make_credential_request(identity.enterprise.is_some())
        .map_err(|e| e.to_string())?;
    let cx = RequestContext {
        requester: Requester(identity.org_name.clone()),
        ..RequestContext::default()
    };
    let answer = key.process(RequestKind::Cbor, &request, &cx);
    drop(key);
    let outcome = jobs::outcome_from_response(&answer).map_err(|e| e.to_string())?;
    jobs::post_outcome(identity, &job.id, &outcome)
        .map_err(|e| format!("cannot post the outcome: {e}"))?;
    Ok(match outcome {
        Outcome::Completed { .. } => "completed",
        Outcome::Denied => "denied",
    })
}

/// Runs every job; prints `registration: <RP> for <account>: <outcome>` for each. A job that
/// fails (the key refused for another reason than a "no", the server unreachable) stays
/// pending on the server until it expires; the error is returned after the others ran.
pub fn run(
    dir: &Path,
    master: &MasterKey,
    identity: &OrgIdentity,
    jobs: &[RegistrationJob],
    auto_approve: bool,
) -> Result<(), String> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut failed = Vec::new();
    let approver = Arc::new(Mutex::new(crate::approver::desktop_approver(auto_approve)));
    for job in jobs {
        match run_one(dir, master, identity, job, &approver) {
            Ok(outcome) => println!(
                "registration: {} for {}: {outcome}",
                job.rp.id, job.user.name
            ),
            Err(e) => failed.push(format!("registration with {} failed: {e}", job.rp.id)),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}
