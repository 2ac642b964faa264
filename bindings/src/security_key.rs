//! The security key an app holds: one engine over one data directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use pocketkey_core::approver::Requester;
use pocketkey_core::authenticator::{Authenticator, Config, RequestContext};
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::engine::{Engine, RequestKind};
use pocketkey_core::store::Store;

use crate::approvals::{ApprovalListener, ListenerApprover, OnBehalfSlot, PendingApprovals};
use crate::errors::PocketKeyError;
use crate::key::{fetch_master_key, KeyProvider};
use crate::pin;
use crate::types::{uuid_string, ApprovalAnswer, AttestationKind, KeyInfo, Passkey, Site};

/// The database's file name inside the data directory.
pub const DATABASE_FILE: &str = "pocketkey.sqlite";
/// Longest key label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// A PocketKey security key. Thread-safe; every method may be called from any thread.
///
/// `process_ctap` and `process_u2f` block until the user answers (up to the approval
/// timeout): call them off the main thread. Requests run one at a time. While one waits for
/// the user, `answer`, `cancel_pending`, `info`, `passkeys` and `delete_passkey` still
/// return at once; `set_label`, `set_pin` and `change_pin` wait for the request to end;
/// `factory_reset` cancels it first.
#[derive(uniffi::Object)]
pub struct SecurityKey {
    pub(crate) engine: Mutex<Authenticator>,
    /// A second connection to the same database, for the app's reads and single-statement
    /// deletes while the engine waits for the user. Settings are written through it only
    /// while `engine` is locked: the engine's read-modify-write of them must not interleave.
    /// Lock order: `engine`, then `side`.
    pub(crate) side: Mutex<Store>,
    pending: Arc<PendingApprovals>,
    /// Cancels the request the engine is running, if any.
    running: Mutex<Option<CancelToken>>,
    aaguid: [u8; 16],
    /// How registrations attest now (changes when the key joins or leaves an organisation);
    /// kept apart from the engine so `info` answers while a request waits for the user.
    pub(crate) attestation: Mutex<AttestationKind>,
    /// Whether the key offers built-in user verification (set at open).
    builtin_uv: bool,
    /// The computers this phone is paired with (`pairings.db` next to the database).
    pub(crate) pairings: Arc<Mutex<pocketkey_core::pairing::PairingStore>>,
    /// Shared with the approver: set while a registration on the user's behalf runs.
    pub(crate) on_behalf: OnBehalfSlot,
}

impl std::fmt::Debug for SecurityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityKey").finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[uniffi::export]
impl SecurityKey {
    /// Opens the key stored in `data_dir` (created if missing), or creates a new one there.
    /// The master key comes from `key_provider`; prompts go to `listener`.
    /// `approval_timeout_ms` is how long a prompt waits for an answer (default 30 000).
    /// `builtin_uv` says whether the phone can verify its user (a biometric or device
    /// credential is enrolled; default true). With `false` the key claims no built-in user
    /// verification: computers see a PIN-only security key and prompts never ask to verify.
    #[uniffi::constructor(default(approval_timeout_ms = None, builtin_uv = None))]
    pub fn open(
        data_dir: String,
        key_provider: Arc<dyn KeyProvider>,
        listener: Arc<dyn ApprovalListener>,
        approval_timeout_ms: Option<u64>,
        builtin_uv: Option<bool>,
    ) -> Result<Arc<Self>, PocketKeyError> {
        let path = database_path(Path::new(&data_dir))?;
        let master = fetch_master_key(key_provider.as_ref())?;
        let store = Store::open(&path, &master).map_err(PocketKeyError::opening)?;
        let side = Store::open(&path, &master).map_err(PocketKeyError::opening)?;
        let pairings = pocketkey_core::pairing::PairingStore::open(
            &path.with_file_name(pocketkey_core::pairing::store::FILE_NAME),
            &master,
        )
        .map_err(|e| PocketKeyError::StorageUnavailable {
            detail: format!("pairings: {e}"),
        })?;
        let mut config = Config::default();
        if let Some(ms) = approval_timeout_ms {
            config.approval_timeout = Duration::from_millis(ms);
        }
        // A phone key is reached through the bridge (a USB key to the computer) and by hybrid.
        config.transports = vec!["hybrid", "usb"];
        config.builtin_uv = builtin_uv.unwrap_or(true);
        let builtin_uv = config.builtin_uv;
        // An organisation the key is active with supplies its attestation; one that
        // suspended or revoked it has its RPs refused.
        if let Some(identity) = side.load_org_identity().map_err(PocketKeyError::opening)? {
            if let Some(org) = identity
                .attestation_config()
                .map_err(PocketKeyError::opening)?
            {
                config.attestation = org;
            }
            config.refused_rp_ids = identity.refused_rp_ids();
            config.registrable_rp_ids = identity.registrable_rp_ids();
            config.always_uv_locked = identity.locks_always_uv();
        }
        let attestation = if config.attestation.batch.is_some() {
            AttestationKind::Batch
        } else {
            AttestationKind::SelfAttestation
        };
        let aaguid = config.aaguid;
        let pending = Arc::new(PendingApprovals::default());
        let on_behalf = OnBehalfSlot::default();
        let approver = ListenerApprover {
            pending: pending.clone(),
            listener,
            on_behalf: on_behalf.clone(),
        };
        let engine = Authenticator::new(store, &master, Box::new(approver), config)
            .map_err(PocketKeyError::opening)?;
        Ok(Arc::new(Self {
            engine: Mutex::new(engine),
            side: Mutex::new(side),
            pending,
            running: Mutex::new(None),
            aaguid,
            attestation: Mutex::new(attestation),
            builtin_uv,
            pairings: Arc::new(Mutex::new(pairings)),
            on_behalf,
        }))
    }

