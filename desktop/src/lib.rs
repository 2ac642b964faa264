//! PocketKey on a desktop: what `pocketkey` (the software key) and `pocketkey-bridge` (the
//! pairing tool) share — the CTAPHID device loop and its transports (UDP for tests and FIDO
//! tools, `/dev/uhid` for browsers), opening the real engine, and where the master key and
//! state files live.

pub mod ctaphid_loop;
pub mod device;
pub mod engine;
pub mod signals;
pub mod state_dir;
pub mod udp;
pub mod uhid;
