//! The user-facing side of the engine: asking the user to approve an operation.
//!
//! On a phone this is a notification plus a biometric prompt; on the desktop command line it
//! is a terminal prompt or `--auto-approve`. The engine calls [`Approver::approve`] and blocks
//! until it answers; implementations must honour the [`CancelToken`] and their own deadline.

use crate::cancel::CancelToken;
use std::time::Duration;

/// What is being approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create a credential (WebAuthn registration).
    Register,
    /// Sign in with an existing credential.
    SignIn,
    /// Verify the user to hand the computer a pinUvAuthToken (built-in UV, clientPIN 0x06).
    VerifyUser,
    /// Prove presence for a U2F (CTAP1) registration or authentication.
    U2fRegister,
    U2fSignIn,
    /// Touch to select this authenticator among several (authenticatorSelection).
    Select,
    /// Erase every credential and the PIN (authenticatorReset).
    Reset,
}

/// One account the user may choose between when signing in with discoverable credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChoice {
    pub user_name: Option<String>,
    pub display_name: Option<String>,
    /// The WebAuthn user handle (opaque bytes chosen by the relying party).
    pub user_id: Vec<u8>,
}

/// Who sent the request, as the user should see it ("Work laptop", "a nearby browser").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester(pub String);

impl Default for Requester {
    fn default() -> Self {
        Requester("this computer".to_string())
    }
}

impl Operation {
    /// The operation's byte in a [`UvChallenge`].
    pub fn code(self) -> u8 {
        match self {
            Self::Register => 1,
            Self::SignIn => 2,
            Self::VerifyUser => 3,
            Self::U2fRegister => 4,
            Self::U2fSignIn => 5,
            Self::Select => 6,
            Self::Reset => 7,
        }
    }
}

/// What a hardware-bound verification signs for one prompt (see docs/apps.md, "User
/// verification bound to hardware"):
///
/// `"PocketKey UV v1\0"` ‖ operation code (1 byte) ‖ SHA-256(rp id) (32 zero bytes without
/// one) ‖ a fresh random nonce (32 bytes).
///
/// The nonce is new for every prompt and the engine checks the signature only against the
/// challenge of the prompt it is waiting for, so a signature made for one prompt (or a copy
/// of an old one) answers no other. The operation and site are in the signed bytes so that
/// the statement the phone's key signs says what was approved.
#[derive(Clone, PartialEq, Eq)]
pub struct UvChallenge(Vec<u8>);

impl UvChallenge {
    pub const PREFIX: &'static [u8] = b"PocketKey UV v1\0";
    pub const LEN: usize = Self::PREFIX.len() + 1 + 32 + 32;

    /// A challenge with a fresh nonce from the operating system's generator.
    pub fn new(operation: Operation, rp_id: Option<&str>) -> Self {
        use rand_core::{OsRng, RngCore};
        let mut nonce = [0u8; 32];
        OsRng.fill_bytes(&mut nonce);
        Self::with_nonce(operation, rp_id, &nonce)
    }

    fn with_nonce(operation: Operation, rp_id: Option<&str>, nonce: &[u8; 32]) -> Self {
        use sha2::{Digest, Sha256};
        let rp_hash: [u8; 32] = rp_id.map_or([0; 32], |id| Sha256::digest(id).into());
        let mut bytes = Vec::with_capacity(Self::LEN);
        bytes.extend_from_slice(Self::PREFIX);
        bytes.push(operation.code());
        bytes.extend_from_slice(&rp_hash);
        bytes.extend_from_slice(nonce);
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for UvChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UvChallenge({} bytes)", self.0.len())
    }
}

/// The longest DER encoding of a P-256 ECDSA signature (SEQUENCE of two 33-byte INTEGERs).
pub const MAX_UV_PROOF_LEN: usize = 72;

/// A verified answer's proof: the DER ES256 signature over the prompt's [`UvChallenge`] made
/// by the phone's UV key (which the OS releases only after a biometric check). Fixed-size so
/// that an [`ApprovalOutcome`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UvProof {
    der: [u8; MAX_UV_PROOF_LEN],
    len: u8,
}

impl UvProof {
    /// `None` when `der` is longer than any P-256 signature can be.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        if der.len() > MAX_UV_PROOF_LEN {
            return None;
        }
        let mut fixed = [0u8; MAX_UV_PROOF_LEN];
        fixed[..der.len()].copy_from_slice(der);
        Some(Self {
            der: fixed,
            len: der.len() as u8,
        })
    }

    pub fn der(&self) -> &[u8] {
        &self.der[..self.len as usize]
    }
}

impl std::fmt::Debug for UvProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UvProof({} bytes)", self.len)
    }
}

/// How an approver's "verified" is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UvBinding {
    /// A verified answer must carry a [`UvProof`] that checks against the UV key registered
    /// in the store; the key offers built-in user verification only once one is registered.
    Hardware,
    /// The approver verifies the user in software (a terminal prompt, `--auto-approve`, a
    /// test): its verified answers are believed as they are. `reason` says so to the person
    /// running it.
    Software { reason: &'static str },
}

