//! The errors an app sees. Every message is a sentence an app can show as it is; none ever
//! carries key material, PINs or other secret bytes.
//!
//! Show `userMessage()` / `user_message()` in every language. Also: Kotlin `e.toString()`
//! (Kotlin's `message` only lists the fields); Swift `e.description` (uniffi 0.32 generates
//! the property without declaring `CustomStringConvertible`, so `localizedDescription` shows
//! the case name).

use pocketkey_core::store::StoreError;

/// What went wrong in a `SecurityKey` call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi::export(Display)]
pub enum PocketKeyError {
    /// The data directory or the database in it could not be opened or created.
    #[error("The security key's storage could not be opened")]
    StorageUnavailable { detail: String },
    /// Reading or writing the database failed after it was opened.
    #[error("The security key's storage could not be read or written")]
    StorageFailed { detail: String },
    /// The stored secrets do not open with the master key the keychain handed out (the
    /// keychain was reset, or the data was copied from another device).
    #[error("The security key's data cannot be unlocked with this device's key")]
    MasterKeyMismatch,
    /// The KeyProvider threw; `reason` is its own message.
    #[error("The device keychain did not hand out the security key's master key")]
    KeyProviderFailed { reason: String },
    /// The KeyProvider returned something other than 32 bytes.
    #[error("The device keychain returned a master key of the wrong length ({length} bytes, expected 32)")]
    MasterKeyWrongLength { length: u32 },
    /// `answer` for an id that is not waiting (answered, expired, cancelled, or never asked).
    #[error("That approval has already ended")]
    UnknownApproval { id: u64 },
    /// `answer` with `ApproveVerified` whose signature cannot be a P-256 signature (empty,
    /// or longer than 72 bytes).
    #[error("The approval's verification signature is malformed")]
    InvalidUvProof { length: u32 },
    /// `register_uv_key` with something other than an uncompressed P-256 public key.
    #[error("The user-verification key is not an uncompressed P-256 public key")]
    InvalidUvKey,
    /// `answer` chose an account index outside the prompt's `accounts`.
    #[error("That account is not one of the choices offered")]
    InvalidAccount { index: u32, choices: u32 },
    #[error("The PIN must be at least {min_length} characters")]
    PinTooShort { min_length: u32 },
    #[error("The PIN must be at most {max_bytes} bytes long")]
    PinTooLong { max_bytes: u32 },
    #[error("The PIN contains a character that cannot be used")]
    PinInvalidCharacter,
    /// A PIN change was forced (by policy) and the new PIN equals the old one.
    #[error("The new PIN must be different from the current one")]
    PinUnchanged,
    #[error("A PIN is already set: change it instead")]
    PinAlreadySet,
    #[error("No PIN is set")]
    PinNotSet,
    #[error("The PIN is wrong ({retries_left} tries left)")]
    PinWrong { retries_left: u32 },
    /// Three wrong PINs in a row: the key must be reopened before the next try.
    #[error("Too many wrong PINs in a row: close and reopen the security key to try again")]
    PinTemporarilyBlocked,
    /// No tries left: only a factory reset makes the key usable with a PIN again.
    #[error("The PIN is blocked: reset the security key to use a PIN again")]
    PinBlocked,
    #[error("The name must be 1 to {max_chars} characters, without control characters")]
    InvalidLabel { max_chars: u32 },
    /// A bug or an engine state the app cannot fix.
    #[error("Something went wrong inside the security key")]
    Internal { detail: String },
    /// `start_hybrid` with text that is not a valid `FIDO:/` code; `detail` names the fault.
    #[error("This is not a valid passkey QR code")]
    InvalidHybridCode { detail: String },
    /// `start_hybrid` with a code whose timestamp is too old (a photo, an old screenshot).
    #[error("This code has expired: show a new one in the browser")]
    ExpiredHybridCode { detail: String },
    /// `start_hybrid` with a code whose timestamp is far ahead of this phone's clock.
    #[error("This code's time does not match this phone's clock: check the date and time")]
    HybridCodeClockMismatch { detail: String },
    /// `start_hybrid` with a tunnel URL or tunnel server id that cannot be used.
    #[error("The tunnel server setting is not valid")]
    InvalidHybridOptions { detail: String },
    /// `pair` with text that is not a valid `pocketkey://pair` code; `detail` names the fault.
    #[error("This is not a valid PocketKey pairing code")]
    InvalidPairingCode { detail: String },
    /// `pair` reached no computer, or the computer refused (code used, altered or expired).
    #[error("Pairing with the computer failed")]
    PairingFailed { detail: String },
    /// `pair`: the computer's user did not confirm the code shown on both screens (or did not
    /// answer in time). Nothing was stored on either side.
    #[error(
        "The computer did not confirm the pairing: check that both screens show the same code"
    )]
    PairingNotConfirmed,
    /// `activate` with text that is not an activation link; `detail` names the fault.
    #[error("This is not a valid activation link")]
    InvalidActivationLink { detail: String },
    /// `activate`: the organisation does not know this link (mistyped, or replaced by a
    /// newer invite).
    #[error("This activation link is not valid: ask your IT department for a new invite")]
    ActivationLinkNotValid,
    #[error("This activation link has expired: ask your IT department for a new invite")]
    ActivationExpired,
    #[error("This activation link was already used")]
    ActivationUsed,
    #[error("Your organisation revoked this key")]
    ActivationRevoked,
    /// The organisation server could not be reached (offline, DNS, TLS).
    #[error("The organisation's server cannot be reached: check the connection")]
    OrganisationUnreachable { detail: String },
    /// The server refused the request or answered something unexpected.
    #[error("The organisation's server refused the activation")]
    ActivationFailed { detail: String },
    /// `activate` on a key that already belongs to an organisation (not revoked).
    #[error("This key already belongs to {organisation}")]
    AlreadyActivated { organisation: String },
    /// `sync_organisation`: the server refused the device's proof or answered something
    /// unexpected.
    #[error("The organisation's server refused this key's check-in")]
    OrganisationSyncFailed { detail: String },
    /// `sync_organisation` on a key that was never activated.
    #[error("This key belongs to no organisation")]
    NoOrganisation,
}

