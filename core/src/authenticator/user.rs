//! Asking the user (through the Approver) and checking pinUvAuthParams: the user-presence and
//! user-verification rules shared by makeCredential, getAssertion and clientPIN.

use crate::approver::{
    AccountChoice, ApprovalOutcome, ApprovalRequest, Operation, UvBinding, UvChallenge, UvProof,
};
use crate::crypto::es256;
use crate::ctap::shared::PinUvAuth;
use crate::ctap::{CtapError, CtapResult};
use crate::pin::{PinProtocol, PinUvAuthToken};
use crate::store::{Retries, StoreError, MAX_UV_RETRIES};

use super::{Authenticator, RequestContext};

/// What the platform asked the user to do, once the request's options are resolved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Gesture {
    pub present: bool,
    pub verified: bool,
    /// The account the user picked, when several were offered.
    pub account: Option<usize>,
}

/// What a valid pinUvAuthParam of makeCredential/getAssertion vouches for: the flags of the
/// pinUvAuthToken it was made with (CTAP 2.1 §6.5.2.1, the token state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TokenState {
    /// The token was obtained with user verification (PIN or built-in UV).
    pub user_verified: bool,
    /// The token's user-present flag is still set: presence was shown when it was issued and
    /// no request has consumed it since.
    pub user_present: bool,
}

/// The approval request's descriptive fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subject {
    pub rp_id: Option<String>,
    pub rp_name: Option<String>,
    pub user_name: Option<String>,
    pub user_display_name: Option<String>,
    pub accounts: Vec<AccountChoice>,
}

impl Authenticator {
    /// Asks the user and maps a refusal to its CTAP status. `verify` asks for built-in UV;
    /// a failed verification counts against uvRetries (CTAP 2.1 §6.5.5.7.3 semantics).
    ///
    /// A verified answer from a hardware-bound approver counts only with a valid proof (see
    /// [`Self::proof_holds`]). Without one the answer is OPERATION_DENIED and no retry is
    /// spent: uvRetries counts the user's failed attempts (§6.5.5.7.3 decrements it when
    /// "the user verification fails"), and a missing or forged signature is not the user
    /// failing a biometric — the OS never released the key. Nor is it taken as presence
    /// only: the platform asked for UV, and a response without it would not be what was
    /// asked for (§6.1.2 step 11, §6.2.2 step 6).
    pub(crate) fn ask_user(
        &mut self,
        cx: &RequestContext,
        operation: Operation,
        subject: Subject,
        verify: bool,
    ) -> CtapResult<Gesture> {
        if verify {
            let settings = self.store.load_settings()?;
            if settings.uv_retries == 0 {
                return Err(CtapError::UvBlocked);
            }
            let (outcome, challenge) = self.ask(cx, operation, subject, true);
            match outcome {
                ApprovalOutcome::Verified { account, proof } => {
                    // The key the prompt was issued under: one registered during the wait
                    // does not count for it.
                    if !self.proof_holds(settings.uv_public_key.as_ref(), &challenge, proof) {
                        return Err(CtapError::OperationDenied);
                    }
                    // The settings were read before the wait: write back only the retries.
                    if settings.uv_retries != MAX_UV_RETRIES {
                        self.store.refill_retries(Retries::Uv)?;
                    }
                    Ok(Gesture {
                        present: true,
                        verified: true,
                        account,
                    })
                }
                ApprovalOutcome::VerificationFailed => {
                    Err(if self.store.spend_retry(Retries::Uv)? == 0 {
                        CtapError::UvBlocked
                    } else {
                        CtapError::UvInvalid
                    })
                }
                // Approved without being verified where verification was required.
                ApprovalOutcome::Present { .. } => Err(CtapError::OperationDenied),
                other => Err(refusal(other)),
            }
        } else {
            // Only presence was asked for: a verified answer shows presence, and its proof
            // (if any) is not needed.
            match self.ask(cx, operation, subject, false).0 {
                ApprovalOutcome::Present { account }
                | ApprovalOutcome::Verified { account, .. } => Ok(Gesture {
                    present: true,
                    verified: false,
                    account,
                }),
                other => Err(refusal(other)),
            }
        }
    }

    /// Whether a verified answer is backed: always for a software approver (which says so,
    /// [`UvBinding::Software`]); for a hardware-bound one, only an ES256 signature over this
    /// prompt's challenge by the registered UV key.
    fn proof_holds(
        &self,
        uv_public_key: Option<&[u8; 65]>,
        challenge: &UvChallenge,
        proof: Option<UvProof>,
    ) -> bool {
        match self.approver.uv_binding() {
            UvBinding::Software { .. } => true,
            UvBinding::Hardware => match (uv_public_key, proof) {
                (Some(key), Some(proof)) => es256::verify(key, challenge.as_bytes(), proof.der()),
                _ => false,
            },
        }
    }

    fn ask(
        &mut self,
        cx: &RequestContext,
        operation: Operation,
        subject: Subject,
        verify: bool,
    ) -> (ApprovalOutcome, UvChallenge) {
        let challenge = UvChallenge::new(operation, subject.rp_id.as_deref());
        if cx.cancel.is_cancelled() {
            return (ApprovalOutcome::Cancelled, challenge);
        }
        let request = ApprovalRequest {
            operation,
            rp_id: subject.rp_id,
            rp_name: subject.rp_name,
            user_name: subject.user_name,
            user_display_name: subject.user_display_name,
            requester: cx.requester.clone(),
            accounts: subject.accounts,
            verification_required: verify,
            timeout: self.config.approval_timeout,
            uv_challenge: challenge.clone(),
        };
        (self.approver.approve(&request, &cx.cancel), challenge)
    }

