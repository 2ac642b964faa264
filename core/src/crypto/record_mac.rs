//! Integrity tags for records kept in the clear at rest (settings, the signature counter):
//! HMAC-SHA256 (RFC 2104) under a key derived from the master key for this purpose alone.
//!
//! A tag shows that the master key's holder wrote exactly these bytes; it cannot show that
//! they are the newest it wrote (an older record copied back with its tag still verifies).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::master_key::MasterKey;

/// HKDF info of the tag key; no other key is derived with it.
const INFO: &[u8] = b"pocketkey mac v1: store records";

/// Bytes in a tag.
pub const TAG_LEN: usize = 32;

/// Computes and checks tags over canonical record encodings.
pub struct RecordMac {
    key: Zeroizing<[u8; 32]>,
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
        }
    }

    fn hmac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.key.as_ref()).expect("HMAC takes keys of any length")
    }

    pub fn tag(&self, message: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.hmac();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is this key's tag over `message` (compared in constant time).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.hmac();
        mac.update(message);
        mac.verify_slice(tag).is_ok()
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
