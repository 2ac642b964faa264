//! CTAP2 wire layer: status codes, command bytes, canonical CBOR, and one module per command
//! holding its request keys, typed request and typed response together.

pub mod status;

pub use status::{CtapError, CtapResult};
pub mod cbor;
pub mod command;
mod request;
pub mod shared;

pub mod client_pin;
pub mod config;
pub mod cred_mgmt;
pub mod get_assertion;
pub mod get_info;
pub mod large_blobs;
pub mod make_credential;

pub use request::Request;
pub use shared::ok_with;

#[cfg(test)]
mod proptests;
