//! Plain values crossing the FFI: what the app shows and what it answers.

use pocketkey_core::approver::{self, ApprovalOutcome, ApprovalRequest, UvProof};

use crate::errors::PocketKeyError;

/// What the user is asked to approve. (Not `Operation`: that name clashes with Foundation.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ApprovalOperation {
    /// Create a passkey (WebAuthn registration).
    Register,
    /// Sign in with a passkey.
    SignIn,
    /// Verify the user so the computer gets a PIN/UV token (no site yet, or the site only).
    VerifyUser,
    /// Touch to pick this security key among several.
    Select,
    /// Erase everything on the security key (asked by the computer).
    Reset,
    /// Register with a site through the old U2F protocol.
    U2fRegister,
    /// Sign in through the old U2F protocol.
    U2fSignIn,
}

impl From<approver::Operation> for ApprovalOperation {
    fn from(op: approver::Operation) -> Self {
        use approver::Operation as O;
        match op {
            O::Register => Self::Register,
            O::SignIn => Self::SignIn,
            O::VerifyUser => Self::VerifyUser,
            O::Select => Self::Select,
            O::Reset => Self::Reset,
            O::U2fRegister => Self::U2fRegister,
            O::U2fSignIn => Self::U2fSignIn,
        }
    }
}

/// One account the user can pick when signing in.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Account {
    pub user_name: Option<String>,
    pub display_name: Option<String>,
    /// The site's opaque user handle.
    pub user_id: Vec<u8>,
}

/// Everything a notification or approval sheet must show. Answer it with
/// `SecurityKey.answer(id, ...)` before `deadline_unix_ms`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ApprovalPrompt {
    /// Unique for this prompt; random, below 2^53 (safe in JSON and notification payloads).
    pub id: u64,
    pub operation: ApprovalOperation,
    /// The site (relying party id, a domain), when the operation concerns one.
    pub rp_id: Option<String>,
    pub rp_name: Option<String>,
    pub user_name: Option<String>,
    pub user_display_name: Option<String>,
    /// Who asked, as the user should see it ("Work laptop", "a nearby browser").
    pub requester: String,
    /// Accounts to choose from; empty unless several passkeys of the site fit.
    pub accounts: Vec<Account>,
    /// Whether the answer must be `ApproveVerified` (biometric or device credential).
    pub verification_required: bool,
    /// What `ApproveVerified` signs: the bytes to hand the UV key (registered with
    /// `register_uv_key`) after the OS verified the user. New for every prompt, and bound to
    /// its operation and site, so a signature answers this prompt only.
    pub uv_challenge: Vec<u8>,
    /// When the engine stops waiting, in milliseconds since the Unix epoch.
    pub deadline_unix_ms: u64,
    /// Set when an organisation asks for this registration on the user's behalf
    /// (`sync_organisation`): the app says so, naming the organisation, the site and the
    /// account, instead of showing it as a computer's request.
    #[uniffi(default = None)]
    pub on_behalf: Option<OnBehalf>,
}

/// Who a registration on the user's behalf is for: "<organisation> asks to register this key
/// with <rp_id> for <account>".
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OnBehalf {
    /// The organisation's name, as the activation returned it.
    pub organisation: String,
    /// The account the organisation registers (the job's user name).
    pub account: String,
}

impl ApprovalPrompt {
    pub(crate) fn new(
        id: u64,
        request: &ApprovalRequest,
        deadline_unix_ms: u64,
        on_behalf: Option<OnBehalf>,
    ) -> Self {
        Self {
            id,
            operation: request.operation.into(),
            rp_id: request.rp_id.clone(),
            rp_name: request.rp_name.clone(),
            user_name: request.user_name.clone(),
            user_display_name: request.user_display_name.clone(),
            requester: request.requester.0.clone(),
            accounts: request
                .accounts
                .iter()
                .map(|a| Account {
                    user_name: a.user_name.clone(),
                    display_name: a.display_name.clone(),
                    user_id: a.user_id.clone(),
                })
                .collect(),
            verification_required: request.verification_required,
            uv_challenge: request.uv_challenge.as_bytes().to_vec(),
            deadline_unix_ms,
            on_behalf,
        }
    }
}

