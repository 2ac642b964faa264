//! What the engine's Noise handshakes (hybrid's KNpsk0, pairing's XKpsk3 and KK) share around
//! `snow`: the crypto resolver and the split into [`TrafficKeys`].
//!
//! The resolver is snow's default primitives with two changes: randomness comes from the
//! operating system through `rand_core` (the engine's, instead of a third `getrandom`), and
//! P-256 is the engine's own ([`P256Dh`] on [`EcdhKey`], `aws-lc-rs`): key generation that
//! cannot fail where snow 0.10 would panic, faster agreement, and the private key wiped on drop.

use rand_core::{OsRng, RngCore};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::HandshakeState;
use zeroize::Zeroizing;

use super::es256::{EcdhKey, POINT_LEN, SCALAR_LEN};

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

/// Noise's P-256 DH (`DH()` = the x-coordinate of the shared point, 32 bytes, as snow's own
/// and the caBLE/Noise P-256 convention) on the engine's [`EcdhKey`].
///
/// Ephemeral keys come from the backend's generator (the operating system's randomness, like
/// the resolver's `rng`, which snow passes in and which is therefore not used here), which
/// returns only valid scalars, where snow 0.10 turns 32 random bytes into a scalar with
/// `unwrap()` and would panic for the ~2^-32 of byte strings that are zero or not below the
/// group order. A static key handed in by `set` that is not a valid scalar leaves no key: the
/// public key reads as zeros and every DH fails, with no panic.
#[derive(Default)]
struct P256Dh {
    key: Option<EcdhKey>,
    scalar: Zeroizing<[u8; SCALAR_LEN]>,
}

const NO_KEY: [u8; POINT_LEN] = [0; POINT_LEN];

impl P256Dh {
    fn install(&mut self, key: EcdhKey) {
        self.scalar = key.scalar();
        self.key = Some(key);
    }
}

impl Dh for P256Dh {
    fn name(&self) -> &'static str {
        "P256"
    }
    fn pub_len(&self) -> usize {
        POINT_LEN
    }
    fn priv_len(&self) -> usize {
        SCALAR_LEN
    }
    fn dh_len(&self) -> usize {
        32
    }
    fn set(&mut self, privkey: &[u8]) {
        match EcdhKey::from_scalar(privkey) {
            Ok(key) => self.install(key),
            Err(_) => *self = Self::default(),
        }
    }
    fn generate(&mut self, _rng: &mut dyn Random) -> Result<(), snow::Error> {
        self.install(EcdhKey::generate());
        Ok(())
    }
    fn pubkey(&self) -> &[u8] {
        self.key.as_ref().map_or(&NO_KEY, |k| k.public_point())
    }
    fn privkey(&self) -> &[u8] {
        self.scalar.as_ref()
    }
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let key = self.key.as_ref().ok_or(snow::Error::Dh)?;
        let z = key.agree(pubkey).map_err(|_| snow::Error::Dh)?;
        out.get_mut(..32)
            .ok_or(snow::Error::Dh)?
            .copy_from_slice(&z[..]);
        Ok(())
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(OsRandom))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::P256 => Some(Box::<P256Dh>::default()),
            _ => DefaultResolver.resolve_dh(choice),
        }
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

    /// Yields 32 bytes of 0xff: not a valid scalar (above the group order).
    struct OverOrder;

    impl Random for OverOrder {
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
            dest.fill(0xff);
            Ok(())
        }
    }

    #[test]
    fn ephemeral_generation_cannot_panic_and_gives_a_consistent_pair() {
        let mut dh = Resolver.resolve_dh(&DHChoice::P256).unwrap();
        dh.generate(&mut OverOrder).unwrap();
        let again = EcdhKey::from_scalar(dh.privkey()).unwrap();
        assert_eq!(dh.pubkey(), again.public_point());
        assert_eq!((dh.pub_len(), dh.priv_len(), dh.dh_len()), (65, 32, 32));
        assert_eq!(dh.name(), "P256");
    }

    #[test]
    fn dh_is_snow_s_own_for_the_same_keys() {
        // Interoperability: the same scalars give the same public keys and DH outputs as
        // snow's default P-256, so peers running snow (or any Noise P-256) agree with us.
        let mut ours = Resolver.resolve_dh(&DHChoice::P256).unwrap();
        let mut theirs = DefaultResolver.resolve_dh(&DHChoice::P256).unwrap();
        let mut peer = DefaultResolver.resolve_dh(&DHChoice::P256).unwrap();
        ours.set(&[0x11; 32]);
        theirs.set(&[0x11; 32]);
        peer.set(&[0x22; 32]);
        assert_eq!(ours.pubkey(), theirs.pubkey());
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        ours.dh(peer.pubkey(), &mut a).unwrap();
        theirs.dh(peer.pubkey(), &mut b).unwrap();
        assert_eq!(a, b);
        assert!(ours.dh(&[4; 65], &mut a).is_err(), "not on the curve");
    }

    #[test]
    fn an_invalid_static_key_fails_every_dh_without_panicking() {
        let mut dh = Resolver.resolve_dh(&DHChoice::P256).unwrap();
        dh.set(&[0xff; 32]);
        assert_eq!(dh.pubkey(), &[0; 65]);
        let peer = EcdhKey::generate();
        assert!(dh.dh(peer.public_point(), &mut [0u8; 32]).is_err());
    }

    #[test]
    fn snow_alone_panics_on_invalid_scalars() {
        // Why P256Dh generates its own keys. If a snow upgrade makes this fail, that reason
        // is gone (the speed and the wiping remain).
        let mut dh = DefaultResolver.resolve_dh(&DHChoice::P256).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = dh.generate(&mut OverOrder);
        }));
        assert!(result.is_err());
    }
}
