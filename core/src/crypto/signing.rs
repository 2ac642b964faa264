//! Signing keys (being written).
