//! One CTAP2 message (command byte ‖ CBOR parameters) parsed into its typed request.
//!
//! Unknown keys are ignored (CTAP 2.1 §8 "authenticators MUST ignore unknown keys"); a field
//! of the wrong type is CTAP2_ERR_CBOR_UNEXPECTED_TYPE, a missing required one
//! CTAP2_ERR_MISSING_PARAMETER.

use super::command;
use super::status::{CtapError, CtapResult};
use super::{client_pin, config, cred_mgmt, get_assertion, large_blobs, make_credential};

/// A CTAP2 request, one variant per command this authenticator implements.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    MakeCredential(make_credential::Request),
    GetAssertion(get_assertion::Request),
    GetInfo,
    ClientPin(client_pin::Request),
    Reset,
    GetNextAssertion,
    /// authenticatorCredentialManagement, sent as 0x0A or as its prototype 0x41.
    CredentialManagement(cred_mgmt::Request),
    Selection,
    LargeBlobs(large_blobs::Request),
    Config(config::Request),
}

impl Request {
    /// Parses `command byte ‖ CBOR parameters`. An empty message is CTAP1_ERR_INVALID_LENGTH,
    /// an unknown command byte CTAP1_ERR_INVALID_COMMAND; a parameter error is the command's
    /// own status. Commands without parameters ignore any bytes after the command byte.
    pub fn parse(message: &[u8]) -> CtapResult<Self> {
        let (&cmd, params) = message.split_first().ok_or(CtapError::InvalidLength)?;
        Ok(match cmd {
            command::MAKE_CREDENTIAL => {
                Self::MakeCredential(make_credential::Request::parse(params)?)
            }
            command::GET_ASSERTION => Self::GetAssertion(get_assertion::Request::parse(params)?),
            command::GET_INFO => Self::GetInfo,
            command::CLIENT_PIN => Self::ClientPin(client_pin::Request::parse(params)?),
            command::RESET => Self::Reset,
            command::GET_NEXT_ASSERTION => Self::GetNextAssertion,
            command::CREDENTIAL_MANAGEMENT | command::CREDENTIAL_MANAGEMENT_PREVIEW => {
                Self::CredentialManagement(cred_mgmt::Request::parse(params)?)
            }
            command::SELECTION => Self::Selection,
            command::LARGE_BLOBS => Self::LargeBlobs(large_blobs::Request::parse(params)?),
            command::CONFIG => Self::Config(config::Request::parse(params)?),
            _ => return Err(CtapError::InvalidCommand),
        })
    }
}
