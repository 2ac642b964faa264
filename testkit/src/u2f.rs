//! The U2F (CTAP1) side of a platform: APDUs as CTAPHID MSG carries them, and the checks a
//! relying party makes on a registration (FIDO U2F Raw Message Formats §4, §5).

use p256::ecdsa::signature::Verifier;

use crate::approver::present;
use crate::key::Key;

const REGISTER: u8 = 0x01;
/// P1: enforce user presence and sign.
const ENFORCE_PRESENCE: u8 = 0x03;

/// An extended-length APDU (how CTAPHID MSG carries U2F): CLA INS P1 P2 00 Lc Lc data 00 00.
pub fn apdu(ins: u8, p1: u8, data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u16).to_be_bytes();
    [
        &[0x00, ins, p1, 0x00, 0x00, len[0], len[1]][..],
        data,
        &[0x00, 0x00],
    ]
    .concat()
}

/// The length of the DER item at the start of `b`.
fn der_len(b: &[u8]) -> usize {
    assert_eq!(b[0], 0x30, "a DER SEQUENCE");
    match b[1] {
        n if n < 0x80 => 2 + n as usize,
        0x81 => 3 + b[2] as usize,
        0x82 => 4 + u16::from_be_bytes([b[2], b[3]]) as usize,
        n => panic!("DER length form {n:#x}"),
    }
}

/// A U2F registration as the relying party keeps it.
pub struct Registration {
    pub public_key: p256::ecdsa::VerifyingKey,
    pub key_handle: Vec<u8>,
}

/// U2F_REGISTER with a scripted touch; checks the response's layout and that its attestation
/// signature verifies with the certificate's key.
pub fn register(key: &mut Key, challenge: &[u8; 32], application: &[u8; 32]) -> Registration {
    key.queue([present()]);
    let (body, sw) = key.u2f(&apdu(
        REGISTER,
        ENFORCE_PRESENCE,
        &[&challenge[..], application].concat(),
    ));
    assert_eq!(sw, 0x9000);
    assert_eq!(body[0], 0x05, "reserved byte");
    let user_key = &body[1..66];
    let public_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(user_key).unwrap();
    let kh_len = body[66] as usize;
    let key_handle = body[67..67 + kh_len].to_vec();
    let rest = &body[67 + kh_len..];
    let cert_len = der_len(rest);
    let cert = <x509_cert::Certificate as der::Decode>::from_der(&rest[..cert_len]).unwrap();
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let attestation_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(spki).unwrap();
    let signature = p256::ecdsa::Signature::from_der(&rest[cert_len..])
        .expect("DER signature, nothing after it");
    let signed = [&[0x00][..], application, challenge, &key_handle, user_key].concat();
    attestation_key
        .verify(&signed, &signature)
        .expect("U2F registration signature verifies");
    Registration {
        public_key,
        key_handle,
    }
}

/// U2F_AUTHENTICATE's request data: challenge, application, key handle length, key handle.
pub fn authenticate_data(
    challenge: &[u8; 32],
    application: &[u8; 32],
    key_handle: &[u8],
) -> Vec<u8> {
    [
        &challenge[..],
        application,
        &[key_handle.len() as u8],
        key_handle,
    ]
    .concat()
}
