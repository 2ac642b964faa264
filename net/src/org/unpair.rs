//! A revoked key leaves its computers (docs/org.md, "Revocation"): the computers were paired
//! with the organisation's key, so revocation revokes every pairing of this phone. Each one
//! is revoked locally first (never used for a session again, even offline); the relay is then
//! asked to delete its mailbox, so the computer's next request finds no phone. A relay that
//! cannot be reached now is told later, as for `pocketkey unpair`.

use pocketkey_core::pairing::{PairingStore, PairingStoreError, Role};

use crate::revocation::retry_pending_revocations;

/// What unpairing the computers did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unpaired {
    /// The computers unpaired and deleted at their relay.
    pub done: Vec<String>,
    /// The computers unpaired here whose relay could not be told yet (retried later).
    pub pending: Vec<String>,
}

/// Revokes every computer this phone is paired with at `now` (Unix seconds), then tells the
/// relays. Blocks on the network (at most ~10 s per relay that does not answer).
pub fn unpair_computers(store: &PairingStore, now: u64) -> Result<Unpaired, PairingStoreError> {
    let computers: Vec<_> = store
        .list()?
        .into_iter()
        .filter(|r| r.role == Role::Phone)
        .collect();
    for computer in &computers {
        store.revoke(&computer.id, now)?;
    }
    retry_pending_revocations(store)?;
    let still: Vec<_> = store
        .pending_revocations()?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let (pending, done): (Vec<_>, Vec<_>) =
        computers.into_iter().partition(|c| still.contains(&c.id));
    let names = |list: Vec<pocketkey_core::pairing::PairingRecord>| {
        list.into_iter().map(|c| c.name).collect()
    };
    Ok(Unpaired {
        done: names(done),
        pending: names(pending),
    })
}
