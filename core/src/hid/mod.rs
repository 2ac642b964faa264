//! CTAPHID (CTAP 2.1 §11.2): report framing, message reassembly and the channel state
//! machine, transport-agnostic and sans-IO (no sockets, no threads, no clock of its own).
//!
//! - [`packet`]: the 64-byte report format, command/error codes, [`fragment`].
//! - [`assembler`]: reassembling one message from its packets.
//! - [`server`]: [`HidServer`], channels, busy/lock/timeout rules.

pub mod assembler;
pub mod packet;
pub mod server;

pub use assembler::{Assembly, Message, Started};
pub use packet::{
    error_report, fragment, keepalive_report, Command, HidError, KeepaliveStatus, MessageTooLong,
    Packet, PacketError, Report, BROADCAST_CID, MAX_MESSAGE_LEN, REPORT_LEN,
};
pub use server::{
    HidOutput, HidServer, RequestKind, MAX_CHANNELS, MAX_LOCK_SECONDS, TRANSACTION_TIMEOUT,
};

#[cfg(test)]
mod tests;
