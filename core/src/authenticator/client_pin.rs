//! authenticatorClientPIN (CTAP 2.1 §6.5.5): PIN set/change, token issuance with PIN or with
//! built-in user verification, retries.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::approver::Operation;
use crate::ctap::client_pin::{Request, Response, SubCommand as Sub};
use crate::ctap::ok_with;
use crate::ctap::{CtapError, CtapResult};
use crate::pin::{Permissions, PinProtocol, SharedSecret};
use crate::store::{Retries, Settings, MAX_PIN_RETRIES};

use super::user::Subject;
use super::{Authenticator, Reply, RequestContext};

/// Wrong PINs in a row before a power cycle is required (§6.5.5.5).
const STRIKES_BEFORE_POWER_CYCLE: u8 = 3;
/// A padded PIN block is 64 bytes; PINs are at most 63 bytes of UTF-8.
const PADDED_PIN_LEN: usize = 64;

impl Authenticator {
    pub(crate) fn client_pin(&mut self, req: Request, cx: &RequestContext) -> Reply {
        let response = match req.sub_command {
            // §6.5.5.2: "Authenticator responds back with pinRetries and, optionally,
            // powerCycleState" — with no error for a key without a PIN, so a fresh key answers
            // its full count (as OpenSK and SoloKeys do; YubiKeys answer PIN_NOT_SET).
            Sub::GetPinRetries => {
                let s = self.store.load_settings()?;
                Response {
                    pin_retries: Some(s.pin_retries.into()),
                    power_cycle_state: Some(
                        self.volatile.pin_strikes >= STRIKES_BEFORE_POWER_CYCLE,
                    ),
                    ..Default::default()
                }
            }
            Sub::GetUvRetries => {
                self.require_builtin_uv()?;
                Response {
                    uv_retries: Some(self.store.load_settings()?.uv_retries.into()),
                    ..Default::default()
                }
            }
            Sub::GetKeyAgreement => {
                protocol_of(&req)?;
                Response {
                    key_agreement: Some(self.volatile.key_agreement.cose_public_key()),
                    ..Default::default()
                }
            }
            Sub::SetPin => {
                self.set_pin(&req)?;
                Response::default()
            }
            Sub::ChangePin => {
                self.change_pin(&req)?;
                Response::default()
            }
            Sub::GetPinToken => {
                if req.permissions.is_some() || req.rp_id.is_some() {
                    return Err(CtapError::InvalidParameter);
                }
                // Legacy tokens carry mc and ga (§6.5.5.7.1).
                let perms = Permissions(Permissions::MAKE_CREDENTIAL | Permissions::GET_ASSERTION);
                self.token_with_pin(&req, perms, None)?
            }
            Sub::GetPinUvAuthTokenUsingPinWithPermissions => {
                let perms = self.requested_permissions(&req)?;
                self.token_with_pin(&req, perms, req.rp_id.clone())?
            }
            Sub::GetPinUvAuthTokenUsingUvWithPermissions => self.token_with_uv(&req, cx)?,
        };
        Ok(ok_with(response.to_value()))
    }

    fn shared_secret(&self, req: &Request) -> CtapResult<SharedSecret> {
        let protocol = protocol_of(req)?;
        let peer = req
            .key_agreement
            .as_ref()
            .ok_or(CtapError::MissingParameter)?;
        self.volatile.key_agreement.decapsulate(protocol, peer)
    }

    fn set_pin(&mut self, req: &Request) -> CtapResult<()> {
        let (param, new_pin_enc) = (
            required(&req.pin_uv_auth_param)?,
            required(&req.new_pin_enc)?,
        );
        let shared = self.shared_secret(req)?;
        let mut settings = self.store.load_settings()?;
        // §6.5.5.5: "If a PIN has already been set, authenticator returns PIN_AUTH_INVALID".
        if settings.pin_hash.is_some() {
            return Err(CtapError::PinAuthInvalid);
        }
        if !shared.verify(new_pin_enc, param) {
            return Err(CtapError::PinAuthInvalid);
        }
        let pin = decrypt_new_pin(&shared, new_pin_enc, &settings)?;
        store_pin(&mut settings, &pin);
        self.store.save_settings(&settings)?;
        Ok(())
    }

    fn change_pin(&mut self, req: &Request) -> CtapResult<()> {
        let param = required(&req.pin_uv_auth_param)?;
        let new_pin_enc = required(&req.new_pin_enc)?;
        let pin_hash_enc = required(&req.pin_hash_enc)?;
        let shared = self.shared_secret(req)?;
        let mut settings = self.settings_for_pin_attempt()?;
        if !shared.verify(&[&new_pin_enc[..], &pin_hash_enc[..]].concat(), param) {
            return Err(CtapError::PinAuthInvalid);
        }
        self.check_pin_hash(&shared, pin_hash_enc, &mut settings)?;
        let pin = decrypt_new_pin(&shared, new_pin_enc, &settings)?;
        let new_hash = pin_hash(&pin);
        if settings.force_pin_change && settings.pin_hash.as_deref() == Some(&new_hash) {
            return Err(CtapError::PinPolicyViolation);
        }
        store_pin(&mut settings, &pin);
        self.store.save_settings(&settings)?;
        // Every token handed out before is void.
        self.volatile.token.reset();
        Ok(())
    }

