//! `pocketkey org sync` running the organisation's registrations on the user's behalf
//! (docs/org.md): each job is an authenticatorMakeCredential through this key's engine (the
//! same authenticator, attestation and policy as any registration), approved by the person at
//! the terminal, or by `--auto-approve`, against the prompt that names the organisation, the
//! RP and the account. The outcome goes back signed by the device key.

use std::io::{self, BufRead};
use std::path::Path;

use pocketkey_core::approver::{
    ApprovalOutcome, ApprovalRequest, Approver, Operation, Requester, UvBinding,
};
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::engine::{Engine, RequestContext, RequestKind};
use pocketkey_core::store::OrgIdentity;
use pocketkey_net::org::jobs::{self, Outcome, RegistrationJob};

/// Asks about one job: its prompt, and only for the registration with its RP.
struct JobApprover {
    prompt: String,
    rp_id: String,
    auto_approve: bool,
}

impl Approver for JobApprover {
    fn can_verify_user(&self) -> bool {
        true
    }
    fn uv_binding(&self) -> UvBinding {
        UvBinding::Software {
            reason: "the terminal (or --auto-approve) approves; not bound to hardware",
        }
    }
    fn approve(&mut self, request: &ApprovalRequest, cancel: &CancelToken) -> ApprovalOutcome {
        // The engine asks about exactly the registration the prompt describes; anything else
        // is not what the person would be approving.
        if request.operation != Operation::Register
            || request.rp_id.as_deref() != Some(self.rp_id.as_str())
        {
            return ApprovalOutcome::Denied;
        }
        if cancel.is_cancelled() {
            return ApprovalOutcome::Cancelled;
        }
        eprintln!("{}", self.prompt);
        let yes = if self.auto_approve {
            eprintln!("approved (--auto-approve)");
            true
        } else {
            eprint!("approve? [y/N] ");
            let mut line = String::new();
            io::stdin().lock().read_line(&mut line).is_ok()
                && matches!(line.trim(), "y" | "Y" | "yes")
        };
        if yes {
            ApprovalOutcome::Verified {
                account: None,
                proof: None,
            }
        } else {
            ApprovalOutcome::Denied
        }
    }
}

/// Runs one job through the key of `dir` and posts the outcome; returns it for the summary.
fn run_one(
    dir: &Path,
    master: &MasterKey,
    identity: &OrgIdentity,
    job: &RegistrationJob,
    auto_approve: bool,
) -> Result<&'static str, String> {
    let approver = Box::new(JobApprover {
        prompt: job.prompt(),
        rp_id: job.rp.id.clone(),
        auto_approve,
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
    let mut failed = Vec::new();
    for job in jobs {
        match run_one(dir, master, identity, job, auto_approve) {
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
