//! What the session targets share: reading a fuzz input as a sequence of steps, and the
//! `PK_FUZZ_TRACE=1` switch that prints each step's events when an input is replayed.

use std::sync::OnceLock;

/// `PK_FUZZ_TRACE=1` when replaying an input.
pub fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("PK_FUZZ_TRACE").is_some())
}

/// The rest of the input, read from the front.
pub struct Input<'a>(pub &'a [u8]);

#[allow(dead_code)] // each target uses what its step format needs
impl Input<'_> {
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }
    /// A length byte, then that many bytes.
    pub fn short(&mut self) -> Vec<u8> {
        let n = self.byte().unwrap_or(0);
        self.bytes(usize::from(n))
    }
    /// A little-endian u16 length (below 4096), then that many bytes.
    pub fn long(&mut self) -> Vec<u8> {
        let n = u16::from_le_bytes([self.byte().unwrap_or(0), self.byte().unwrap_or(0)]);
        self.bytes(usize::from(n % 4096))
    }
}