    /// Sets the first PIN from the device itself (the phone app's settings screen), with the
    /// same policy as clientPIN setPIN. `NotAllowed` if a PIN is already set,
    /// `PinPolicyViolation` if the PIN breaks the policy.
    pub fn set_pin_on_device(&mut self, pin: &str) -> CtapResult<()> {
        let mut settings = self.store.load_settings()?;
        if settings.pin_hash.is_some() {
            return Err(CtapError::NotAllowed);
        }
        check_pin_policy(pin.as_bytes(), &settings)?;
        store_pin(&mut settings, pin.as_bytes());
        self.store.save_settings(&settings)?;
        Ok(())
    }

    /// Changes the PIN from the device itself, with clientPIN changePIN's rules: the old PIN
    /// spends a retry before it is compared (`PinInvalid`, `PinBlocked`, `PinAuthBlocked`),
    /// the new one must meet the policy and, when a change is forced, differ from the old.
    /// Tokens handed out before are void.
    pub fn change_pin_on_device(&mut self, old_pin: &str, new_pin: &str) -> CtapResult<()> {
        let mut settings = self.settings_for_pin_attempt()?;
        settings.pin_retries = self.store.spend_retry(Retries::Pin)?;
        self.settle_pin_check(&pin_hash(old_pin.as_bytes()), &mut settings)?;
        check_pin_policy(new_pin.as_bytes(), &settings)?;
        if settings.force_pin_change
            && settings.pin_hash.as_deref() == Some(&pin_hash(new_pin.as_bytes()))
        {
            return Err(CtapError::PinPolicyViolation);
        }
        store_pin(&mut settings, new_pin.as_bytes());
        self.store.save_settings(&settings)?;
        self.volatile.token.reset();
        Ok(())
    }

    fn requested_permissions(&self, req: &Request) -> CtapResult<Permissions> {
        let bits = req.permissions.ok_or(CtapError::MissingParameter)?;
        if bits == 0 {
            return Err(CtapError::InvalidParameter);
        }
        // Undefined permission bits are ignored (§6.5.5.7.2 step 4); bio enrollment is not
        // something this authenticator does.
        let perms = Permissions((bits & 0x3F) as u8);
        if perms.contains(Permissions::BIO_ENROLLMENT) {
            return Err(CtapError::UnauthorizedPermission);
        }
        Ok(perms)
    }

    fn token_with_pin(
        &mut self,
        req: &Request,
        perms: Permissions,
        rp_id: Option<String>,
    ) -> CtapResult<Response> {
        let pin_hash_enc = required(&req.pin_hash_enc)?;
        let shared = self.shared_secret(req)?;
        let mut settings = self.settings_for_pin_attempt()?;
        self.check_pin_hash(&shared, pin_hash_enc, &mut settings)?;
        if settings.force_pin_change {
            return Err(CtapError::PinPolicyViolation);
        }
        Ok(self.issue_token(&shared, perms, rp_id, false))
    }

    /// getPinUvAuthTokenUsingUvWithPermissions: the phone's biometric, through the Approver,
    /// stands in for the PIN. The token carries only the permissions asked for.
    fn token_with_uv(&mut self, req: &Request, cx: &RequestContext) -> CtapResult<Response> {
        self.require_builtin_uv()?;
        let perms = self.requested_permissions(req)?;
        let shared = self.shared_secret(req)?;
        let subject = Subject {
            rp_id: req.rp_id.clone(),
            ..Default::default()
        };
        self.ask_user(cx, Operation::VerifyUser, subject, true)?;
        // The approval also proved presence: the next makeCredential/getAssertion within
        // the user-present window needs no second prompt (§6.5.5.7.3, userIsPresent).
        Ok(self.issue_token(&shared, perms, req.rp_id.clone(), true))
    }

    /// getPinUvAuthTokenUsingUvWithPermissions and getUVRetries belong to built-in user
    /// verification: "This subCommand is only applicable when the authenticator supports
    /// built-in user verification methods" (§6.5.5.7.3). Without it (no `uv` option in
    /// getInfo) they are subcommands this key does not have: CTAP2_ERR_INVALID_SUBCOMMAND, as
    /// OpenSK answers for both.
    fn require_builtin_uv(&self) -> CtapResult<()> {
        if self.has_builtin_uv()? {
            Ok(())
        } else {
            Err(CtapError::InvalidSubcommand)
        }
    }

    fn issue_token(
        &mut self,
        shared: &SharedSecret,
        perms: Permissions,
        rp_id: Option<String>,
        user_present: bool,
    ) -> Response {
        let token = &mut self.volatile.token;
        token.reset();
        token.begin_using(perms, rp_id, user_present, true);
        Response {
            pin_uv_auth_token: Some(shared.encrypt(token.secret())),
            ..Default::default()
        }
    }

