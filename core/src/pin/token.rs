//! The pinUvAuthToken and its state (CTAP 2.1 §6.5.2.1): permissions, the RP it is bound to,
//! usage timers and the user-present / user-verified flags.

use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::protocol::PinProtocol;

/// Permission bits (CTAP 2.1 §6.5.5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions(pub u8);

impl Permissions {
    pub const MAKE_CREDENTIAL: u8 = 0x01;
    pub const GET_ASSERTION: u8 = 0x02;
    pub const CREDENTIAL_MANAGEMENT: u8 = 0x04;
    pub const BIO_ENROLLMENT: u8 = 0x08;
    pub const LARGE_BLOB_WRITE: u8 = 0x10;
    pub const AUTHENTICATOR_CONFIG: u8 = 0x20;

    pub fn contains(self, bit: u8) -> bool {
        self.0 & bit == bit
    }
}

/// How long a token lives after it is issued (the "maximum usage time period").
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// How long the user-present flag of a freshly issued token counts (userPresentTimeLimit).
pub const USER_PRESENT_LIFETIME: Duration = Duration::from_secs(30);

struct InUse {
    permissions: Permissions,
    rp_id: Option<String>,
    issued: Instant,
    user_present: bool,
    user_verified: bool,
}

/// The authenticator's one pinUvAuthToken. The secret is regenerated at power-up and every
/// time a new token is handed out, so older tokens stop working.
pub struct PinUvAuthToken {
    secret: Zeroizing<[u8; 32]>,
    in_use: Option<InUse>,
}

impl Default for PinUvAuthToken {
    fn default() -> Self {
        Self::new()
    }
}

impl PinUvAuthToken {
    pub fn new() -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(secret.as_mut());
        Self {
            secret,
            in_use: None,
        }
    }

    /// resetPinUvAuthToken: a new secret, not in use.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// beginUsingPinUvAuthToken.
    pub fn begin_using(
        &mut self,
        permissions: Permissions,
        rp_id: Option<String>,
        user_present: bool,
        user_verified: bool,
    ) {
        self.in_use = Some(InUse {
            permissions,
            rp_id,
            issued: Instant::now(),
            user_present,
            user_verified,
        });
    }

    /// stopUsingPinUvAuthToken.
    pub fn stop_using(&mut self) {
        self.in_use = None;
    }

    fn current(&self) -> Option<&InUse> {
        self.in_use
            .as_ref()
            .filter(|s| s.issued.elapsed() < TOKEN_LIFETIME)
    }

    pub fn is_in_use(&self) -> bool {
        self.current().is_some()
    }

    /// verify(pinUvAuthToken, message, param) — false when the token is not in use.
    pub fn verify(&self, protocol: PinProtocol, message: &[u8], param: &[u8]) -> bool {
        self.is_in_use() && protocol.verify(self.secret.as_ref(), message, param)
    }

    pub fn has_permission(&self, bit: u8) -> bool {
        self.current().is_some_and(|s| s.permissions.contains(bit))
    }

    pub fn rp_id(&self) -> Option<&str> {
        self.current().and_then(|s| s.rp_id.as_deref())
    }

    /// Whether the token may be used for `rp_id`; binds an unbound token to it (§6.1.2 step 11.2.3).
    pub fn bind_or_match_rp(&mut self, rp_id: &str) -> bool {
        match self.in_use.as_mut() {
            Some(s) => match &s.rp_id {
                Some(bound) => bound == rp_id,
                None => {
                    s.rp_id = Some(rp_id.to_string());
                    true
                }
            },
            None => false,
        }
    }

    /// getUserPresentFlagValue: true only within the user-present time limit.
    pub fn user_present(&self) -> bool {
        self.current()
            .is_some_and(|s| s.user_present && s.issued.elapsed() < USER_PRESENT_LIFETIME)
    }

    pub fn user_verified(&self) -> bool {
        self.current().is_some_and(|s| s.user_verified)
    }

    pub fn clear_user_present(&mut self) {
        if let Some(s) = self.in_use.as_mut() {
            s.user_present = false;
        }
    }

    pub fn clear_user_verified(&mut self) {
        if let Some(s) = self.in_use.as_mut() {
            s.user_verified = false;
        }
    }

    /// After makeCredential/getAssertion: keep only the lbw permission (§6.1.2 step 18, §6.2.2).
    pub fn clear_permissions_except_lbw(&mut self) {
        if let Some(s) = self.in_use.as_mut() {
            s.permissions = Permissions(s.permissions.0 & Permissions::LARGE_BLOB_WRITE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_rp_binding_and_flags() {
        let mut t = PinUvAuthToken::new();
        assert!(!t.verify(
            PinProtocol::Two,
            b"m",
            &PinProtocol::Two.authenticate(t.secret(), b"m")
        ));
        t.begin_using(Permissions(Permissions::MAKE_CREDENTIAL), None, true, true);
        let tag = PinProtocol::Two.authenticate(t.secret(), b"m");
        assert!(t.verify(PinProtocol::Two, b"m", &tag));
        assert!(t.has_permission(Permissions::MAKE_CREDENTIAL));
        assert!(!t.has_permission(Permissions::GET_ASSERTION));
        assert!(t.bind_or_match_rp("a.example"));
        assert!(!t.bind_or_match_rp("b.example"));
        assert!(t.user_present());
        t.clear_user_present();
        assert!(!t.user_present());
        t.clear_permissions_except_lbw();
        assert!(!t.has_permission(Permissions::MAKE_CREDENTIAL));
        let old = *t.secret();
        t.reset();
        assert_ne!(old, *t.secret());
        assert!(!t.is_in_use());
    }
}