    /// What the settings screen shows.
    pub fn info(&self) -> Result<KeyInfo, PocketKeyError> {
        let side = lock(&self.side);
        let settings = side.load_settings().map_err(PocketKeyError::storage)?;
        Ok(KeyInfo {
            aaguid: uuid_string(&self.aaguid),
            label: settings.label.clone(),
            pin_set: settings.pin_hash.is_some(),
            uv_available: self.builtin_uv,
            uv_key_registered: settings.uv_public_key.is_some(),
            credential_count: side.credential_count().map_err(PocketKeyError::storage)?,
            attestation: *lock(&self.attestation),
        })
    }

    /// The stored passkeys, by site (sites ordered by id, newest passkey first).
    pub fn passkeys(&self) -> Result<Vec<Site>, PocketKeyError> {
        let side = lock(&self.side);
        let rps = side.relying_parties().map_err(PocketKeyError::storage)?;
        rps.into_iter()
            .map(|rp| {
                let credentials = side
                    .credentials_for_rp(&rp.id_hash)
                    .map_err(PocketKeyError::storage)?;
                let passkeys = credentials
                    .into_iter()
                    .map(|c| Passkey {
                        credential_id: c.id.clone(),
                        user_name: c.user_name.clone(),
                        user_display_name: c.user_display_name.clone(),
                        created_at_unix: c.created_at,
                    })
                    .collect();
                Ok(Site {
                    rp_id: rp.id,
                    rp_name: rp.name,
                    passkeys,
                })
            })
            .collect()
    }

    /// Deletes one passkey; `false` if there was none with that id.
    pub fn delete_passkey(&self, credential_id: Vec<u8>) -> Result<bool, PocketKeyError> {
        lock(&self.side)
            .delete_credential(&credential_id)
            .map_err(PocketKeyError::storage)
    }