/// The user's answer to a prompt. `account` is an index into the prompt's `accounts`
/// (ignored when the prompt offered none).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ApprovalAnswer {
    /// The user approved (a tap) without being verified.
    ApprovePresent { account: Option<u32> },
    /// The user approved and was verified (biometric or device credential). `signature` is
    /// the UV key's ES256 signature (DER) over the prompt's `uv_challenge`, made in the OS's
    /// biometric callback; the engine checks it and, if it does not hold, refuses the
    /// request (the computer sees OPERATION_DENIED) without spending a UV retry.
    ApproveVerified {
        account: Option<u32>,
        signature: Vec<u8>,
    },
    /// The user said no.
    Deny,
    /// Verification was attempted and failed; counts against the UV retries.
    VerificationFailed,
}

impl ApprovalAnswer {
    pub(crate) fn account(&self) -> Option<u32> {
        match self {
            Self::ApprovePresent { account } | Self::ApproveVerified { account, .. } => *account,
            Self::Deny | Self::VerificationFailed => None,
        }
    }

    /// The engine's outcome; `InvalidUvProof` for a signature no P-256 signature could be
    /// (empty, or longer than 72 bytes). Whether it holds is the engine's check.
    pub(crate) fn outcome(&self) -> Result<ApprovalOutcome, PocketKeyError> {
        let index = |a: Option<u32>| a.map(|i| i as usize);
        Ok(match self {
            Self::ApprovePresent { account } => ApprovalOutcome::Present {
                account: index(*account),
            },
            Self::ApproveVerified { account, signature } => ApprovalOutcome::Verified {
                account: index(*account),
                proof: Some(
                    UvProof::from_der(signature)
                        .filter(|_| !signature.is_empty())
                        .ok_or(PocketKeyError::InvalidUvProof {
                            length: signature.len() as u32,
                        })?,
                ),
            },
            Self::Deny => ApprovalOutcome::Denied,
            Self::VerificationFailed => ApprovalOutcome::VerificationFailed,
        })
    }
}

/// Why a prompt went away; the app removes its notification or sheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ApprovalClosed {
    /// `answer` was called for it.
    Answered,
    /// Nobody answered before the deadline.
    TimedOut,
    /// The computer or browser gave up, or `cancel_pending` was called.
    Cancelled,
    /// `on_approval_requested` threw; the request was denied.
    ListenerFailed,
}

/// The attestation new passkeys get by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum AttestationKind {
    /// No attestation statement.
    NoAttestation,
    /// Signed with the passkey's own key (no certificate).
    SelfAttestation,
    /// A batch certificate shared by many devices.
    Batch,
    /// An enterprise certificate unique to this device.
    Enterprise,
}

/// What the settings screen shows about the key.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct KeyInfo {
    /// The model's AAGUID in UUID form ("9b1f5c0e-7d3a-4c62-a8e1-3f6b2d4c5a71").
    pub aaguid: String,
    /// The user-visible name of this key.
    pub label: String,
    pub pin_set: bool,
    /// Whether the key verifies users itself (through the approval listener's biometric).
    pub uv_available: bool,
    /// Whether a UV key is registered (`register_uv_key`). Computers are offered built-in
    /// user verification only when both this and `uv_available` hold.
    pub uv_key_registered: bool,
    /// Passkeys stored on the key (discoverable credentials).
    pub credential_count: u32,
    pub attestation: AttestationKind,
}

/// One stored passkey.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Passkey {
    pub credential_id: Vec<u8>,
    pub user_name: Option<String>,
    pub user_display_name: Option<String>,
    pub created_at_unix: i64,
}

/// The passkeys of one site, newest first.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Site {
    pub rp_id: String,
    pub rp_name: Option<String>,
    pub passkeys: Vec<Passkey>,
}

/// `aaguid` bytes in the 8-4-4-4-12 hex form.
pub(crate) fn uuid_string(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_form() {
        let aaguid = pocketkey_core::authenticator::POCKETKEY_AAGUID;
        assert_eq!(uuid_string(&aaguid), "9b1f5c0e-7d3a-4c62-a8e1-3f6b2d4c5a71");
    }
}
