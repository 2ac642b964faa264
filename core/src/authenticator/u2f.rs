//! CTAP1/U2F over CTAPHID MSG (FIDO U2F Raw Message Formats v1.2): VERSION, REGISTER,
//! AUTHENTICATE. Key handles are the same sealed credential IDs as CTAP2 non-discoverable
//! credentials, bound to the application parameter.

use crate::approver::Operation;
use crate::attestation::fresh_u2f_attestation;
use crate::credential_id::WrappedCredential;
use crate::crypto::signing::PrivateKey;
use crate::store::{Algorithm, CredProtect};

use super::user::Subject;
use super::{Authenticator, RequestContext};

/// ISO 7816 status words.
pub mod sw {
    pub const NO_ERROR: u16 = 0x9000;
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    pub const COMMAND_NOT_ALLOWED: u16 = 0x6986;
    pub const WRONG_DATA: u16 = 0x6A80;
    pub const WRONG_LENGTH: u16 = 0x6700;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const WRONG_P1P2: u16 = 0x6B00;
    pub const NO_PRECISE_DIAGNOSIS: u16 = 0x6F00;
}

const INS_REGISTER: u8 = 0x01;
const INS_AUTHENTICATE: u8 = 0x02;
const INS_VERSION: u8 = 0x03;
const AUTH_ENFORCE: u8 = 0x03;
const AUTH_CHECK_ONLY: u8 = 0x07;
const AUTH_DONT_ENFORCE: u8 = 0x08;

/// A parsed command APDU (ISO 7816-4, short or extended length).
#[derive(Debug, PartialEq, Eq)]
pub struct Apdu<'a> {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: &'a [u8],
}

impl<'a> Apdu<'a> {
    /// Returns the status word to answer with when the APDU is malformed.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, u16> {
        let (header, body) = bytes.split_at_checked(4).ok_or(sw::WRONG_LENGTH)?;
        let (cla, ins, p1, p2) = (header[0], header[1], header[2], header[3]);
        let data: &[u8] = match body {
            // Case 1: no body.
            [] => &[],
            // Short Le only.
            [_le] => &[],
            // Extended: 0x00 ‖ Lc (2 bytes) ‖ data ‖ [Le (2 bytes)], or 0x00 ‖ Le (2 bytes).
            [0x00, rest @ ..] if rest.len() >= 2 => {
                let lc = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let after = &rest[2..];
                if after.is_empty() {
                    &[] // Extended Le only.
                } else if after.len() == lc || after.len() == lc + 2 {
                    &after[..lc]
                } else {
                    return Err(sw::WRONG_LENGTH);
                }
            }
            // Short: Lc (1 byte) ‖ data ‖ [Le (1 byte)].
            [lc, rest @ ..] => {
                let lc = *lc as usize;
                if rest.len() == lc || rest.len() == lc + 1 {
                    &rest[..lc]
                } else {
                    return Err(sw::WRONG_LENGTH);
                }
            }
        };
        Ok(Self {
            cla,
            ins,
            p1,
            p2,
            data,
        })
    }
}

fn status(sw: u16) -> Vec<u8> {
    sw.to_be_bytes().to_vec()
}

fn with_status(mut data: Vec<u8>, sw: u16) -> Vec<u8> {
    data.extend_from_slice(&sw.to_be_bytes());
    data
}

impl Authenticator {
    pub(crate) fn u2f(&mut self, bytes: &[u8], cx: &RequestContext) -> Vec<u8> {
        // CTAP 2.1 §7.2 (Always Require User Verification): while alwaysUv is on, CTAP1/U2F is
        // disabled — U2F can only prove presence. Every APDU is refused as OpenSK's ctap1.rs
        // does (SW_COMMAND_NOT_ALLOWED), and getInfo drops "U2F_V2".
        match self.store.load_settings() {
            Ok(settings) if settings.always_uv => return status(sw::COMMAND_NOT_ALLOWED),
            Ok(_) => {}
            Err(_) => return status(sw::NO_PRECISE_DIAGNOSIS),
        }
        let apdu = match Apdu::parse(bytes) {
            Ok(a) => a,
            Err(sw) => return status(sw),
        };
        if apdu.cla != 0 {
            return status(sw::CLA_NOT_SUPPORTED);
        }
        match apdu.ins {
            INS_VERSION if apdu.data.is_empty() => with_status(b"U2F_V2".to_vec(), sw::NO_ERROR),
            INS_VERSION => status(sw::WRONG_LENGTH),
            INS_REGISTER => self.u2f_register(&apdu, cx),
            INS_AUTHENTICATE => self.u2f_authenticate(&apdu, cx),
            _ => status(sw::INS_NOT_SUPPORTED),
        }
    }

    fn u2f_presence(&mut self, cx: &RequestContext, op: Operation) -> bool {
        self.ask_user(cx, op, Subject::default(), false).is_ok()
    }

