//! Pairing records (docs/pairing-protocol.md §6) and the sealing of our static private key.
//!
//! Both sides keep one record per pairing: the peer's static key and name, our static key
//! (sealed at rest under the master key), and timestamps. The record's id is the pairing
//! mailbox id, the same on both sides and at the relay.

use std::time::Instant;

use p256::{PublicKey, SecretKey};
use thiserror::Error;
use zeroize::Zeroizing;

use super::mailbox::{MailboxKeys, PairingId};
use super::messages::Hello;
use super::session::{NewPairing, Session, SessionError};
use super::url::compressed;
use super::Role;
use crate::crypto::master_key::MasterKey;
use crate::crypto::seal::{Purpose, SealError, Sealer};

/// The sealer's salt: pairing keys get their own key under the master key.
const SEAL_SALT: &[u8] = b"PocketKey pairing static key v1";
const AAD_PREFIX: &[u8] = b"PocketKey pairing record v1\0";

/// One pairing, as stored.
#[derive(Clone)]
pub struct PairingRecord {
    pub id: PairingId,
    /// Our role in this pairing.
    pub role: Role,
    /// The peer's display name (local; renamable).
    pub name: String,
    pub relay_url: String,
    pub peer_static: PublicKey,
    pub our_static: SecretKey,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last established session.
    pub last_seen: Option<u64>,
    /// Bridge only: the phone's last getInfo.
    pub peer_get_info: Option<Vec<u8>>,
    /// Set by a local revoke until the relay acknowledged the mailbox's deletion.
    pub revoked_at: Option<u64>,
    /// Set when the relay said the mailbox was deleted (HTTP 410, close 4010): nobody
    /// authenticates that, so the keys stay and the pairing is only not used until the user
    /// resumes or removes it (docs/pairing-protocol.md §3.4).
    pub suspended_at: Option<u64>,
}

impl std::fmt::Debug for PairingRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingRecord")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("name", &self.name)
            .field("relay_url", &self.relay_url)
            .field("created_at", &self.created_at)
            .field("last_seen", &self.last_seen)
            .field("revoked_at", &self.revoked_at)
            .field("suspended_at", &self.suspended_at)
            .finish_non_exhaustive()
    }
}

impl PartialEq for PairingRecord {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.role == other.role
            && self.name == other.name
            && self.relay_url == other.relay_url
            && self.peer_static == other.peer_static
            && self.our_static.to_bytes() == other.our_static.to_bytes()
            && self.created_at == other.created_at
            && self.last_seen == other.last_seen
            && self.peer_get_info == other.peer_get_info
            && self.revoked_at == other.revoked_at
            && self.suspended_at == other.suspended_at
    }
}

impl PairingRecord {
    /// The record of a pairing first contact just made, at `now` (Unix seconds).
    pub fn from_new(new: NewPairing, now: u64) -> Self {
        Self {
            id: new.id,
            role: new.role,
            name: new.name,
            relay_url: new.relay_url,
            peer_static: new.peer_static,
            our_static: new.our_static,
            created_at: now,
            last_seen: Some(now),
            peer_get_info: new.peer_get_info,
            revoked_at: None,
            suspended_at: None,
        }
    }

    /// The pairing mailbox's attach tokens.
    pub fn mailbox_keys(&self) -> MailboxKeys {
        MailboxKeys::pairing(&self.our_static, &self.peer_static, self.role)
    }

    /// A new session of this pairing in our role (phone: queues HS1; bridge: waits for it).
    pub fn session(&self, hello: Hello, now: Instant) -> Result<Session, SessionError> {
        match self.role {
            Role::Phone => Session::phone(self.our_static.clone(), &self.peer_static, hello, now),
            Role::Bridge => Session::bridge(self.our_static.clone(), &self.peer_static, hello),
        }
    }

    /// Our static private key, sealed for storage with this record's id, role and peer key
    /// as associated data.
    pub fn seal_static_key(&self, master: &MasterKey) -> Vec<u8> {
        let scalar = Zeroizing::new(self.our_static.to_bytes());
        sealer(master).seal(
            scalar.as_slice(),
            &aad(&self.id, self.role, &self.peer_static),
        )
    }
}

/// Why a sealed static key did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("the sealed key does not open (wrong master key, another record's, or damaged)")]
    Unseal(#[from] SealError),
    #[error("the sealed key is not a P-256 private key")]
    BadKey,
}

fn sealer(master: &MasterKey) -> Sealer {
    Sealer::with_salt(master, Purpose::Store, SEAL_SALT)
}

fn aad(id: &PairingId, role: Role, peer_static: &PublicKey) -> Vec<u8> {
    [
        AAD_PREFIX,
        &id.0,
        &[role.to_byte()],
        &compressed(peer_static),
    ]
    .concat()
}

/// Opens a key sealed by [`PairingRecord::seal_static_key`] for the same id, role and peer.
pub fn open_static_key(
    master: &MasterKey,
    id: &PairingId,
    role: Role,
    peer_static: &PublicKey,
    sealed: &[u8],
) -> Result<SecretKey, RecordError> {
    let scalar = sealer(master).open(sealed, &aad(id, role, peer_static))?;
    SecretKey::from_slice(&scalar).map_err(|_| RecordError::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::mailbox::MailboxId;

    fn record() -> PairingRecord {
        let ours = SecretKey::from_slice(&[0x41; 32]).unwrap();
        let peer = SecretKey::from_slice(&[0x42; 32]).unwrap().public_key();
        PairingRecord {
            id: MailboxKeys::pairing(&ours, &peer, Role::Phone).id(),
            role: Role::Phone,
            name: "desk".into(),
            relay_url: "wss://r".into(),
            peer_static: peer,
            our_static: ours,
            created_at: 10,
            last_seen: None,
            peer_get_info: None,
            revoked_at: None,
            suspended_at: None,
        }
    }

    #[test]
    fn sealed_key_opens_only_for_its_record() {
        let master = MasterKey::from_bytes([3; 32]);
        let r = record();
        let sealed = r.seal_static_key(&master);
        assert!(!sealed
            .windows(32)
            .any(|w| w == r.our_static.to_bytes().as_slice()));
        let opened = open_static_key(&master, &r.id, r.role, &r.peer_static, &sealed).unwrap();
        assert_eq!(opened.to_bytes(), r.our_static.to_bytes());
        let wrong = |id: &PairingId, role: Role, peer: &PublicKey, m: &MasterKey| {
            open_static_key(m, id, role, peer, &sealed).unwrap_err()
        };
        let unseal = RecordError::Unseal(SealError::Unauthentic);
        assert_eq!(
            wrong(&MailboxId([0; 16]), r.role, &r.peer_static, &master),
            unseal
        );
        assert_eq!(wrong(&r.id, Role::Bridge, &r.peer_static, &master), unseal);
        assert_eq!(
            wrong(&r.id, r.role, &r.our_static.public_key(), &master),
            unseal
        );
        assert_eq!(
            wrong(
                &r.id,
                r.role,
                &r.peer_static,
                &MasterKey::from_bytes([4; 32])
            ),
            unseal
        );
        // Not openable as a credential-store secret either (its own salt).
        assert!(Sealer::new(&master, Purpose::Store)
            .open(&sealed, &aad(&r.id, r.role, &r.peer_static))
            .is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        let r = record();
        let shown = format!("{r:?}");
        assert!(shown.contains("desk"));
        assert!(!shown.contains("our_static"));
    }
}