    /// Renames the key (1 to 64 characters, no control characters).
    pub fn set_label(&self, label: String) -> Result<(), PocketKeyError> {
        let chars = label.chars().count();
        if chars == 0 || chars > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
            return Err(PocketKeyError::InvalidLabel {
                max_chars: MAX_LABEL_CHARS as u32,
            });
        }
        // Holding the engine keeps its own read-modify-write of the settings out of the way.
        let _engine = lock(&self.engine);
        let mut side = lock(&self.side);
        let mut settings = side.load_settings().map_err(PocketKeyError::storage)?;
        settings.label = label;
        side.save_settings(&settings)
            .map_err(PocketKeyError::storage)
    }

    /// Registers the phone's UV key: the uncompressed P-256 public key (65 bytes, 0x04 ‖ x ‖ y)
    /// of a key the OS uses only after verifying the user (an Android Keystore key with
    /// per-use biometric authentication, a Secure Enclave key with `.biometryCurrentSet`).
    /// Replaces an earlier one; a factory reset forgets it. Until one is registered the key
    /// offers computers no built-in user verification (only the PIN). See docs/apps.md.
    pub fn register_uv_key(&self, public_key: Vec<u8>) -> Result<(), PocketKeyError> {
        use pocketkey_core::authenticator::UvKeyError;
        lock(&self.engine)
            .register_uv_key(&public_key)
            .map_err(|e| match e {
                UvKeyError::Malformed => PocketKeyError::InvalidUvKey,
                UvKeyError::Store(e) => PocketKeyError::storage(e),
            })
    }

    /// Sets the first PIN (for computers that ask for one), with the engine's PIN policy.
    pub fn set_pin(&self, pin: String) -> Result<(), PocketKeyError> {
        let mut engine = lock(&self.engine);
        let result = engine.set_pin_on_device(&pin);
        result.map_err(|e| pin::error(e, &engine, &pin))
    }

    /// Changes the PIN; a wrong `old_pin` spends one of the PIN's tries.
    pub fn change_pin(&self, old_pin: String, new_pin: String) -> Result<(), PocketKeyError> {
        let mut engine = lock(&self.engine);
        let result = engine.change_pin_on_device(&old_pin, &new_pin);
        result.map_err(|e| pin::error(e, &engine, &new_pin))
    }

    /// Erases every passkey, the PIN and the label; passkeys registered without being stored
    /// (non-discoverable) stop working too. Cancels requests waiting for the user, including
    /// any that get the engine before the reset does.
    pub fn factory_reset(&self) -> Result<(), PocketKeyError> {
        let mut engine = loop {
            self.cancel_pending();
            match self.engine.try_lock() {
                Ok(engine) => break engine,
                Err(TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        engine.factory_reset().map_err(PocketKeyError::storage)
    }

    /// One CTAP2 message (command byte ‖ CBOR) → status byte ‖ CBOR. `requester` names the
    /// computer or browser in prompts. Blocks until the user answers.
    pub fn process_ctap(&self, request: Vec<u8>, requester: String) -> Vec<u8> {
        self.run(requester, |engine, cx| engine.process_cbor(&request, cx))
    }

    /// One U2F (CTAP1) APDU → response data ‖ status word. Blocks until the user answers.
    pub fn process_u2f(&self, apdu: Vec<u8>, requester: String) -> Vec<u8> {
        self.run(requester, |engine, cx| engine.process_u2f(&apdu, cx))
    }

    /// Answers a prompt, from any thread. `UnknownApproval` when it has ended (answered,
    /// timed out, cancelled) or never existed; `InvalidAccount` for an index outside the
    /// prompt's accounts.
    pub fn answer(&self, id: u64, answer: ApprovalAnswer) -> Result<(), PocketKeyError> {
        self.pending.answer(id, answer)
    }

    /// Cancels the request that is running (its prompt closes with `Cancelled` and the
    /// computer gets CTAP2_ERR_KEEPALIVE_CANCEL). Does nothing when none is.
    pub fn cancel_pending(&self) {
        if let Some(token) = lock(&self.running).as_ref() {
            token.cancel();
        }
        self.pending.wake();
    }
}

/// The key as the network runtime drives it (hybrid, a paired computer): with the caller's
/// context (requester and cancel token), so that ending its session cancels the approval it
/// is waiting for.
impl Engine for SecurityKey {
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        let mut engine = lock(&self.engine);
        let _running = Running::register(&self.running, cx.cancel.clone());
        match kind {
            RequestKind::Cbor => engine.process_cbor(payload, cx),
            RequestKind::Msg => engine.process_u2f(payload, cx),
        }
    }

    /// Whether a prompt is waiting for the user (the pairing runtime's `Pending` status).
    fn waiting_for_user(&self) -> bool {
        self.pending.open_count() > 0
    }
}

impl SecurityKey {
    /// Runs one request with a fresh cancel token, registered once the engine is ours (so
    /// that `cancel_pending` never cancels a request still queued behind it).
    pub(crate) fn run(
        &self,
        requester: String,
        f: impl FnOnce(&mut Authenticator, &RequestContext) -> Vec<u8>,
    ) -> Vec<u8> {
        let mut engine = lock(&self.engine);
        let cancel = CancelToken::new();
        let requester = if requester.trim().is_empty() {
            Requester::default()
        } else {
            Requester(requester)
        };
        let cx = RequestContext {
            cancel: cancel.clone(),
            requester,
        };
        let _running = Running::register(&self.running, cancel);
        f(&mut engine, &cx)
    }
}

/// Clears the running request's token when the request ends, even by a panic.
struct Running<'a>(&'a Mutex<Option<CancelToken>>);

impl<'a> Running<'a> {
    fn register(slot: &'a Mutex<Option<CancelToken>>, token: CancelToken) -> Self {
        *lock(slot) = Some(token);
        Self(slot)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        *lock(self.0) = None;
    }
}

/// Creates the directory (0700 on unix) and returns the database path inside it.
fn database_path(dir: &Path) -> Result<PathBuf, PocketKeyError> {
    let unavailable = |e: std::io::Error| PocketKeyError::StorageUnavailable {
        detail: format!("{}: {e}", dir.display()),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(unavailable)?;
    Ok(dir.join(DATABASE_FILE))
}