    /// REGISTER: challenge (32) ‖ application (32) → 0x05 ‖ public key (65) ‖ L ‖ key handle ‖
    /// attestation certificate ‖ signature over 0x00 ‖ application ‖ challenge ‖ key handle ‖ key.
    fn u2f_register(&mut self, apdu: &Apdu, cx: &RequestContext) -> Vec<u8> {
        if apdu.data.len() != 64 {
            return status(sw::WRONG_LENGTH);
        }
        let (challenge, application) = apdu.data.split_at(32);
        let application: [u8; 32] = application.try_into().expect("32 bytes");
        if !self.u2f_presence(cx, Operation::U2fRegister) {
            return status(sw::CONDITIONS_NOT_SATISFIED);
        }
        let key = PrivateKey::generate(Algorithm::Es256);
        let key_handle = self.ids.wrap(
            &application,
            &WrappedCredential {
                algorithm: Algorithm::Es256,
                cred_protect: CredProtect::UserVerificationOptional,
                hmac_secret: false,
                private_key: key.secret_bytes(),
                cred_blob: None,
            },
        );
        let public = key.p256_public_sec1().expect("ES256 key");
        let fresh;
        let (attestation_key, certificate) = match &self.config.attestation.batch {
            Some(batch) if !batch.chain.is_empty() => (&batch.key, &batch.chain[0]),
            _ => match fresh_u2f_attestation() {
                Ok(pair) => {
                    fresh = pair;
                    (&fresh.0, &fresh.1)
                }
                Err(_) => return status(sw::NO_PRECISE_DIAGNOSIS),
            },
        };
        let signed = [&[0x00][..], &application, challenge, &key_handle, &public].concat();
        let signature = attestation_key.sign(&signed);
        let mut out = vec![0x05];
        out.extend_from_slice(&public);
        out.push(key_handle.len() as u8);
        out.extend_from_slice(&key_handle);
        out.extend_from_slice(certificate);
        out.extend_from_slice(&signature);
        with_status(out, sw::NO_ERROR)
    }

    /// AUTHENTICATE: challenge (32) ‖ application (32) ‖ L ‖ key handle → presence (1) ‖
    /// counter (4) ‖ signature over application ‖ presence ‖ counter ‖ challenge.
    fn u2f_authenticate(&mut self, apdu: &Apdu, cx: &RequestContext) -> Vec<u8> {
        let Some((&kh_len, rest)) = apdu.data.get(64..).and_then(|r| r.split_first()) else {
            return status(sw::WRONG_LENGTH);
        };
        if rest.len() != kh_len as usize {
            return status(sw::WRONG_LENGTH);
        }
        let challenge = &apdu.data[..32];
        let application: [u8; 32] = apdu.data[32..64].try_into().expect("32 bytes");
        let Some(wrapped) = self.ids.unwrap(&application, rest) else {
            return status(sw::WRONG_DATA);
        };
        // CTAP 2.1 §12.1: a userVerificationRequired credential is usable only when the user
        // was verified, which U2F never does. Such a key handle answers as an unknown one
        // (OpenSK's ctap1.rs filters it the same way), before anyone is asked to touch.
        if wrapped.algorithm != Algorithm::Es256
            || wrapped.cred_protect == CredProtect::UserVerificationRequired
        {
            return status(sw::WRONG_DATA);
        }
        let presence = match apdu.p1 {
            AUTH_CHECK_ONLY => return status(sw::CONDITIONS_NOT_SATISFIED),
            AUTH_ENFORCE => {
                if !self.u2f_presence(cx, Operation::U2fSignIn) {
                    return status(sw::CONDITIONS_NOT_SATISFIED);
                }
                0x01
            }
            AUTH_DONT_ENFORCE => 0x00,
            _ => return status(sw::WRONG_P1P2),
        };
        let Ok(counter) = self.store.next_sign_count() else {
            return status(sw::CONDITIONS_NOT_SATISFIED);
        };
        let Ok(key) = self
            .volatile
            .keys
            .get(rest, Algorithm::Es256, &wrapped.private_key)
        else {
            return status(sw::WRONG_DATA);
        };
        let signed = [
            &application[..],
            &[presence],
            &counter.to_be_bytes(),
            challenge,
        ]
        .concat();
        let mut out = vec![presence];
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend(key.sign(&signed));
        with_status(out, sw::NO_ERROR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apdu_short_and_extended_forms() {
        assert_eq!(Apdu::parse(&[0, 3, 0, 0]).unwrap().data, &[] as &[u8]);
        assert_eq!(Apdu::parse(&[0, 3, 0, 0, 0]).unwrap().data, &[] as &[u8]);
        assert_eq!(Apdu::parse(&[0, 1, 0, 0, 2, 9, 9]).unwrap().data, &[9, 9]);
        assert_eq!(
            Apdu::parse(&[0, 1, 0, 0, 0, 0, 2, 9, 9]).unwrap().data,
            &[9, 9]
        );
        assert_eq!(
            Apdu::parse(&[0, 1, 0, 0, 0, 0, 2, 9, 9, 0, 0])
                .unwrap()
                .data,
            &[9, 9]
        );
        assert_eq!(
            Apdu::parse(&[0, 1, 0, 0, 0, 0, 3, 9, 9]),
            Err(sw::WRONG_LENGTH)
        );
        assert_eq!(Apdu::parse(&[0, 1, 0]), Err(sw::WRONG_LENGTH));
        assert_eq!(Apdu::parse(&[0, 1, 0, 0, 5, 1]), Err(sw::WRONG_LENGTH));
    }
}
