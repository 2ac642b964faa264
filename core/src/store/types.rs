//! What the store holds, as the engine sees it (secrets in the clear, zeroized on drop).

use zeroize::Zeroizing;

/// COSE algorithm identifiers we create keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA with SHA-256 on P-256 (COSE -7).
    Es256,
    /// Ed25519 (COSE -8).
    EdDsa,
}

impl Algorithm {
    pub fn cose_id(self) -> i64 {
        match self {
            Algorithm::Es256 => -7,
            Algorithm::EdDsa => -8,
        }
    }
    pub fn from_cose_id(id: i64) -> Option<Self> {
        match id {
            -7 => Some(Algorithm::Es256),
            -8 => Some(Algorithm::EdDsa),
            _ => None,
        }
    }
}

/// credProtect levels (CTAP 2.1 §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CredProtect {
    UserVerificationOptional = 1,
    UserVerificationOptionalWithCredentialIdList = 2,
    UserVerificationRequired = 3,
}

impl CredProtect {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::UserVerificationOptional),
            2 => Some(Self::UserVerificationOptionalWithCredentialIdList),
            3 => Some(Self::UserVerificationRequired),
            _ => None,
        }
    }
}

/// A discoverable (resident) credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// Random bytes chosen by the engine; unique.
    pub id: Vec<u8>,
    pub rp_id: String,
    pub rp_id_hash: [u8; 32],
    pub rp_name: Option<String>,
    pub user_id: Vec<u8>,
    pub user_name: Option<String>,
    pub user_display_name: Option<String>,
    pub algorithm: Algorithm,
    /// Private key bytes (P-256 scalar or Ed25519 seed). Sealed at rest.
    pub private_key: Zeroizing<Vec<u8>>,
    pub cred_protect: CredProtect,
    pub hmac_secret: bool,
    /// credBlob extension data. Sealed at rest.
    pub cred_blob: Option<Zeroizing<Vec<u8>>>,
    /// largeBlobKey extension key. Sealed at rest.
    pub large_blob_key: Option<Zeroizing<[u8; 32]>>,
    /// WebAuthn BE/BS flags; fixed when the credential is made, never changed after.
    pub backup_eligible: bool,
    pub backup_state: bool,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("rp_id", &self.rp_id)
            .field("user_name", &self.user_name)
            .field("algorithm", &self.algorithm)
            .field("cred_protect", &self.cred_protect)
            .finish_non_exhaustive()
    }
}

/// One relying party with at least one discoverable credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    pub id: String,
    pub id_hash: [u8; 32],
    pub name: Option<String>,
    pub credential_count: u32,
}

/// Authenticator-wide persistent state. One row.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// LEFT(SHA-256(PIN), 16) when a PIN is set. Sealed at rest.
    pub pin_hash: Option<Zeroizing<[u8; 16]>>,
    /// Length of the current PIN in Unicode code points (for minPINLength checks).
    pub pin_code_points: u8,
    pub pin_retries: u8,
    pub uv_retries: u8,
    pub min_pin_length: u8,
    /// RP ids allowed to read minPinLength through the extension.
    pub min_pin_length_rp_ids: Vec<String>,
    pub force_pin_change: bool,
    pub always_uv: bool,
    pub enterprise_attestation: bool,
    /// A user-visible name for this key ("Alice's phone").
    pub label: String,
    /// Mixed into the key that seals non-discoverable credential IDs. Not secret on its own
    /// (the master key is); a reset renews it so every old credential ID stops opening.
    pub wrap_salt: [u8; 32],
    /// The public half (uncompressed SEC1 point) of the phone's UV key: a key the phone's OS
    /// uses only after a biometric check, whose signatures prove a verified approval. Public,
    /// so kept in the clear under the settings' integrity tag; a reset clears it.
    pub uv_public_key: Option<[u8; 65]>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("pin_set", &self.pin_hash.is_some())
            .field("pin_retries", &self.pin_retries)
            .field("uv_retries", &self.uv_retries)
            .field("min_pin_length", &self.min_pin_length)
            .field("force_pin_change", &self.force_pin_change)
            .field("always_uv", &self.always_uv)
            .field("label", &self.label)
            .field("uv_key_registered", &self.uv_public_key.is_some())
            .finish_non_exhaustive()
    }
}

pub const MAX_PIN_RETRIES: u8 = 8;
pub const MAX_UV_RETRIES: u8 = 8;
pub const DEFAULT_MIN_PIN_LENGTH: u8 = 4;

fn random_salt() -> [u8; 32] {
    use rand_core::{OsRng, RngCore};
    let mut salt = [0u8; 32];
    OsRng.fill_bytes(&mut salt);
    salt
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pin_hash: None,
            pin_code_points: 0,
            pin_retries: MAX_PIN_RETRIES,
            uv_retries: MAX_UV_RETRIES,
            min_pin_length: DEFAULT_MIN_PIN_LENGTH,
            min_pin_length_rp_ids: Vec::new(),
            force_pin_change: false,
            always_uv: false,
            enterprise_attestation: false,
            label: "PocketKey".to_string(),
            wrap_salt: random_salt(),
            uv_public_key: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the credential store could not be read or written: {0}")]
    Database(String),
    #[error("the credential store was written by a newer PocketKey (schema {found}, this one knows up to {known})")]
    SchemaTooNew { found: u32, known: u32 },
    #[error(
        "a sealed secret in the store could not be opened (wrong master key or damaged store)"
    )]
    Unseal,
    #[error("the credential store holds a malformed record: {0}")]
    Corrupt(String),
    #[error("the credential store is full")]
    Full,
    /// Another program holds the store's lock (see [`crate::store::Store::open`]).
    #[error("the store is in use by {holder}; only one program at a time can use it")]
    InUse {
        /// Who holds it, as it wrote itself down: "`pocketkey serve` (pid 1234)".
        holder: String,
    },
    /// A record kept in the clear does not carry its integrity tag: the file was edited, or
    /// the record was copied back from another copy of the store. Nothing is reset.
    #[error("{0} fail their integrity check: restored or tampered")]
    Tampered(Record),
}

/// The records the store keeps in the clear under an integrity tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Settings,
    SignCounter,
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Record::Settings => "store settings",
            Record::SignCounter => "the store's signature counter and its tag",
        })
    }
}

/// The two retry counters in the settings (CTAP 2.1 §6.5.2.2: pinRetries, uvRetries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    Pin,
    Uv,
}

impl Retries {
    /// The value a correct PIN or a successful verification restores.
    pub fn max(self) -> u8 {
        match self {
            Retries::Pin => MAX_PIN_RETRIES,
            Retries::Uv => MAX_UV_RETRIES,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// The serialized large-blob array a fresh authenticator holds (CTAP 2.1 §6.10.2): an empty
/// CBOR array (0x80) followed by LEFT(SHA-256(0x80), 16).
pub const EMPTY_LARGE_BLOB_ARRAY: [u8; 17] = [
    0x80, 0x76, 0xbe, 0x8b, 0x52, 0x8d, 0x00, 0x75, 0xf7, 0xaa, 0xe9, 0x8d, 0x6f, 0xa5, 0x7a, 0x6d,
    0x3c,
];
