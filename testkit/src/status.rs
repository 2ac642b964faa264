//! CTAP status codes (CTAP 2.1 §8.2), the first byte of every CTAP2 response.
//!
//! Written out here on purpose rather than taken from the engine's `CtapError`: a test that
//! compared the engine's answer with the engine's own constant could not catch a wrong
//! constant in the engine.

pub const OK: u8 = 0x00;
pub const INVALID_COMMAND: u8 = 0x01;
pub const INVALID_PARAMETER: u8 = 0x02;
pub const INVALID_LENGTH: u8 = 0x03;
pub const INVALID_SEQ: u8 = 0x04;
pub const CBOR_UNEXPECTED_TYPE: u8 = 0x11;
pub const INVALID_CBOR: u8 = 0x12;
pub const MISSING_PARAMETER: u8 = 0x14;
pub const LARGE_BLOB_STORAGE_FULL: u8 = 0x18;
pub const CREDENTIAL_EXCLUDED: u8 = 0x19;
pub const UNSUPPORTED_ALGORITHM: u8 = 0x26;
pub const OPERATION_DENIED: u8 = 0x27;
pub const INVALID_OPTION: u8 = 0x2C;
pub const KEEPALIVE_CANCEL: u8 = 0x2D;
pub const NO_CREDENTIALS: u8 = 0x2E;
pub const USER_ACTION_TIMEOUT: u8 = 0x2F;
pub const NOT_ALLOWED: u8 = 0x30;
pub const PIN_INVALID: u8 = 0x31;
pub const PIN_BLOCKED: u8 = 0x32;
pub const PIN_AUTH_INVALID: u8 = 0x33;
pub const PIN_AUTH_BLOCKED: u8 = 0x34;
pub const PIN_NOT_SET: u8 = 0x35;
pub const PUAT_REQUIRED: u8 = 0x36;
pub const PIN_POLICY_VIOLATION: u8 = 0x37;
pub const UV_BLOCKED: u8 = 0x3C;
pub const INTEGRITY_FAILURE: u8 = 0x3D;
pub const INVALID_SUBCOMMAND: u8 = 0x3E;
pub const UV_INVALID: u8 = 0x3F;
