//! What the engine's Noise handshakes (hybrid's KNpsk0, pairing's XKpsk3 and KK) share around
//! `snow`: the crypto resolver and the split into [`TrafficKeys`].
//!
//! The resolver is snow's default primitives with two changes: randomness comes from the
//! operating system through `rand_core` (the engine's, instead of a third `getrandom`), and
//! P-256 key generation draws again when the random bytes are not a valid scalar
//! ([`P256Dh`]), where snow 0.10 would panic.

use p256::SecretKey;
use rand_core::{OsRng, RngCore};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::HandshakeState;
use zeroize::Zeroizing;

/// The two transport keys, from this side's point of view.
#[derive(Clone)]
pub struct TrafficKeys {
    /// Decrypts what the peer sends.
    pub read: Zeroizing<[u8; 32]>,
    /// Encrypts what this side sends.
    pub write: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for TrafficKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrafficKeys(..)")
    }
}

/// Noise `Split()` of a finished handshake: the first key carries initiator → responder.
pub(crate) fn split(state: &mut HandshakeState) -> TrafficKeys {
    debug_assert!(state.is_handshake_finished());
    let (first, second) = state.dangerously_get_raw_split();
    let (first, second) = (Zeroizing::new(first), Zeroizing::new(second));
    if state.is_initiator() {
        TrafficKeys {
            read: second,
            write: first,
        }
    } else {
        TrafficKeys {
            read: first,
            write: second,
        }
    }
}

/// Noise's `h` (SHA-256 suites: 32 bytes).
pub(crate) fn handshake_hash(state: &HandshakeState) -> [u8; 32] {
    state
        .get_handshake_hash()
        .try_into()
        .expect("SHA-256 hash is 32 bytes")
}

/// snow's default primitives, with the operating system's randomness through `rand_core`.
pub(crate) struct Resolver;

struct OsRandom;

impl Random for OsRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        OsRng.try_fill_bytes(dest).map_err(|_| snow::Error::Rng)
    }
}

/// snow's P-256 DH with ephemeral generation that cannot panic.
///
/// snow 0.10 turns 32 random bytes into a scalar with `unwrap()`, which panics for the
/// ~2^-32 of byte strings that are zero or not below the group order: about one handshake in
/// four billion would crash the app. Here the bytes are drawn again until they form a valid
/// scalar (rejection sampling, as `p256::SecretKey::random` does) and handed to snow's `set`.
/// Everything else is snow's.
struct P256Dh(Box<dyn Dh>);

impl Dh for P256Dh {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn pub_len(&self) -> usize {
        self.0.pub_len()
    }
    fn priv_len(&self) -> usize {
        self.0.priv_len()
    }
    fn dh_len(&self) -> usize {
        self.0.dh_len()
    }
    fn set(&mut self, privkey: &[u8]) {
        self.0.set(privkey);
    }
    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        loop {
            rng.try_fill_bytes(bytes.as_mut())?;
            if SecretKey::from_slice(bytes.as_ref()).is_ok() {
                self.0.set(bytes.as_ref());
                return Ok(());
            }
        }
    }
    fn pubkey(&self) -> &[u8] {
        self.0.pubkey()
    }
    fn privkey(&self) -> &[u8] {
        self.0.privkey()
    }
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        self.0.dh(pubkey, out)
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(OsRandom))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        let dh = DefaultResolver.resolve_dh(choice)?;
        Some(match choice {
            DHChoice::P256 => Box::new(P256Dh(dh)),
            _ => dh,
        })
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    /// Yields 32 bytes of 0xff (not a valid scalar: above the group order), then 0x01s.
    struct OverOrderFirst(bool);

    impl Random for OverOrderFirst {
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
            dest.fill(if self.0 { 0x01 } else { 0xff });
            self.0 = true;
            Ok(())
        }
    }

    #[test]
    fn ephemeral_generation_redraws_invalid_scalars() {
        let mut dh = Resolver.resolve_dh(&DHChoice::P256).unwrap();
        dh.generate(&mut OverOrderFirst(false)).unwrap();
        assert_eq!(dh.privkey(), &[0x01; 32]);
        let expected = SecretKey::from_slice(&[0x01; 32])
            .unwrap()
            .public_key()
            .to_encoded_point(false);
        assert_eq!(dh.pubkey(), expected.as_bytes());
        assert_eq!(dh.pub_len(), 65);
        assert_eq!(dh.name(), "P256");
    }

    #[test]
    fn snow_alone_panics_on_invalid_scalars() {
        // Why P256Dh exists. If a snow upgrade makes this fail, P256Dh can go.
        let mut dh = DefaultResolver.resolve_dh(&DHChoice::P256).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = dh.generate(&mut OverOrderFirst(false));
        }));
        assert!(result.is_err());
    }
}
