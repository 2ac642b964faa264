//! authenticatorMakeCredential (CTAP 2.1 §6.1.2).

use ciborium::value::Value;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::approver::Operation;
use crate::attestation::AttestationKind;
use crate::credential_id::{WrappedCredential, MAX_CRED_BLOB_LEN};
use crate::crypto::signing::PrivateKey;
use crate::ctap::make_credential::{Request, Response};
use crate::ctap::ok_with;
use crate::ctap::{CtapError, CtapResult};
use crate::store::{Algorithm, CredProtect, Credential, StoreError};

use super::auth_data::{AttestedCredential, AuthData};
use super::credentials::rp_id_hash;
use super::user::{uv_error_in_request, Subject, TokenState};
use super::{now_unix, Authenticator, Reply, RequestContext};
use crate::pin::Permissions;

impl Authenticator {
    pub(crate) fn make_credential(&mut self, req: Request, cx: &RequestContext) -> Reply {
        self.pin_uv_preamble(&req.pin_uv_auth, cx)?;
        self.check_rp_allowed(&req.rp.id)?;
        self.check_rp_registrable(&req.rp.id)?;
        // Step 3: the first algorithm we support, in the RP's order.
        let algorithm = req
            .algorithms
            .iter()
            .find_map(|a| Algorithm::from_cose_id(*a))
            .ok_or(CtapError::UnsupportedAlgorithm)?;
        // Step 4: options.
        if req.options.up == Some(false) {
            return Err(CtapError::InvalidOption);
        }
        let rk = req.options.rk.unwrap_or(false);
        let has_token = req.pin_uv_auth.param.is_some();
        // With a pinUvAuthParam the "uv" option is ignored (§6.1.2 step 5).
        let mut uv_requested = req.options.uv.unwrap_or(false) && !has_token;
        // §6.1.2 step 5: "If the authenticator does not support a built-in user verification
        // method end the operation by returning CTAP2_ERR_INVALID_OPTION" (INVALID_OPTION
        // rather than UNSUPPORTED_OPTION, for compatibility with CTAP 2.0 platforms).
        if uv_requested && !self.has_builtin_uv()? {
            return Err(CtapError::InvalidOption);
        }
        let settings = self.store.load_settings()?;
        // Step 6: alwaysUv.
        if settings.always_uv && !has_token && !uv_requested {
            if self.has_builtin_uv()? {
                uv_requested = true;
            } else {
                return Err(CtapError::PuatRequired);
            }
        }
        // Step 7 (makeCredUvNotRqd): discoverable credentials need UV once UV is configured.
        if rk && !has_token && !uv_requested && self.uv_configured()? {
            return Err(CtapError::PuatRequired);
        }
        if let Some(ep) = req.enterprise_attestation {
            if self.config.attestation.enterprise.is_none() {
                return Err(CtapError::InvalidParameter);
            }
            if ep != 1 && ep != 2 {
                return Err(CtapError::InvalidOption);
            }
        }
        let rp_hash = rp_id_hash(&req.rp.id);
        // Step 11: the token.
        let token = if has_token {
            self.check_token(
                &req.pin_uv_auth,
                &req.client_data_hash,
                Permissions::MAKE_CREDENTIAL,
                &req.rp.id,
            )?
        } else {
            TokenState::default()
        };
        let (mut user_verified, user_present) = (token.user_verified, token.user_present);
        // Step 12: excludeList.
        for d in &req.exclude_list {
            if let Some(c) = self.find_credential(&rp_hash, d)? {
                let hidden = c.cred_protect == CredProtect::UserVerificationRequired
                    && !(user_verified || uv_requested);
                if !hidden {
                    let subject = Subject {
                        rp_id: Some(req.rp.id.clone()),
                        rp_name: req.rp.name.clone(),
                        ..Default::default()
                    };
                    // Wait for presence so a page cannot silently probe which keys it knows.
                    let _ = self.ask_user(cx, Operation::Register, subject, false);
                    return Err(CtapError::CredentialExcluded);
                }
            }
        }
        let ext = &req.extensions;
        let cred_protect = match ext.cred_protect {
            None => CredProtect::UserVerificationOptional,
            Some(level) => CredProtect::from_u8(level).ok_or(CtapError::InvalidParameter)?,
        };
        if ext.large_blob_key && !rk {
            return Err(CtapError::InvalidOption);
        }
        // Steps 13–14: user verification and presence, asked once.
        if uv_requested || !user_present {
            let subject = Subject {
                rp_id: Some(req.rp.id.clone()),
                rp_name: req.rp.name.clone(),
                user_name: req.user.name.clone(),
                user_display_name: req.user.display_name.clone(),
                accounts: vec![],
            };
            let gesture = self
                .ask_user(cx, Operation::Register, subject, uv_requested)
                .map_err(uv_error_in_request)?;
            user_verified |= gesture.verified;
        }
        if has_token {
            let t = &mut self.volatile.token;
            t.clear_user_present();
            t.clear_user_verified();
            t.clear_permissions_except_lbw();
        }

        // Step 15+: the credential.
        let key = PrivateKey::generate(algorithm);
        let cred_blob = ext
            .cred_blob
            .as_ref()
            .filter(|b| b.len() <= MAX_CRED_BLOB_LEN)
            .cloned();
        let large_blob_key = (rk && ext.large_blob_key).then(|| {
            let mut k = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(k.as_mut());
            k
        });
        // A discoverable credential and the counter its response carries are committed
        // together (one durable write); a non-discoverable one only takes the counter.
        let (credential_id, sign_count) = if rk {
            let mut id = vec![0u8; 32];
            OsRng.fill_bytes(&mut id);
            let cred = Credential {
                id: id.clone(),
                rp_id: req.rp.id.clone(),
                rp_id_hash: rp_hash,
                rp_name: req.rp.name.clone(),
                user_id: req.user.id.clone(),
                user_name: req.user.name.clone(),
                user_display_name: req.user.display_name.clone(),
                algorithm,
                private_key: key.to_bytes(),
                cred_protect,
                hmac_secret: ext.hmac_secret,
                cred_blob: cred_blob.clone().map(Zeroizing::new),
                large_blob_key: large_blob_key.clone(),
                backup_eligible: self.config.backup_eligible,
                backup_state: false,
                created_at: now_unix(),
            };
            let count = self
                .store
                .insert_credential_and_count(&cred)
                .map_err(|e| match e {
                    StoreError::Full => CtapError::KeyStoreFull,
                    _ => CtapError::Other,
                })?;
            (id, count)
        } else {
            let id = self.ids.wrap(
                &rp_hash,
                &WrappedCredential {
                    algorithm,
                    cred_protect,
                    hmac_secret: ext.hmac_secret,
                    // The scalar alone: the public point would make IDs too long for an
                    // allowList of maxCredentialCountInList to fit maxMsgSize.
                    private_key: key.secret_bytes(),
                    cred_blob: cred_blob.clone().map(Zeroizing::new),
                },
            );
            (id, self.store.next_sign_count()?)
        };
        let large_blob_key = large_blob_key.map(|k| k.to_vec());

        // Extension outputs (authData).
        let mut extensions = Vec::new();
        let text = |s: &str| Value::Text(s.to_string());
        if let Some(b) = &ext.cred_blob {
            extensions.push((text("credBlob"), Value::Bool(b.len() <= MAX_CRED_BLOB_LEN)));
        }
        if ext.cred_protect.is_some() {
            extensions.push((
                text("credProtect"),
                Value::Integer((cred_protect as u8).into()),
            ));
        }
        if ext.hmac_secret {
            extensions.push((text("hmac-secret"), Value::Bool(true)));
        }
        if ext.min_pin_length && settings.min_pin_length_rp_ids.contains(&req.rp.id) {
            extensions.push((
                text("minPinLength"),
                Value::Integer(settings.min_pin_length.into()),
            ));
        }

        let cose_key = key.cose_public_key();
        let auth_data = AuthData {
            rp_id_hash: rp_hash,
            user_present: true,
            user_verified,
            backup_eligible: rk && self.config.backup_eligible,
            backup_state: false,
            sign_count,
            attested: Some(AttestedCredential {
                aaguid: self.config.aaguid,
                credential_id: &credential_id,
                cose_public_key: &cose_key,
            }),
            extensions,
        }
        .to_bytes();

        let (kind, ep_att) = self.attestation_kind(&req, &settings)?;
        let statement =
            self.config
                .attestation
                .statement(kind, &auth_data, &req.client_data_hash, &key);
        Ok(ok_with(
            Response {
                fmt: statement.fmt,
                auth_data,
                att_stmt: statement.att_stmt,
                ep_att,
                large_blob_key,
            }
            .to_value(),
        ))
    }

    fn attestation_kind(
        &self,
        req: &Request,
        settings: &crate::store::Settings,
    ) -> CtapResult<(AttestationKind, bool)> {
        if let Some(ep) = req.enterprise_attestation {
            if settings.enterprise_attestation
                && self.config.attestation.enterprise_allowed(&req.rp.id, ep)
            {
                return Ok((AttestationKind::Enterprise, true));
            }
        }
        // CTAP 2.2 attestationFormatsPreference: honour "none" when the platform puts it
        // before "packed".
        if let Some(prefs) = &req.attestation_formats_preference {
            if let Some(first) = prefs.iter().find(|f| *f == "none" || *f == "packed") {
                if first == "none" {
                    return Ok((AttestationKind::None, false));
                }
            }
        }
        Ok((AttestationKind::Batch, false))
    }
}
