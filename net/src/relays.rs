//! The relays a client attaches through, and how soon it tries again.
//!
//! A relay deployment of several nodes (docs/relay.md §7) is reached through one
//! load-balanced URL or through a list of its nodes' URLs. Where a client keeps one relay URL
//! (a pairing record's `relay_url`), a list is the URLs separated by whitespace, in order of
//! preference: [`candidates`] yields them, and an attach tries the next when one fails.
//! Between failed rounds a client waits a [`Backoff`] delay, jittered so that the phones of a
//! node that died do not all come back to the survivors in the same instant.

use std::time::Duration;

/// The URLs of a relay URL list, in order (one for a plain URL).
pub fn candidates(relay_urls: &str) -> impl Iterator<Item = &str> {
    relay_urls.split_whitespace()
}

/// Exponential backoff with jitter: each delay is drawn in the upper half of a window that
/// doubles from `base` up to `cap` ("equal jitter": never less than half the window, so a
/// client does not hammer a relay that is down, yet clients spread out).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    window: Duration,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            window: base,
        }
    }

    /// The next delay to wait; the window doubles for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let window = self.window;
        self.window = (self.window * 2).min(self.cap);
        let half = window / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut bytes = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        half + Duration::from_micros(u64::from_le_bytes(bytes) % spread)
    }

    /// After a success: the next failure waits `base` again.
    pub fn reset(&mut self) {
        self.window = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_split_on_whitespace() {
        assert_eq!(
            candidates("ws://127.0.0.1:1  ws://127.0.0.2:2\n").collect::<Vec<_>>(),
            ["ws://127.0.0.1:1", "ws://127.0.0.2:2"]
        );
        assert_eq!(
            candidates("wss://relay.example").collect::<Vec<_>>(),
            ["wss://relay.example"]
        );
    }

    #[test]
    fn delays_grow_to_the_cap_within_their_jitter_and_reset() {
        let base = Duration::from_millis(200);
        let cap = Duration::from_millis(1000);
        let mut backoff = Backoff::new(base, cap);
        for window in [200, 400, 800, 1000, 1000] {
            let delay = backoff.next_delay();
            let window = Duration::from_millis(window);
            assert!(
                delay >= window / 2 && delay <= window,
                "{delay:?} for {window:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= base);
    }
}
