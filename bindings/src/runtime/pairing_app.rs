//! The app's entry points for pairing with computers: `SecurityKey.pair`, `pairings`,
//! `unpair`, and `listen` (serve every paired computer until the returned handle stops); and
//! what every side shares about revocation (docs/pairing-protocol.md §3.4): the DELETE at the
//! relay ([`delete_at_relay`]), the retry of pending revocations
//! ([`retry_pending_revocations`]), and the guard that keeps a pairing revoked while a listener
//! serves it from being used for a session ([`revocation_guard`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use pocketkey_core::authenticator::RequestContext;
use pocketkey_core::pairing::relay::{
    frame_type, ApnsEnvironment, PushProvider, PushTarget, RelayFrame, WakeId,
};
use pocketkey_core::pairing::url::MAX_NAME_LEN;
use pocketkey_core::pairing::{
    ConfirmationCode, CtapKind, MailboxId, PairingRecord, PairingStore, PairingStoreError, Role,
    UrlPolicy,
};

use super::pairing::{self, OnEvent, PairingEngine, PairingError, ServeEvent};
use super::pairing_ws::{MailboxConn, MailboxError};
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

impl PairingEngine for SecurityKey {
    fn get_info(&self) -> Vec<u8> {
        let response = self.process_ctap_in(&[0x04], &RequestContext::default());
        response.get(1..).unwrap_or_default().to_vec()
    }
    fn process(&self, kind: CtapKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        match kind {
            CtapKind::Cbor => self.process_ctap_in(payload, cx),
            CtapKind::Msg => self.process_u2f_in(payload, cx),
        }
    }
    fn waiting_for_user(&self) -> bool {
        self.asking_user()
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

/// The wake id of a wake-up, from the notification's data as JSON: FCM's
/// `{"v": "1", "w": "<hex>"}`, APNs' and the webhook's `{"v": 1, "w": "<hex>"}` (APNs' with
/// its `aps` beside). `None` for anything else (another app's push, another version, a
/// damaged payload, a push from a relay from before wake ids naming the mailbox).
pub fn woken_wake_id(payload: &[u8]) -> Option<WakeId> {
    let body: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let version_one = match body.get("v")? {
        serde_json::Value::String(v) => v == "1",
        serde_json::Value::Number(v) => v.as_u64() == Some(1),
        _ => false,
    };
    if !version_one {
        return None;
    }
    WakeId::from_hex(body.get("w")?.as_str()?)
}

/// What to do with a wake-up ([`woken_pairing`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Woken {
    /// Serve this pairing (attach, handshake, run its request), then
    /// [`finish_wake`].
    Serve(PairingRecord),
    /// Too many of this pairing's wakes brought no request within the hour
    /// (`pairing::wake::EMPTY_WAKE_LIMIT`): ignore it, and tell the user, until `until`
    /// (Unix seconds).
    Paused { record: PairingRecord, until: u64 },
}

/// The pairing a wake-up's payload is for, at `now` (Unix seconds): `None` when it is not a
/// PocketKey wake-up or its wake id is not one this phone registered for a pairing in use (a
/// revoked, suspended or forgotten pairing, a stale id): nothing is done for it, no
/// connection made.
pub fn woken_pairing(
    store: &Mutex<PairingStore>,
    payload: &[u8],
    now: u64,
) -> Result<Option<Woken>, PairingStoreError> {
    let Some(wake) = woken_wake_id(payload) else {
        return Ok(None);
    };
    let store = lock(store);
    let Some(record) = store
        .by_wake_id(&wake)?
        .filter(|r| r.role == Role::Phone && r.revoked_at.is_none() && r.suspended_at.is_none())
    else {
        return Ok(None);
    };
    Ok(Some(
        match store.empty_wakes(&record.id)?.paused_until(now) {
            Some(until) => Woken::Paused { record, until },
            None => Woken::Serve(record),
        },
    ))
}

/// After serving a wake-up of `record` ([`pairing::serve_woken`]): one that brought no
/// request counts against the pairing's empty-wake budget.
pub fn finish_wake(
    store: &Mutex<PairingStore>,
    record: &PairingRecord,
    requested: bool,
    now: u64,
) -> Result<(), PairingStoreError> {
    if requested {
        return Ok(());
    }
    let store = lock(store);
    let wakes = store.empty_wakes(&record.id)?.record(now);
    store.set_empty_wakes(&record.id, wakes)
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
    /// computer: after pairing, and whenever the push token changes. Returns the names of the
    /// computers whose relay could not be told (call again later); an empty list when all were.
    /// Blocks on the network (bounded per relay): call it off the main thread.
    pub fn register_push(&self, target: PushRegistration) -> Result<Vec<String>, PocketKeyError> {
        let target = PushTarget::from(target);
        let records = lock(&self.pairings)
            .list()
            .map_err(|e| PocketKeyError::StorageFailed {
                detail: e.to_string(),
            })?;
        Ok(records
            .iter()
            .filter(|r| r.role == Role::Phone)
            .filter(|r| pairing::register_push(&self.pairings, r, target.clone()).is_err())
            .map(|r| r.name.clone())
            .collect())
    }

    /// Serves the computer a push notification woke this phone for: `payload` is the
    /// notification's data as JSON (see [`woken_wake_id`]). Connects to its relay, runs the
    /// waiting request (approvals go to the key's `ApprovalListener` as usual) and returns once
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

/// How long connecting to the relay, and then waiting for its ACK, may each take.
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);

/// DELETE on the pairing's mailbox: `Ok` once the relay ACKed it or says the mailbox is gone
/// already (410 / close 4010).
fn delete(record: &PairingRecord) -> Result<(), MailboxError> {
    let attach = record.mailbox_keys().attach(record.role);
    let gone = |e: MailboxError| if e.is_revoked() { Ok(()) } else { Err(e) };
    let mut conn = match MailboxConn::open(&record.relay_url, &attach, DELETE_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return gone(e),
    };
    conn.send(&RelayFrame::Delete)?;
    let until = Instant::now() + DELETE_TIMEOUT;
    while Instant::now() < until {
        match conn.poll() {
            Ok(Some(RelayFrame::Ack(frame_type::DELETE))) => return Ok(()),
            Ok(_) => {}
            Err(e) => return gone(e),
        }
    }
    Err(MailboxError::TimedOut)
}

/// DELETE on the pairing's mailbox; true once the relay ACKed (or says it is gone already).
pub fn delete_at_relay(record: &PairingRecord) -> bool {
    delete(record).is_ok()
}

/// Retries the DELETE of every pending revocation in `store` (records revoked locally, not yet
/// forgotten: [`PairingStore::pending_revocations`], either role) and forgets each one the
/// relay confirmed (ACK, or 410 / 4010: the mailbox is gone already). Returns the names of the
/// pairings forgotten; the others stay pending for the next call. Blocks on the network: at
/// most ~10 s per relay when one does not answer (a relay found unreachable is not tried again
/// for the other pairings in the same call). Errors only when the store fails.
///
/// The bridge calls it at start, the phone runtime before listing, pairing and listening.
pub fn retry_pending_revocations(store: &PairingStore) -> Result<Vec<String>, PairingStoreError> {
    retry(store.pending_revocations()?, |id| store.forget(id))
}

/// [`retry_pending_revocations`] on a shared store, locked only around each statement (not
/// while the relay is asked).
pub fn retry_pending_revocations_in(
    store: &Mutex<PairingStore>,
) -> Result<Vec<String>, PairingStoreError> {
    let pending = lock(store).pending_revocations()?;
    retry(pending, |id| lock(store).forget(id))
}

fn retry(
    pending: Vec<PairingRecord>,
    forget: impl Fn(&MailboxId) -> Result<bool, PairingStoreError>,
) -> Result<Vec<String>, PairingStoreError> {
    let mut down: HashSet<String> = HashSet::new();
    let mut forgotten = Vec::new();
    for record in pending {
        if down.contains(&record.relay_url) {
            continue;
        }
        match delete(&record) {
            Ok(()) => {
                forget(&record.id)?;
                forgotten.push(record.name);
            }
            Err(MailboxError::Unreachable(_) | MailboxError::TimedOut) => {
                down.insert(record.relay_url);
            }
            Err(_) => {}
        }
    }
    Ok(forgotten)
}

/// Stores (by address) whose pending revocations a background thread is retrying now.
static RETRYING: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Retries the store's pending revocations on a thread of its own, if there are any and no
/// such thread runs for this store already; returns at once.
fn retry_in_background(store: &Arc<Mutex<PairingStore>>) {
    let pending = lock(store)
        .pending_revocations()
        .is_ok_and(|p| !p.is_empty());
    let key = Arc::as_ptr(store) as usize;
    {
        let mut running = RETRYING.lock().unwrap_or_else(PoisonError::into_inner);
        if !pending || running.contains(&key) {
            return;
        }
        running.push(key);
    }
    let store = Arc::clone(store);
    thread::spawn(move || {
        let _ = retry_pending_revocations_in(&store);
        RETRYING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k| *k != key);
    });
}

