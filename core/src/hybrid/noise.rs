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
//! SHA-256 are its RustCrypto backends), through the engine's resolver in
//! [`crate::crypto::noise`] (the operating system's randomness; P-256 key generation that cannot
//! panic).

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use snow::{Builder, HandshakeState};
use thiserror::Error;
use zeroize::Zeroizing;

pub use crate::crypto::noise::TrafficKeys;
use crate::crypto::noise::{self as shared, Resolver};

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

/// What a finished handshake leaves.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub keys: TrafficKeys,
    /// Noise's `h` after the last message (binds everything both sides saw).
    pub handshake_hash: [u8; 32],
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
    let handshake_hash = shared::handshake_hash(&state);
    let keys = shared::split(&mut state);
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
/// key in real handshakes breaks their secrecy, so it exists only in this crate's tests and
/// with the `test-vectors` feature (`core/tests/hybrid_vectors.rs`), never in a product build.
#[cfg(any(test, feature = "test-vectors"))]
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

    /// [`Initiator::start`] with a fixed ephemeral key, for known-answer tests only (as
    /// [`respond_with_fixed_ephemeral_for_testing`]).
    #[cfg(any(test, feature = "test-vectors"))]
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
