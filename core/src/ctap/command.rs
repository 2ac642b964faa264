//! CTAP2 command bytes (CTAP 2.1 §6), the first byte of every CTAP2 message.

pub const MAKE_CREDENTIAL: u8 = 0x01;
pub const GET_ASSERTION: u8 = 0x02;
pub const GET_INFO: u8 = 0x04;
pub const CLIENT_PIN: u8 = 0x06;
pub const RESET: u8 = 0x07;
pub const GET_NEXT_ASSERTION: u8 = 0x08;
pub const CREDENTIAL_MANAGEMENT: u8 = 0x0A;
pub const SELECTION: u8 = 0x0B;
pub const LARGE_BLOBS: u8 = 0x0C;
pub const CONFIG: u8 = 0x0D;
/// Pre-2.1 vendor alias of credentialManagement (libfido2 and OpenSSH send it).
pub const CREDENTIAL_MANAGEMENT_PREVIEW: u8 = 0x41;

/// Every command byte this authenticator implements; any other is CTAP1_ERR_INVALID_COMMAND.
pub const ALL: &[u8] = &[
    MAKE_CREDENTIAL,
    GET_ASSERTION,
    GET_INFO,
    CLIENT_PIN,
    RESET,
    GET_NEXT_ASSERTION,
    CREDENTIAL_MANAGEMENT,
    SELECTION,
    LARGE_BLOBS,
    CONFIG,
    CREDENTIAL_MANAGEMENT_PREVIEW,
];
