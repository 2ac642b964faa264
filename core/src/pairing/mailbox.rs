//! Mailbox addressing and attach at the relay (docs/pairing-protocol.md §3.1).
//!
//! A mailbox joins one bridge and one phone connection. Each side derives a 32-byte attach
//! seed for each role from secrets only the two sides know (the QR secret for the rendezvous,
//! the static-static ECDH for a pairing) and from it an Ed25519 *attach key* per role. The
//! mailbox id is a hash of the two attach public keys, so the relay checks an attach from the
//! request alone, with nothing stored, and learns only public keys:
//!
//! ```text
//! A_role = Ed25519 public key of the seed S_role
//! M      = SHA256("PocketKey mailbox v2" ‖ A_bridge ‖ A_phone)[0..16]
//! ```
//!
//! Attach is a challenge–response: after the websocket upgrade the relay sends CHALLENGE
//! (32 random bytes), the client answers ATTACH = role ‖ A_own ‖ A_peer ‖ a signature over
//! the nonce, the mailbox and the role ([`AttachProof`]). A recorded attach does not open the
//! mailbox again (the nonce differs), and the relay itself cannot attach (it never sees a
//! seed).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use super::encoding::{hex_decode, hex_encode};
use super::url::{compressed, PairingSecret};
use super::Role;
use crate::crypto::es256::EcdhKey;

/// A mailbox id's length.
pub const MAILBOX_ID_LEN: usize = 16;
/// An attach seed's length.
pub const SEED_LEN: usize = 32;
/// An attach public key's length (Ed25519).
pub const ATTACH_KEY_LEN: usize = 32;
/// The relay's attach nonce length.
pub const NONCE_LEN: usize = 32;
/// An attach signature's length (Ed25519).
pub const SIGNATURE_LEN: usize = 64;
/// The ATTACH frame's payload: role ‖ own key ‖ peer key ‖ signature.
pub const PROOF_LEN: usize = 1 + 2 * ATTACH_KEY_LEN + SIGNATURE_LEN;
/// The path segment before the mailbox id: `<relay>/pair/v1/<hex id>`.
pub const PATH_PREFIX: &str = "/pair/v1/";
/// The websocket subprotocol.
pub const SUBPROTOCOL: &str = "pocketkey.pair.v1";
/// The request header of the bearer-token attach this protocol replaced; a relay answers a
/// request carrying it with 400 and a message saying so.
pub const LEGACY_TOKEN_HEADER: &str = "X-PocketKey-Token";

const ID_LABEL: &[u8] = b"PocketKey mailbox v2";
const SIGN_LABEL: &[u8] = b"PocketKey attach v1\0";
const RENDEZVOUS_LABEL: &str = "PocketKey pair v1 rendezvous ";
const PAIRING_LABEL: &str = "PocketKey pair v1 mailbox ";

/// A mailbox id; for a pairing mailbox made since attach keys exist, also the pairing's id on
/// both sides (older records keep the id they were stored with: find them with
/// `PairingStore::by_mailbox`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId(pub [u8; MAILBOX_ID_LEN]);

/// Pairings are named by their mailbox.
pub type PairingId = MailboxId;

impl MailboxId {
    /// Lower-case hex (32 digits), as in the relay path and push payloads.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// From 32 hex digits, either case.
    pub fn from_hex(text: &str) -> Option<Self> {
        hex_decode(text).map(Self)
    }

    /// The id of the mailbox whose attach public keys are `bridge` and `phone`.
    pub fn from_attach_keys(bridge: &[u8; ATTACH_KEY_LEN], phone: &[u8; ATTACH_KEY_LEN]) -> Self {
        let digest = Sha256::new()
            .chain_update(ID_LABEL)
            .chain_update(bridge)
            .chain_update(phone)
            .finalize();
        Self(
            digest[..MAILBOX_ID_LEN]
                .try_into()
                .expect("SHA-256 is longer than 16 bytes"),
        )
    }
}

impl std::fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MailboxId({})", self.to_hex())
    }
}

impl std::fmt::Display for MailboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Both attach seeds of one mailbox (each side can compute both).
#[derive(Clone)]
pub struct MailboxKeys {
    bridge: Zeroizing<[u8; SEED_LEN]>,
    phone: Zeroizing<[u8; SEED_LEN]>,
}

impl std::fmt::Debug for MailboxKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MailboxKeys({})", self.id())
    }
}

