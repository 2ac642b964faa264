//! The app's entry points for pairing with computers: `SecurityKey.pair`, `pairings`,
//! `unpair`, `handle_push` and `listen` (serve every paired computer until the returned handle
//! stops), thin wrappers over `pocketkey_net`'s pairing, revocation and wake modules.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use pocketkey_core::pairing::relay::{
    ApnsEnvironment, PushProvider, PushTarget, RelayErrorCode, WakeId,
};
use pocketkey_core::pairing::url::MAX_NAME_LEN;
use pocketkey_core::pairing::{
    ConfirmationCode, MailboxId, PairingRecord, PairingStore, PairingStoreError, Role, UrlPolicy,
};
use pocketkey_net::org::jobs::printable;
use pocketkey_net::pairing::{self, PairingError};
use pocketkey_net::revocation::{delete_at_relay, retry_in_background, revocation_guard};
use pocketkey_net::wake::{finish_wake, woken_pairing, woken_wake_id, Woken};

use crate::errors::PocketKeyError;
use crate::security_key::SecurityKey;

/// One paired computer, as the app lists it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PairingInfo {
    /// The pairing id (hex of the mailbox id): what `unpair` takes.
    pub id: String,
    /// The computer's name from its pairing code.
    pub computer_name: String,
    pub relay_url: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last session, if any.
    pub last_seen: Option<u64>,
    /// The relay said this pairing was removed, which it cannot prove: the pairing is kept
    /// but not served. Show it so; the user resumes it (`resume_pairing`) or removes it
    /// (`unpair`).
    pub suspended: bool,
}

impl From<&PairingRecord> for PairingInfo {
    fn from(r: &PairingRecord) -> Self {
        Self {
            id: r.id.to_hex(),
            computer_name: r.name.clone(),
            relay_url: r.relay_url.clone(),
            created_at: r.created_at,
            last_seen: r.last_seen,
            suspended: r.suspended_at.is_some(),
        }
    }
}

fn failed(e: PairingError) -> PocketKeyError {
    match e {
        PairingError::InvalidUrl(detail) => PocketKeyError::InvalidPairingCode { detail },
        PairingError::NotConfirmed => PocketKeyError::PairingNotConfirmed,
        other => PocketKeyError::PairingFailed {
            detail: other.to_string(),
        },
    }
}

/// Implemented by the app: shows the confirmation code of a pairing in progress
/// (docs/pairing-protocol.md §5.3). Called once per `pair`, on `pair`'s thread, with six
/// digits; return quickly. The app shows them with a line such as "Check that your computer
/// shows this code, then confirm there".
#[uniffi::export(with_foreign)]
pub trait PairingCodeListener: Send + Sync {
    fn show_code(&self, code: String);
}

/// Where the relays should send this phone's wake-ups (docs/pairing-protocol.md §3.3).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PushRegistration {
    /// An FCM registration token (Android).
    Fcm { token: String },
    /// An APNs device token in hex (iOS); `sandbox` for development builds.
    Apns { device_token: String, sandbox: bool },
    /// A webhook URL the relay POSTs to (self-hosting, desktop phones, tests).
    Webhook { url: String },
}

/// A computer's relay, or the organisation, that did not take the push target
/// ([`SecurityKey::register_push`]).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PushNotRegistered {
    /// The computer's name, or the organisation's.
    pub name: String,
    pub problem: PushProblem,
}

/// Why a push target was not registered: whether registering it again can help.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PushProblem {
    /// Not reached, or not now: no network, a timeout, rate limited, a server error. Register
    /// the same target again later (the app retries; the user need not act).
    TryLater,
    /// Refused for good: the organisation or a computer's relay will not take this target (for
    /// example a provider it does not offer, a webhook URL a relay does not allow), or the
    /// organisation no longer serves this key (revoked, unknown). The same target will be
    /// refused again; tell the user, whose key is not woken by that computer or organisation.
    /// `reason` is the server's sentence, control characters replaced.
    Refused { reason: String },
}

