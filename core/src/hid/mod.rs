//! CTAPHID framing and channel state machine (being written).