fn expand(hk: &Hkdf<Sha256>, label: &str, role: Role) -> Zeroizing<[u8; SEED_LEN]> {
    let mut out = Zeroizing::new([0u8; SEED_LEN]);
    hk.expand_multi_info(&[label.as_bytes(), role.as_str().as_bytes()], out.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

impl MailboxKeys {
    /// The first-contact rendezvous, from the pairing URL's `k` and `s`.
    pub fn rendezvous(bridge_key: &PublicKey, secret: &PairingSecret) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(&compressed(bridge_key)), secret.expose());
        Self {
            bridge: expand(&hk, RENDEZVOUS_LABEL, Role::Bridge),
            phone: expand(&hk, RENDEZVOUS_LABEL, Role::Phone),
        }
    }

    /// A pairing's mailbox, from our static key, the peer's and our role.
    pub fn pairing(our_static: &SecretKey, peer_static: &PublicKey, our_role: Role) -> Self {
        // The engine's ECDH (es256.rs); importing the scalar there also yields our public
        // point, faster than `p256` would compute it.
        let ecdh = EcdhKey::from_scalar(&Zeroizing::new(our_static.to_bytes())[..])
            .expect("a p256 secret key is a valid scalar");
        let z = ecdh
            .agree(peer_static.to_encoded_point(false).as_bytes())
            .expect("a p256 public key is on the curve");
        let ours = compressed(
            &PublicKey::from_sec1_bytes(ecdh.public_point()).expect("the engine's point is valid"),
        );
        let theirs = compressed(peer_static);
        let (bridge_key, phone_key) = match our_role {
            Role::Bridge => (ours, theirs),
            Role::Phone => (theirs, ours),
        };
        let salt = [bridge_key.as_slice(), phone_key.as_slice()].concat();
        let hk = Hkdf::<Sha256>::new(Some(&salt), &z[..]);
        Self {
            bridge: expand(&hk, PAIRING_LABEL, Role::Bridge),
            phone: expand(&hk, PAIRING_LABEL, Role::Phone),
        }
    }

    fn signing_key(&self, role: Role) -> SigningKey {
        SigningKey::from_bytes(match role {
            Role::Bridge => &self.bridge,
            Role::Phone => &self.phone,
        })
    }

    /// The attach public key of `role`.
    pub fn attach_key(&self, role: Role) -> [u8; ATTACH_KEY_LEN] {
        self.signing_key(role).verifying_key().to_bytes()
    }

    pub fn id(&self) -> MailboxId {
        MailboxId::from_attach_keys(
            &self.attach_key(Role::Bridge),
            &self.attach_key(Role::Phone),
        )
    }

    /// What `role` needs to attach: the mailbox and its own attach key.
    pub fn attach(&self, role: Role) -> Attach {
        Attach {
            mailbox: self.id(),
            role,
            key: self.signing_key(role),
            peer: self.attach_key(role.other()),
        }
    }
}

/// One side's attach: the mailbox, our role and attach key, the peer's attach public key.
#[derive(Clone)]
pub struct Attach {
    pub mailbox: MailboxId,
    pub role: Role,
    /// Our attach private key (zeroized on drop; never logged).
    key: SigningKey,
    peer: [u8; ATTACH_KEY_LEN],
}

impl PartialEq for Attach {
    fn eq(&self, other: &Self) -> bool {
        self.mailbox == other.mailbox
            && self.role == other.role
            && self.key.to_bytes() == other.key.to_bytes()
            && self.peer == other.peer
    }
}

impl Eq for Attach {}

impl std::fmt::Debug for Attach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attach")
            .field("mailbox", &self.mailbox)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The signed message: label ‖ M ‖ role byte ‖ nonce.
fn signed_message(mailbox: &MailboxId, role: Role, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    [SIGN_LABEL, &mailbox.0, &[role.to_byte()], nonce].concat()
}

impl Attach {
    /// `<relay>/pair/v1/<hex id>`, the relay's base URL without a trailing `/`.
    pub fn url(&self, relay_url: &str) -> String {
        mailbox_url(relay_url, &self.mailbox)
    }

    /// The answer to the relay's CHALLENGE `nonce` (the ATTACH frame's content).
    pub fn respond(&self, nonce: &[u8; NONCE_LEN]) -> AttachProof {
        let signature = self
            .key
            .sign(&signed_message(&self.mailbox, self.role, nonce));
        AttachProof {
            role: self.role,
            key: self.key.verifying_key().to_bytes(),
            peer: self.peer,
            signature: signature.to_bytes(),
        }
    }
}

