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
    Verified { account: Option<usize> },
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
            Self::Present { account } | Self::Verified { account } => account,
            _ => None,
        }
    }
}

/// Asks the user. Implementations block until an answer, the deadline, or cancellation.
pub trait Approver: Send {
    /// Whether this approver can verify the user (biometric). Drives `uv` in getInfo.
    fn can_verify_user(&self) -> bool;
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
    fn approve(&mut self, _request: &ApprovalRequest, cancel: &CancelToken) -> ApprovalOutcome {
        if cancel.is_cancelled() {
            ApprovalOutcome::Cancelled
        } else {
            ApprovalOutcome::Verified { account: None }
        }
    }
}
