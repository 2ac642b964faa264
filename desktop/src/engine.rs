//! The real authenticator on a desktop, opened from a state directory's store with one
//! [`EngineConfig`] as a [`DesktopKey`], and the flag that tells the transport when it is
//! asking the user.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pocketkey_core::approver::{ApprovalOutcome, ApprovalRequest, Approver, UvBinding};
use pocketkey_core::attestation::AttestationConfig;
use pocketkey_core::authenticator::{Authenticator, Config};
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::engine::{Engine, RequestContext, RequestKind};
use pocketkey_core::store::{Store, StoreError};

/// What getInfo advertises for a desktop key (CTAP 2.1 §6.4, transports): one state directory
/// is one key, served over USB (`serve`, or a paired computer's bridge) and over hybrid
/// (`hybrid`), the same list as the phone app's key. Listed once so every command that opens
/// the key says the same.
pub const DESKTOP_TRANSPORTS: &[&str] = &["hybrid", "usb"];

/// How a desktop key is configured: what it advertises, how it attests, whether it offers
/// built-in user verification.
#[derive(Debug)]
pub struct EngineConfig {
    /// getInfo's transports.
    pub transports: Vec<&'static str>,
    pub attestation: AttestationConfig,
    /// Built-in user verification through the approver (`--uv on|off`).
    pub builtin_uv: bool,
    /// RP ids not to serve now (an organisation suspended or revoked the key).
    pub refused_rp_ids: Vec<String>,
    /// The only RP ids credentials may be made for (an active organisation's allowed RPs;
    /// empty: any).
    pub registrable_rp_ids: Vec<String>,
    /// An organisation's policy requires user verification: alwaysUv stays on.
    pub always_uv_locked: bool,
}

impl EngineConfig {
    /// A desktop key attesting with `attestation`: [`DESKTOP_TRANSPORTS`], built-in UV on.
    pub fn new(attestation: AttestationConfig) -> Self {
        Self {
            transports: DESKTOP_TRANSPORTS.to_vec(),
            attestation,
            builtin_uv: true,
            refused_rp_ids: Vec::new(),
            registrable_rp_ids: Vec::new(),
            always_uv_locked: false,
        }
    }
}

/// Why the key could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the credential store {}: {source}", path.display())]
    Store { path: PathBuf, source: StoreError },
    #[error("cannot start the authenticator: {0}")]
    Authenticator(StoreError),
}

/// A desktop key as its transports drive it: the real engine, one request at a time, and a
/// flag its approver raises while it asks the user.
pub struct DesktopKey {
    engine: Mutex<Authenticator>,
    waiting: WaitingForUser,
}

impl DesktopKey {
    /// The flag raised while the key asks the user (for the CTAPHID loop's KEEPALIVEs).
    pub fn waiting(&self) -> WaitingForUser {
        self.waiting.clone()
    }

    /// Makes the running engine follow its organisation identity after a sync (a revoked or
    /// suspended key refuses the organisation's RP ids from the next request on).
    pub fn follow_organisation(
        &self,
        attestation: AttestationConfig,
        refused_rp_ids: Vec<String>,
        always_uv_locked: bool,
    ) {
        let mut engine = self
            .engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        engine.set_attestation(attestation);
        engine.set_refused_rp_ids(refused_rp_ids);
        engine.set_always_uv_locked(always_uv_locked);
    }
}

impl Engine for DesktopKey {
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        self.engine.process(kind, payload, cx)
    }
    fn power_cycle(&self) {
        self.engine.power_cycle()
    }
    fn waiting_for_user(&self) -> bool {
        self.waiting.is_waiting()
    }
}

/// Opens the store at `store_path` and builds the real authenticator, asking the user through
/// `approver`.
pub fn open_engine(
    store_path: &Path,
    master: &MasterKey,
    approver: Box<dyn Approver>,
    config: EngineConfig,
) -> Result<DesktopKey, OpenError> {
    let store = Store::open(store_path, master).map_err(|source| OpenError::Store {
        path: store_path.to_path_buf(),
        source,
    })?;
    let config = Config {
        attestation: config.attestation,
        transports: config.transports,
        builtin_uv: config.builtin_uv,
        refused_rp_ids: config.refused_rp_ids,
        registrable_rp_ids: config.registrable_rp_ids,
        always_uv_locked: config.always_uv_locked,
        ..Config::default()
    };
    let waiting = WaitingForUser::new();
    let approver = Box::new(SignallingApprover::new(approver, waiting.clone()));
    let engine =
        Authenticator::new(store, master, approver, config).map_err(OpenError::Authenticator)?;
    Ok(DesktopKey {
        engine: Mutex::new(engine),
        waiting,
    })
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
    fn uv_binding(&self) -> UvBinding {
        self.inner.uv_binding()
    }
    fn approve(&mut self, request: &ApprovalRequest, cancel: &CancelToken) -> ApprovalOutcome {
        self.waiting.0.store(true, Ordering::SeqCst);
        let _lower = Lower(&self.waiting.0);
        self.inner.approve(request, cancel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pocketkey_core::approver::{AutoApprover, Operation, Requester, UvChallenge};
    use std::time::Duration;

    struct Probe(WaitingForUser);
    impl Approver for Probe {
        fn can_verify_user(&self) -> bool {
            false
        }
        fn uv_binding(&self) -> UvBinding {
            UvBinding::Software { reason: "a probe" }
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
            uv_challenge: UvChallenge::new(Operation::Select, None),
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