/// The content of an ATTACH frame: our role, our attach public key, the peer's, and our
/// signature over the relay's nonce. Nothing in it opens the mailbox a second time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachProof {
    pub role: Role,
    pub key: [u8; ATTACH_KEY_LEN],
    pub peer: [u8; ATTACH_KEY_LEN],
    pub signature: [u8; SIGNATURE_LEN],
}

impl AttachProof {
    /// `role byte ‖ key ‖ peer ‖ signature` ([`PROOF_LEN`] bytes).
    pub fn encode(&self) -> Vec<u8> {
        [
            &[self.role.to_byte()][..],
            &self.key,
            &self.peer,
            &self.signature,
        ]
        .concat()
    }

    /// Exactly [`PROOF_LEN`] bytes with a known role byte.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != PROOF_LEN {
            return None;
        }
        let role = Role::from_byte(bytes[0])?;
        let key = bytes[1..33].try_into().ok()?;
        let peer = bytes[33..65].try_into().ok()?;
        let signature = bytes[65..].try_into().ok()?;
        Some(Self {
            role,
            key,
            peer,
            signature,
        })
    }
}

/// The websocket URL of a mailbox.
pub fn mailbox_url(relay_url: &str, mailbox: &MailboxId) -> String {
    format!(
        "{}{PATH_PREFIX}{}",
        relay_url.trim_end_matches('/'),
        mailbox.to_hex()
    )
}

/// Why the relay refuses an attach (HTTP 400 for a bad path; close 4003 for a bad proof).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AttachError {
    #[error("the path is not {PATH_PREFIX}<32 hex digits>")]
    BadPath,
    #[error("the attach proof does not open this mailbox")]
    Forbidden,
}

/// The mailbox id of an attach request's path (after the relay's base).
pub fn parse_path(path: &str) -> Result<MailboxId, AttachError> {
    path.strip_prefix(PATH_PREFIX)
        .and_then(MailboxId::from_hex)
        .ok_or(AttachError::BadPath)
}

