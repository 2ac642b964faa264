//! Mailbox addressing at the relay (docs/pairing-protocol.md §3.1).
//!
//! A mailbox joins one bridge and one phone connection. Each side holds a 32-byte attach token
//! derived from secrets only the two sides know (the QR secret for the rendezvous, the
//! static-static ECDH for a pairing); the mailbox id is a hash of the two tokens' hashes, so
//! the relay checks an attach request from the request alone and learns no key or secret:
//!
//! ```text
//! H_role = SHA256(T_role)
//! M      = SHA256("PocketKey mailbox v1" ‖ H_bridge ‖ H_phone)[0..16]
//! ```

use hkdf::Hkdf;
use p256::{PublicKey, SecretKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use super::encoding::{b64u_decode, b64u_encode, hex_decode, hex_encode};
use super::url::{compressed, PairingSecret};
use super::Role;

/// A mailbox id's length.
pub const MAILBOX_ID_LEN: usize = 16;
/// An attach token's length (and its hash's).
pub const TOKEN_LEN: usize = 32;
/// The path segment before the mailbox id: `<relay>/pair/v1/<hex id>`.
pub const PATH_PREFIX: &str = "/pair/v1/";
/// The websocket subprotocol.
pub const SUBPROTOCOL: &str = "pocketkey.pair.v1";
/// Request header: `bridge` or `phone`.
pub const HEADER_ROLE: &str = "X-PocketKey-Role";
/// Request header: b64u of our attach token.
pub const HEADER_TOKEN: &str = "X-PocketKey-Token";
/// Request header: b64u of the hash of the other side's token.
pub const HEADER_PEER: &str = "X-PocketKey-Peer";

const ID_LABEL: &[u8] = b"PocketKey mailbox v1";
const RENDEZVOUS_LABEL: &str = "PocketKey pair v1 rendezvous ";
const PAIRING_LABEL: &str = "PocketKey pair v1 mailbox ";

/// A mailbox id; for a pairing mailbox, also the pairing's id on both sides.
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

    /// The id of the mailbox whose tokens hash to `bridge_hash` and `phone_hash`.
    pub fn from_token_hashes(bridge_hash: &[u8; TOKEN_LEN], phone_hash: &[u8; TOKEN_LEN]) -> Self {
        let digest = Sha256::new()
            .chain_update(ID_LABEL)
            .chain_update(bridge_hash)
            .chain_update(phone_hash)
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

/// SHA-256 of an attach token.
pub fn token_hash(token: &[u8; TOKEN_LEN]) -> [u8; TOKEN_LEN] {
    Sha256::digest(token).into()
}

/// Both attach tokens of one mailbox (each side can compute both).
#[derive(Clone)]
pub struct MailboxKeys {
    bridge: Zeroizing<[u8; TOKEN_LEN]>,
    phone: Zeroizing<[u8; TOKEN_LEN]>,
}

impl std::fmt::Debug for MailboxKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MailboxKeys({})", self.id())
    }
}

fn expand(hk: &Hkdf<Sha256>, label: &str, role: Role) -> Zeroizing<[u8; TOKEN_LEN]> {
    let mut out = Zeroizing::new([0u8; TOKEN_LEN]);
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
        let z = p256::ecdh::diffie_hellman(our_static.to_nonzero_scalar(), peer_static.as_affine());
        let ours = compressed(&our_static.public_key());
        let theirs = compressed(peer_static);
        let (bridge_key, phone_key) = match our_role {
            Role::Bridge => (ours, theirs),
            Role::Phone => (theirs, ours),
        };
        let salt = [bridge_key.as_slice(), phone_key.as_slice()].concat();
        let hk = Hkdf::<Sha256>::new(Some(&salt), z.raw_secret_bytes());
        Self {
            bridge: expand(&hk, PAIRING_LABEL, Role::Bridge),
            phone: expand(&hk, PAIRING_LABEL, Role::Phone),
        }
    }

    pub fn token(&self, role: Role) -> &[u8; TOKEN_LEN] {
        match role {
            Role::Bridge => &self.bridge,
            Role::Phone => &self.phone,
        }
    }

    pub fn id(&self) -> MailboxId {
        MailboxId::from_token_hashes(&token_hash(&self.bridge), &token_hash(&self.phone))
    }

    /// What `role` presents to attach.
    pub fn attach(&self, role: Role) -> Attach {
        Attach {
            mailbox: self.id(),
            role,
            token: b64u_encode(self.token(role)),
            peer: b64u_encode(&token_hash(self.token(role.other()))),
        }
    }
}

/// An attach request: the path's mailbox id and the three headers.
#[derive(Clone, PartialEq, Eq)]
pub struct Attach {
    pub mailbox: MailboxId,
    pub role: Role,
    /// `X-PocketKey-Token`: b64u of our token (a bearer secret: never log it).
    pub token: String,
    /// `X-PocketKey-Peer`: b64u of the other side's token hash.
    pub peer: String,
}

