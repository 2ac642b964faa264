//! The integrity tags of the records the store keeps in the clear: the settings row (with its
//! rp id list) and the global signature counter.
//!
//! Each tag is an HMAC ([`RecordMac`]) over a canonical encoding of the record as stored
//! (the PIN hash in its sealed form), so an edited retry counter, a switched-off alwaysUv,
//! a lowered minimum PIN length or a counter set back makes the store refuse to open
//! ([`StoreError::Tampered`]) instead of being believed or silently reset.
//!
//! Known limit: a tag cannot tell a record from an older one the same key wrote. Copying an
//! older store file back whole (settings, counter and tags together) restores its PIN
//! retries and counter undetected; only a monotonic counter outside the file (the platform
//! keystore's) could catch that.

use crate::crypto::record_mac::RecordMac;

use super::types::{Record, StoreError};

/// Domain separation: which store format, which record.
const PREFIX: &[u8] = b"pocketkey store record v1\0";

/// The settings row as stored, every field the tag covers.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct StoredSettings {
    /// Sealed (see `settings_aad("pin_hash")`).
    pub pin_hash: Option<Vec<u8>>,
    pub pin_code_points: u8,
    pub pin_retries: u8,
    pub uv_retries: u8,
    pub min_pin_length: u8,
    pub force_pin_change: bool,
    pub always_uv: bool,
    pub enterprise_attestation: bool,
    pub label: String,
    pub wrap_salt: [u8; 32],
    pub min_pin_length_rp_ids: Vec<String>,
    pub uv_public_key: Option<[u8; 65]>,
}

/// A length-prefixed encoding: every field is its type's fixed width or a u64 length before
/// its bytes, so two different records never encode alike.
struct Encoder(Vec<u8>);

impl Encoder {
    fn new(record: &[u8]) -> Self {
        let mut e = Self(PREFIX.to_vec());
        e.bytes(record);
        e
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u64).to_be_bytes());
        self.0.extend_from_slice(b);
    }
    fn opt_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.0.push(0),
            Some(b) => {
                self.0.push(1);
                self.bytes(b);
            }
        }
    }
    fn int(&mut self, i: u64) {
        self.0.extend_from_slice(&i.to_be_bytes());
    }
}

impl StoredSettings {
    fn message(&self) -> Vec<u8> {
        let mut e = Encoder::new(b"settings");
        e.opt_bytes(self.pin_hash.as_deref());
        for small in [
            self.pin_code_points,
            self.pin_retries,
            self.uv_retries,
            self.min_pin_length,
        ] {
            e.int(small.into());
        }
        for flag in [
            self.force_pin_change,
            self.always_uv,
            self.enterprise_attestation,
        ] {
            e.int(flag.into());
        }
        e.bytes(self.label.as_bytes());
        e.bytes(&self.wrap_salt);
        e.int(self.min_pin_length_rp_ids.len() as u64);
        for rp_id in &self.min_pin_length_rp_ids {
            e.bytes(rp_id.as_bytes());
        }
        // Appended only when present, after the counted list (so still unambiguous): rows
        // tagged before the column existed keep their tags.
        if let Some(key) = &self.uv_public_key {
            e.bytes(b"uv_public_key");
            e.bytes(key);
        }
        e.0
    }

    pub(super) fn tag(&self, mac: &RecordMac) -> Vec<u8> {
        mac.tag(&self.message()).to_vec()
    }

    /// Checks the stored tag (`None`: the column is empty).
    pub(super) fn check(&self, mac: &RecordMac, tag: Option<&[u8]>) -> Result<(), StoreError> {
        check(mac, &self.message(), tag, Record::Settings)
    }
}

fn counter_message(value: u32) -> Vec<u8> {
    let mut e = Encoder::new(b"sign_counter");
    e.int(value.into());
    e.0
}

pub(super) fn counter_tag(mac: &RecordMac, value: u32) -> Vec<u8> {
    mac.tag(&counter_message(value)).to_vec()
}

pub(super) fn check_counter(
    mac: &RecordMac,
    value: u32,
    tag: Option<&[u8]>,
) -> Result<(), StoreError> {
    check(mac, &counter_message(value), tag, Record::SignCounter)
}

fn check(
    mac: &RecordMac,
    message: &[u8],
    tag: Option<&[u8]>,
    record: Record,
) -> Result<(), StoreError> {
    match tag {
        Some(tag) if mac.verify(message, tag) => Ok(()),
        _ => Err(StoreError::Tampered(record)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::master_key::MasterKey;

    fn sample() -> StoredSettings {
        StoredSettings {
            pin_hash: Some(vec![1, 2, 3]),
            pin_code_points: 4,
            pin_retries: 8,
            uv_retries: 8,
            min_pin_length: 4,
            force_pin_change: false,
            always_uv: true,
            enterprise_attestation: false,
            label: "Key".into(),
            wrap_salt: [9; 32],
            min_pin_length_rp_ids: vec!["a.example".into(), "b.example".into()],
            uv_public_key: None,
        }
    }

    #[test]
    fn every_field_is_covered() {
        let mac = RecordMac::new(&MasterKey::from_bytes([1; 32]));
        let tag = sample().tag(&mac);
        sample().check(&mac, Some(&tag)).unwrap();
        let edits: [fn(&mut StoredSettings); 12] = [
            |s| s.pin_hash = None,
            |s| s.pin_hash = Some(vec![1, 2, 4]),
            |s| s.pin_code_points += 1,
            |s| s.pin_retries += 1,
            |s| s.uv_retries += 1,
            |s| s.min_pin_length -= 1,
            |s| s.force_pin_change = true,
            |s| s.always_uv = false,
            |s| s.enterprise_attestation = true,
            |s| s.label.push('!'),
            |s| s.wrap_salt[0] ^= 1,
            |s| s.min_pin_length_rp_ids.swap(0, 1),
        ];
        for edit in edits {
            let mut edited = sample();
            edit(&mut edited);
            assert!(matches!(
                edited.check(&mac, Some(&tag)),
                Err(StoreError::Tampered(Record::Settings))
            ));
        }
        assert!(sample().check(&mac, None).is_err());
        // Field boundaries are unambiguous: moving a byte between two rp ids changes the tag.
        let mut shifted = sample();
        shifted.min_pin_length_rp_ids = vec!["a.exampleb".into(), ".example".into()];
        assert!(shifted.check(&mac, Some(&tag)).is_err());
    }

    #[test]
    fn counter_tags_bind_the_value_and_not_the_settings() {
        let mac = RecordMac::new(&MasterKey::from_bytes([1; 32]));
        let tag = counter_tag(&mac, 41);
        check_counter(&mac, 41, Some(&tag)).unwrap();
        assert!(check_counter(&mac, 40, Some(&tag)).is_err());
        assert!(sample().check(&mac, Some(&tag)).is_err());
    }
}
