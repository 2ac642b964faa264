//! The platform's side of CTAP2 and U2F, for tests and benches, written apart from the engine
//! so that tests do not check the engine against itself: requests as a browser sends them,
//! the checks a platform and a relying party make on the answers, the PIN/UV auth protocols,
//! and the status codes and command bytes written out from the CTAP 2.1 text. [`key::Key`]
//! drives the engine under test with these, approvals coming from a [`approver::ScriptedApprover`].

pub mod approver;
pub mod cbor;
pub mod command;
pub mod cose;
pub mod hybrid;
pub mod key;
pub mod pin_platform;
pub mod requests;
pub mod responses;
pub mod status;
pub mod u2f;

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

pub use requests::{GetAssertion, MakeCredential};

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// 32 random bytes (a clientDataHash, a challenge, a salt).
pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b
}