#[uniffi::export]
impl PocketKeyError {
    /// The sentence to show the user (the same as the error's string form).
    pub fn user_message(&self) -> String {
        self.to_string()
    }
}

impl From<pocketkey_net::org::OrgClientError> for PocketKeyError {
    fn from(e: pocketkey_net::org::OrgClientError) -> Self {
        use pocketkey_net::org::OrgClientError as E;
        match e {
            E::InvalidLink(detail) => PocketKeyError::InvalidActivationLink { detail },
            E::LinkNotValid => PocketKeyError::ActivationLinkNotValid,
            E::Expired => PocketKeyError::ActivationExpired,
            E::Used => PocketKeyError::ActivationUsed,
            E::Revoked => PocketKeyError::ActivationRevoked,
            E::Network(detail) => PocketKeyError::OrganisationUnreachable { detail },
            other @ (E::Refused { .. } | E::Protocol(_)) => PocketKeyError::ActivationFailed {
                detail: other.to_string(),
            },
        }
    }
}

impl PocketKeyError {
    /// A store failure during a call on an open key.
    pub(crate) fn storage(e: StoreError) -> Self {
        match e {
            StoreError::Unseal => PocketKeyError::MasterKeyMismatch,
            other => PocketKeyError::StorageFailed {
                detail: other.to_string(),
            },
        }
    }

    /// A store failure while opening.
    pub(crate) fn opening(e: StoreError) -> Self {
        match e {
            StoreError::Unseal => PocketKeyError::MasterKeyMismatch,
            other => PocketKeyError::StorageUnavailable {
                detail: other.to_string(),
            },
        }
    }
}

/// What a `KeyProvider` throws.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum KeyProviderError {
    /// The keychain/keystore could not produce the key (locked, user not authenticated...).
    #[error("the keychain could not provide the master key: {reason}")]
    Unavailable { reason: String },
    /// The foreign implementation threw something other than a KeyProviderError.
    #[error("the key provider failed unexpectedly: {reason}")]
    Unexpected { reason: String },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for KeyProviderError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        KeyProviderError::Unexpected { reason: e.reason }
    }
}

/// What an `ApprovalListener` throws. The engine treats a failed prompt as a denial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum ApprovalListenerError {
    /// The app could not show the prompt (notifications off, no UI...).
    #[error("the approval could not be shown: {reason}")]
    Failed { reason: String },
    /// The foreign implementation threw something other than an ApprovalListenerError.
    #[error("the approval listener failed unexpectedly: {reason}")]
    Unexpected { reason: String },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for ApprovalListenerError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        ApprovalListenerError::Unexpected { reason: e.reason }
    }
}
