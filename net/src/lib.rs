//! PocketKey's client side of the network, shared by the app facade (`pocketkey-ffi`) and the
//! desktop programs (`pocketkey`, `pocketkey-bridge`), around the sans-IO engine in
//! `pocketkey-core`:
//!
//! - [`ws`]: the one blocking websocket client (`ws://`, or `wss://` over [`tls`]);
//! - [`mailbox`]: a connection to one pairing-relay mailbox (`docs/pairing-protocol.md` §3);
//! - [`driver`]: the loop that runs pairing sessions over a mailbox, for both ends;
//! - [`pairing`]: the phone side of pairing with a computer and serving it;
//! - [`relays`]: relay URL lists (the nodes of one relay) and the backoff between attaches;
//! - [`revocation`]: what both sides share about revoking a pairing (§3.4);
//! - [`org`]: the phone's side of its organisation server (activation, sync);
//! - [`wake`]: which pairing a push notification woke the phone for;
//! - [`hybrid`]: the phone side of the FIDO hybrid transport (caBLE v2).
//!
//! No async runtime and no FFI: blocking `tungstenite` with one reader thread per websocket.

pub mod driver;
pub mod hybrid;
pub mod mailbox;
pub mod org;
pub mod pairing;
pub mod relays;
pub mod revocation;
pub mod tls;
pub mod wake;
pub mod ws;
