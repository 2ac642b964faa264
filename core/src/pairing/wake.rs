//! The phone's side of push wake-ups (docs/pairing-protocol.md §3.3): the budget of wakes
//! that led to no request. A wake the phone answers costs it a connection and, on iOS, part
//! of the background time the system grants; whoever can make the relay push (the relay
//! itself, a holder of the bridge's keys, a bridge revoked while away) could otherwise keep
//! the phone busy. After [`EMPTY_WAKE_LIMIT`] wakes of one pairing that brought no request
//! within [`EMPTY_WAKE_WINDOW_SECS`], the phone ignores that pairing's wakes until the window
//! ends, and the app tells the user.

/// Wakes of one pairing that led to no request, per window, before its wakes are ignored.
pub const EMPTY_WAKE_LIMIT: u32 = 10;
/// The window of [`EMPTY_WAKE_LIMIT`], in seconds (from the first empty wake in it).
pub const EMPTY_WAKE_WINDOW_SECS: u64 = 3600;

/// One pairing's empty wakes in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmptyWakes {
    /// Unix seconds of the window's first empty wake.
    pub window_start: u64,
    /// Empty wakes since then.
    pub count: u32,
}

impl EmptyWakes {
    fn in_window(&self, now: u64) -> bool {
        now.saturating_sub(self.window_start) < EMPTY_WAKE_WINDOW_SECS
    }

    /// `None` when a wake at `now` may be answered; else until when (Unix seconds) this
    /// pairing's wakes are ignored.
    pub fn paused_until(&self, now: u64) -> Option<u64> {
        (self.count >= EMPTY_WAKE_LIMIT && self.in_window(now))
            .then(|| self.window_start.saturating_add(EMPTY_WAKE_WINDOW_SECS))
    }

    /// Counts a wake at `now` that brought no request (a new window when the last one ended).
    pub fn record(self, now: u64) -> Self {
        if self.count > 0 && self.in_window(now) {
            Self {
                count: self.count.saturating_add(1),
                ..self
            }
        } else {
            Self {
                window_start: now,
                count: 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_pauses_wakes_until_the_window_ends() {
        let mut wakes = EmptyWakes::default();
        for n in 0..EMPTY_WAKE_LIMIT {
            assert_eq!(wakes.paused_until(1000 + u64::from(n)), None);
            wakes = wakes.record(1000 + u64::from(n));
        }
        let until = 1000 + EMPTY_WAKE_WINDOW_SECS;
        assert_eq!(wakes.paused_until(1020), Some(until));
        assert_eq!(wakes.paused_until(until - 1), Some(until));
        assert_eq!(wakes.paused_until(until), None);
        // A new window starts with the next empty wake.
        assert_eq!(
            wakes.record(until),
            EmptyWakes {
                window_start: until,
                count: 1
            }
        );
    }
}
