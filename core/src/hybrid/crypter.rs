//! Post-handshake transport encryption.
//!
//! AES-256-GCM, one key and one counter per direction (from [`super::noise::TrafficKeys`]),
//! nonce = 8 zero bytes ‖ counter (u32 big-endian), empty associated data. Each counter starts at
//! 0 and moves on after every message in its direction; a direction that has used all 2³²
//! counters is finished (no nonce is ever reused).
//!
//! Plaintexts are padded to a multiple of 32 bytes so that lengths leak less: the message, then
//! zeros, then one byte counting the zeros (0..=31).
//!
//! This is not snow's transport mode on purpose: snow's nonces are 4 zero bytes ‖ a 64-bit
//! counter, which coincides with these only below 2³², and snow knows nothing of the padding.
//! The keys come from snow's `Split()`; the AEAD is RustCrypto's `aes-gcm`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use thiserror::Error;

use super::noise::TrafficKeys;

/// Plaintexts are padded to a multiple of this.
pub const PADDING_GRANULARITY: usize = 32;
/// The AES-GCM tag.
pub const TAG_LEN: usize = 16;

/// Why a message could not be encrypted or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CrypterError {
    #[error("a {0}-byte message is shorter than one padded block and its tag")]
    TooShort(usize),
    #[error("message {counter} does not authenticate (tampered, reordered or wrong key)")]
    BadTag { counter: u32 },
    #[error("the padding count {count} does not fit a {len}-byte plaintext")]
    BadPadding { count: u8, len: usize },
    #[error("the padding bytes are not all zero")]
    NonZeroPadding,
    #[error("the {direction} counter is used up (2^32 messages)")]
    CounterExhausted { direction: &'static str },
}

/// Pads a message: zeros up to a multiple of 32 bytes, the last byte counting them.
pub fn pad(message: &[u8]) -> Vec<u8> {
    let padded_len = (message.len() + 1).next_multiple_of(PADDING_GRANULARITY);
    let zeros = padded_len - message.len() - 1;
    let mut out = Vec::with_capacity(padded_len + TAG_LEN);
    out.extend_from_slice(message);
    out.resize(padded_len - 1, 0);
    out.push(u8::try_from(zeros).expect("fewer than 32 zeros"));
    out
}

/// Removes the padding. The count must fit; the padding bytes must be zero. The length need not
/// be a multiple of 32 (the AEAD already authenticated it; only the count matters for parsing).
pub fn unpad(padded: &[u8]) -> Result<&[u8], CrypterError> {
    let Some((&count, rest)) = padded.split_last() else {
        return Err(CrypterError::BadPadding { count: 0, len: 0 });
    };
    let Some(message_len) = rest.len().checked_sub(usize::from(count)) else {
        return Err(CrypterError::BadPadding {
            count,
            len: padded.len(),
        });
    };
    let (message, zeros) = rest.split_at(message_len);
    if zeros.iter().any(|&b| b != 0) {
        return Err(CrypterError::NonZeroPadding);
    }
    Ok(message)
}

/// One direction: a key and the next counter (`None` once all 2³² are used).
struct Direction {
    cipher: Aes256Gcm,
    next: Option<u32>,
    name: &'static str,
}

impl Direction {
    fn new(key: &[u8; 32], name: &'static str) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
            next: Some(0),
            name,
        }
    }

    fn counter(&self) -> Result<u32, CrypterError> {
        self.next.ok_or(CrypterError::CounterExhausted {
            direction: self.name,
        })
    }

    fn advance(&mut self) {
        self.next = self.next.and_then(|c| c.checked_add(1));
    }
}

fn nonce(counter: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[8..].copy_from_slice(&counter.to_be_bytes());
    n
}

/// Encrypts what this side sends and decrypts what the peer sends.
pub struct Crypter {
    read: Direction,
    write: Direction,
}

impl std::fmt::Debug for Crypter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypter")
            .field("read_counter", &self.read.next)
            .field("write_counter", &self.write.next)
            .finish()
    }
}

impl Crypter {
    pub fn new(keys: &TrafficKeys) -> Self {
        Self {
            read: Direction::new(&keys.read, "read"),
            write: Direction::new(&keys.write, "write"),
        }
    }

    /// Pads and encrypts one message.
    pub fn encrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, CrypterError> {
        let counter = self.write.counter()?;
        let padded = pad(message);
        let ciphertext = self
            .write
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce(counter)),
                Payload {
                    msg: &padded,
                    aad: &[],
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        self.write.advance();
        Ok(ciphertext)
    }

