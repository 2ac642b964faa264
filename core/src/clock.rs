//! The wall clock, read in one place.
//!
//! Protocol code takes `now` as an argument (so tests pick the time); programs call
//! [`unix_now`] at the edge and pass the value in.

/// Seconds since the Unix epoch; 0 if the system clock is set before 1970.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