/// Whether registering the same push target with a computer's relay again can help: only
/// its `bad_push_target` is for good (docs/pairing-protocol.md §3.2); its own trouble
/// (`unavailable`), a rate limit, the network, all pass.
fn relay_push_problem(e: &PairingError) -> PushProblem {
    match e {
        PairingError::RelayRefused { message, .. }
            if e.relay_code() == Some(RelayErrorCode::BadPushTarget) =>
        {
            PushProblem::Refused {
                reason: printable(message),
            }
        }
        _ => PushProblem::TryLater,
    }
}

impl From<PushRegistration> for PushTarget {
    fn from(r: PushRegistration) -> Self {
        match r {
            PushRegistration::Fcm { token } => PushTarget {
                provider: PushProvider::Fcm,
                target: token,
                environment: None,
                wake: WakeId::random(),
            },
            PushRegistration::Apns {
                device_token,
                sandbox,
            } => PushTarget {
                provider: PushProvider::Apns,
                target: device_token,
                environment: Some(if sandbox {
                    ApnsEnvironment::Sandbox
                } else {
                    ApnsEnvironment::Production
                }),
                wake: WakeId::random(),
            },
            PushRegistration::Webhook { url } => PushTarget {
                provider: PushProvider::Webhook,
                target: url,
                environment: None,
                wake: WakeId::random(),
            },
        }
    }
}

/// What [`SecurityKey::handle_push`] did with a notification.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PushOutcome {
    /// Not a PocketKey wake-up, or for no pairing in use: nothing was done (no network).
    Ignored,
    /// The computer was served; `request`: it asked something (else the wake counted
    /// against its empty-wake budget).
    Served {
        computer_name: String,
        request: bool,
    },
    /// This computer's wake-ups are ignored until `until` (Unix seconds): too many in the
    /// last hour asked nothing. Tell the user: its relay, or someone holding its pairing
    /// keys, may be misusing them; they can unpair it.
    Paused { computer_name: String, until: u64 },
    /// The organisation `organisation` woke the phone (docs/org.md, "Wake-ups"): its status
    /// or jobs changed. Nothing was done yet (no network): call `sync_organisation`, which
    /// fetches and applies the change and runs the jobs.
    Organisation { organisation: String },
}

/// Serving every paired computer: `stop()` ends it.
#[derive(Debug, uniffi::Object)]
pub struct PairingListener {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

#[uniffi::export]
impl PairingListener {
    /// Stops serving (cancels a pending approval) and waits for the threads to end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

#[uniffi::export]
impl SecurityKey {
    /// Pairs with the computer whose `pocketkey://pair?…` code was scanned with the app's
    /// camera (never a link: see `classify_scan`); blocks until the computer's user confirmed
    /// (up to ~2.5 minutes): call it off the main thread. As soon as the handshake is done,
    /// `listener.show_code` gets the six-digit confirmation code to show ("check that the
    /// computer shows 123456"); the computer asks its user to compare it. `phone_name` is what
    /// the computer shows. `allow_insecure_relay` accepts `ws://` relays off loopback
    /// (developer mode). Throws `InvalidPairingCode` before any network traffic,
    /// `PairingNotConfirmed` when the computer's user refused, `PairingFailed` otherwise.
    pub fn pair(
        &self,
        url: String,
        phone_name: String,
        allow_insecure_relay: bool,
        listener: Arc<dyn PairingCodeListener>,
    ) -> Result<PairingInfo, PocketKeyError> {
        let policy = if allow_insecure_relay {
            UrlPolicy::AllowInsecureRelay
        } else {
            UrlPolicy::Strict
        };
        retry_in_background(&self.pairings);
        let mut show = |code: ConfirmationCode| listener.show_code(code.to_string());
        pairing::pair_showing_code(&url, policy, &phone_name, self, &self.pairings, &mut show)
            .map(|r| PairingInfo::from(&r))
            .map_err(failed)
    }

