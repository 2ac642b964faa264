//! authenticatorCredentialManagement (CTAP 2.1 §6.8), also reached through the 0x41 alias.

use std::collections::VecDeque;

use crate::ctap::cred_mgmt::{Request, Response, SubCommand as Sub};
use crate::ctap::ok_with;
use crate::ctap::shared::UserInfo;
use crate::ctap::{cbor, CtapError, CtapResult};
use crate::store::{Credential, RelyingParty};

use super::{Authenticator, Reply};
use crate::pin::Permissions;
use crate::store::MAX_DISCOVERABLE_CREDENTIALS;

pub(crate) struct PendingRps(VecDeque<RelyingParty>);
pub(crate) struct PendingCredentials(VecDeque<Credential>);

impl Authenticator {
    pub(crate) fn credential_management(&mut self, req: Request) -> Reply {
        if req.sub_command.needs_auth() {
            self.volatile.pending_rps = None;
            self.volatile.pending_credentials = None;
            self.check_cm_token(&req)?;
        }
        let response = match req.sub_command {
            Sub::GetCredsMetadata => {
                let count = self.store.credential_count()?;
                Response {
                    existing_resident_credentials_count: Some(count.into()),
                    max_possible_remaining_resident_credentials_count: Some(
                        MAX_DISCOVERABLE_CREDENTIALS.saturating_sub(count).into(),
                    ),
                    ..Default::default()
                }
            }
            Sub::EnumerateRpsBegin => {
                let mut rps: VecDeque<RelyingParty> = self.store.relying_parties()?.into();
                let total = rps.len() as u64;
                let first = rps.pop_front().ok_or(CtapError::NoCredentials)?;
                self.volatile.pending_rps = Some(PendingRps(rps));
                Response {
                    total_rps: Some(total),
                    ..rp_response(first)
                }
            }
            Sub::EnumerateRpsGetNextRp => {
                let pending = self
                    .volatile
                    .pending_rps
                    .as_mut()
                    .ok_or(CtapError::NotAllowed)?;
                let next = pending.0.pop_front().ok_or(CtapError::NotAllowed)?;
                rp_response(next)
            }
            Sub::EnumerateCredentialsBegin { rp_id_hash } => {
                let mut creds: VecDeque<Credential> =
                    self.store.credentials_for_rp(&rp_id_hash)?.into();
                let first = creds.pop_front().ok_or(CtapError::NoCredentials)?;
                if !self.volatile.token.bind_or_match_rp(&first.rp_id) {
                    return Err(CtapError::PinAuthInvalid);
                }
                let total = creds.len() as u64 + 1;
                self.volatile.pending_credentials = Some(PendingCredentials(creds));
                Response {
                    total_credentials: Some(total),
                    ..credential_response(first)?
                }
            }
            Sub::EnumerateCredentialsGetNextCredential => {
                let pending = self
                    .volatile
                    .pending_credentials
                    .as_mut()
                    .ok_or(CtapError::NotAllowed)?;
                let next = pending.0.pop_front().ok_or(CtapError::NotAllowed)?;
                credential_response(next)?
            }
            Sub::DeleteCredential { credential_id } => {
                let cred = self
                    .store
                    .credential_by_id(&credential_id)?
                    .ok_or(CtapError::NoCredentials)?;
                if !self.volatile.token.bind_or_match_rp(&cred.rp_id) {
                    return Err(CtapError::PinAuthInvalid);
                }
                self.store.delete_credential(&credential_id)?;
                // A deleted credential's key does not stay parsed in memory.
                self.volatile.keys.clear();
                Response::default()
            }
            Sub::UpdateUserInformation {
                credential_id,
                user,
            } => {
                let cred = self
                    .store
                    .credential_by_id(&credential_id)?
                    .ok_or(CtapError::NoCredentials)?;
                if !self.volatile.token.bind_or_match_rp(&cred.rp_id) {
                    return Err(CtapError::PinAuthInvalid);
                }
                if cred.user_id != user.id {
                    return Err(CtapError::InvalidParameter);
                }
                self.store.update_user(
                    &credential_id,
                    user.name.as_deref(),
                    user.display_name.as_deref(),
                )?;
                Response::default()
            }
        };
        let value = response.to_value();
        if matches!(&value, ciborium::value::Value::Map(m) if m.is_empty()) {
            return Ok(vec![0x00]);
        }
        Ok(ok_with(value))
    }

    /// pinUvAuthParam = authenticate(token, subCommand ‖ subCommandParams) (§6.8.2), with a
    /// token that has the cm permission. A token from the superseded getPinToken (0x05) has
    /// only "the default permissions" mc and ga (§6.5.5.7.1 step 14), so it is refused with
    /// PIN_AUTH_INVALID here, through the 0x41 alias too: CTAP 2.1 grants cm only through
    /// getPinUvAuthTokenUsing{Pin,Uv}WithPermissions, which this key offers (getInfo
    /// `pinUvAuthToken`), and current SoloKeys firmware checks the same permission.
    fn check_cm_token(&mut self, req: &Request) -> CtapResult<()> {
        let message = [&[req.sub_command_byte][..], &req.params_bytes].concat();
        let token = self.check_command_token(
            &req.pin_uv_auth,
            &message,
            Permissions::CREDENTIAL_MANAGEMENT,
        )?;
        // Whole-authenticator views need a token not bound to one RP.
        if matches!(
            req.sub_command,
            Sub::GetCredsMetadata | Sub::EnumerateRpsBegin
        ) && token.rp_id().is_some()
        {
            return Err(CtapError::PinAuthInvalid);
        }
        Ok(())
    }
}

fn rp_response(rp: RelyingParty) -> Response {
    Response {
        rp: Some((rp.id, rp.name)),
        rp_id_hash: Some(rp.id_hash),
        ..Default::default()
    }
}

fn credential_response(c: Credential) -> CtapResult<Response> {
    let key = crate::crypto::signing::PrivateKey::from_bytes(c.algorithm, &c.private_key)
        .map_err(|_| CtapError::Other)?;
    Ok(Response {
        user: Some(UserInfo {
            id: c.user_id,
            name: c.user_name,
            display_name: c.user_display_name,
        }),
        public_key: Some(cbor::decode(&key.cose_public_key())?),
        cred_protect: Some(c.cred_protect as u64),
        large_blob_key: c.large_blob_key.map(|k| k.to_vec()),
        credential_id: Some(c.id),
        ..Default::default()
    })
}
