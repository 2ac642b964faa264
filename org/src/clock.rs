//! Times as stored: RFC 3339 in UTC, second precision, so they sort as text.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

pub fn format(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .expect("a UTC time always formats as RFC 3339")
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn now_string() -> String {
    format(now())
}

pub fn in_days(days: i64) -> OffsetDateTime {
    now() + Duration::days(days)
}

/// Parses a stored time; `None` for anything malformed (treated as expired by callers).
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}
