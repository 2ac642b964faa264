//! The two Noise handshakes of the pairing protocol (docs/pairing-protocol.md §4), on snow
//! with the engine's resolver ([`crate::crypto::noise`]). The phone is always the initiator.
//!
//! ```text
//! first contact  Noise_XKpsk3_P256_AESGCM_SHA256        later sessions  Noise_KK_P256_AESGCM_SHA256
//!   <- s   (k, from the URL)                              -> s, <- s   (stored static keys)
//!   -> e, es             81 B                             -> e, es, ss   81 B
//!   <- e, ee             81 B                             <- e, ee, se   81 B
//!   -> s, se, psk        97 B
//! ```
//!
//! Every payload is empty and every message has one exact length. The first-contact prologue
//! binds the URL's name and relay URL; the session prologue binds the pairing mailbox id.

use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;
use snow::{Builder, HandshakeState};
use thiserror::Error;
use zeroize::Zeroizing;

use super::mailbox::{MailboxId, MailboxKeys};
use super::url::{compressed, PairingSecret, PairingUrl};
use super::Role;
use crate::crypto::noise::{self as shared, Resolver, TrafficKeys};

/// First contact's Noise protocol.
pub const FIRST_CONTACT_PROTOCOL: &str = "Noise_XKpsk3_P256_AESGCM_SHA256";
/// Later sessions' Noise protocol.
pub const SESSION_PROTOCOL: &str = "Noise_KK_P256_AESGCM_SHA256";
/// First contact's three message lengths.
pub const FIRST_CONTACT_MESSAGE_LENS: [usize; 3] = [81, 81, 97];
/// A session handshake's two message lengths.
pub const SESSION_MESSAGE_LENS: [usize; 2] = [81, 81];

const PSK_LABEL: &[u8] = b"PocketKey pair v1 psk";
const FIRST_CONTACT_PROLOGUE: &[u8] = b"PocketKey pair v1 first contact";
const SESSION_PROLOGUE: &[u8] = b"PocketKey pair v1 session";

/// Which handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// XKpsk3, authenticated by the QR code.
    FirstContact,
    /// KK, with the stored static keys.
    Session,
}

impl Pattern {
    fn lens(self) -> &'static [usize] {
        match self {
            Pattern::FirstContact => &FIRST_CONTACT_MESSAGE_LENS,
            Pattern::Session => &SESSION_MESSAGE_LENS,
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    #[error("handshake message {index} must be {expected} bytes, got {got}")]
    WrongLength {
        index: usize,
        expected: usize,
        got: usize,
    },
    #[error(
        "a handshake message does not authenticate (wrong key, secret, prologue, or tampered)"
    )]
    Rejected,
    #[error("the peer sent a key that is not a valid P-256 point")]
    BadPeerKey,
    #[error("the operating system's random source failed")]
    Random,
    #[error("the handshake is already finished")]
    Finished,
    #[error("Noise state error: {0}")]
    Internal(String),
}

