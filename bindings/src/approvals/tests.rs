use std::sync::mpsc;
use std::thread;

use pocketkey_core::approver::{AccountChoice, Operation, Requester, UvChallenge, UvProof};

use super::*;
use crate::types::ApprovalOperation;

/// Records everything; optionally fails `on_approval_requested` or answers from inside it.
#[derive(Default)]
struct Recorder {
    prompts: Mutex<Vec<ApprovalPrompt>>,
    closed: Mutex<Vec<(u64, ApprovalClosed)>>,
    fail: bool,
    sender: Mutex<Option<mpsc::Sender<u64>>>,
    pending_for_inline: Mutex<Option<Arc<PendingApprovals>>>,
}

impl ApprovalListener for Recorder {
    fn on_approval_requested(&self, request: ApprovalPrompt) -> Result<(), ApprovalListenerError> {
        let id = request.id;
        self.prompts.lock().unwrap().push(request);
        if self.fail {
            return Err(uniffi::UnexpectedUniFFICallbackError::new("app crashed").into());
        }
        if let Some(pending) = self.pending_for_inline.lock().unwrap().as_ref() {
            pending
                .answer(id, ApprovalAnswer::ApprovePresent { account: None })
                .unwrap();
        }
        if let Some(tx) = self.sender.lock().unwrap().as_ref() {
            tx.send(id).unwrap();
        }
        Ok(())
    }
    fn on_approval_closed(
        &self,
        id: u64,
        reason: ApprovalClosed,
    ) -> Result<(), ApprovalListenerError> {
        self.closed.lock().unwrap().push((id, reason));
        Err(ApprovalListenerError::Failed {
            reason: "ignored".into(),
        })
    }
}

fn request(timeout: Duration) -> ApprovalRequest {
    ApprovalRequest {
        operation: Operation::SignIn,
        rp_id: Some("example.com".into()),
        rp_name: Some("Example".into()),
        user_name: Some("alice".into()),
        user_display_name: Some("Alice".into()),
        requester: Requester("Work laptop".into()),
        accounts: vec![
            AccountChoice {
                user_name: Some("alice".into()),
                display_name: None,
                user_id: vec![1],
            },
            AccountChoice {
                user_name: Some("bob".into()),
                display_name: None,
                user_id: vec![2],
            },
        ],
        verification_required: true,
        timeout,
        uv_challenge: UvChallenge::new(Operation::SignIn, Some("example.com")),
    }
}

fn approver(listener: Arc<Recorder>) -> (ListenerApprover, Arc<PendingApprovals>) {
    let pending = Arc::new(PendingApprovals::default());
    (
        ListenerApprover {
            pending: pending.clone(),
            listener,
            on_behalf: OnBehalfSlot::default(),
        },
        pending,
    )
}

#[test]
fn answered_from_another_thread() {
    let (tx, rx) = mpsc::channel();
    let listener = Arc::new(Recorder {
        sender: Mutex::new(Some(tx)),
        ..Default::default()
    });
    let (mut approver, pending) = approver(listener.clone());
    let answering_pending = pending.clone();
    let answerer = thread::spawn(move || {
        let id = rx.recv().unwrap();
        answering_pending
            .answer(
                id,
                ApprovalAnswer::ApproveVerified {
                    account: Some(1),
                    signature: vec![0x30; 70],
                },
            )
            .unwrap();
        id
    });
    let before = unix_ms(SystemTime::now());
    let outcome = approver.approve(&request(Duration::from_secs(10)), &CancelToken::new());
    let id = answerer.join().unwrap();
    assert_eq!(
        outcome,
        ApprovalOutcome::Verified {
            account: Some(1),
            proof: UvProof::from_der(&[0x30; 70]),
        }
    );
    let prompt = listener.prompts.lock().unwrap()[0].clone();
    assert_eq!(prompt.id, id);
    assert!(id > 0 && id <= ID_MASK);
    assert_eq!(prompt.operation, ApprovalOperation::SignIn);
    assert_eq!(prompt.rp_id.as_deref(), Some("example.com"));
    assert_eq!(prompt.requester, "Work laptop");
    assert_eq!(prompt.accounts.len(), 2);
    assert_eq!(prompt.accounts[1].user_id, vec![2]);
    assert!(prompt.verification_required);
    assert!(
        prompt.deadline_unix_ms >= before + 10_000 && prompt.deadline_unix_ms <= before + 11_000
    );
    assert_eq!(
        *listener.closed.lock().unwrap(),
        vec![(id, ApprovalClosed::Answered)]
    );
    // The prompt is gone: a second answer is refused.
    assert_eq!(
        pending.answer(id, ApprovalAnswer::Deny),
        Err(PocketKeyError::UnknownApproval { id })
    );
    assert_eq!(pending.open_count(), 0);
}

#[test]
fn answered_from_inside_the_callback() {
    let listener = Arc::new(Recorder::default());
    let (mut approver, pending) = approver(listener.clone());
    *listener.pending_for_inline.lock().unwrap() = Some(pending);
    let outcome = approver.approve(&request(Duration::from_secs(10)), &CancelToken::new());
    assert_eq!(outcome, ApprovalOutcome::Present { account: None });
}