/// Wraps a listener's event callback so that a pairing revoked after the listener started
/// (by `unpair` in this process or another while the relay was unreachable) is not served:
/// each time its mailbox is attached, a session is established or a request arrives, the
/// record is read again; if it is revoked, the DELETE is sent right then, which ends the
/// connection (the relay then answers 410, and the listener forgets the pairing and stops
/// serving it; the serving loop itself never hands a revoked pairing's request to the
/// engine), and the record is forgotten once the relay confirmed. `inner` gets every event.
pub fn revocation_guard(store: Arc<Mutex<PairingStore>>, inner: OnEvent) -> OnEvent {
    Arc::new(move |record: &PairingRecord, event: ServeEvent| {
        if matches!(
            event,
            ServeEvent::Attached | ServeEvent::Established | ServeEvent::Request { .. }
        ) {
            revoke_if_pending(&store, record);
        }
        inner(record, event);
    })
}

/// The check of [`revocation_guard`] for one event of `record`. True if the record is revoked
/// locally (and the DELETE was tried).
fn revoke_if_pending(store: &Mutex<PairingStore>, record: &PairingRecord) -> bool {
    let revoked = match lock(store).get(&record.id) {
        Ok(Some(current)) => current.revoked_at.is_some(),
        // Forgotten: its revocation reached the relay already, which closes the connection.
        Ok(None) => false,
        Err(_) => false,
    };
    if revoked && delete_at_relay(record) {
        let _ = lock(store).forget(&record.id);
    }
    revoked
}

