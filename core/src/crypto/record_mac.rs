//! Integrity tags for records kept in the clear at rest (settings, the signature counter):
//! HMAC-SHA256 (RFC 2104) under a key derived from the master key for this purpose alone.
//!
//! A tag shows that the master key's holder wrote exactly these bytes; it cannot show that
//! they are the newest it wrote (an older record copied back with its tag still verifies).
//!
//! **Verified pairs are remembered.** HMAC is a function of key and message, so a
//! (message, tag) pair that verified once, or that this key just computed, verifies on every
//! later check: the last few such pairs are kept, and a check of the same bytes is a
//! comparison instead of an HMAC. Any other bytes, such as a row edited behind the engine's
//! back, miss and are verified in full, so the check proves exactly what it did before. The
//! remembered messages are the records as stored (sealed fields sealed) and tags, not keys.

use std::cell::RefCell;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::master_key::MasterKey;

/// HKDF info of the tag key; no other key is derived with it.
const INFO: &[u8] = b"pocketkey mac v1: store records";

/// Bytes in a tag.
pub const TAG_LEN: usize = 32;

/// How many verified (message, tag) pairs are remembered: one per kind of record the store
/// reads on a hot path (settings, signature counter), and room to spare.
const REMEMBERED: usize = 4;

/// Computes and checks tags over canonical record encodings.
pub struct RecordMac {
    key: Zeroizing<[u8; 32]>,
    /// Pairs known to verify, newest first.
    verified: RefCell<Vec<(Vec<u8>, [u8; TAG_LEN])>>,
    /// HMACs computed so far (tests count them).
    #[cfg(test)]
    computed: std::cell::Cell<usize>,
}

impl std::fmt::Debug for RecordMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordMac(<redacted>)")
    }
}

impl RecordMac {
    pub fn new(master: &MasterKey) -> Self {
        Self {
            key: master.derive(&[], INFO),
            verified: RefCell::new(Vec::with_capacity(REMEMBERED)),
            #[cfg(test)]
            computed: Default::default(),
        }
    }

    fn compute(&self, message: &[u8]) -> [u8; TAG_LEN] {
        #[cfg(test)]
        self.computed.set(self.computed.get() + 1);
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_ref())
            .expect("HMAC takes keys of any length");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    pub fn tag(&self, message: &[u8]) -> [u8; TAG_LEN] {
        let tag = self.compute(message);
        self.remember(message, tag);
        tag
    }

    /// Whether `tag` is this key's tag over `message` (compared in constant time).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let Ok(tag) = <[u8; TAG_LEN]>::try_from(tag) else {
            return false;
        };
        let known = self
            .verified
            .borrow()
            .iter()
            .any(|(m, t)| m[..] == *message && bool::from(t.ct_eq(&tag)));
        if known {
            return true;
        }
        if !bool::from(self.compute(message).ct_eq(&tag)) {
            return false;
        }
        self.remember(message, tag);
        true
    }

    fn remember(&self, message: &[u8], tag: [u8; TAG_LEN]) {
        let mut verified = self.verified.borrow_mut();
        verified.retain(|(m, _)| m[..] != *message);
        verified.truncate(REMEMBERED - 1);
        verified.insert(0, (message.to_vec(), tag));
    }

    /// HMACs computed by this key so far.
    #[cfg(test)]
    pub(crate) fn computed(&self) -> usize {
        self.computed.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::seal::{Purpose, Sealer};

    #[test]
    fn tags_verify_only_for_their_message_and_key() {
        let mac = RecordMac::new(&MasterKey::from_bytes([1; 32]));
        let tag = mac.tag(b"record");
        assert!(mac.verify(b"record", &tag));
        assert!(!mac.verify(b"recore", &tag));
        assert!(!mac.verify(b"record", &tag[..31]));
        let other = RecordMac::new(&MasterKey::from_bytes([2; 32]));
        assert!(!other.verify(b"record", &tag));
    }

    #[test]
    fn a_remembered_pair_still_refuses_other_bytes() {
        let mac = RecordMac::new(&MasterKey::from_bytes([1; 32]));
        let tag = mac.tag(b"record");
        let computed = mac.computed();
        assert!(mac.verify(b"record", &tag));
        assert_eq!(mac.computed(), computed, "a pair it made is known");
        let mut forged = tag;
        forged[31] ^= 1;
        assert!(!mac.verify(b"record", &forged));
        assert!(!mac.verify(b"recore", &tag));
        assert!(!mac.verify(b"record", &tag[..31]));
        // A pair verified by a fresh key is remembered by it too.
        let fresh = RecordMac::new(&MasterKey::from_bytes([1; 32]));
        assert!(fresh.verify(b"record", &tag));
        assert!(fresh.verify(b"record", &tag));
        assert_eq!(fresh.computed(), 1);
        let other = RecordMac::new(&MasterKey::from_bytes([2; 32]));
        assert!(!other.verify(b"record", &tag));
        assert!(
            !other.verify(b"record", &tag),
            "a failure is not remembered"
        );
        assert_eq!(other.computed(), 2);
    }

    #[test]
    fn the_tag_key_is_not_a_sealing_key() {
        // Same master key, other HKDF info: the tag key differs from every sealer's key, so
        // a tag says nothing about sealed data and the other way round.
        let master = MasterKey::from_bytes([1; 32]);
        let mac = RecordMac::new(&master);
        assert_ne!(*mac.key, *master.derive(&[], b"pocketkey seal v1: store"));
        let _ = Sealer::new(&master, Purpose::Store);
        assert!(!format!("{mac:?}").contains("1, 1"));
    }
}
