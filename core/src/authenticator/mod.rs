//! The CTAP2.1 + CTAP1/U2F command processor.
//!
//! [`Authenticator::process_cbor`] takes the payload of a CTAPHID CBOR message (command byte ‖
//! CBOR) and returns status byte ‖ CBOR; [`Authenticator::process_u2f`] does the same for U2F
//! APDUs. Everything persistent lives in the [`Store`]; everything volatile (tokens, key
//! agreement, PIN strikes, pending enumerations) in [`Volatile`] and is dropped by
//! [`Authenticator::power_cycle`].

mod auth_data;
mod client_pin;
mod config;
mod cred_mgmt;
mod credentials;
mod get_assertion;
mod info;
mod large_blobs;
mod make_credential;
mod reset;
mod u2f;
mod user;
mod uv_key;

use std::time::{Duration, Instant};

use crate::approver::{Approver, Requester};
use crate::attestation::AttestationConfig;
use crate::cancel::CancelToken;
use crate::credential_id::CredentialIdSealer;
use crate::crypto::key_cache::KeyCache;
use crate::crypto::master_key::MasterKey;
use crate::ctap::{CtapError, CtapResult, Request};
use crate::pin::{KeyAgreementKey, PinUvAuthToken};
use crate::store::{Store, StoreError};

pub use get_assertion::PendingAssertions;
pub use u2f::sw;
pub use uv_key::UvKeyError;

/// The command bytes (defined by the wire layer, [`crate::ctap::command`]).
pub use crate::ctap::command;

/// Fixed facts about this authenticator model.
#[derive(Debug)]
pub struct Config {
    pub aaguid: [u8; 16],
    pub attestation: AttestationConfig,
    /// Largest CTAP message the transport carries (CTAPHID: 7609 bytes).
    pub max_msg_size: usize,
    /// How long the user has to answer an approval.
    pub approval_timeout: Duration,
    /// Transports to advertise in getInfo ("usb", "hybrid", "internal").
    pub transports: Vec<&'static str>,
    /// Whether new discoverable credentials are backup-eligible (synced). Ours are not: keys
    /// are sealed under a device-bound master key.
    pub backup_eligible: bool,
    pub firmware_version: u64,
    /// Whether the key offers built-in user verification (the phone's biometric or device
    /// credential, asked through the Approver). Off for a phone with nothing enrolled: getInfo
    /// then has no `uv` option and the key is a plain CTAP 2.1 key whose only user
    /// verification is the PIN. A runtime property of the key, not stored.
    pub builtin_uv: bool,
    /// RP ids this key must not serve now: those of an organisation that suspended or revoked
    /// the key (docs/org.md). makeCredential and getAssertion for them are
    /// CTAP2_ERR_OPERATION_DENIED.
    pub refused_rp_ids: Vec<String>,
    /// RP ids makeCredential may make credentials for; empty means any. An active
    /// organisation's `allowed_rp_ids` (docs/org.md, "Policy"): other RPs get
    /// CTAP2_ERR_OPERATION_DENIED, getAssertion is not affected.
    pub registrable_rp_ids: Vec<String>,
    /// An organisation's policy requires user verification: authenticatorConfig may not turn
    /// alwaysUv off (CTAP2_ERR_OPERATION_DENIED).
    pub always_uv_locked: bool,
}

/// PocketKey's AAGUID: 9b1f5c0e-7d3a-4c62-a8e1-3f6b2d4c5a71.
pub const POCKETKEY_AAGUID: [u8; 16] = [
    0x9b, 0x1f, 0x5c, 0x0e, 0x7d, 0x3a, 0x4c, 0x62, 0xa8, 0xe1, 0x3f, 0x6b, 0x2d, 0x4c, 0x5a, 0x71,
];

impl Default for Config {
    fn default() -> Self {
        Self {
            aaguid: POCKETKEY_AAGUID,
            attestation: AttestationConfig::default(),
            max_msg_size: 7609,
            approval_timeout: Duration::from_secs(30),
            transports: vec!["usb"],
            backup_eligible: false,
            firmware_version: 1,
            builtin_uv: true,
            refused_rp_ids: Vec::new(),
            registrable_rp_ids: Vec::new(),
            always_uv_locked: false,
        }
    }
}

/// Per-request facts from the transport.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Set by the transport when the platform cancels (CTAPHID CANCEL).
    pub cancel: CancelToken,
    /// Who is asking, as the approval should name it.
    pub requester: Requester,
}

/// Lost at power-off.
pub(crate) struct Volatile {
    pub boot: Instant,
    pub key_agreement: KeyAgreementKey,
    pub token: PinUvAuthToken,
    /// Consecutive wrong PINs since power-up (three force a power cycle).
    pub pin_strikes: u8,
    pub pending_assertions: Option<PendingAssertions>,
    pub pending_rps: Option<cred_mgmt::PendingRps>,
    pub pending_credentials: Option<cred_mgmt::PendingCredentials>,
    pub large_blob_write: Option<large_blobs::PendingWrite>,
    /// Credential keys parsed by earlier requests.
    pub keys: KeyCache,
}

impl Volatile {
    fn new() -> Self {
        Self {
            boot: Instant::now(),
            key_agreement: KeyAgreementKey::generate(),
            token: PinUvAuthToken::new(),
            pin_strikes: 0,
            pending_assertions: None,
            pending_rps: None,
            pending_credentials: None,
            large_blob_write: None,
            keys: KeyCache::new(),
        }
    }
}