    /// The settings, once it is clear a PIN may be tried now: one is set, retries are left,
    /// and no power cycle is owed after three wrong PINs in a row.
    fn settings_for_pin_attempt(&self) -> CtapResult<Settings> {
        let settings = self.store.load_settings()?;
        if settings.pin_hash.is_none() {
            return Err(CtapError::PinNotSet);
        }
        if settings.pin_retries == 0 {
            return Err(CtapError::PinBlocked);
        }
        if self.volatile.pin_strikes >= STRIKES_BEFORE_POWER_CYCLE {
            return Err(CtapError::PinAuthBlocked);
        }
        Ok(settings)
    }

    /// Compares pinHashEnc with the stored hash. The retry counter is decremented durably
    /// before the comparison, so pulling the plug cannot buy extra guesses (§6.5.5.5), and
    /// atomically in the store, so no other connection's spent retry is written back.
    fn check_pin_hash(
        &mut self,
        shared: &SharedSecret,
        pin_hash_enc: &[u8],
        settings: &mut Settings,
    ) -> CtapResult<()> {
        settings.pin_retries = self.store.spend_retry(Retries::Pin)?;
        let given = shared.decrypt(pin_hash_enc)?;
        self.settle_pin_check(&given, settings)
    }

    /// Second half of a PIN check, after the retry was spent: compares, then either restores
    /// the retries or counts the strike.
    fn settle_pin_check(&mut self, given: &[u8], settings: &mut Settings) -> CtapResult<()> {
        let stored = settings.pin_hash.as_deref().ok_or(CtapError::PinNotSet)?;
        let matches =
            given.len() == 16 && bool::from(subtle::ConstantTimeEq::ct_eq(given, &stored[..]));
        if !matches {
            self.volatile.key_agreement = crate::pin::KeyAgreementKey::generate();
            self.volatile.pin_strikes += 1;
            return Err(if settings.pin_retries == 0 {
                CtapError::PinBlocked
            } else if self.volatile.pin_strikes >= STRIKES_BEFORE_POWER_CYCLE {
                CtapError::PinAuthBlocked
            } else {
                CtapError::PinInvalid
            });
        }
        settings.pin_retries = MAX_PIN_RETRIES;
        self.volatile.pin_strikes = 0;
        self.store.refill_retries(Retries::Pin)?;
        Ok(())
    }
}

fn protocol_of(req: &Request) -> CtapResult<PinProtocol> {
    PinProtocol::from_u64(req.protocol.ok_or(CtapError::MissingParameter)?)
}

fn required(v: &Option<Vec<u8>>) -> CtapResult<&Vec<u8>> {
    v.as_ref().ok_or(CtapError::MissingParameter)
}

fn pin_hash(pin: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(pin);
    digest[..16].try_into().expect("16 of 32 bytes")
}

fn store_pin(settings: &mut Settings, pin: &[u8]) {
    settings.pin_hash = Some(Zeroizing::new(pin_hash(pin)));
    settings.pin_code_points = std::str::from_utf8(pin)
        .map(|s| s.chars().count())
        .unwrap_or(pin.len()) as u8;
    settings.pin_retries = MAX_PIN_RETRIES;
    settings.force_pin_change = false;
}

/// Decrypts newPinEnc, strips the zero padding and applies the PIN policy (§6.5.5.5).
fn decrypt_new_pin(
    shared: &SharedSecret,
    new_pin_enc: &[u8],
    settings: &Settings,
) -> CtapResult<Zeroizing<Vec<u8>>> {
    let expected = match shared.protocol() {
        PinProtocol::One => PADDED_PIN_LEN,
        PinProtocol::Two => 16 + PADDED_PIN_LEN,
    };
    if new_pin_enc.len() != expected {
        return Err(CtapError::InvalidParameter);
    }
    let padded = shared.decrypt(new_pin_enc)?;
    let len = padded.iter().position(|b| *b == 0).unwrap_or(padded.len());
    if len == PADDED_PIN_LEN {
        // No terminating zero: the PIN is longer than 63 bytes.
        return Err(CtapError::PinPolicyViolation);
    }
    let pin = Zeroizing::new(padded[..len].to_vec());
    check_pin_policy(&pin, settings)?;
    Ok(pin)
}

/// The PIN policy (§6.5.5.5): UTF-8, at least minPINLength code points, at most 63 bytes, no
/// zero byte (the padding could not carry it).
fn check_pin_policy(pin: &[u8], settings: &Settings) -> CtapResult<()> {
    if pin.len() >= PADDED_PIN_LEN || pin.contains(&0) {
        return Err(CtapError::PinPolicyViolation);
    }
    let code_points = std::str::from_utf8(pin)
        .map_err(|_| CtapError::PinPolicyViolation)?
        .chars()
        .count();
    if code_points < settings.min_pin_length as usize {
        return Err(CtapError::PinPolicyViolation);
    }
    Ok(())
}