/// Everything the user needs to see to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    pub operation: Operation,
    /// Relying party id (a domain), when the operation concerns one.
    pub rp_id: Option<String>,
    pub rp_name: Option<String>,
    pub user_name: Option<String>,
    pub user_display_name: Option<String>,
    pub requester: Requester,
    /// Accounts to choose from (sign-in with several discoverable credentials). Empty otherwise.
    pub accounts: Vec<AccountChoice>,
    /// Whether the engine needs the user verified (biometric), not only present.
    pub verification_required: bool,
    /// How long the engine will wait before treating silence as a timeout.
    pub timeout: Duration,
    /// What a [`UvBinding::Hardware`] approver signs to answer `Verified`.
    pub uv_challenge: UvChallenge,
}

/// How the user answered.
///
/// `account` is the index, into the request's `accounts`, of the account a person picked from
/// the list they were shown. `None` means nobody picked one (an approver without a screen, or a
/// person who only approved): the engine then behaves as an authenticator without a display,
/// returning numberOfCredentials and serving the rest through authenticatorGetNextAssertion
/// (CTAP 2.1 §6.2.2 step 12), and sets userSelected only for a person's pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// The user confirmed presence (tap) without being verified.
    Present { account: Option<usize> },
    /// The user was verified (Face ID, fingerprint, device credential). Implies presence.
    /// `proof` is the signature over the request's `uv_challenge`; a
    /// [`UvBinding::Hardware`] approver's answer without a valid one is not believed.
    Verified {
        account: Option<usize>,
        proof: Option<UvProof>,
    },
    /// The user said no.
    Denied,
    /// Nobody answered before the deadline.
    TimedOut,
    /// The request was cancelled (CTAPHID CANCEL, the browser went away).
    Cancelled,
    /// Verification was attempted and failed (wrong finger); counts against uvRetries.
    VerificationFailed,
}

impl ApprovalOutcome {
    pub fn is_present(self) -> bool {
        matches!(self, Self::Present { .. } | Self::Verified { .. })
    }
    pub fn is_verified(self) -> bool {
        matches!(self, Self::Verified { .. })
    }
    pub fn account(self) -> Option<usize> {
        match self {
            Self::Present { account } | Self::Verified { account, .. } => account,
            _ => None,
        }
    }
}

/// Asks the user. Implementations block until an answer, the deadline, or cancellation.
pub trait Approver: Send {
    /// Whether this approver can verify the user (biometric). Drives `uv` in getInfo.
    fn can_verify_user(&self) -> bool;
    /// Whether its verified answers come with proof from hardware.
    fn uv_binding(&self) -> UvBinding;
    fn approve(&mut self, request: &ApprovalRequest, cancel: &CancelToken) -> ApprovalOutcome;
}

/// Approves everything with verification: for unattended tests (`--auto-approve`). It picks no
/// account — no person saw a list — so several discoverable credentials come back as a key
/// without a display returns them.
#[derive(Debug, Default, Clone)]
pub struct AutoApprover;

impl Approver for AutoApprover {
    fn can_verify_user(&self) -> bool {
        true
    }
    fn uv_binding(&self) -> UvBinding {
        UvBinding::Software {
            reason: "--auto-approve, nobody is asked; not bound to hardware",
        }
    }
    fn approve(&mut self, _request: &ApprovalRequest, cancel: &CancelToken) -> ApprovalOutcome {
        if cancel.is_cancelled() {
            ApprovalOutcome::Cancelled
        } else {
            ApprovalOutcome::Verified {
                account: None,
                proof: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_bind_operation_site_and_a_fresh_nonce() {
        let a = UvChallenge::new(Operation::Register, Some("example.com"));
        let b = UvChallenge::new(Operation::Register, Some("example.com"));
        assert_eq!(a.as_bytes().len(), UvChallenge::LEN);
        assert_ne!(a, b, "a fresh nonce each time");
        let n = [7u8; 32];
        let reg = UvChallenge::with_nonce(Operation::Register, Some("example.com"), &n);
        let sign = UvChallenge::with_nonce(Operation::SignIn, Some("example.com"), &n);
        let other = UvChallenge::with_nonce(Operation::Register, Some("example.org"), &n);
        let none = UvChallenge::with_nonce(Operation::Register, None, &n);
        assert_ne!(reg, sign);
        assert_ne!(reg, other);
        assert_ne!(reg, none);
        assert!(reg.as_bytes().starts_with(UvChallenge::PREFIX));
    }

    #[test]
    fn proofs_hold_at_most_a_p256_signature() {
        assert_eq!(UvProof::from_der(&[1; 72]).unwrap().der(), &[1; 72][..]);
        assert_eq!(UvProof::from_der(&[]).unwrap().der(), &[] as &[u8]);
        assert!(UvProof::from_der(&[1; 73]).is_none());
        assert_eq!(
            format!("{:?}", UvProof::from_der(&[9; 70]).unwrap()),
            "UvProof(70 bytes)"
        );
    }
}
