//! Cancellation shared between a transport (which sees CTAPHID CANCEL) and the engine (which
//! waits on the Approver).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once by whoever wants the current operation to stop; read by whoever waits.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