    /// The paired computers, newest first. Revocations the relay has not confirmed yet are
    /// retried in the background (they are not listed).
    pub fn pairings(&self) -> Result<Vec<PairingInfo>, PocketKeyError> {
        retry_in_background(&self.pairings);
        let store = lock(&self.pairings);
        let list = store.list().map_err(|e| PocketKeyError::StorageFailed {
            detail: e.to_string(),
        })?;
        Ok(list
            .iter()
            .filter(|r| r.role == Role::Phone)
            .map(PairingInfo::from)
            .collect())
    }

    /// Revokes the pairing `id` (from `pairings`): tells the computer if it is attached (a
    /// session of at most a few seconds) and the relay (bounded wait), and forgets it; without
    /// the relay it stays a pending revocation, retried by later `pairings`,
    /// `pair` and `listen` calls (and never used for a session meanwhile). False if there is
    /// no such pairing.
    pub fn unpair(&self, id: String) -> Result<bool, PocketKeyError> {
        let Some(id) = MailboxId::from_hex(&id) else {
            return Ok(false);
        };
        let storage = |e: PairingStoreError| PocketKeyError::StorageFailed {
            detail: e.to_string(),
        };
        let Some(record) = lock(&self.pairings).get(&id).map_err(storage)? else {
            return Ok(false);
        };
        lock(&self.pairings)
            .revoke(&id, pairing::unix_now())
            .map_err(storage)?;
        let deleted = match record.role {
            // The computer, if attached, is told in a session: it then deletes its record
            // rather than suspending it (docs/pairing-protocol.md §3.4).
            Role::Phone => pairing::revoke_with_computer(&record, self).is_ok(),
            Role::Bridge => delete_at_relay(&record),
        };
        if deleted {
            lock(&self.pairings).forget(&id).map_err(storage)?;
        }
        Ok(true)
    }

    /// Resumes the suspended pairing `id` (from `pairings`, `suspended` set): it is served
    /// again by the next `listen` or push. If the computer really removed it, the relay says so
    /// again and it is suspended again. False if there is no such pairing.
    pub fn resume_pairing(&self, id: String) -> Result<bool, PocketKeyError> {
        let Some(id) = MailboxId::from_hex(&id) else {
            return Ok(false);
        };
        match lock(&self.pairings).resume(&id) {
            Ok(()) => Ok(true),
            Err(PairingStoreError::NotFound) => Ok(false),
            Err(e) => Err(PocketKeyError::StorageFailed {
                detail: e.to_string(),
            }),
        }
    }

    /// Renames the pairing `id` (from `pairings`) on this phone only: the name the approvals
    /// and `pairings` show. False if there is no such pairing; `InvalidLabel` for an empty,
    /// padded, too long or control-character name.
    pub fn rename_pairing(&self, id: String, name: String) -> Result<bool, PocketKeyError> {
        let Some(id) = MailboxId::from_hex(&id) else {
            return Ok(false);
        };
        match lock(&self.pairings).rename(&id, &name) {
            Ok(()) => Ok(true),
            Err(PairingStoreError::NotFound) => Ok(false),
            Err(PairingStoreError::BadName(_)) => Err(PocketKeyError::InvalidLabel {
                max_chars: MAX_NAME_LEN as u32,
            }),
            Err(e) => Err(PocketKeyError::StorageFailed {
                detail: e.to_string(),
            }),
        }
    }

    /// Registers `target` as this phone's wake-up address with the relay of every paired
    /// computer and, for a key of an organisation (not revoked), with the organisation
    /// (docs/org.md, "Wake-ups"): after pairing, after activation, and whenever the push token
    /// changes. Returns the computers whose relay, and the organisation if it, did not take
    /// it, each with whether to call again later (`TryLater`: no network, a relay's or the
    /// organisation's passing trouble) or tell the user (`Refused`: a target it will refuse
    /// again); an empty list when all took it. Blocks on the network (bounded per relay):
    /// call it off the main thread.
    pub fn register_push(
        &self,
        target: PushRegistration,
    ) -> Result<Vec<PushNotRegistered>, PocketKeyError> {
        let target = PushTarget::from(target);
        let records = lock(&self.pairings)
            .list()
            .map_err(|e| PocketKeyError::StorageFailed {
                detail: e.to_string(),
            })?;
        let mut failed: Vec<PushNotRegistered> = records
            .iter()
            .filter(|r| r.role == Role::Phone)
            .filter_map(|r| {
                let e = pairing::register_push(&self.pairings, r, target.clone()).err()?;
                Some(PushNotRegistered {
                    name: r.name.clone(),
                    problem: relay_push_problem(&e),
                })
            })
            .collect();
        // The organisation gets a wake id of its own, never a pairing's.
        let org_target = PushTarget {
            wake: WakeId::random(),
            ..target
        };
        failed.extend(self.register_organisation_push(&org_target)?);
        Ok(failed)
    }