    /// Decrypts and unpads one message. A failure leaves the counter where it was; callers end
    /// the session on any error anyway.
    pub fn decrypt(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, CrypterError> {
        let counter = self.read.counter()?;
        if ciphertext.len() < TAG_LEN + 1 {
            return Err(CrypterError::TooShort(ciphertext.len()));
        }
        let padded = self
            .read
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce(counter)),
                Payload {
                    msg: ciphertext,
                    aad: &[],
                },
            )
            .map_err(|_| CrypterError::BadTag { counter })?;
        let message = unpad(&padded)?.to_vec();
        self.read.advance();
        Ok(message)
    }

    /// The counters the next messages will use (`None`: used up), for diagnostics and tests.
    pub fn counters(&self) -> (Option<u32>, Option<u32>) {
        (self.read.next, self.write.next)
    }

    #[cfg(test)]
    fn set_counters_for_testing(&mut self, read: Option<u32>, write: Option<u32>) {
        self.read.next = read;
        self.write.next = write;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use zeroize::Zeroizing;

    fn pair() -> (Crypter, Crypter) {
        let a = TrafficKeys {
            read: Zeroizing::new([1; 32]),
            write: Zeroizing::new([2; 32]),
        };
        let b = TrafficKeys {
            read: Zeroizing::new([2; 32]),
            write: Zeroizing::new([1; 32]),
        };
        (Crypter::new(&a), Crypter::new(&b))
    }

    #[test]
    fn padding() {
        assert_eq!(pad(&[]).len(), 32);
        assert_eq!(pad(&[]).last(), Some(&31));
        assert_eq!(pad(&[0xaa; 31]).len(), 32);
        assert_eq!(pad(&[0xaa; 31]).last(), Some(&0));
        assert_eq!(pad(&[0xaa; 32]).len(), 64);
        assert_eq!(pad(&[0xaa; 32]).last(), Some(&31));
        let mut shutdown = vec![0u8; 32];
        shutdown[31] = 30;
        assert_eq!(pad(&[0]), shutdown);
        for n in 0..100 {
            let msg: Vec<u8> = (0..n).map(|i| i as u8 | 1).collect();
            assert_eq!(unpad(&pad(&msg)).unwrap(), &msg[..]);
        }
    }

    #[test]
    fn bad_padding() {
        assert_eq!(
            unpad(&[]),
            Err(CrypterError::BadPadding { count: 0, len: 0 })
        );
        assert_eq!(
            unpad(&[0, 0, 3]),
            Err(CrypterError::BadPadding { count: 3, len: 3 })
        );
        assert_eq!(unpad(&[1, 1, 1]), Err(CrypterError::NonZeroPadding));
        assert_eq!(unpad(&[7, 0, 1]).unwrap(), &[7]);
    }

    #[test]
    fn both_directions_and_counters() {
        let (mut a, mut b) = pair();
        for i in 0..5u8 {
            let c = a.encrypt(&[i; 40]).unwrap();
            assert_eq!(c.len(), 64 + TAG_LEN);
            assert_eq!(b.decrypt(&c).unwrap(), vec![i; 40]);
            let c = b.encrypt(&[i]).unwrap();
            assert_eq!(a.decrypt(&c).unwrap(), vec![i]);
        }
        assert_eq!(a.counters(), (Some(5), Some(5)));
    }

    #[test]
    fn nonce_layout() {
        assert_eq!(nonce(1), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(nonce(0x01020304), [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn tampering_reordering_and_replay_fail() {
        let (mut a, mut b) = pair();
        let first = a.encrypt(b"one").unwrap();
        let second = a.encrypt(b"two").unwrap();
        assert_eq!(b.decrypt(&second), Err(CrypterError::BadTag { counter: 0 }));
        let mut tampered = first.clone();
        tampered[3] ^= 1;
        assert_eq!(
            b.decrypt(&tampered),
            Err(CrypterError::BadTag { counter: 0 })
        );
        assert_eq!(b.decrypt(&first).unwrap(), b"one");
        assert_eq!(b.decrypt(&first), Err(CrypterError::BadTag { counter: 1 }));
        assert_eq!(b.decrypt(&first[..16]), Err(CrypterError::TooShort(16)));
        assert_eq!(b.decrypt(&second).unwrap(), b"two");
    }

    #[test]
    fn counter_exhaustion() {
        let (mut a, mut b) = pair();
        a.set_counters_for_testing(None, Some(u32::MAX));
        b.set_counters_for_testing(Some(u32::MAX), None);
        let last = a.encrypt(b"last").unwrap();
        assert_eq!(
            a.encrypt(b"more"),
            Err(CrypterError::CounterExhausted { direction: "write" })
        );
        assert_eq!(b.decrypt(&last).unwrap(), b"last");
        assert_eq!(
            b.decrypt(&last),
            Err(CrypterError::CounterExhausted { direction: "read" })
        );
        assert_eq!(
            b.encrypt(b"x"),
            Err(CrypterError::CounterExhausted { direction: "write" })
        );
    }

    proptest! {
        #[test]
        fn decrypt_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let (_, mut b) = pair();
            let _ = b.decrypt(&bytes);
        }

        #[test]
        fn unpad_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = unpad(&bytes);
        }

        #[test]
        fn round_trip(msg in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (mut a, mut b) = pair();
            let c = a.encrypt(&msg).unwrap();
            prop_assert_eq!(c.len() % PADDING_GRANULARITY, TAG_LEN % PADDING_GRANULARITY);
            prop_assert_eq!(b.decrypt(&c).unwrap(), msg);
        }
    }
}
