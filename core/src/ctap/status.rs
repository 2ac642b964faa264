//! CTAP status codes (CTAP 2.1 §8.2). One byte at the head of every CTAP2 response.

/// A CTAP2 error status. `Ok` (0x00) is not an error and is not represented here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u8)]
pub enum CtapError {
    #[error("invalid command")]
    InvalidCommand = 0x01,
    #[error("invalid parameter")]
    InvalidParameter = 0x02,
    #[error("invalid message or item length")]
    InvalidLength = 0x03,
    #[error("invalid message sequencing")]
    InvalidSeq = 0x04,
    #[error("message timed out")]
    Timeout = 0x05,
    #[error("channel busy")]
    ChannelBusy = 0x06,
    #[error("command requires channel lock")]
    LockRequired = 0x0A,
    #[error("command not allowed on this cid")]
    InvalidChannel = 0x0B,
    #[error("invalid or unexpected CBOR type")]
    CborUnexpectedType = 0x11,
    #[error("invalid CBOR")]
    InvalidCbor = 0x12,
    #[error("missing non-optional parameter")]
    MissingParameter = 0x14,
    #[error("limit exceeded")]
    LimitExceeded = 0x15,
    #[error("fingerprint database full")]
    FpDatabaseFull = 0x17,
    #[error("large blob storage full")]
    LargeBlobStorageFull = 0x18,
    #[error("credential excluded")]
    CredentialExcluded = 0x19,
    #[error("processing")]
    Processing = 0x21,
    #[error("invalid credential")]
    InvalidCredential = 0x22,
    #[error("user action pending")]
    UserActionPending = 0x23,
    #[error("operation pending")]
    OperationPending = 0x24,
    #[error("no operations pending")]
    NoOperations = 0x25,
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm = 0x26,
    #[error("operation denied")]
    OperationDenied = 0x27,
    #[error("key store full")]
    KeyStoreFull = 0x28,
    #[error("unsupported option")]
    UnsupportedOption = 0x2B,
    #[error("invalid option")]
    InvalidOption = 0x2C,
    #[error("keepalive cancel")]
    KeepaliveCancel = 0x2D,
    #[error("no credentials")]
    NoCredentials = 0x2E,
    #[error("user action timeout")]
    UserActionTimeout = 0x2F,
    #[error("not allowed")]
    NotAllowed = 0x30,
    #[error("PIN invalid")]
    PinInvalid = 0x31,
    #[error("PIN blocked")]
    PinBlocked = 0x32,
    #[error("PIN auth invalid")]
    PinAuthInvalid = 0x33,
    #[error("PIN auth blocked")]
    PinAuthBlocked = 0x34,
    #[error("PIN not set")]
    PinNotSet = 0x35,
    #[error("PUAT required")]
    PuatRequired = 0x36,
    #[error("PIN policy violation")]
    PinPolicyViolation = 0x37,
    #[error("request too large")]
    RequestTooLarge = 0x39,
    #[error("action timeout")]
    ActionTimeout = 0x3A,
    #[error("user presence required")]
    UpRequired = 0x3B,
    #[error("built-in UV blocked")]
    UvBlocked = 0x3C,
    #[error("integrity failure")]
    IntegrityFailure = 0x3D,
    #[error("invalid subcommand")]
    InvalidSubcommand = 0x3E,
    #[error("UV invalid")]
    UvInvalid = 0x3F,
    #[error("unauthorized permission")]
    UnauthorizedPermission = 0x40,
    #[error("other unspecified error")]
    Other = 0x7F,
}

impl CtapError {
    pub fn code(self) -> u8 {
        self as u8
    }
}

pub type CtapResult<T> = Result<T, CtapError>;