/// The relay's check of an ATTACH answering its `nonce` on `mailbox`: the two attach keys
/// must hash to the mailbox id in role order, and the signature must verify (strictly: no
/// small-order keys, canonical signatures) under the sender's key. Returns the role. Needs no
/// stored state.
pub fn verify_attach(
    mailbox: MailboxId,
    nonce: &[u8; NONCE_LEN],
    proof: &AttachProof,
) -> Result<Role, AttachError> {
    let expected = match proof.role {
        Role::Bridge => MailboxId::from_attach_keys(&proof.key, &proof.peer),
        Role::Phone => MailboxId::from_attach_keys(&proof.peer, &proof.key),
    };
    if !bool::from(expected.0.ct_eq(&mailbox.0)) {
        return Err(AttachError::Forbidden);
    }
    let key = VerifyingKey::from_bytes(&proof.key).map_err(|_| AttachError::Forbidden)?;
    let signature = Signature::from_bytes(&proof.signature);
    key.verify_strict(&signed_message(&mailbox, proof.role, nonce), &signature)
        .map_err(|_| AttachError::Forbidden)?;
    Ok(proof.role)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> (SecretKey, SecretKey) {
        (
            SecretKey::from_slice(&[0x21; 32]).unwrap(),
            SecretKey::from_slice(&[0x22; 32]).unwrap(),
        )
    }

    #[test]
    fn both_sides_derive_the_same_pairing_mailbox() {
        let (bridge, phone) = keys();
        let on_bridge = MailboxKeys::pairing(&bridge, &phone.public_key(), Role::Bridge);
        let on_phone = MailboxKeys::pairing(&phone, &bridge.public_key(), Role::Phone);
        assert_eq!(on_bridge.id(), on_phone.id());
        assert_eq!(
            on_bridge.attach_key(Role::Phone),
            on_phone.attach_key(Role::Phone)
        );
        assert_ne!(
            on_bridge.attach_key(Role::Bridge),
            on_bridge.attach_key(Role::Phone)
        );
        // Another phone key: another mailbox.
        let other = SecretKey::from_slice(&[0x23; 32]).unwrap();
        assert_ne!(
            MailboxKeys::pairing(&bridge, &other.public_key(), Role::Bridge).id(),
            on_bridge.id()
        );
    }

    #[test]
    fn rendezvous_depends_on_key_and_secret() {
        let (bridge, _) = keys();
        let s1 = PairingSecret::new(&[1; 32]).unwrap();
        let s2 = PairingSecret::new(&[2; 32]).unwrap();
        let a = MailboxKeys::rendezvous(&bridge.public_key(), &s1);
        assert_eq!(
            a.id(),
            MailboxKeys::rendezvous(&bridge.public_key(), &s1).id()
        );
        assert_ne!(
            a.id(),
            MailboxKeys::rendezvous(&bridge.public_key(), &s2).id()
        );
        let other = SecretKey::from_slice(&[0x23; 32]).unwrap().public_key();
        assert_ne!(a.id(), MailboxKeys::rendezvous(&other, &s1).id());
    }

    #[test]
    fn the_relay_verifies_attach_proofs() {
        let (bridge, phone) = keys();
        let mk = MailboxKeys::pairing(&bridge, &phone.public_key(), Role::Bridge);
        let nonce = [7u8; NONCE_LEN];
        for role in [Role::Bridge, Role::Phone] {
            let a = mk.attach(role);
            let proof = a.respond(&nonce);
            assert_eq!(AttachProof::decode(&proof.encode()), Some(proof.clone()));
            assert_eq!(verify_attach(mk.id(), &nonce, &proof), Ok(role));
            // Another nonce (a recorded answer replayed), another mailbox: refused.
            assert_eq!(
                verify_attach(mk.id(), &[8; NONCE_LEN], &proof),
                Err(AttachError::Forbidden)
            );
            assert_eq!(
                verify_attach(MailboxId([0; 16]), &nonce, &proof),
                Err(AttachError::Forbidden)
            );
            // The same proof claiming the other role, or with the keys swapped: refused.
            let claimed = AttachProof {
                role: role.other(),
                ..proof.clone()
            };
            assert_eq!(
                verify_attach(mk.id(), &nonce, &claimed),
                Err(AttachError::Forbidden)
            );
            let swapped = AttachProof {
                role: role.other(),
                key: proof.peer,
                peer: proof.key,
                ..proof.clone()
            };
            assert_eq!(
                verify_attach(mk.id(), &nonce, &swapped),
                Err(AttachError::Forbidden)
            );
            let mut damaged = proof.clone();
            damaged.signature[5] ^= 1;
            assert_eq!(
                verify_attach(mk.id(), &nonce, &damaged),
                Err(AttachError::Forbidden)
            );
        }
        let a = mk.attach(Role::Phone);
        assert_eq!(parse_path("/pair/v1/xyz"), Err(AttachError::BadPath));
        assert_eq!(
            parse_path(&format!(
                "{PATH_PREFIX}{}",
                a.mailbox.to_hex().to_uppercase()
            )),
            Ok(mk.id())
        );
        assert_eq!(
            a.url("wss://relay.example/base/"),
            format!("wss://relay.example/base/pair/v1/{}", a.mailbox)
        );
        assert!(!format!("{a:?}").contains("key"));
        assert_eq!(AttachProof::decode(&[0u8; PROOF_LEN]), None);
        assert_eq!(AttachProof::decode(&[1u8; PROOF_LEN - 1]), None);
    }

    /// Known answer, computed independently (Python `cryptography`, RFC 8032 keys from the
    /// seeds): the mailbox id and the phone's ATTACH for the nonce 00 01 … 1f. The same
    /// bytes are the fuzz seeds `attach_*`.
    #[test]
    fn attach_known_answer() {
        let keys = MailboxKeys {
            bridge: Zeroizing::new([0x11; SEED_LEN]),
            phone: Zeroizing::new([0x22; SEED_LEN]),
        };
        assert_eq!(keys.id().to_hex(), "f4266eefbfb4896b020474207553778f");
        let nonce: [u8; NONCE_LEN] = core::array::from_fn(|i| i as u8);
        let expected = [
            "02a09aa5f47a6759802ff955f8dc2d2a14a5c99d23be97f864127ff9383455a4",
            "f0d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c97787",
            "37c3f12105965a897dfa72823155e8df9213fc37e32b6d6cc4e10a54d9412d88",
            "f9559f116acf0dcf27cd6e0dab8ee81d7426a240e0b467786956131a525730b1",
            "0b",
        ]
        .concat();
        assert_eq!(
            hex_encode(&keys.attach(Role::Phone).respond(&nonce).encode()),
            expected
        );
    }

    proptest! {
        #[test]
        fn verify_attach_never_panics(bytes in proptest::collection::vec(any::<u8>(), PROOF_LEN..=PROOF_LEN), nonce in any::<[u8; 32]>()) {
            if let Some(proof) = AttachProof::decode(&bytes) {
                let _ = verify_attach(MailboxId([1; 16]), &nonce, &proof);
            }
        }
    }
}
