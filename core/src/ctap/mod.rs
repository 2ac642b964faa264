//! CTAP2 wire types: status codes, command bytes, canonical CBOR, typed requests and responses.

pub mod status;

pub use status::{CtapError, CtapResult};
pub mod cbor;
#[cfg(test)]
mod proptests;
pub mod requests;
pub mod responses;
