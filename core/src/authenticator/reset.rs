//! authenticatorReset (CTAP 2.1 §6.6) and authenticatorSelection (§6.9).

use std::time::Duration;

use crate::approver::Operation;
use crate::credential_id::CredentialIdSealer;
use crate::ctap::CtapError;

use super::user::Subject;
use super::{Authenticator, Reply, RequestContext, Volatile};

/// Reset is only allowed this soon after power-up.
pub(crate) const RESET_WINDOW: Duration = Duration::from_secs(10);

impl Authenticator {
    pub(crate) fn reset(&mut self, cx: &RequestContext) -> Reply {
        if self.volatile.boot.elapsed() > RESET_WINDOW {
            return Err(CtapError::NotAllowed);
        }
        self.ask_user(cx, Operation::Reset, Subject::default(), false)?;
        self.factory_reset()?;
        Ok(vec![0x00])
    }

    /// Erases every credential, the PIN and settings; renews the credential-ID key so that
    /// non-discoverable credentials die too. For apps, without the CTAP time window.
    pub fn factory_reset(&mut self) -> Result<(), crate::store::StoreError> {
        self.store.reset()?;
        let salt = self.store.load_settings()?.wrap_salt;
        self.ids = CredentialIdSealer::new(&self.master, &salt);
        let boot = self.volatile.boot;
        self.volatile = Volatile {
            boot,
            ..Volatile::new()
        };
        Ok(())
    }

    pub(crate) fn selection(&mut self, cx: &RequestContext) -> Reply {
        self.ask_user(cx, Operation::Select, Subject::default(), false)?;
        Ok(vec![0x00])
    }
}
