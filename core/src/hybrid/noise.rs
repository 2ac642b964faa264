//! The hybrid handshake: `Noise_KNpsk0_P256_AESGCM_SHA256`, prologue `0x01`.
//!
//! ```text
//! KNpsk0:
//!   -> s              (pre-message: the browser's static key, from the QR code)
//!   ...
//!   -> psk, e         browser → phone, 81 bytes: e (65, uncompressed P-256) ‖ empty payload's tag
//!   <- e, ee, se      phone → browser, 81 bytes
//! ```
//!
//! The PSK (from the QR secret and the advert's EID) proves the browser showed the QR code and
//! the phone saw it and was near (the EID came over BLE); `se` binds the browser's static key.
//! After the handshake each side holds two AES-256-GCM keys (Noise `Split()`: the first for
//! browser → phone, the second for phone → browser), handed to [`super::crypter::Crypter`].
//!
//! Noise itself is `snow` (feature `use-p256` gives P-256 DH on the `p256` crate; AES-GCM and
//! SHA-256 are its RustCrypto backends). The resolver here changes two details around snow's own
//! primitives: randomness comes from the operating system through `rand_core` (the engine's,
//! instead of a third `getrandom`), and P-256 key generation draws again when the random bytes
//! are not a valid scalar (`P256Dh`), where snow 0.10 would panic.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use rand_core::{OsRng, RngCore};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState};
use thiserror::Error;
use zeroize::Zeroizing;

/// The Noise protocol name.
pub const PROTOCOL: &str = "Noise_KNpsk0_P256_AESGCM_SHA256";
/// The prologue of QR-initiated handshakes.
pub const PROLOGUE: [u8; 1] = [0x01];
/// Both handshake messages: an uncompressed P-256 point and a 16-byte tag.
pub const HANDSHAKE_MESSAGE_LEN: usize = 81;

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoiseError {
    #[error("a handshake message is {HANDSHAKE_MESSAGE_LEN} bytes, got {0}")]
    WrongLength(usize),
    #[error("the handshake message does not authenticate (wrong PSK or static key, or tampered)")]
    Rejected,
    #[error("the peer's ephemeral key is not a valid P-256 point")]
    BadPeerKey,
    #[error("the operating system's random source failed")]
    Random,
    #[error("Noise state error: {0}")]
    Internal(String),
}

impl From<snow::Error> for NoiseError {
    fn from(e: snow::Error) -> Self {
        match e {
            snow::Error::Decrypt => Self::Rejected,
            snow::Error::Dh => Self::BadPeerKey,
            snow::Error::Rng => Self::Random,
            other => Self::Internal(other.to_string()),
        }
    }
}

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

/// What a finished handshake leaves.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub keys: TrafficKeys,
    /// Noise's `h` after the last message (binds everything both sides saw).
    pub handshake_hash: [u8; 32],
}

/// snow's default primitives, with the operating system's randomness through `rand_core`.
struct Resolver;

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

fn builder<'a>(
    psk: &'a [u8; 32],
    ephemeral: Option<&'a [u8; 32]>,
) -> Result<Builder<'a>, NoiseError> {
    let params = PROTOCOL
        .parse()
        .map_err(|e: snow::Error| NoiseError::Internal(e.to_string()))?;
    let mut builder = Builder::with_resolver(params, Box::new(Resolver))
        .prologue(&PROLOGUE)?
        .psk(0, psk)?;
    if let Some(e) = ephemeral {
        builder = builder.fixed_ephemeral_key_for_testing_only(e);
    }
    Ok(builder)
}

fn check_len(message: &[u8]) -> Result<(), NoiseError> {
    if message.len() == HANDSHAKE_MESSAGE_LEN {
        Ok(())
    } else {
        Err(NoiseError::WrongLength(message.len()))
    }
}

fn finish(mut state: HandshakeState) -> Handshake {
    debug_assert!(state.is_handshake_finished());
    let handshake_hash: [u8; 32] = state
        .get_handshake_hash()
        .try_into()
        .expect("SHA-256 hash is 32 bytes");
    let (first, second) = state.dangerously_get_raw_split();
    let (first, second) = (Zeroizing::new(first), Zeroizing::new(second));
    let keys = if state.is_initiator() {
        TrafficKeys {
            read: second,
            write: first,
        }
    } else {
        TrafficKeys {
            read: first,
            write: second,
        }
    };
    Handshake {
        keys,
        handshake_hash,
    }
}

/// The phone's side: reads the browser's first message, returns the 81-byte answer and the
/// finished handshake.
pub fn respond(
    initiator_static: &PublicKey,
    psk: &[u8; 32],
    message: &[u8],
) -> Result<([u8; HANDSHAKE_MESSAGE_LEN], Handshake), NoiseError> {
    respond_inner(initiator_static, psk, message, None)
}

/// [`respond`] with a fixed ephemeral key, for known-answer tests only: reusing an ephemeral
/// key in real handshakes breaks their secrecy.
#[doc(hidden)]
pub fn respond_with_fixed_ephemeral_for_testing(
    initiator_static: &PublicKey,
    psk: &[u8; 32],
    message: &[u8],
    ephemeral_private: &[u8; 32],
) -> Result<([u8; HANDSHAKE_MESSAGE_LEN], Handshake), NoiseError> {
    respond_inner(initiator_static, psk, message, Some(ephemeral_private))
}

