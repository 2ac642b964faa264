//! The engine a hybrid session hands its CTAP requests to.

use std::sync::{Mutex, PoisonError};

use pocketkey_core::authenticator::{Authenticator, RequestContext};

/// Where the browser's CTAP requests go: the same engine, store and approval machinery as
/// every other transport of this key. Implemented here for a bare `Mutex<Authenticator>` (the
/// command line, tests) and by the app facade for its security key.
///
/// The context carries the requester ("a nearby browser") and a cancel token the session sets
/// when the browser shuts down, the tunnel drops or the app cancels while the user is asked.
pub trait HybridEngine: Send + Sync {
    /// One CTAP2 message (command byte ‖ CBOR) → status byte ‖ CBOR. May block while the user
    /// is asked.
    fn process_ctap(&self, request: &[u8], cx: &RequestContext) -> Vec<u8>;
}

impl HybridEngine for Mutex<Authenticator> {
    fn process_ctap(&self, request: &[u8], cx: &RequestContext) -> Vec<u8> {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .process_cbor(request, cx)
    }
}
