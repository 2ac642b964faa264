//! The platform side of PIN/UV auth protocols 1 and 2, written from the CTAP 2.1 text
//! (§6.5.6 protocol 1, §6.5.7 protocol 2) with the RustCrypto crates rather than with the
//! engine's own `pin` module, so that the two sides are independent.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use ciborium::value::Value;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::cbor::{as_bytes, as_int, get, imap, int};
use crate::requests::PinUvAuth;

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

/// pinUvAuthToken permission bits (CTAP 2.1 §6.5.5.7).
pub mod permission {
    pub const MAKE_CREDENTIAL: u64 = 0x01;
    pub const GET_ASSERTION: u64 = 0x02;
    pub const CREDENTIAL_MANAGEMENT: u64 = 0x04;
}

/// authenticate(key, message): HMAC-SHA-256; protocol 1 keeps the first 16 bytes.
pub fn authenticate(protocol: u64, key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(message);
    let tag = mac.finalize().into_bytes().to_vec();
    if protocol == 1 {
        tag[..16].to_vec()
    } else {
        tag
    }
}

/// The PIN, UTF-8, zero-padded to 64 bytes (CTAP 2.1 §6.5.5.5).
pub fn padded(pin: &str) -> Vec<u8> {
    let mut p = pin.as_bytes().to_vec();
    p.resize(64, 0);
    p
}

/// The first 16 bytes of SHA-256(PIN), what changePIN and getPinToken send encrypted.
pub fn pin_hash(pin: &str) -> [u8; 16] {
    Sha256::digest(pin.as_bytes())[..16].try_into().unwrap()
}

/// The platform's half of one key agreement (encapsulate, §6.5.6 / §6.5.7).
pub struct Shared {
    pub protocol: u64,
    hmac_key: [u8; 32],
    aes_key: [u8; 32],
    /// The platform key-agreement key to send (COSE_Key, alg -25).
    pub cose: Value,
}

impl Shared {
    pub fn encapsulate(protocol: u64, authenticator_key: &Value) -> Self {
        assert_eq!(as_int(get(authenticator_key, 1).unwrap()), 2, "kty EC2");
        assert_eq!(
            as_int(get(authenticator_key, 3).unwrap()),
            -25,
            "alg ECDH-ES+HKDF-256"
        );
        assert_eq!(as_int(get(authenticator_key, -1).unwrap()), 1, "crv P-256");
        let x = as_bytes(get(authenticator_key, -2).unwrap());
        let y = as_bytes(get(authenticator_key, -3).unwrap());
        let peer = p256::PublicKey::from_sec1_bytes(&[&[0x04][..], &x, &y].concat()).unwrap();
        let ephemeral = p256::ecdh::EphemeralSecret::random(&mut OsRng);
        let z = ephemeral.diffie_hellman(&peer);
        let z = z.raw_secret_bytes();
        let (mut hmac_key, mut aes_key) = ([0u8; 32], [0u8; 32]);
        match protocol {
            1 => {
                hmac_key = Sha256::digest(z).into();
                aes_key = hmac_key;
            }
            2 => {
                let hk = Hkdf::<Sha256>::new(Some(&[0u8; 32]), z);
                hk.expand(b"CTAP2 HMAC key", &mut hmac_key).unwrap();
                hk.expand(b"CTAP2 AES key", &mut aes_key).unwrap();
            }
            p => panic!("no protocol {p}"),
        }
        let point = ephemeral.public_key().to_encoded_point(false);
        let cose = imap(vec![
            (1, int(2)),
            (3, int(-25)),
            (-1, int(1)),
            (-2, Value::Bytes(point.x().unwrap().to_vec())),
            (-3, Value::Bytes(point.y().unwrap().to_vec())),
        ]);
        Self {
            protocol,
            hmac_key,
            aes_key,
            cose,
        }
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        assert_eq!(plaintext.len() % 16, 0);
        if self.protocol == 1 {
            Enc::new(&self.aes_key.into(), &[0u8; 16].into())
                .encrypt_padded_vec_mut::<NoPadding>(plaintext)
        } else {
            let mut iv = [0u8; 16];
            OsRng.fill_bytes(&mut iv);
            let ct = Enc::new(&self.aes_key.into(), &iv.into())
                .encrypt_padded_vec_mut::<NoPadding>(plaintext);
            [&iv[..], &ct].concat()
        }
    }

    pub fn decrypt(&self, ciphertext: &[u8]) -> Vec<u8> {
        let (iv, ct) = if self.protocol == 1 {
            ([0u8; 16], ciphertext)
        } else {
            (ciphertext[..16].try_into().unwrap(), &ciphertext[16..])
        };
        Dec::new(&self.aes_key.into(), &iv.into())
            .decrypt_padded_vec_mut::<NoPadding>(ct)
            .unwrap()
    }

    pub fn authenticate(&self, message: &[u8]) -> Vec<u8> {
        authenticate(self.protocol, &self.hmac_key, message)
    }
}

/// A pinUvAuthToken the platform holds.
pub struct Token {
    pub protocol: u64,
    pub secret: Vec<u8>,
}

impl Token {
    /// Decrypts the token of a getPinToken / getPinUvAuthToken… response (key 2).
    pub fn from_response(shared: &Shared, response: &Value) -> Self {
        let enc = as_bytes(get(response, 2).expect("pinUvAuthToken"));
        assert_eq!(enc.len(), if shared.protocol == 1 { 32 } else { 48 });
        Token {
            protocol: shared.protocol,
            secret: shared.decrypt(&enc),
        }
    }

    /// pinUvAuthParam over `message`, with its protocol.
    pub fn param(&self, message: &[u8]) -> PinUvAuth {
        (
            authenticate(self.protocol, &self.secret, message),
            self.protocol,
        )
    }
}
