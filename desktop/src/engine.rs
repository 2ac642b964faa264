//! The engine as the transports see it, and the glue to the real authenticator.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pocketkey_core::approver::{ApprovalOutcome, ApprovalRequest, Approver};
use pocketkey_core::cancel::CancelToken;

pub use pocketkey_core::authenticator::RequestContext;

/// A CTAP engine: CTAPHID CBOR and MSG payloads in, response payloads out.
pub trait Engine: Send + 'static {
    /// A CTAPHID_CBOR payload (command byte ‖ CBOR); returns status byte ‖ CBOR.
    fn process_cbor(&mut self, request: &[u8], cx: &RequestContext) -> Vec<u8>;
    /// A CTAPHID_MSG payload (U2F APDU); returns response data ‖ status word.
    fn process_u2f(&mut self, apdu: &[u8], cx: &RequestContext) -> Vec<u8>;
    /// Drop volatile state as if the key had been unplugged and plugged in again.
    fn power_cycle(&mut self);
}

/// Raised while the engine waits for the user, so the transport can send KEEPALIVE
/// UPNEEDED instead of PROCESSING.
#[derive(Debug, Clone, Default)]
pub struct WaitingForUser(Arc<AtomicBool>);

impl WaitingForUser {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn is_waiting(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// Raises or lowers the flag (a transport forwarding to another engine, e.g. the bridge).
    pub fn set(&self, waiting: bool) {
        self.0.store(waiting, Ordering::SeqCst);
    }
}

/// Wraps an approver to raise [`WaitingForUser`] while it is asking.
pub struct SignallingApprover {
    inner: Box<dyn Approver>,
    waiting: WaitingForUser,
}

impl SignallingApprover {
    pub fn new(inner: Box<dyn Approver>, waiting: WaitingForUser) -> Self {
        Self { inner, waiting }
    }
}

struct Lower<'a>(&'a AtomicBool);
impl Drop for Lower<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Approver for SignallingApprover {
    fn can_verify_user(&self) -> bool {
        self.inner.can_verify_user()
    }
    fn approve(&mut self, request: &ApprovalRequest, cancel: &CancelToken) -> ApprovalOutcome {
        self.waiting.0.store(true, Ordering::SeqCst);
        let _lower = Lower(&self.waiting.0);
        self.inner.approve(request, cancel)
    }
}

/// Opens the store and builds the real authenticator.
pub fn open_engine(
    store_path: &std::path::Path,
    master: &pocketkey_core::crypto::master_key::MasterKey,
    approver: Box<dyn Approver>,
    attestation: pocketkey_core::attestation::AttestationConfig,
) -> Result<pocketkey_core::authenticator::Authenticator, String> {
    let config = pocketkey_core::authenticator::Config {
        attestation,
        ..Default::default()
    };
    open_engine_with(store_path, master, approver, config)
}

/// Opens the store and builds the real authenticator with `config`.
pub fn open_engine_with(
    store_path: &std::path::Path,
    master: &pocketkey_core::crypto::master_key::MasterKey,
    approver: Box<dyn Approver>,
    config: pocketkey_core::authenticator::Config,
) -> Result<pocketkey_core::authenticator::Authenticator, String> {
    use pocketkey_core::authenticator::Authenticator;
    use pocketkey_core::store::Store;
    let store = Store::open(store_path, master).map_err(|e| {
        format!(
            "cannot open the credential store {}: {e}",
            store_path.display()
        )
    })?;
    Authenticator::new(store, master, approver, config)
        .map_err(|e| format!("cannot start the authenticator: {e}"))
}

impl Engine for pocketkey_core::authenticator::Authenticator {
    fn process_cbor(&mut self, request: &[u8], cx: &RequestContext) -> Vec<u8> {
        pocketkey_core::authenticator::Authenticator::process_cbor(self, request, cx)
    }
    fn process_u2f(&mut self, apdu: &[u8], cx: &RequestContext) -> Vec<u8> {
        pocketkey_core::authenticator::Authenticator::process_u2f(self, apdu, cx)
    }
    fn power_cycle(&mut self) {
        pocketkey_core::authenticator::Authenticator::power_cycle(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pocketkey_core::approver::{AutoApprover, Operation, Requester};
    use std::time::Duration;

    struct Probe(WaitingForUser);
    impl Approver for Probe {
        fn can_verify_user(&self) -> bool {
            false
        }
        fn approve(&mut self, _: &ApprovalRequest, _: &CancelToken) -> ApprovalOutcome {
            assert!(self.0.is_waiting());
            ApprovalOutcome::Denied
        }
    }

    #[test]
    fn flag_is_raised_only_while_asking() {
        let waiting = WaitingForUser::new();
        let request = ApprovalRequest {
            operation: Operation::Select,
            rp_id: None,
            rp_name: None,
            user_name: None,
            user_display_name: None,
            requester: Requester::default(),
            accounts: vec![],
            verification_required: false,
            timeout: Duration::from_secs(1),
        };
        let mut approver =
            SignallingApprover::new(Box::new(Probe(waiting.clone())), waiting.clone());
        assert!(!approver.can_verify_user());
        assert_eq!(
            approver.approve(&request, &CancelToken::new()),
            ApprovalOutcome::Denied
        );
        assert!(!waiting.is_waiting());
        let mut auto = SignallingApprover::new(Box::new(AutoApprover), waiting.clone());
        assert!(auto.approve(&request, &CancelToken::new()).is_verified());
        assert!(!waiting.is_waiting());
    }
}