    /// Checks a makeCredential/getAssertion pinUvAuthParam over the clientDataHash against the
    /// current token (CTAP 2.1 §6.1.2 step 11, §6.2.2 step 9), and returns the token's flags.
    pub(crate) fn check_token(
        &mut self,
        auth: &PinUvAuth,
        client_data_hash: &[u8; 32],
        permission: u8,
        rp_id: &str,
    ) -> CtapResult<TokenState> {
        let (param, protocol) = match (&auth.param, auth.protocol) {
            (Some(p), Some(v)) => (p, PinProtocol::from_u64(v)?),
            (Some(_), None) => return Err(CtapError::MissingParameter),
            _ => unreachable!("callers check for pinUvAuthParam first"),
        };
        let token = &mut self.volatile.token;
        if !token.verify(protocol, client_data_hash, param) {
            return Err(CtapError::PinAuthInvalid);
        }
        if !token.has_permission(permission) || !token.bind_or_match_rp(rp_id) {
            return Err(CtapError::PinAuthInvalid);
        }
        Ok(TokenState {
            user_verified: token.user_verified(),
            user_present: token.user_present(),
        })
    }

    /// Checks the pinUvAuthParam of a command that needs a token with `permission`
    /// (authenticatorConfig §6.11, authenticatorCredentialManagement §6.8, a largeBlobs write
    /// §6.10): `auth.param` must authenticate `message` under the current token.
    /// PUAT_REQUIRED without a param, MISSING_PARAMETER without a protocol, PIN_AUTH_INVALID
    /// for a wrong param or a token without the permission. Returns the token for further
    /// checks.
    pub(crate) fn check_command_token(
        &self,
        auth: &PinUvAuth,
        message: &[u8],
        permission: u8,
    ) -> CtapResult<&PinUvAuthToken> {
        let param = auth.param.as_ref().ok_or(CtapError::PuatRequired)?;
        let protocol = PinProtocol::from_u64(auth.protocol.ok_or(CtapError::MissingParameter)?)?;
        let token = &self.volatile.token;
        if !token.verify(protocol, message, param) || !token.has_permission(permission) {
            return Err(CtapError::PinAuthInvalid);
        }
        Ok(token)
    }

    /// Steps 1–2 of makeCredential and getAssertion (CTAP 2.1 §6.1.2, §6.2.2): a zero-length
    /// pinUvAuthParam is a platform asking "touch to pick this authenticator" — wait for
    /// presence, then say whether a PIN is set; any other pinUvAuthParam needs a supported
    /// protocol.
    pub(crate) fn pin_uv_preamble(
        &mut self,
        auth: &PinUvAuth,
        cx: &RequestContext,
    ) -> CtapResult<()> {
        match &auth.param {
            Some(p) if p.is_empty() => {
                self.ask_user(cx, Operation::Select, Subject::default(), false)?;
                let pin_set = self.store.load_settings()?.pin_hash.is_some();
                Err(if pin_set {
                    CtapError::PinInvalid
                } else {
                    CtapError::PinNotSet
                })
            }
            Some(_) => {
                PinProtocol::from_u64(auth.protocol.ok_or(CtapError::MissingParameter)?).map(|_| ())
            }
            None => Ok(()),
        }
    }

    /// Whether the key has built-in user verification: the key is configured with it, its
    /// Approver can verify the user, and — for a hardware-bound approver — a UV key is
    /// registered to check its proofs against. Drives the `uv` option of getInfo (CTAP 2.1
    /// §6.4). Without a UV key the option is absent rather than `false`: `false` means "not
    /// configured yet" and invites the platform to enroll through authenticatorBioEnrollment,
    /// which this key does not offer; the phone registers its key itself.
    pub(crate) fn has_builtin_uv(&self) -> Result<bool, StoreError> {
        if !(self.config.builtin_uv && self.approver.can_verify_user()) {
            return Ok(false);
        }
        Ok(match self.approver.uv_binding() {
            UvBinding::Software { .. } => true,
            UvBinding::Hardware => self.store.load_settings()?.uv_public_key.is_some(),
        })
    }

    /// Whether any form of user verification is configured (PIN set or built-in UV).
    pub(crate) fn uv_configured(&self) -> CtapResult<bool> {
        Ok(self.has_builtin_uv()? || self.store.load_settings()?.pin_hash.is_some())
    }
}

/// Built-in UV failing inside makeCredential/getAssertion (CTAP 2.1 §6.1.2 step 11.2, §6.2.2
/// step 6.2) reports PIN_BLOCKED / OPERATION_DENIED; UV_BLOCKED / UV_INVALID are clientPIN's.
pub(crate) fn uv_error_in_request(e: CtapError) -> CtapError {
    match e {
        CtapError::UvBlocked => CtapError::PinBlocked,
        CtapError::UvInvalid => CtapError::OperationDenied,
        other => other,
    }
}

/// How a refused approval surfaces on the wire.
pub(crate) fn refusal(outcome: ApprovalOutcome) -> CtapError {
    match outcome {
        ApprovalOutcome::Cancelled => CtapError::KeepaliveCancel,
        ApprovalOutcome::TimedOut => CtapError::UserActionTimeout,
        _ => CtapError::OperationDenied,
    }
}