impl std::fmt::Debug for Attach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attach")
            .field("mailbox", &self.mailbox)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Attach {
    /// `<relay>/pair/v1/<hex id>`, the relay's base URL without a trailing `/`.
    pub fn url(&self, relay_url: &str) -> String {
        mailbox_url(relay_url, &self.mailbox)
    }

    /// The request headers (name, value), subprotocol excluded.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            (HEADER_ROLE, self.role.as_str().to_string()),
            (HEADER_TOKEN, self.token.clone()),
            (HEADER_PEER, self.peer.clone()),
        ]
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

/// Why the relay refuses an attach request (HTTP 400 for the malformed ones, 403 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AttachError {
    #[error("the path is not {PATH_PREFIX}<32 hex digits>")]
    BadPath,
    #[error("{HEADER_ROLE} is neither `bridge` nor `phone`")]
    BadRole,
    #[error("{HEADER_TOKEN} or {HEADER_PEER} is not 32 bytes of base64url")]
    BadHeader,
    #[error("the token does not open this mailbox")]
    Forbidden,
}

impl AttachError {
    /// The HTTP status the relay answers with.
    pub fn http_status(self) -> u16 {
        match self {
            AttachError::Forbidden => 403,
            _ => 400,
        }
    }
}

/// The relay's check of an attach request (path after the relay's base, the three header
/// values): returns the mailbox and the role, or why not. Needs no stored state.
pub fn verify_attach(
    path: &str,
    role: &str,
    token: &str,
    peer: &str,
) -> Result<(MailboxId, Role), AttachError> {
    let mailbox = path
        .strip_prefix(PATH_PREFIX)
        .and_then(MailboxId::from_hex)
        .ok_or(AttachError::BadPath)?;
    let role = Role::parse(role).ok_or(AttachError::BadRole)?;
    let decode = |text: &str| -> Result<[u8; TOKEN_LEN], AttachError> {
        b64u_decode(text)
            .and_then(|b| b.try_into().ok())
            .ok_or(AttachError::BadHeader)
    };
    let own = token_hash(&Zeroizing::new(decode(token)?));
    let peer = decode(peer)?;
    let expected = match role {
        Role::Bridge => MailboxId::from_token_hashes(&own, &peer),
        Role::Phone => MailboxId::from_token_hashes(&peer, &own),
    };
    if bool::from(expected.0.ct_eq(&mailbox.0)) {
        Ok((mailbox, role))
    } else {
        Err(AttachError::Forbidden)
    }
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
        assert_eq!(on_bridge.token(Role::Phone), on_phone.token(Role::Phone));
        assert_ne!(on_bridge.token(Role::Bridge), on_bridge.token(Role::Phone));
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
    fn the_relay_verifies_attach_requests() {
        let (bridge, phone) = keys();
        let mk = MailboxKeys::pairing(&bridge, &phone.public_key(), Role::Bridge);
        for role in [Role::Bridge, Role::Phone] {
            let a = mk.attach(role);
            let path = format!("{PATH_PREFIX}{}", a.mailbox.to_hex().to_uppercase());
            assert_eq!(
                verify_attach(&path, role.as_str(), &a.token, &a.peer),
                Ok((mk.id(), role))
            );
            // The other role with this token, a swapped pair, another mailbox: refused.
            assert_eq!(
                verify_attach(&path, role.other().as_str(), &a.token, &a.peer),
                Err(AttachError::Forbidden)
            );
            let other = format!("{PATH_PREFIX}{}", "00".repeat(16));
            assert_eq!(
                verify_attach(&other, role.as_str(), &a.token, &a.peer),
                Err(AttachError::Forbidden)
            );
            // Knowing both hashes is not enough: the token itself is needed.
            let own_hash = b64u_encode(&token_hash(mk.token(role)));
            assert_eq!(
                verify_attach(&path, role.as_str(), &own_hash, &a.peer),
                Err(AttachError::Forbidden)
            );
        }
        let a = mk.attach(Role::Phone);
        let path = format!("{PATH_PREFIX}{}", a.mailbox);
        assert_eq!(
            verify_attach("/pair/v1/xyz", "phone", &a.token, &a.peer),
            Err(AttachError::BadPath)
        );
        assert_eq!(
            verify_attach(&path, "Phone", &a.token, &a.peer),
            Err(AttachError::BadRole)
        );
        assert_eq!(
            verify_attach(&path, "phone", "AAAA", &a.peer),
            Err(AttachError::BadHeader)
        );
        assert_eq!(AttachError::Forbidden.http_status(), 403);
        assert_eq!(AttachError::BadHeader.http_status(), 400);
        assert_eq!(
            a.url("wss://relay.example/base/"),
            format!("wss://relay.example/base/pair/v1/{}", a.mailbox)
        );
        assert!(!format!("{a:?}").contains(&a.token));
        assert_eq!(a.headers()[0], (HEADER_ROLE, "phone".to_string()));
    }

    proptest! {
        #[test]
        fn verify_attach_never_panics(path in "\\PC{0,60}", role in "\\PC{0,8}", token in "\\PC{0,50}", peer in "\\PC{0,50}") {
            let _ = verify_attach(&path, &role, &token, &peer);
        }
    }
}
