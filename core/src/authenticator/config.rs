//! authenticatorConfig (CTAP 2.1 §6.11): enterprise attestation, alwaysUv, minimum PIN length.

use crate::ctap::command;
use crate::ctap::config::{Request, SubCommand as Sub};
use crate::ctap::{CtapError, CtapResult};

use super::{Authenticator, Reply};
use crate::pin::Permissions;

/// How many RP ids may receive the minPinLength extension.
pub(crate) const MAX_MIN_PIN_LENGTH_RP_IDS: usize = 8;

impl Authenticator {
    pub(crate) fn authenticator_config(&mut self, req: Request) -> Reply {
        if self.uv_configured()? {
            self.check_config_token(&req)?;
        }
        let mut settings = self.store.load_settings()?;
        match req.sub_command {
            Sub::EnableEnterpriseAttestation => {
                if self.config.attestation.enterprise.is_none() {
                    return Err(CtapError::InvalidCommand);
                }
                settings.enterprise_attestation = true;
            }
            Sub::ToggleAlwaysUv => {
                if settings.always_uv && self.config.always_uv_locked {
                    return Err(CtapError::OperationDenied);
                }
                settings.always_uv = !settings.always_uv;
            }
            Sub::SetMinPinLength {
                new_min_pin_length,
                rp_ids,
                force_change_pin,
            } => {
                let new_len = match new_min_pin_length {
                    Some(n) => u8::try_from(n).map_err(|_| CtapError::PinPolicyViolation)?,
                    None => settings.min_pin_length,
                };
                // The minimum may only grow (§6.11.4).
                if new_len < settings.min_pin_length {
                    return Err(CtapError::PinPolicyViolation);
                }
                if let Some(ids) = rp_ids {
                    if ids.len() > MAX_MIN_PIN_LENGTH_RP_IDS {
                        return Err(CtapError::InvalidParameter);
                    }
                    settings.min_pin_length_rp_ids = ids;
                }
                if force_change_pin && settings.pin_hash.is_none() {
                    return Err(CtapError::PinNotSet);
                }
                settings.min_pin_length = new_len;
                if force_change_pin
                    || (settings.pin_hash.is_some() && settings.pin_code_points < new_len)
                {
                    settings.force_pin_change = true;
                }
            }
        }
        self.store.save_settings(&settings)?;
        Ok(vec![0x00])
    }

    /// pinUvAuthParam = authenticate(token, 32×0xff ‖ 0x0d ‖ uint8(subCommand) ‖ subCommandParams).
    fn check_config_token(&mut self, req: &Request) -> CtapResult<()> {
        let message = [
            &[0xff; 32][..],
            &[command::CONFIG, req.sub_command_byte],
            &req.params_bytes,
        ]
        .concat();
        self.check_command_token(
            &req.pin_uv_auth,
            &message,
            Permissions::AUTHENTICATOR_CONFIG,
        )
        .map(|_| ())
    }
}
