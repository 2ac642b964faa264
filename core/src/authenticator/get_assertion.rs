//! authenticatorGetAssertion (CTAP 2.1 §6.2.2) and authenticatorGetNextAssertion (§6.3).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ciborium::value::Value;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::approver::{AccountChoice, Operation};
use crate::ctap::get_assertion::{Extensions, HmacSecretInput, Request, Response};
use crate::ctap::ok_with;
use crate::ctap::shared::UserInfo;
use crate::ctap::{CtapError, CtapResult};
use crate::pin::PinProtocol;
use crate::store::CredProtect;

use super::auth_data::AuthData;
use super::credentials::{rp_id_hash, Candidate};
use super::user::{uv_error_in_request, Subject, TokenState};
use super::{Authenticator, Reply, RequestContext};
use crate::pin::Permissions;

/// GetNextAssertion must follow within 30 s (§6.3).
const NEXT_ASSERTION_WINDOW: Duration = Duration::from_secs(30);

/// The credentials left for authenticatorGetNextAssertion.
pub struct PendingAssertions {
    remaining: VecDeque<Candidate>,
    ctx: AssertionContext,
    started: Instant,
}

/// What every assertion of one request shares.
struct AssertionContext {
    rp_id_hash: [u8; 32],
    client_data_hash: [u8; 32],
    user_present: bool,
    user_verified: bool,
    extensions: Extensions,
}

impl Authenticator {
    pub(crate) fn get_assertion(&mut self, req: Request, cx: &RequestContext) -> Reply {
        self.pin_uv_preamble(&req.pin_uv_auth, cx)?;
        self.check_rp_allowed(&req.rp_id)?;
        // "rk" is not an option of getAssertion (§6.2.2 step 5).
        if req.options.rk.is_some() {
            return Err(CtapError::UnsupportedOption);
        }
        let has_token = req.pin_uv_auth.param.is_some();
        let mut uv_requested = req.options.uv.unwrap_or(false) && !has_token;
        // §6.2.2 step 4: "uv" true without a built-in user verification method is
        // CTAP2_ERR_INVALID_OPTION.
        if uv_requested && !self.has_builtin_uv()? {
            return Err(CtapError::InvalidOption);
        }
        let up_requested = req.options.up.unwrap_or(true);
        let settings = self.store.load_settings()?;
        if settings.always_uv && !has_token && !uv_requested {
            if self.has_builtin_uv()? {
                uv_requested = true;
            } else {
                return Err(CtapError::PuatRequired);
            }
        }
        let token = if has_token {
            self.check_token(
                &req.pin_uv_auth,
                &req.client_data_hash,
                Permissions::GET_ASSERTION,
                &req.rp_id,
            )?
        } else {
            TokenState::default()
        };
        let mut user_verified = token.user_verified;
        let rp_hash = rp_id_hash(&req.rp_id);
        // Locate as if verification will succeed; ask the user once, after we know there is
        // something to sign with (a phone should not prompt for nothing).
        let mut candidates =
            self.locate(&rp_hash, &req.allow_list, user_verified || uv_requested)?;
        if candidates.is_empty() {
            return Err(CtapError::NoCredentials);
        }
        let discoverable_choice = req.allow_list.is_empty() && candidates.len() > 1;
        let mut user_present = false;
        let mut chosen = None;
        if uv_requested || (up_requested && !token.user_present) {
            let subject = Subject {
                rp_id: Some(req.rp_id.clone()),
                rp_name: None,
                user_name: single_user(&candidates).and_then(|u| u.name.clone()),
                user_display_name: single_user(&candidates).and_then(|u| u.display_name.clone()),
                accounts: if discoverable_choice {
                    account_choices(&candidates)
                } else {
                    vec![]
                },
            };
            let gesture = self
                .ask_user(cx, Operation::SignIn, subject, uv_requested)
                .map_err(uv_error_in_request)?;
            user_verified |= gesture.verified;
            user_present = true;
            chosen = gesture
                .account
                .filter(|i| discoverable_choice && *i < candidates.len());
        } else if up_requested {
            user_present = true;
        }
        // The token is spent only by a request that collected presence (§6.2.2 step 9): a
        // silent (up=false) pre-flight, as clients send to filter allowLists, leaves it usable.
        if has_token && up_requested {
            let t = &mut self.volatile.token;
            t.clear_user_present();
            t.clear_user_verified();
            t.clear_permissions_except_lbw();
        }
        // credProtect level 2 hides discoverable credentials from lists-less requests unless
        // the user was verified; level 3 needs verification in every case.
        candidates.retain(|c| {
            user_verified
                || match c.cred_protect {
                    CredProtect::UserVerificationOptional => true,
                    CredProtect::UserVerificationOptionalWithCredentialIdList => {
                        !req.allow_list.is_empty()
                    }
                    CredProtect::UserVerificationRequired => false,
                }
        });
        if candidates.is_empty() {
            return Err(CtapError::NoCredentials);
        }
        let ctx = AssertionContext {
            rp_id_hash: rp_hash,
            client_data_hash: req.client_data_hash,
            user_present,
            user_verified,
            extensions: req.extensions,
        };
        let mut queue: VecDeque<Candidate> = candidates.into();
        let (first, number, selected) = match chosen {
            Some(i) => (queue.remove(i).expect("index checked"), None, true),
            None if discoverable_choice => {
                let n = queue.len() as u64;
                (queue.pop_front().expect("non-empty"), Some(n), false)
            }
            None => (queue.pop_front().expect("non-empty"), None, false),
        };
        let response = self.assert_one(&first, &ctx, number, selected)?;
        if number.is_some() && !queue.is_empty() {
            self.volatile.pending_assertions = Some(PendingAssertions {
                remaining: queue,
                ctx,
                started: Instant::now(),
            });
        }
        Ok(response)
    }

