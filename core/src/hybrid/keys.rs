//! Key derivations from the QR secret: HKDF-SHA256 with the purpose as a 32-bit little-endian
//! `info`.
//!
//! | purpose | output | salt |
//! |---|---|---|
//! | 1 EID key | 64 bytes: AES-256 key ‖ HMAC-SHA256 key for the advert | empty |
//! | 2 tunnel id | 16 bytes: names the tunnel on the tunnel server | empty |
//! | 3 PSK | 32 bytes: the Noise pre-shared key | the 16-byte EID plaintext |

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Length of the QR secret.
pub const SECRET_LEN: usize = 16;
/// Length of the tunnel id.
pub const TUNNEL_ID_LEN: usize = 16;

/// What a derived key is for; the value is HKDF's `info` (u32 little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum KeyPurpose {
    EidKey = 1,
    TunnelId = 2,
    Psk = 3,
}

/// HKDF-SHA256(IKM = `secret`, `salt`, info = `purpose` as u32 LE) filling `out`.
///
/// # Panics
/// If `out` is longer than HKDF-SHA256 can produce (255 × 32 bytes); every caller here asks for
/// at most 64.
pub fn derive(secret: &[u8], salt: &[u8], purpose: KeyPurpose, out: &mut [u8]) {
    let info = (purpose as u32).to_le_bytes();
    Hkdf::<Sha256>::new(Some(salt), secret)
        .expand(&info, out)
        .expect("HKDF-SHA256 output of at most 64 bytes is always valid");
}

/// The 64-byte key of the encrypted advert: AES-256 key ‖ HMAC-SHA256 key.
#[derive(Clone)]
pub struct EidKey(Zeroizing<[u8; 64]>);

impl EidKey {
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(Zeroizing::new(bytes))
    }
    /// The AES-256 key (first half).
    pub fn aes_key(&self) -> &[u8; 32] {
        self.0[..32].try_into().expect("32 of 64 bytes")
    }
    /// The HMAC-SHA256 key (second half).
    pub fn hmac_key(&self) -> &[u8; 32] {
        self.0[32..].try_into().expect("32 of 64 bytes")
    }
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl std::fmt::Debug for EidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EidKey(..)")
    }
}

/// The Noise pre-shared key.
pub type Psk = Zeroizing<[u8; 32]>;

/// Purpose 1 with an empty salt: the advert key.
pub fn eid_key(secret: &[u8; SECRET_LEN]) -> EidKey {
    let mut out = [0u8; 64];
    derive(secret, &[], KeyPurpose::EidKey, &mut out);
    let key = EidKey::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    key
}

/// Purpose 2 with an empty salt: the tunnel id (not secret from the tunnel server).
pub fn tunnel_id(secret: &[u8; SECRET_LEN]) -> [u8; TUNNEL_ID_LEN] {
    let mut out = [0u8; TUNNEL_ID_LEN];
    derive(secret, &[], KeyPurpose::TunnelId, &mut out);
    out
}

/// Purpose 3 salted with the EID plaintext: the Noise PSK. It binds the handshake to both the
/// QR code (secret) and the advert the browser received (EID).
pub fn psk(secret: &[u8; SECRET_LEN], eid_plaintext: &[u8; 16]) -> Psk {
    let mut out = Zeroizing::new([0u8; 32]);
    derive(secret, eid_plaintext, KeyPurpose::Psk, out.as_mut());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_give_different_keys() {
        let secret = [7u8; 16];
        let eid = eid_key(&secret);
        let tunnel = tunnel_id(&secret);
        let psk = psk(&secret, &[0u8; 16]);
        assert_ne!(&eid.as_bytes()[..16], &tunnel[..]);
        assert_ne!(&psk[..16], &tunnel[..]);
        assert_eq!(eid.aes_key(), &eid.as_bytes()[..32]);
        assert_eq!(eid.hmac_key(), &eid.as_bytes()[32..]);
    }

    #[test]
    fn info_is_u32_little_endian() {
        // Purpose 2 as info [2,0,0,0]: the same as asking HKDF directly.
        let secret = [1u8; 16];
        let mut direct = [0u8; 16];
        Hkdf::<Sha256>::new(Some(&[]), &secret)
            .expand(&[2, 0, 0, 0], &mut direct)
            .unwrap();
        assert_eq!(tunnel_id(&secret), direct);
    }

    #[test]
    fn psk_depends_on_the_eid() {
        let secret = [9u8; 16];
        assert_ne!(*psk(&secret, &[0; 16]), *psk(&secret, &[1; 16]));
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", eid_key(&[0; 16])), "EidKey(..)");
    }
}