fn respond_inner(
    initiator_static: &PublicKey,
    psk: &[u8; 32],
    message: &[u8],
    ephemeral: Option<&[u8; 32]>,
) -> Result<([u8; HANDSHAKE_MESSAGE_LEN], Handshake), NoiseError> {
    check_len(message)?;
    let remote = initiator_static.to_encoded_point(false);
    let mut state = builder(psk, ephemeral)?
        .remote_public_key(remote.as_bytes())?
        .build_responder()?;
    let mut payload = [0u8; HANDSHAKE_MESSAGE_LEN];
    // 81 bytes = e (65) + the empty payload's tag (16): the payload is necessarily empty.
    state.read_message(message, &mut payload)?;
    let mut out = [0u8; HANDSHAKE_MESSAGE_LEN];
    let written = state.write_message(&[], &mut out)?;
    if written != HANDSHAKE_MESSAGE_LEN {
        return Err(NoiseError::Internal(format!(
            "wrote a {written}-byte handshake message"
        )));
    }
    Ok((out, finish(state)))
}

/// The browser's side of the handshake, for tests and desktop test initiators (a phone never
/// initiates).
pub struct Initiator {
    state: HandshakeState,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Initiator(..)")
    }
}

impl Initiator {
    /// Starts a handshake with the browser's static key (the private half of the QR code's key):
    /// returns the first message.
    pub fn start(
        static_private: &SecretKey,
        psk: &[u8; 32],
    ) -> Result<(Self, [u8; HANDSHAKE_MESSAGE_LEN]), NoiseError> {
        Self::start_inner(static_private, psk, None)
    }

    /// [`Initiator::start`] with a fixed ephemeral key, for known-answer tests only.
    #[doc(hidden)]
    pub fn start_with_fixed_ephemeral_for_testing(
        static_private: &SecretKey,
        psk: &[u8; 32],
        ephemeral_private: &[u8; 32],
    ) -> Result<(Self, [u8; HANDSHAKE_MESSAGE_LEN]), NoiseError> {
        Self::start_inner(static_private, psk, Some(ephemeral_private))
    }

    fn start_inner(
        static_private: &SecretKey,
        psk: &[u8; 32],
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<(Self, [u8; HANDSHAKE_MESSAGE_LEN]), NoiseError> {
        let private = Zeroizing::new(static_private.to_bytes());
        let mut state = builder(psk, ephemeral)?
            .local_private_key(private.as_slice())?
            .build_initiator()?;
        let mut out = [0u8; HANDSHAKE_MESSAGE_LEN];
        let written = state.write_message(&[], &mut out)?;
        if written != HANDSHAKE_MESSAGE_LEN {
            return Err(NoiseError::Internal(format!(
                "wrote a {written}-byte handshake message"
            )));
        }
        Ok((Self { state }, out))
    }

    /// Reads the phone's answer and finishes the handshake.
    pub fn finish(mut self, message: &[u8]) -> Result<Handshake, NoiseError> {
        check_len(message)?;
        let mut payload = [0u8; HANDSHAKE_MESSAGE_LEN];
        self.state.read_message(message, &mut payload)?;
        Ok(finish(self.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn browser_key() -> SecretKey {
        SecretKey::from_slice(&[0x42; 32]).unwrap()
    }

    #[test]
    fn handshake_agrees() {
        let psk = [9u8; 32];
        let key = browser_key();
        let (initiator, msg1) = Initiator::start(&key, &psk).unwrap();
        let (msg2, phone) = respond(&key.public_key(), &psk, &msg1).unwrap();
        let browser = initiator.finish(&msg2).unwrap();
        assert_eq!(phone.handshake_hash, browser.handshake_hash);
        assert_eq!(*phone.keys.read, *browser.keys.write);
        assert_eq!(*phone.keys.write, *browser.keys.read);
        assert_ne!(*phone.keys.read, *phone.keys.write);
        assert_eq!(msg1[0], 0x04, "uncompressed ephemeral point");
        assert_eq!(msg2[0], 0x04);
    }

    #[test]
    fn wrong_psk_or_static_key_is_rejected() {
        let key = browser_key();
        let (_, msg1) = Initiator::start(&key, &[1; 32]).unwrap();
        assert_eq!(
            respond(&key.public_key(), &[2; 32], &msg1).unwrap_err(),
            NoiseError::Rejected
        );

        // The static key is in the hash from the pre-message on, so message 1's tag covers it.
        let other = SecretKey::from_slice(&[0x43; 32]).unwrap();
        let (_, msg1) = Initiator::start(&key, &[1; 32]).unwrap();
        assert_eq!(
            respond(&other.public_key(), &[1; 32], &msg1).unwrap_err(),
            NoiseError::Rejected
        );
    }

    #[test]
    fn every_bit_of_both_messages_matters() {
        let key = browser_key();
        let psk = [5u8; 32];
        for i in 0..HANDSHAKE_MESSAGE_LEN {
            let (_, mut msg1) = Initiator::start(&key, &psk).unwrap();
            msg1[i] ^= 0x80;
            assert!(
                respond(&key.public_key(), &psk, &msg1).is_err(),
                "flip in message 1 byte {i}"
            );
        }
        for i in 0..HANDSHAKE_MESSAGE_LEN {
            let (initiator, msg1) = Initiator::start(&key, &psk).unwrap();
            let (mut msg2, _) = respond(&key.public_key(), &psk, &msg1).unwrap();
            msg2[i] ^= 0x80;
            assert!(
                initiator.finish(&msg2).is_err(),
                "flip in message 2 byte {i}"
            );
        }
    }

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

    #[test]
    fn wrong_lengths() {
        let key = browser_key();
        assert_eq!(
            respond(&key.public_key(), &[0; 32], &[0; 80]).unwrap_err(),
            NoiseError::WrongLength(80)
        );
        assert_eq!(
            respond(&key.public_key(), &[0; 32], &[0; 82]).unwrap_err(),
            NoiseError::WrongLength(82)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn respond_never_panics(bytes in proptest::collection::vec(any::<u8>(), 81..=81)) {
            let _ = respond(&browser_key().public_key(), &[0; 32], &bytes);
        }
    }
}
