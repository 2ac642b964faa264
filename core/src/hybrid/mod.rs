//! The phone side of the FIDO hybrid transport (caBLE v2), free of I/O.
//!
//! A browser shows a `FIDO:/` QR code; the phone scans it, advertises an encrypted BLE beacon,
//! opens a websocket tunnel, answers the browser's Noise handshake and then carries CTAP
//! requests to the engine. This module does every byte-level step of that and nothing else:
//! the runtime (websocket, BLE advertiser, timers) lives in the bindings and feeds bytes in.
//!
//! One job per module, in the order a session uses them:
//!
//! | module | job |
//! |---|---|
//! | [`digits`] | the QR code's decimal encoding of bytes |
//! | [`qr`] | `FIDO:/…` → validated [`qr::QrCode`] |
//! | [`keys`] | HKDF derivations from the QR secret: EID key, tunnel id, PSK |
//! | [`advert`] | the 16-byte EID plaintext and the encrypted 20-byte BLE advert |
//! | [`domains`] | tunnel server domain ids → names, and which the browser knows |
//! | [`noise`] | `Noise_KNpsk0_P256_AESGCM_SHA256` (responder, and an initiator for tests) |
//! | [`crypter`] | post-handshake AES-256-GCM with padding and per-direction counters |
//! | [`session`] | the sans-IO session state machine: frames in, frames and events out |
//!
//! The phone's sequence, with the runtime's part in brackets:
//!
//! ```text
//! qr::QrCode::parse(text)                                 ← scanned text
//! keys::eid_key / keys::tunnel_id                         → [connect wss://domain/cable/new/<id>]
//! advert::EidPlaintext::new(nonce, routing id, domain)    ← [X-caBLE-Routing-ID]
//! advert::encrypt                                         → [start the BLE advert]
//! session::Session::new(SessionConfig::from_qr(..))
//! session.receive(frame) / poll_frame / poll_event        ↔ [websocket messages]
//!   Handshaked                                            → [stop the advert]
//!   CtapRequest(bytes) → engine → session.respond(bytes)
//!   Shutdown                                              → [close the websocket]
//! ```

pub mod advert;
pub mod crypter;
pub mod digits;
pub mod domains;
pub mod keys;
pub mod noise;
pub mod qr;
pub mod session;

pub use session::{Session, SessionConfig, SessionError, SessionEvent, NEARBY_BROWSER};
