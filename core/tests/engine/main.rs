//! Engine-level tests, a module per command: real CTAP2 and U2F requests through
//! `Authenticator::process_cbor` and `process_u2f`, driven by `pocketkey_testkit::key::Key`
//! with a scripted approver and the platform side of the PIN/UV auth protocols written apart
//! from the engine (`pocketkey_testkit::pin_platform`).
//!
//! Every CTAP2 response goes through `pocketkey_testkit::responses::decode_response`, which
//! checks that a success carries CTAP2-canonical CBOR (decodes, keys in canonical order,
//! re-encodes to identical bytes) and that an error is a lone status byte.
//!
//! One test binary, not a file per command: one link step instead of eleven, and helpers
//! shared by several commands' tests live here.

mod approvals;
mod built_in_uv;
mod client_pin;
mod cred_mgmt;
mod extensions;
mod get_assertion;
mod get_info;
mod large_blobs;
mod make_credential;
mod malformed_requests;
mod reset;
mod storage;
mod u2f;
mod uv_binding;

use pocketkey_testkit::approver::verified;
use pocketkey_testkit::key::Key;
use pocketkey_testkit::requests::MakeCredential;
use pocketkey_testkit::responses::Registration;

/// Three discoverable credentials at example.com (alice, bob, carol, in that order), each
/// registered with built-in user verification.
pub fn three_accounts(key: &mut Key) -> Vec<Registration> {
    ["alice", "bob", "carol"]
        .into_iter()
        .map(|u| {
            key.queue([verified()]);
            key.register(&MakeCredential::typical("example.com", u).rk(true).uv(true))
                .unwrap()
        })
        .collect()
}
