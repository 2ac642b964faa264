//! An [`Approver`] that answers from a script of outcomes the test queued, and records every
//! request it was shown.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pocketkey_core::approver::{ApprovalOutcome, ApprovalRequest, Approver};
use pocketkey_core::cancel::CancelToken;

/// The outcomes still to give and the requests seen, shared between the approver inside the
/// engine and the test.
#[derive(Default)]
pub struct Script {
    pub queue: VecDeque<ApprovalOutcome>,
    pub seen: Vec<ApprovalRequest>,
}

/// Answers approvals from a queue of outcomes and records every request it was shown. An
/// approval the test did not script is a test failure.
pub struct ScriptedApprover {
    pub can_verify: bool,
    pub script: Arc<Mutex<Script>>,
}

impl Approver for ScriptedApprover {
    fn can_verify_user(&self) -> bool {
        self.can_verify
    }

    fn approve(&mut self, request: &ApprovalRequest, _cancel: &CancelToken) -> ApprovalOutcome {
        let mut script = self.script.lock().unwrap();
        script.seen.push(request.clone());
        let next = script.queue.pop_front();
        drop(script);
        next.unwrap_or_else(|| panic!("approval asked but none was scripted: {request:?}"))
    }
}

/// The user touched the phone (user presence only).
pub fn present() -> ApprovalOutcome {
    ApprovalOutcome::Present { account: None }
}

/// The user was verified (biometric or device credential).
pub fn verified() -> ApprovalOutcome {
    ApprovalOutcome::Verified { account: None }
}