#[cfg(test)]
mod tests {
    use super::woken_wake_id;

    #[test]
    fn wake_up_payloads_of_every_provider_and_nothing_else() {
        let hex = "00112233445566778899aabbccddeeff";
        let id = pocketkey_core::pairing::relay::WakeId::from_hex(hex).expect("a wake id");
        let ours = [
            format!(r#"{{"v": "1", "w": "{hex}"}}"#),
            format!(r#"{{"aps": {{"content-available": 1}}, "v": 1, "w": "{hex}"}}"#),
            format!(r#"{{"v":1,"w":"{hex}"}}"#),
        ];
        for payload in &ours {
            assert_eq!(woken_wake_id(payload.as_bytes()), Some(id), "{payload}");
        }
        let not_ours = [
            format!(r#"{{"v": "2", "w": "{hex}"}}"#),
            format!(r#"{{"w": "{hex}"}}"#),
            // A relay from before wake ids named the mailbox: not accepted.
            format!(r#"{{"v": "1", "m": "{hex}"}}"#),
            format!(r#"{{"v":1,"mailbox":"{hex}"}}"#),
            r#"{"v": 1, "w": "zz"}"#.to_string(),
            r#"{"v": 1, "w": "0011"}"#.to_string(),
            r#"{"v": 1, "w": 7}"#.to_string(),
            format!(r#"{{"v": true, "w": "{hex}"}}"#),
            "not json".to_string(),
            String::new(),
        ];
        for payload in &not_ours {
            assert_eq!(woken_wake_id(payload.as_bytes()), None, "{payload}");
        }
    }
}