impl From<snow::Error> for HandshakeError {
    fn from(e: snow::Error) -> Self {
        match e {
            snow::Error::Decrypt => Self::Rejected,
            snow::Error::Dh => Self::BadPeerKey,
            snow::Error::Rng => Self::Random,
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The Noise PSK of first contact: `HKDF(ikm = s, salt = k, info = "PocketKey pair v1 psk")`.
pub fn psk(bridge_key: &PublicKey, secret: &PairingSecret) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(&compressed(bridge_key)), secret.expose());
    let mut out = Zeroizing::new([0u8; 32]);
    hk.expand(PSK_LABEL, out.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

fn len_prefixed(out: &mut Vec<u8>, bytes: &[u8], width: usize) {
    let len = bytes.len().to_be_bytes();
    out.extend_from_slice(&len[len.len() - width..]);
    out.extend_from_slice(bytes);
}

/// `"PocketKey pair v1 first contact" ‖ 0 ‖ u8 len(n) ‖ n ‖ u16 len(r) ‖ r`. The URL checks keep
/// `n` ≤ 64 and `r` ≤ 256 bytes, so the lengths fit.
pub fn first_contact_prologue(name: &str, relay_url: &str) -> Vec<u8> {
    let mut out = FIRST_CONTACT_PROLOGUE.to_vec();
    out.push(0);
    len_prefixed(&mut out, name.as_bytes(), 1);
    len_prefixed(&mut out, relay_url.as_bytes(), 2);
    out
}

/// `"PocketKey pair v1 session" ‖ 0 ‖ M`.
pub fn session_prologue(mailbox: &MailboxId) -> Vec<u8> {
    let mut out = SESSION_PROLOGUE.to_vec();
    out.push(0);
    out.extend_from_slice(&mailbox.0);
    out
}

/// What a finished handshake leaves.
#[derive(Debug, Clone)]
pub struct Finished {
    pub keys: TrafficKeys,
    /// Noise's `h` after the last message.
    pub handshake_hash: [u8; 32],
    /// The peer's static key (learnt in first contact; the stored one in a session).
    pub peer_static: PublicKey,
}

/// What reading one handshake message produced.
#[derive(Debug)]
pub struct Step {
    /// Our next handshake message, to send.
    pub reply: Option<Vec<u8>>,
    /// Set once the handshake is complete on our side.
    pub finished: Option<Finished>,
}

/// One handshake in progress.
pub struct Handshake {
    state: HandshakeState,
    pattern: Pattern,
    role: Role,
    /// Messages read or written so far.
    index: usize,
    done: bool,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("pattern", &self.pattern)
            .field("role", &self.role)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

fn uncompressed(key: &PublicKey) -> Vec<u8> {
    key.to_encoded_point(false).as_bytes().to_vec()
}

fn builder<'a>(protocol: &str, prologue: &'a [u8]) -> Result<Builder<'a>, HandshakeError> {
    let params = protocol
        .parse()
        .map_err(|e: snow::Error| HandshakeError::Internal(e.to_string()))?;
    Ok(Builder::with_resolver(params, Box::new(Resolver)).prologue(prologue)?)
}

impl Handshake {
    /// The phone starts first contact from a scanned URL with its new static key for this
    /// pairing; returns the handshake and HS1.
    pub fn phone_first_contact(
        url: &PairingUrl,
        phone_static: &SecretKey,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let prologue = first_contact_prologue(&url.name, &url.relay_url);
        let psk = psk(&url.bridge_key, &url.secret);
        let private = Zeroizing::new(phone_static.to_bytes());
        let remote = uncompressed(&url.bridge_key);
        let state = builder(FIRST_CONTACT_PROTOCOL, &prologue)?
            .psk(3, &psk)?
            .local_private_key(private.as_slice())?
            .remote_public_key(&remote)?
            .build_initiator()?;
        Self::new(state, Pattern::FirstContact, Role::Phone).start()
    }

    /// The bridge waits for first contact on its offer (static key, secret, the URL's name
    /// and relay URL).
    pub fn bridge_first_contact(
        bridge_static: &SecretKey,
        url: &PairingUrl,
    ) -> Result<Self, HandshakeError> {
        let prologue = first_contact_prologue(&url.name, &url.relay_url);
        let psk = psk(&url.bridge_key, &url.secret);
        let private = Zeroizing::new(bridge_static.to_bytes());
        let state = builder(FIRST_CONTACT_PROTOCOL, &prologue)?
            .psk(3, &psk)?
            .local_private_key(private.as_slice())?
            .build_responder()?;
        Ok(Self::new(state, Pattern::FirstContact, Role::Bridge))
    }

    /// The phone starts a session of a stored pairing; returns the handshake and HS1.
    pub fn phone_session(
        our_static: &SecretKey,
        peer_static: &PublicKey,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let state = Self::session_state(our_static, peer_static, Role::Phone)?;
        Self::new(state, Pattern::Session, Role::Phone).start()
    }

    /// The bridge answers a session of a stored pairing.
    pub fn bridge_session(
        our_static: &SecretKey,
        peer_static: &PublicKey,
    ) -> Result<Self, HandshakeError> {
        let state = Self::session_state(our_static, peer_static, Role::Bridge)?;
        Ok(Self::new(state, Pattern::Session, Role::Bridge))
    }

    fn session_state(
        our_static: &SecretKey,
        peer_static: &PublicKey,
        role: Role,
    ) -> Result<HandshakeState, HandshakeError> {
        let mailbox = MailboxKeys::pairing(our_static, peer_static, role).id();
        let prologue = session_prologue(&mailbox);
        let private = Zeroizing::new(our_static.to_bytes());
        let remote = uncompressed(peer_static);
        let builder = builder(SESSION_PROTOCOL, &prologue)?
            .local_private_key(private.as_slice())?
            .remote_public_key(&remote)?;
        Ok(match role {
            Role::Phone => builder.build_initiator()?,
            Role::Bridge => builder.build_responder()?,
        })
    }

    fn new(state: HandshakeState, pattern: Pattern, role: Role) -> Self {
        Self {
            state,
            pattern,
            role,
            index: 0,
            done: false,
        }
    }

    fn start(mut self) -> Result<(Self, Vec<u8>), HandshakeError> {
        let first = self.write()?;
        Ok((self, first))
    }

    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the handshake is complete on our side.
    pub fn is_finished(&self) -> bool {
        self.done
    }

    fn write(&mut self) -> Result<Vec<u8>, HandshakeError> {
        let expected = self.pattern.lens()[self.index];
        let mut out = vec![0u8; expected];
        let written = self.state.write_message(&[], &mut out)?;
        if written != expected {
            return Err(HandshakeError::Internal(format!(
                "wrote a {written}-byte handshake message, expected {expected}"
            )));
        }
        self.index += 1;
        Ok(out)
    }

    /// Reads the peer's next handshake message; answers it and/or finishes. After an error the
    /// handshake is unusable.
    pub fn read(&mut self, message: &[u8]) -> Result<Step, HandshakeError> {
        if self.done {
            return Err(HandshakeError::Finished);
        }
        if self.state.is_my_turn() {
            return Err(HandshakeError::Internal("read while it is our turn".into()));
        }
        let expected = self.pattern.lens()[self.index];
        if message.len() != expected {
            return Err(HandshakeError::WrongLength {
                index: self.index,
                expected,
                got: message.len(),
            });
        }
        let mut payload = vec![0u8; expected];
        let payload_len = self.state.read_message(message, &mut payload)?;
        if payload_len != 0 {
            // Exact lengths make this impossible; refuse rather than ignore.
            return Err(HandshakeError::Internal(
                "non-empty handshake payload".into(),
            ));
        }
        self.index += 1;
        let reply = if !self.state.is_handshake_finished() && self.state.is_my_turn() {
            Some(self.write()?)
        } else {
            None
        };
        let finished = if self.state.is_handshake_finished() {
            self.done = true;
            Some(self.finish()?)
        } else {
            None
        };
        Ok(Step { reply, finished })
    }

    /// Split and the peer's static key (the phone finishes first contact by writing HS3, so
    /// `read` of HS2 returns both the reply and the result).
    fn finish(&mut self) -> Result<Finished, HandshakeError> {
        let peer = self
            .state
            .get_remote_static()
            .ok_or_else(|| HandshakeError::Internal("no remote static key".into()))?;
        let peer_static =
            PublicKey::from_sec1_bytes(peer).map_err(|_| HandshakeError::BadPeerKey)?;
        Ok(Finished {
            handshake_hash: shared::handshake_hash(&self.state),
            keys: shared::split(&mut self.state),
            peer_static,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::url::UrlPolicy;

    fn url(bridge: &SecretKey) -> PairingUrl {
        PairingUrl::new(
            bridge.public_key(),
            PairingSecret::new(&[7; 32]).unwrap(),
            "wss://relay.example",
            "desk",
            UrlPolicy::Strict,
        )
        .unwrap()
    }

    fn keys() -> (SecretKey, SecretKey) {
        (
            SecretKey::from_slice(&[0x31; 32]).unwrap(),
            SecretKey::from_slice(&[0x32; 32]).unwrap(),
        )
    }

    /// Runs first contact; returns (phone, bridge) results.
    fn first_contact(
        phone_url: &PairingUrl,
        bridge_url: &PairingUrl,
        phone_key: &SecretKey,
        bridge_key: &SecretKey,
    ) -> Result<(Finished, Finished), HandshakeError> {
        let (mut phone, hs1) = Handshake::phone_first_contact(phone_url, phone_key)?;
        let mut bridge = Handshake::bridge_first_contact(bridge_key, bridge_url)?;
        let hs2 = bridge.read(&hs1)?.reply.unwrap();
        let step = phone.read(&hs2)?;
        let hs3 = step.reply.unwrap();
        assert_eq!(hs3.len(), 97);
        let on_phone = step.finished.unwrap();
        let on_bridge = bridge.read(&hs3)?.finished.unwrap();
        Ok((on_phone, on_bridge))
    }

    #[test]
    fn first_contact_agrees_and_exchanges_static_keys() {
        let (bridge, phone) = keys();
        let u = url(&bridge);
        let (p, b) = first_contact(&u, &u, &phone, &bridge).unwrap();
        assert_eq!(p.handshake_hash, b.handshake_hash);
        assert_eq!(*p.keys.write, *b.keys.read);
        assert_eq!(*p.keys.read, *b.keys.write);
        assert_eq!(p.peer_static, bridge.public_key());
        assert_eq!(b.peer_static, phone.public_key());
    }

    #[test]
    fn first_contact_fails_for_any_altered_field() {
        let (bridge, phone) = keys();
        let good = url(&bridge);
        let mut wrong_secret = good.clone();
        wrong_secret.secret = PairingSecret::new(&[8; 32]).unwrap();
        let mut wrong_name = good.clone();
        wrong_name.name = "desk2".into();
        let mut wrong_relay = good.clone();
        wrong_relay.relay_url = "wss://evil.example".into();
        let mut wrong_key = good.clone();
        wrong_key.bridge_key = phone.public_key();
        for (what, phone_url) in [
            ("secret", wrong_secret),
            ("name", wrong_name),
            ("relay", wrong_relay),
            ("key", wrong_key),
        ] {
            assert_eq!(
                first_contact(&phone_url, &good, &phone, &bridge).unwrap_err(),
                HandshakeError::Rejected,
                "{what}"
            );
        }
    }

    #[test]
    fn kk_agrees_and_refuses_other_keys() {
        let (bridge, phone) = keys();
        let (mut p, hs1) = Handshake::phone_session(&phone, &bridge.public_key()).unwrap();
        let mut b = Handshake::bridge_session(&bridge, &phone.public_key()).unwrap();
        let step = b.read(&hs1).unwrap();
        let on_bridge = step.finished.unwrap();
        let on_phone = p.read(&step.reply.unwrap()).unwrap().finished.unwrap();
        assert_eq!(on_bridge.handshake_hash, on_phone.handshake_hash);
        assert_eq!(*on_bridge.keys.read, *on_phone.keys.write);
        assert!(p.read(&[0; 81]).unwrap_err() == HandshakeError::Finished);

        // A phone key the bridge does not hold (a revoked pairing's, another phone's).
        let stranger = SecretKey::from_slice(&[0x33; 32]).unwrap();
        let (_, hs1) = Handshake::phone_session(&stranger, &bridge.public_key()).unwrap();
        let mut b = Handshake::bridge_session(&bridge, &phone.public_key()).unwrap();
        assert_eq!(b.read(&hs1).unwrap_err(), HandshakeError::Rejected);
        // A bridge the phone does not expect.
        let (mut p, hs1) = Handshake::phone_session(&phone, &bridge.public_key()).unwrap();
        let mut other = Handshake::bridge_session(&stranger, &phone.public_key()).unwrap();
        assert_eq!(other.read(&hs1).unwrap_err(), HandshakeError::Rejected);
        let _ = &mut p;
    }

    #[test]
    fn every_bit_of_every_message_matters() {
        let (bridge, phone) = keys();
        let u = url(&bridge);
        for i in 0..97 {
            let (mut p, mut hs1) = Handshake::phone_first_contact(&u, &phone).unwrap();
            let mut b = Handshake::bridge_first_contact(&bridge, &u).unwrap();
            if i < 81 {
                hs1[i] ^= 0x01;
                assert!(b.read(&hs1).is_err(), "HS1 byte {i}");
                continue;
            }
            let hs2 = b.read(&hs1).unwrap().reply.unwrap();
            let mut hs3 = p.read(&hs2).unwrap().reply.unwrap();
            hs3[i] ^= 0x01;
            assert!(b.read(&hs3).is_err(), "HS3 byte {i}");
        }
        for i in 0..81 {
            let (mut p, hs1) = Handshake::phone_session(&phone, &bridge.public_key()).unwrap();
            let mut b = Handshake::bridge_session(&bridge, &phone.public_key()).unwrap();
            let mut hs2 = b.read(&hs1).unwrap().reply.unwrap();
            hs2[i] ^= 0x80;
            assert!(p.read(&hs2).is_err(), "KK HS2 byte {i}");
        }
    }

    #[test]
    fn lengths_are_exact() {
        let (bridge, _) = keys();
        let mut b = Handshake::bridge_first_contact(&bridge, &url(&bridge)).unwrap();
        assert_eq!(
            b.read(&[0; 82]).unwrap_err(),
            HandshakeError::WrongLength {
                index: 0,
                expected: 81,
                got: 82
            }
        );
    }

    #[test]
    fn prologues() {
        assert_eq!(
            first_contact_prologue("ab", "wss://r"),
            b"PocketKey pair v1 first contact\x00\x02ab\x00\x07wss://r"
        );
        assert_eq!(
            session_prologue(&MailboxId([9; 16])),
            [b"PocketKey pair v1 session\x00".as_slice(), &[9; 16]].concat()
        );
    }
}
