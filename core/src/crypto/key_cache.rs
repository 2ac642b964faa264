//! Parsed credential keys kept between requests, so that a credential in use is imported
//! (its public point checked or computed: a scalar multiplication) once, not on every
//! assertion.
//!
//! An entry is found by credential ID and used only if the stored key bytes it was parsed
//! from equal the ones presented now (compared in constant time), so a stale entry can never
//! sign for another key. Entries are wiped when evicted, cleared or dropped ([`PrivateKey`]'s
//! parts zeroize themselves). The engine keeps its cache with its volatile state: a reset or a
//! power cycle starts with an empty one.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::signing::{KeyError, PrivateKey};
use crate::store::Algorithm;

/// How many keys are kept; the least recently used goes first.
pub const CAPACITY: usize = 16;

struct Entry {
    id: Vec<u8>,
    algorithm: Algorithm,
    stored: Zeroizing<Vec<u8>>,
    key: PrivateKey,
}

#[derive(Default)]
pub struct KeyCache {
    /// Least recently used first.
    entries: Vec<Entry>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyCache({} keys)", self.entries.len())
    }
}

impl KeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The key of credential `id` whose stored form is `stored`: parsed by an earlier call
    /// when it matches, parsed now otherwise.
    pub fn get(
        &mut self,
        id: &[u8],
        algorithm: Algorithm,
        stored: &[u8],
    ) -> Result<&PrivateKey, KeyError> {
        let hit = self.entries.iter().position(|e| {
            e.id == id
                && e.algorithm == algorithm
                && e.stored.len() == stored.len()
                && bool::from(e.stored.ct_eq(stored))
        });
        let entry = match hit {
            Some(i) => self.entries.remove(i),
            None => {
                let key = PrivateKey::from_bytes(algorithm, stored)?;
                // One entry per ID: an older key under this ID is gone for good.
                self.entries.retain(|e| e.id != id);
                if self.entries.len() == CAPACITY {
                    self.entries.remove(0);
                }
                Entry {
                    id: id.to_vec(),
                    algorithm,
                    stored: Zeroizing::new(stored.to_vec()),
                    key,
                }
            }
        };
        self.entries.push(entry);
        Ok(&self.entries.last().expect("just pushed").key)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_is_the_same_parsed_key_and_a_changed_key_is_reparsed() {
        let mut cache = KeyCache::new();
        let a = PrivateKey::generate(Algorithm::Es256).to_bytes();
        let b = PrivateKey::generate(Algorithm::Es256).to_bytes();
        let first = cache.get(b"id", Algorithm::Es256, &a).unwrap() as *const PrivateKey;
        let again = cache.get(b"id", Algorithm::Es256, &a).unwrap() as *const PrivateKey;
        assert_eq!(first, again, "parsed once");
        // Same ID, other key bytes (e.g. a credential replaced after a reset): never the old.
        let other = cache.get(b"id", Algorithm::Es256, &b).unwrap();
        assert_eq!(other.to_bytes(), b);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(b"id", Algorithm::EdDsa, &b).is_err());
    }

    #[test]
    fn bounded_least_recently_used_and_clearable() {
        let mut cache = KeyCache::new();
        let keys: Vec<_> = (0..=CAPACITY)
            .map(|_| PrivateKey::generate(Algorithm::EdDsa).to_bytes())
            .collect();
        for (i, k) in keys.iter().enumerate().take(CAPACITY) {
            cache.get(&[i as u8], Algorithm::EdDsa, k).unwrap();
        }
        // Touch entry 0 so that entry 1 is the least recently used.
        cache.get(&[0], Algorithm::EdDsa, &keys[0]).unwrap();
        cache
            .get(&[CAPACITY as u8], Algorithm::EdDsa, &keys[CAPACITY])
            .unwrap();
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.entries.iter().any(|e| e.id == [0]));
        assert!(!cache.entries.iter().any(|e| e.id == [1]));
        cache.clear();
        assert!(cache.is_empty());
    }
}
