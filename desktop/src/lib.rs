//! PocketKey on a desktop: what `pocketkey` (the software key) and `pocketkey-bridge` (the
//! pairing tool) share — the CTAPHID device loop and its transports (UDP for tests and FIDO
//! tools, `/dev/uhid` for browsers), the engine as the transports see it, and where the
//! master key and state files live.

pub mod device;
pub mod engine;
pub mod keys;
pub mod runtime;
pub mod signals;
pub mod udp;
pub mod uhid;
