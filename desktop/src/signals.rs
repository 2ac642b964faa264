//! Ending a desktop program cleanly: Ctrl-C (SIGINT), SIGTERM and SIGHUP raise one flag that
//! the program's loops look at, so that a virtual USB key is removed and stores are closed
//! instead of the process dying mid-write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The signal handler could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the Ctrl-C handler: {0}")]
pub struct SignalError(#[from] ctrlc::Error);

/// The flag the signals raise. Installs the handler: call it once per process, first thing,
/// so that a signal during start-up also ends cleanly.
pub fn stop_flag() -> Result<Arc<AtomicBool>, SignalError> {
    let stop = Arc::new(AtomicBool::new(false));
    let raised = Arc::clone(&stop);
    ctrlc::set_handler(move || raised.store(true, Ordering::SeqCst))?;
    Ok(stop)
}
