//! The confirmation code of first contact (docs/pairing-protocol.md §5.3): six decimal digits
//! both sides derive from the XKpsk3 handshake hash, shown on the phone and on the computer,
//! so that the user confirms on the computer that the phone asking to pair is the one in
//! their hand (and not someone who scanned or photographed the QR code first).
//!
//! `code = u64(HKDF(ikm = h, salt = none, info = "PocketKey pair v1 confirmation code", 8)) mod
//! 10^6`, written with leading zeros. The handshake hash `h` covers the whole transcript
//! including the PSK (Noise §9: `MixKeyAndHash(psk)` mixes into `h`), so only the two ends of
//! the handshake know it; a different phone's handshake gives another code.

use hkdf::Hkdf;
use sha2::Sha256;

const LABEL: &[u8] = b"PocketKey pair v1 confirmation code";
/// Six digits: a one-in-a-million chance that another handshake shows the same code.
pub const CODE_DIGITS: usize = 6;
const MODULUS: u64 = 1_000_000;

/// The code the user compares on both screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmationCode(u32);

impl ConfirmationCode {
    /// The code of the handshake whose hash is `handshake_hash` (the same on both sides).
    pub fn derive(handshake_hash: &[u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(None, handshake_hash);
        let mut okm = [0u8; 8];
        hk.expand(LABEL, &mut okm)
            .expect("8 bytes is a valid HKDF-SHA256 length");
        // 2^64 mod 10^6 is negligible next to 2^64: no visible bias.
        Self((u64::from_be_bytes(okm) % MODULUS) as u32)
    }

    pub fn value(self) -> u32 {
        self.0
    }
}

/// The six digits, leading zeros kept ("004217").
impl std::fmt::Display for ConfirmationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:0width$}", self.0, width = CODE_DIGITS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // Computed independently: HKDF-SHA256 (RFC 5869) with an empty salt, the first 8
        // bytes of the output read big-endian, modulo 10^6.
        assert_eq!(ConfirmationCode::derive(&[0; 32]).to_string(), KAT_ZERO);
        assert_eq!(ConfirmationCode::derive(&[0xa5; 32]).to_string(), KAT_A5);
    }

    #[test]
    fn six_digits_with_leading_zeros() {
        assert_eq!(ConfirmationCode(42).to_string(), "000042");
        for seed in 0..64u8 {
            let code = ConfirmationCode::derive(&[seed; 32]);
            assert_eq!(code.to_string().len(), CODE_DIGITS);
            assert!(code.value() < 1_000_000);
        }
    }

    const KAT_ZERO: &str = "789300";
    const KAT_A5: &str = "253784";
}