    pub(crate) fn get_next_assertion(&mut self) -> Reply {
        let mut pending = self
            .volatile
            .pending_assertions
            .take()
            .ok_or(CtapError::NotAllowed)?;
        if pending.started.elapsed() > NEXT_ASSERTION_WINDOW {
            return Err(CtapError::NotAllowed);
        }
        let next = pending.remaining.pop_front().ok_or(CtapError::NotAllowed)?;
        let response = self.assert_one(&next, &pending.ctx, None, false)?;
        if !pending.remaining.is_empty() {
            pending.started = Instant::now();
            self.volatile.pending_assertions = Some(pending);
        }
        Ok(response)
    }

    fn assert_one(
        &mut self,
        cred: &Candidate,
        ctx: &AssertionContext,
        number: Option<u64>,
        selected: bool,
    ) -> Reply {
        let text = |s: &str| Value::Text(s.to_string());
        let mut extensions = Vec::new();
        if ctx.extensions.cred_blob {
            let blob = cred
                .cred_blob
                .as_ref()
                .map(|b| b.to_vec())
                .unwrap_or_default();
            extensions.push((text("credBlob"), Value::Bytes(blob)));
        }
        // Every credential answers hmac-secret, whether or not makeCredential asked for the
        // extension (as YubiKey 5 and SoloKeys do). CTAP 2.1 §12.5 has makeCredential with
        // "hmac-secret": true make "two random 32-byte values (called CredRandomWithUV and
        // CredRandomWithoutUV)" for the credential, and getAssertion use CredRandomWithUV "if
        // uv bit is set to 1 in the response", CredRandomWithoutUV otherwise; it does not
        // forbid an output for a credential made without the extension. Ours are derived
        // from the credential's sealed private key (Candidate::cred_random), so every
        // credential has both.
        if let Some(input) = &ctx.extensions.hmac_secret {
            let output = self.hmac_secret(cred, input, ctx.user_verified)?;
            extensions.push((text("hmac-secret"), Value::Bytes(output)));
        }
        let sign_count = self.store.next_sign_count()?;
        let auth_data = AuthData {
            rp_id_hash: ctx.rp_id_hash,
            user_present: ctx.user_present,
            user_verified: ctx.user_verified,
            backup_eligible: cred.backup_eligible,
            backup_state: cred.backup_state,
            sign_count,
            attested: None,
            extensions,
        }
        .to_bytes();
        let signature = cred
            .key(&mut self.volatile.keys)?
            .sign(&[&auth_data[..], &ctx.client_data_hash].concat());
        let large_blob_key = if ctx.extensions.large_blob_key {
            cred.large_blob_key.as_ref().map(|k| k.to_vec())
        } else {
            None
        };
        Ok(ok_with(
            Response {
                credential_id: cred.id.clone(),
                auth_data,
                signature,
                // Names only after verification (§6.2.2 step 12: user-identifiable information).
                user: cred.user.clone().map(|u| (u, ctx.user_verified)),
                number_of_credentials: number,
                user_selected: selected,
                large_blob_key,
            }
            .to_value(),
        ))
    }

    /// hmac-secret (CTAP 2.1 §12.5): HMAC-SHA-256(CredRandom, salt) for one or two salts,
    /// encrypted to the platform's shared secret.
    fn hmac_secret(
        &self,
        cred: &Candidate,
        input: &HmacSecretInput,
        user_verified: bool,
    ) -> CtapResult<Vec<u8>> {
        let protocol = PinProtocol::from_u64(input.protocol)?;
        let shared = self
            .volatile
            .key_agreement
            .decapsulate(protocol, &input.key_agreement)?;
        if !shared.verify(&input.salt_enc, &input.salt_auth) {
            return Err(CtapError::PinAuthInvalid);
        }
        let salts = shared.decrypt(&input.salt_enc)?;
        if salts.len() != 32 && salts.len() != 64 {
            return Err(CtapError::InvalidLength);
        }
        let cred_random = cred.cred_random(user_verified);
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(salts.len()));
        for salt in salts.chunks(32) {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(cred_random.as_ref()).expect("any key length");
            mac.update(salt);
            out.extend_from_slice(&mac.finalize().into_bytes());
        }
        Ok(shared.encrypt(&out))
    }
}

fn single_user(candidates: &[Candidate]) -> Option<&UserInfo> {
    match candidates {
        [only] => only.user.as_ref(),
        _ => None,
    }
}

fn account_choices(candidates: &[Candidate]) -> Vec<AccountChoice> {
    candidates
        .iter()
        .map(|c| {
            let u = c.user.clone().unwrap_or_default();
            AccountChoice {
                user_name: u.name,
                display_name: u.display_name,
                user_id: u.id,
            }
        })
        .collect()
}
