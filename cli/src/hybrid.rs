//! `pocketkey hybrid`: the terminal as the phone of the FIDO hybrid transport ("use a phone or
//! tablet"). It runs the apps' hybrid runtime (`pocketkey_net::hybrid`) against the same store as
//! `serve`; with no Bluetooth on a desktop, the advert is printed instead of sent.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use pocketkey_net::hybrid::{self, AdvertError, AdvertSender};

use crate::approver;

/// The line prefix of the printed advert.
pub const ADVERT_PREFIX: &str = "advert: ";

#[derive(Debug, Args)]
pub struct HybridArgs {
    /// The browser's QR code as text: `FIDO:/` followed by digits (quote it).
    #[arg(value_name = "FIDO_URL")]
    pub qr: String,

    /// Tunnel server to use instead of the one the advert names (tests, self-hosting):
    /// ws://HOST:PORT or wss://HOST[:PORT][/prefix].
    #[arg(long, value_name = "URL")]
    pub tunnel_url: Option<String>,

    /// The state directory (as for `serve`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Approve every request without asking (verified). For unattended tests only.
    #[arg(long)]
    pub auto_approve: bool,

    /// Master key from the OS keyring (as for `serve`).
    #[arg(long)]
    pub keyring: bool,

    /// How long to wait for the browser to connect after the advert, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub browser_timeout: u64,
}

/// Prints the advert on standard output: one line, `advert: <40 hex digits>`, flushed (a
/// test or a BLE helper reads it); everything else goes to standard error.
struct PrintedAdvert;

impl AdvertSender for PrintedAdvert {
    fn start(&self, service_data: Vec<u8>) -> Result<(), AdvertError> {
        let hex: String = service_data.iter().map(|b| format!("{b:02x}")).collect();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{ADVERT_PREFIX}{hex}")
            .and_then(|()| out.flush())
            .map_err(|e| AdvertError::Failed {
                reason: format!("cannot write the advert to standard output: {e}"),
            })?;
        eprintln!(
            "advertising (service data for UUID 0xFFF9 printed above); waiting for the browser"
        );
        Ok(())
    }

    fn stop(&self) {
        eprintln!("advert stopped");
    }
}

pub fn run(args: HybridArgs) -> Result<(), String> {
    // The code first: a damaged one ends here, before any file or network is touched.
    let qr = hybrid::parse_qr(&args.qr).map_err(|e| e.describe())?;
    drop(qr);

    let stop = crate::stop_flag()?;
    let state_dir = crate::open_state_dir(args.state_dir)?;
    let master = crate::master_key(&state_dir, args.keyring)?;
    if args.auto_approve {
        eprintln!("auto-approving every request (--auto-approve)");
    } else {
        eprintln!("approve requests here (y = approve, p = presence only, n = deny)");
    }
    let approver = approver::desktop_approver(args.auto_approve);
    let config = crate::key_config(&state_dir, &master)?;
    let engine = crate::open_key(&state_dir, &master, approver, config)?;
    drop(master);

    let options = hybrid::Options {
        tunnel_url: args.tunnel_url,
        browser_timeout_ms: args.browser_timeout.saturating_mul(1000),
        ..hybrid::Options::default()
    };
    let session = hybrid::start(&args.qr, Arc::new(engine), Arc::new(PrintedAdvert), options)
        .map_err(|e| e.describe())?;
    eprintln!("connecting to the tunnel server");
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            session.cancel();
        }
        if let Some(result) = session.wait_timeout(Duration::from_millis(100)) {
            break result;
        }
    };
    match result {
        Ok(outcome) => {
            eprintln!(
                "the browser ended the session after {} request(s)",
                outcome.requests
            );
            Ok(())
        }
        Err(e) => Err(e.describe()),
    }
}
