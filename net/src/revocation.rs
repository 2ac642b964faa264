//! What every side shares about revoking a pairing (docs/pairing-protocol.md §3.4): the DELETE
//! at the relay ([`delete_at_relay`]), the retry of pending revocations
//! ([`retry_pending_revocations`]), and the guard that keeps a pairing revoked while a listener
//! serves it from being used for a session ([`revocation_guard`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use pocketkey_core::pairing::relay::{frame_type, RelayFrame};
use pocketkey_core::pairing::{MailboxId, PairingRecord, PairingStore, PairingStoreError};

use crate::mailbox::{MailboxConn, MailboxError};
use crate::pairing::{OnEvent, ServeEvent};

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
pub fn retry_in_background(store: &Arc<Mutex<PairingStore>>) {
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