#[test]
fn prompts_are_marked_on_behalf_only_while_the_slot_is_set() {
    let listener = Arc::new(Recorder::default());
    let (mut approver, pending) = approver(listener.clone());
    *listener.pending_for_inline.lock().unwrap() = Some(pending);
    let on_behalf = OnBehalf {
        organisation: "Acme IT".into(),
        account: "alice@acme.example".into(),
    };
    *approver.on_behalf.lock().unwrap() = Some(on_behalf.clone());
    approver.approve(&request(Duration::from_secs(5)), &CancelToken::new());
    *approver.on_behalf.lock().unwrap() = None;
    approver.approve(&request(Duration::from_secs(5)), &CancelToken::new());
    let marks: Vec<_> = listener
        .prompts
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.on_behalf.clone())
        .collect();
    assert_eq!(marks, vec![Some(on_behalf), None]);
}

#[test]
fn nobody_answers_and_it_times_out() {
    let listener = Arc::new(Recorder::default());
    let (mut approver, pending) = approver(listener.clone());
    let started = Instant::now();
    let outcome = approver.approve(&request(Duration::from_millis(150)), &CancelToken::new());
    assert_eq!(outcome, ApprovalOutcome::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(150));
    let id = listener.prompts.lock().unwrap()[0].id;
    assert_eq!(
        *listener.closed.lock().unwrap(),
        vec![(id, ApprovalClosed::TimedOut)]
    );
    assert_eq!(
        pending.answer(id, ApprovalAnswer::ApprovePresent { account: None }),
        Err(PocketKeyError::UnknownApproval { id })
    );
}

#[test]
fn cancellation_ends_the_wait_promptly() {
    let listener = Arc::new(Recorder::default());
    let (mut approver, pending) = approver(listener.clone());
    let cancel = CancelToken::new();
    let canceller = {
        let (cancel, pending) = (cancel.clone(), pending.clone());
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            cancel.cancel();
            pending.wake();
        })
    };
    let started = Instant::now();
    let outcome = approver.approve(&request(Duration::from_secs(30)), &cancel);
    canceller.join().unwrap();
    assert_eq!(outcome, ApprovalOutcome::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        listener.closed.lock().unwrap()[0].1,
        ApprovalClosed::Cancelled
    );
}

#[test]
fn a_failing_listener_denies() {
    let listener = Arc::new(Recorder {
        fail: true,
        ..Default::default()
    });
    let (mut approver, pending) = approver(listener.clone());
    let outcome = approver.approve(&request(Duration::from_secs(30)), &CancelToken::new());
    assert_eq!(outcome, ApprovalOutcome::Denied);
    let id = listener.prompts.lock().unwrap()[0].id;
    assert_eq!(
        *listener.closed.lock().unwrap(),
        vec![(id, ApprovalClosed::ListenerFailed)]
    );
    assert_eq!(pending.open_count(), 0);
}

#[test]
fn unknown_ids_and_bad_account_indexes_are_refused() {
    let pending = PendingApprovals::default();
    assert_eq!(
        pending.answer(42, ApprovalAnswer::Deny),
        Err(PocketKeyError::UnknownApproval { id: 42 })
    );
    let id = pending.open(2);
    assert_eq!(
        pending.answer(id, ApprovalAnswer::ApprovePresent { account: Some(2) }),
        Err(PocketKeyError::InvalidAccount {
            index: 2,
            choices: 2
        })
    );
    pending
        .answer(id, ApprovalAnswer::ApprovePresent { account: Some(1) })
        .unwrap();
    assert_eq!(
        pending.answer(id, ApprovalAnswer::Deny),
        Err(PocketKeyError::UnknownApproval { id })
    );
    // Without choices, an account index is ignored rather than refused.
    let id = pending.open(0);
    pending
        .answer(
            id,
            ApprovalAnswer::ApproveVerified {
                account: Some(5),
                signature: vec![0x30; 8],
            },
        )
        .unwrap();
    // A signature no P-256 signature could be is refused, and the prompt stays open.
    let id = pending.open(0);
    for signature in [vec![], vec![0x30; 73]] {
        let length = signature.len() as u32;
        assert_eq!(
            pending.answer(
                id,
                ApprovalAnswer::ApproveVerified {
                    account: None,
                    signature,
                },
            ),
            Err(PocketKeyError::InvalidUvProof { length })
        );
    }
    pending.answer(id, ApprovalAnswer::Deny).unwrap();
}

#[test]
fn every_answer_maps_to_its_outcome() {
    use ApprovalAnswer as A;
    assert_eq!(
        A::ApprovePresent { account: None }.outcome(),
        Ok(ApprovalOutcome::Present { account: None })
    );
    assert_eq!(
        A::ApproveVerified {
            account: Some(3),
            signature: vec![0x30; 72],
        }
        .outcome(),
        Ok(ApprovalOutcome::Verified {
            account: Some(3),
            proof: UvProof::from_der(&[0x30; 72]),
        })
    );
    assert_eq!(A::Deny.outcome(), Ok(ApprovalOutcome::Denied));
    assert_eq!(
        A::VerificationFailed.outcome(),
        Ok(ApprovalOutcome::VerificationFailed)
    );
}
