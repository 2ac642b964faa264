//! The CTAP2 command bytes (CTAP 2.1 §6), written out apart from the engine's like the status
//! codes in [`crate::status`].

pub const MAKE_CREDENTIAL: u8 = 0x01;
pub const GET_ASSERTION: u8 = 0x02;
pub const GET_INFO: u8 = 0x04;
pub const CLIENT_PIN: u8 = 0x06;
pub const RESET: u8 = 0x07;
pub const GET_NEXT_ASSERTION: u8 = 0x08;
pub const CREDENTIAL_MANAGEMENT: u8 = 0x0A;
pub const SELECTION: u8 = 0x0B;
pub const LARGE_BLOBS: u8 = 0x0C;
/// authenticatorCredentialManagement's prototype number (CTAP 2.1 §6.8), still sent by
/// platforms that predate 2.1.
pub const CREDENTIAL_MANAGEMENT_PREVIEW: u8 = 0x41;
