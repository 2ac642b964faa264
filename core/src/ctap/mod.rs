//! CTAP2 wire types: status codes, command bytes, canonical CBOR, typed requests and responses.

pub mod status;

pub use status::{CtapError, CtapResult};
pub mod cbor;
pub mod requests;
pub mod responses;
#[cfg(test)]
mod proptests;
