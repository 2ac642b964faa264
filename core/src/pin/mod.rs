//! PIN/UV auth protocols one and two (CTAP 2.1 §6.5) and the pinUvAuthToken state.

pub mod protocol;
pub mod token;

pub use protocol::{KeyAgreementKey, PinProtocol, SharedSecret};
pub use token::{Permissions, PinUvAuthToken};
