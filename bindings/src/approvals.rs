//! Event-driven approval: the engine hands the app a prompt through an [`ApprovalListener`]
//! and blocks; the app answers later, from any thread, with `SecurityKey::answer`.
//!
//! [`PendingApprovals`] is a map from prompt id to a slot, behind one mutex with a condvar.
//! The engine thread waits on the condvar (holding only that mutex, released while it
//! waits); `answer` takes the same short-lived mutex and nothing else, so answering never
//! waits for the engine.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pocketkey_core::approver::{ApprovalOutcome, ApprovalRequest, Approver, UvBinding};
use pocketkey_core::cancel::CancelToken;
use rand_core::{OsRng, RngCore};

use crate::errors::{ApprovalListenerError, PocketKeyError};
use crate::types::{ApprovalAnswer, ApprovalClosed, ApprovalPrompt, OnBehalf};

/// Implemented by the app: shows prompts (notification, biometric sheet) and hides them.
/// Both methods are called on the thread running `process_ctap`/`process_u2f`; return
/// quickly and answer later through `SecurityKey.answer` (calling it from inside
/// `on_approval_requested` is fine too). Throwing from `on_approval_requested` denies the
/// request; what `on_approval_closed` throws is ignored.
#[uniffi::export(with_foreign)]
pub trait ApprovalListener: Send + Sync {
    fn on_approval_requested(&self, request: ApprovalPrompt) -> Result<(), ApprovalListenerError>;
    fn on_approval_closed(
        &self,
        id: u64,
        reason: ApprovalClosed,
    ) -> Result<(), ApprovalListenerError>;
}

/// How often a waiting engine thread looks at its `CancelToken` (which cannot notify).
const CANCEL_POLL: Duration = Duration::from_millis(20);
/// Prompt ids stay below 2^53 so that JSON and JavaScript carry them exactly.
const ID_MASK: u64 = (1 << 53) - 1;

struct Slot {
    /// How many accounts the prompt offered (to check `answer`'s index).
    choices: usize,
    answer: Option<ApprovalOutcome>,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    Answered(ApprovalOutcome),
    TimedOut,
    Cancelled,
}

/// Open prompts, by id.
#[derive(Default)]
pub(crate) struct PendingApprovals {
    slots: Mutex<HashMap<u64, Slot>>,
    changed: Condvar,
}

impl PendingApprovals {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new prompt and returns its id: random, so that a notification left over
    /// from an earlier run of the app can never answer a new prompt.
    pub(crate) fn open(&self, choices: usize) -> u64 {
        let mut slots = self.lock();
        let id = loop {
            let id = OsRng.next_u64() & ID_MASK;
            if id != 0 && !slots.contains_key(&id) {
                break id;
            }
        };
        slots.insert(
            id,
            Slot {
                choices,
                answer: None,
            },
        );
        id
    }

    /// Records the app's answer. Unknown, already answered or ended ids are refused, and so
    /// is a verified answer whose signature cannot be one (the prompt stays open).
    pub(crate) fn answer(&self, id: u64, answer: ApprovalAnswer) -> Result<(), PocketKeyError> {
        let mut slots = self.lock();
        let slot = match slots.get_mut(&id) {
            Some(slot) if slot.answer.is_none() => slot,
            _ => return Err(PocketKeyError::UnknownApproval { id }),
        };
        if let Some(index) = answer.account() {
            if slot.choices > 0 && index as usize >= slot.choices {
                return Err(PocketKeyError::InvalidAccount {
                    index,
                    choices: slot.choices as u32,
                });
            }
        }
        slot.answer = Some(answer.outcome()?);
        drop(slots);
        self.changed.notify_all();
        Ok(())
    }

    /// Waits for the answer, the deadline or cancellation, then forgets the prompt (later
    /// answers get `UnknownApproval`).
    pub(crate) fn wait(&self, id: u64, deadline: Instant, cancel: &CancelToken) -> Waited {
        let mut slots = self.lock();
        let result = loop {
            match slots.get_mut(&id).and_then(|s| s.answer.take()) {
                Some(answer) => break Waited::Answered(answer),
                None if cancel.is_cancelled() => break Waited::Cancelled,
                None => {}
            }
            let now = Instant::now();
            if now >= deadline {
                break Waited::TimedOut;
            }
            let pause = (deadline - now).min(CANCEL_POLL);
            slots = self
                .changed
                .wait_timeout(slots, pause)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        slots.remove(&id);
        result
    }

    pub(crate) fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Wakes waiting engine threads so that they see a cancellation at once.
    pub(crate) fn wake(&self) {
        self.changed.notify_all();
    }

    /// Prompts not answered yet (the pairing runtime's "asking the user").
    pub(crate) fn open_count(&self) -> usize {
        self.lock().len()
    }
}

/// The organisation a registration on the user's behalf is running for. Set only while the
/// engine is locked for that one request, so no other request's prompt can see it.
pub(crate) type OnBehalfSlot = Arc<Mutex<Option<OnBehalf>>>;

/// The engine's [`Approver`], speaking to the app through the listener and the pending prompts.
pub(crate) struct ListenerApprover {
    pub(crate) pending: Arc<PendingApprovals>,
    pub(crate) listener: Arc<dyn ApprovalListener>,
    pub(crate) on_behalf: OnBehalfSlot,
}

impl Approver for ListenerApprover {
    /// Phones verify users with their biometric or device credential, through the prompt.
    fn can_verify_user(&self) -> bool {
        true
    }

    /// A verified answer carries the UV key's signature, which the engine checks.
    fn uv_binding(&self) -> UvBinding {
        UvBinding::Hardware
    }

    fn approve(&mut self, request: &ApprovalRequest, cancel: &CancelToken) -> ApprovalOutcome {
        let deadline = Instant::now() + request.timeout;
        let deadline_unix_ms = unix_ms(SystemTime::now()).saturating_add(millis(request.timeout));
        let id = self.pending.open(request.accounts.len());
        let on_behalf = self
            .on_behalf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let prompt = ApprovalPrompt::new(id, request, deadline_unix_ms, on_behalf);
        if self.listener.on_approval_requested(prompt).is_err() {
            // The app could not show the prompt: nobody can approve, so it is a denial. The
            // foreign error's text is not logged (it is the app's, and may name the user).
            self.pending.forget(id);
            let _ = self
                .listener
                .on_approval_closed(id, ApprovalClosed::ListenerFailed);
            return ApprovalOutcome::Denied;
        }
        let (outcome, reason) = match self.pending.wait(id, deadline, cancel) {
            Waited::Answered(outcome) => (outcome, ApprovalClosed::Answered),
            Waited::TimedOut => (ApprovalOutcome::TimedOut, ApprovalClosed::TimedOut),
            Waited::Cancelled => (ApprovalOutcome::Cancelled, ApprovalClosed::Cancelled),
        };
        let _ = self.listener.on_approval_closed(id, reason);
        outcome
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