    /// Serves the computer a push notification woke this phone for: `payload` is the
    /// notification's data as JSON (see [`woken_wake_id`]). A wake-up from the organisation
    /// is answered `Organisation` at once, without any network (the app then calls
    /// `sync_organisation`). Otherwise connects to the computer's relay, runs the waiting
    /// request (approvals go to the key's `ApprovalListener` as usual) and returns once
    /// the computer has been quiet for `idle_ms`. `Ignored`, without any network traffic, when
    /// the payload is not a PocketKey wake-up or its wake id names no current pairing (or a
    /// suspended one);
    /// `Paused` (no network either) while that computer's wake-ups are paused for asking
    /// nothing too often. The push itself shows nothing (a data message, an APNs background
    /// push): the app shows its own notification from the approval request, which comes only
    /// after the handshake proved the computer. Blocks: call it from the push handler's
    /// background thread.
    pub fn handle_push(
        self: Arc<Self>,
        payload: String,
        phone_name: String,
        idle_ms: u32,
    ) -> Result<PushOutcome, PocketKeyError> {
        let storage = |e: PairingStoreError| PocketKeyError::StorageFailed {
            detail: e.to_string(),
        };
        if let Some(organisation) = woken_wake_id(payload.as_bytes())
            .map(|wake| self.organisation_woken(wake))
            .transpose()?
            .flatten()
        {
            return Ok(PushOutcome::Organisation { organisation });
        }
        let store = Arc::clone(&self.pairings);
        let record = match woken_pairing(&store, payload.as_bytes(), pairing::unix_now()) {
            Ok(None) => return Ok(PushOutcome::Ignored),
            Ok(Some(Woken::Paused { record, until })) => {
                return Ok(PushOutcome::Paused {
                    computer_name: record.name,
                    until,
                })
            }
            Ok(Some(Woken::Serve(record))) => record,
            Err(e) => return Err(storage(e)),
        };
        let on_event = revocation_guard(Arc::clone(&store), Arc::new(|_, _| {}));
        let request = pairing::serve_woken(
            record.clone(),
            &phone_name,
            self,
            Arc::clone(&store),
            Arc::new(AtomicBool::new(false)),
            Duration::from_millis(u64::from(idle_ms)),
            &*on_event,
        );
        finish_wake(&store, &record, request, pairing::unix_now()).map_err(storage)?;
        Ok(PushOutcome::Served {
            computer_name: record.name,
            request,
        })
    }

    /// Serves every paired computer (one connection each, kept up) until the listener is
    /// stopped; approvals go to the key's `ApprovalListener`, naming the computer. Pending
    /// revocations are retried (in the background; they are not served), and a pairing
    /// revoked while it is served is revoked at the relay when its mailbox is attached again
    /// instead of being served.
    pub fn listen(self: Arc<Self>, phone_name: String) -> Arc<PairingListener> {
        let stop = Arc::new(AtomicBool::new(false));
        let (key, s) = (Arc::clone(&self), Arc::clone(&stop));
        let store = Arc::clone(&self.pairings);
        retry_in_background(&store);
        let thread = thread::spawn(move || {
            let on_event = revocation_guard(Arc::clone(&store), Arc::new(|_, _| {}));
            let _ = pairing::listen(&phone_name, key, store, s, on_event);
        });
        Arc::new(PairingListener {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }
}

fn lock(store: &Mutex<PairingStore>) -> MutexGuard<'_, PairingStore> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}