/// The engine. One per security key; not thread-safe by itself (transports serialize requests).
pub struct Authenticator {
    pub(crate) store: Store,
    pub(crate) approver: Box<dyn Approver>,
    pub(crate) config: Config,
    pub(crate) master: MasterKey,
    pub(crate) ids: CredentialIdSealer,
    pub(crate) volatile: Volatile,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(
        store: Store,
        master: &MasterKey,
        approver: Box<dyn Approver>,
        config: Config,
    ) -> Result<Self, StoreError> {
        let salt = store.load_settings()?.wrap_salt;
        Ok(Self {
            store,
            approver,
            config,
            master: master.clone(),
            ids: CredentialIdSealer::new(master, &salt),
            volatile: Volatile::new(),
        })
    }

    /// Handles one CTAP2 message: command byte ‖ CBOR parameters → status ‖ CBOR response.
    pub fn process_cbor(&mut self, request: &[u8], cx: &RequestContext) -> Vec<u8> {
        // Every transport comes through here (CTAPHID's framing caps its messages already,
        // hybrid and pairing carry whatever their peer sends): getInfo's maxMsgSize is the
        // largest message accepted (CTAP 2.1 §6.4), checked before any parsing.
        if request.len() > self.config.max_msg_size {
            return vec![CtapError::InvalidLength.code()];
        }
        let Some(&cmd) = request.first() else {
            return vec![CtapError::InvalidLength.code()];
        };
        // Continuations end even when the interrupting request turns out malformed.
        self.forget_continuations(cmd);
        let result = Request::parse(request).and_then(|req| self.dispatch(req, cx));
        result.unwrap_or_else(|e| vec![e.code()])
    }

    fn dispatch(&mut self, request: Request, cx: &RequestContext) -> Reply {
        match request {
            Request::MakeCredential(req) => self.make_credential(req, cx),
            Request::GetAssertion(req) => self.get_assertion(req, cx),
            Request::GetInfo => self.get_info(),
            Request::ClientPin(req) => self.client_pin(req, cx),
            Request::Reset => self.reset(cx),
            Request::GetNextAssertion => self.get_next_assertion(),
            Request::CredentialManagement(req) => self.credential_management(req),
            Request::Selection => self.selection(cx),
            Request::LargeBlobs(req) => self.large_blobs(req),
            Request::Config(req) => self.authenticator_config(req),
        }
    }

    /// Handles one CTAP1/U2F APDU → response data ‖ status word.
    pub fn process_u2f(&mut self, apdu: &[u8], cx: &RequestContext) -> Vec<u8> {
        self.forget_continuations(0);
        self.u2f(apdu, cx)
    }

    /// The key lost and regained power: keep what is stored, drop what is volatile.
    pub fn power_cycle(&mut self) {
        self.volatile = Volatile::new();
    }

    /// Read access to the store, for apps listing passkeys.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Attest as `attestation` from the next request on: the key joined or left an
    /// organisation (activation, revocation) while running.
    pub fn set_attestation(&mut self, attestation: AttestationConfig) {
        self.config.attestation = attestation;
    }

    /// Refuses `rp_ids` from the next request on (an organisation suspended or revoked it).
    pub fn set_refused_rp_ids(&mut self, rp_ids: Vec<String>) {
        self.config.refused_rp_ids = rp_ids;
    }

    /// Makes credentials only for `rp_ids` (empty: any) from the next request on.
    pub fn set_registrable_rp_ids(&mut self, rp_ids: Vec<String>) {
        self.config.registrable_rp_ids = rp_ids;
    }

    /// Keeps alwaysUv from being turned off while `locked` (an organisation's policy).
    pub fn set_always_uv_locked(&mut self, locked: bool) {
        self.config.always_uv_locked = locked;
    }

    /// Whether the organisation's status forbids serving `rp_id` now.
    pub(crate) fn check_rp_allowed(&self, rp_id: &str) -> CtapResult<()> {
        if self.config.refused_rp_ids.iter().any(|r| r == rp_id) {
            return Err(CtapError::OperationDenied);
        }
        Ok(())
    }

    /// Whether the organisation's policy lets the key make a credential for `rp_id`. The
    /// refusal is CTAP2_ERR_OPERATION_DENIED, the status CTAP 2.1 §8.2 gives a request the
    /// authenticator is not allowed to perform, and comes before any prompt.
    pub(crate) fn check_rp_registrable(&self, rp_id: &str) -> CtapResult<()> {
        let allowed = &self.config.registrable_rp_ids;
        if !allowed.is_empty() && !allowed.iter().any(|r| r == rp_id) {
            return Err(CtapError::OperationDenied);
        }
        Ok(())
    }

    /// Stateful continuations end when any other command arrives (CTAP 2.1 §6.3, §6.8).
    fn forget_continuations(&mut self, cmd: u8) {
        if cmd != command::GET_NEXT_ASSERTION {
            self.volatile.pending_assertions = None;
        }
        if cmd != command::CREDENTIAL_MANAGEMENT && cmd != command::CREDENTIAL_MANAGEMENT_PREVIEW {
            self.volatile.pending_rps = None;
            self.volatile.pending_credentials = None;
        }
        if cmd != command::LARGE_BLOBS {
            self.volatile.large_blob_write = None;
        }
    }
}

/// Store failures surface to the platform as CTAP1_ERR_OTHER; nothing secret is in them.
impl From<StoreError> for CtapError {
    fn from(_: StoreError) -> Self {
        CtapError::Other
    }
}

pub(crate) fn now_unix() -> i64 {
    i64::try_from(crate::clock::unix_now()).unwrap_or(i64::MAX)
}

pub(crate) type Reply = CtapResult<Vec<u8>>;
