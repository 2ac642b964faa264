//! Which pairing a push notification woke the phone for (docs/pairing-protocol.md §3.3), and
//! the empty-wake budget that keeps a relay (or anyone holding a pairing's keys) from waking
//! the phone for nothing too often.

use std::sync::{Mutex, MutexGuard, PoisonError};

use pocketkey_core::pairing::relay::WakeId;
use pocketkey_core::pairing::{PairingRecord, PairingStore, PairingStoreError, Role};

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

/// After serving a wake-up of `record` ([`crate::pairing::serve_woken`]): one that brought no
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

fn lock(store: &Mutex<PairingStore>) -> MutexGuard<'_, PairingStore> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
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
