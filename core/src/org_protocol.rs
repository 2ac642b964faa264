//! What a phone and its organisation server sign and seal for each other (docs/org.md,
//! "Activation" and "Device authentication"), in one place so both sides build the same
//! bytes. No transport here: the `net` crate carries these over HTTPS.

pub mod wire;

/// Prefix of the bytes a device key signs to activate: the prefix, then the request body.
pub const ACTIVATE_CONTEXT: &[u8] = b"pocketkey-org activate v1\0";
/// Prefix of the bytes a device key signs to answer a sync challenge.
pub const SYNC_CONTEXT: &[u8] = b"pocketkey-org sync v1\0";

/// What the device key signs when activating with `request` (the exact request bytes sent).
pub fn activate_signed_bytes(request: &[u8]) -> Vec<u8> {
    [ACTIVATE_CONTEXT, request].concat()
}

/// What the device key signs to answer the server's single-use `nonce` for key `key_id`.
pub fn sync_signed_bytes(key_id: &str, nonce: &str) -> Vec<u8> {
    let mut v = SYNC_CONTEXT.to_vec();
    for part in [key_id, nonce] {
        v.extend_from_slice(&(part.len() as u64).to_be_bytes());
        v.extend_from_slice(part.as_bytes());
    }
    v
}

/// The context the batch key is sealed to the phone under (see [`crate::crypto::sealed_box`]):
/// it binds the box to the inventory entry it was made for.
pub fn batch_key_context(key_id: &str) -> Vec<u8> {
    [
        b"pocketkey-org batch key v1\0".as_slice(),
        key_id.as_bytes(),
    ]
    .concat()
}

/// Prefix of the bytes a device key signs to post the outcome of a registration on the
/// user's behalf.
pub const REGISTRATION_CONTEXT: &[u8] = b"pocketkey-org registration v1\0";

/// What the device key signs to post the outcome of registration `registration_id`: the
/// server's single-use `nonce`, the outcome (`completed` or `denied`) and, when completed,
/// the credential id and attestation object exactly as sent (empty when denied). Each part
/// is length-prefixed, so no two different posts sign the same bytes.
pub fn registration_signed_bytes(
    key_id: &str,
    nonce: &str,
    registration_id: &str,
    outcome: &str,
    credential_id: &[u8],
    attestation_object: &[u8],
) -> Vec<u8> {
    let mut v = REGISTRATION_CONTEXT.to_vec();
    let parts: [&[u8]; 6] = [
        key_id.as_bytes(),
        nonce.as_bytes(),
        registration_id.as_bytes(),
        outcome.as_bytes(),
        credential_id,
        attestation_object,
    ];
    for part in parts {
        v.extend_from_slice(&(part.len() as u64).to_be_bytes());
        v.extend_from_slice(part);
    }
    v
}

/// Domain separation for registering the phone's push target with its organisation.
pub const PUSH_CONTEXT: &[u8] = b"pocketkey-org push target v1\0";

/// What the device key signs to register (or replace) its push target: the server's
/// single-use `nonce`, the provider (`fcm`, `apns`, `webhook`), the target (token or URL), the
/// APNs environment (empty for the others) and the wake id (hex) the wakes will carry. Each
/// part is length-prefixed, so no two different registrations sign the same bytes.
pub fn push_signed_bytes(
    key_id: &str,
    nonce: &str,
    provider: &str,
    target: &str,
    environment: &str,
    wake: &str,
) -> Vec<u8> {
    let mut v = PUSH_CONTEXT.to_vec();
    for part in [key_id, nonce, provider, target, environment, wake] {
        v.extend_from_slice(&(part.len() as u64).to_be_bytes());
        v.extend_from_slice(part.as_bytes());
    }
    v
}
