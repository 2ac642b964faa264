//! The app's entry points for pairing with computers: `SecurityKey.pair`, `pairings`,
//! `unpair`, and `listen` (serve every paired computer until the returned handle stops).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use pocketkey_core::authenticator::RequestContext;
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::{CtapKind, MailboxId, PairingRecord, Role, UrlPolicy};

use super::pairing::{self, PairingEngine, PairingError};
use super::pairing_ws::MailboxConn;
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
}

impl From<&PairingRecord> for PairingInfo {
    fn from(r: &PairingRecord) -> Self {
        Self {
            id: r.id.to_hex(),
            computer_name: r.name.clone(),
            relay_url: r.relay_url.clone(),
            created_at: r.created_at,
            last_seen: r.last_seen,
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
        other => PocketKeyError::PairingFailed {
            detail: other.to_string(),
        },
    }
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
    /// Pairs with the computer whose `pocketkey://pair?…` code was scanned; blocks (≤ ~30 s)
    /// until the handshake ends: call it off the main thread. `phone_name` is what the
    /// computer shows. `allow_insecure_relay` accepts `ws://` relays off loopback (developer
    /// mode). Throws `InvalidPairingCode` before any network traffic, `PairingFailed` after.
    pub fn pair(
        &self,
        url: String,
        phone_name: String,
        allow_insecure_relay: bool,
    ) -> Result<PairingInfo, PocketKeyError> {
        let policy = if allow_insecure_relay {
            UrlPolicy::AllowInsecureRelay
        } else {
            UrlPolicy::Strict
        };
        pairing::pair(&url, policy, &phone_name, self, &self.pairings)
            .map(|r| PairingInfo::from(&r))
            .map_err(failed)
    }

    /// The paired computers, newest first.
    pub fn pairings(&self) -> Result<Vec<PairingInfo>, PocketKeyError> {
        let store = self.pairings.lock().unwrap_or_else(PoisonError::into_inner);
        let list = store.list().map_err(|e| PocketKeyError::StorageFailed {
            detail: e.to_string(),
        })?;
        Ok(list
            .iter()
            .filter(|r| r.role == Role::Phone)
            .map(PairingInfo::from)
            .collect())
    }

    /// Revokes the pairing `id` (from `pairings`): tells the relay (bounded wait) and forgets
    /// it; without the relay it stays a pending revocation. False if there is no such pairing.
    pub fn unpair(&self, id: String) -> Result<bool, PocketKeyError> {
        let Some(id) = MailboxId::from_hex(&id) else {
            return Ok(false);
        };
        let store = || self.pairings.lock().unwrap_or_else(PoisonError::into_inner);
        let storage =
            |e: pocketkey_core::pairing::PairingStoreError| PocketKeyError::StorageFailed {
                detail: e.to_string(),
            };
        let Some(record) = store().get(&id).map_err(storage)? else {
            return Ok(false);
        };
        store().revoke(&id, pairing::unix_now()).map_err(storage)?;
        if delete_at_relay(&record) {
            store().forget(&id).map_err(storage)?;
        }
        Ok(true)
    }

    /// Serves every paired computer (one connection each, kept up) until the listener is
    /// stopped; approvals go to the key's `ApprovalListener`, naming the computer.
    pub fn listen(self: Arc<Self>, phone_name: String) -> Arc<PairingListener> {
        let stop = Arc::new(AtomicBool::new(false));
        let (key, s) = (Arc::clone(&self), Arc::clone(&stop));
        let store = Arc::clone(&self.pairings);
        let thread = thread::spawn(move || {
            let _ = pairing::listen(&phone_name, key, store, s, Arc::new(|_, _| {}));
        });
        Arc::new(PairingListener {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }
}

/// DELETE on the pairing's mailbox; true once the relay ACKed (or says it is gone already).
pub fn delete_at_relay(record: &PairingRecord) -> bool {
    let attach = record.mailbox_keys().attach(record.role);
    let mut conn = match MailboxConn::open(&record.relay_url, &attach, Duration::from_secs(5)) {
        Ok(c) => c,
        Err(e) => return e.is_revoked(),
    };
    if conn.send(&RelayFrame::Delete).is_err() {
        return false;
    }
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        match conn.poll() {
            Ok(Some(RelayFrame::Ack(0x05))) => return true,
            Ok(_) => {}
            Err(e) => return e.is_revoked(),
        }
    }
    false
}
