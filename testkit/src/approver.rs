//! An [`Approver`] that answers from a script of outcomes the test queued, and records every
//! request it was shown.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pocketkey_core::approver::{ApprovalOutcome, ApprovalRequest, Approver, UvBinding};
use pocketkey_core::cancel::CancelToken;

/// The outcomes still to give and the requests seen, shared between the approver inside the
/// engine and the test.
#[derive(Default)]
pub struct Script {
    pub queue: VecDeque<Answer>,
    pub seen: Vec<ApprovalRequest>,
}

/// One scripted answer: an outcome fixed in advance, or one made from the request (to sign
/// its UV challenge).
pub enum Answer {
    Fixed(ApprovalOutcome),
    Made(Box<dyn FnOnce(&ApprovalRequest) -> ApprovalOutcome + Send>),
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Fixed(outcome) => outcome.fmt(f),
            Answer::Made(_) => f.write_str("Made(..)"),
        }
    }
}

impl From<ApprovalOutcome> for Answer {
    fn from(outcome: ApprovalOutcome) -> Self {
        Answer::Fixed(outcome)
    }
}

/// Answers approvals from a queue of outcomes and records every request it was shown. An
/// approval the test did not script is a test failure.
pub struct ScriptedApprover {
    pub can_verify: bool,
    /// `Software` unless a test checks the engine's handling of hardware-bound proofs.
    pub binding: UvBinding,
    pub script: Arc<Mutex<Script>>,
}

impl Approver for ScriptedApprover {
    fn can_verify_user(&self) -> bool {
        self.can_verify
    }

    fn uv_binding(&self) -> UvBinding {
        self.binding
    }

    fn approve(&mut self, request: &ApprovalRequest, _cancel: &CancelToken) -> ApprovalOutcome {
        let mut script = self.script.lock().unwrap();
        script.seen.push(request.clone());
        let next = script.queue.pop_front();
        drop(script);
        match next {
            Some(Answer::Fixed(outcome)) => outcome,
            Some(Answer::Made(make)) => make(request),
            None => panic!("approval asked but none was scripted: {request:?}"),
        }
    }
}

/// The user touched the phone (user presence only).
pub fn present() -> ApprovalOutcome {
    ApprovalOutcome::Present { account: None }
}

/// The user was verified (biometric or device credential).
pub fn verified() -> ApprovalOutcome {
    ApprovalOutcome::Verified {
        account: None,
        proof: None,
    }
}
