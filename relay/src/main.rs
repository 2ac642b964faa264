//! `pocketkey-relay`: the caBLE v2 tunnel server as a program. See the library documentation
//! for the protocol, statuses and deployment behind a TLS reverse proxy.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use pocketkey_relay::{serve, Config};
use tokio::net::TcpListener;
use tracing::info;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// One `key=value` line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// A caBLE v2 (FIDO hybrid) tunnel server: joins a phone's `/cable/new/<tunnel id>` websocket
/// with a browser's `/cable/connect/<routing id>/<tunnel id>` and forwards their messages,
/// opaque. Plain ws:// only: put a TLS reverse proxy in front of it.
///
/// Prints `listening on ADDR` on standard output once listening; logs go to standard error
/// (level from RUST_LOG, default info). Ctrl-C or SIGTERM closes open tunnels and exits.
#[derive(Debug, Parser)]
#[command(name = "pocketkey-relay", version)]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Largest message either side may send, in bytes (larger: closed with 1009).
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_message_size)]
    max_message_size: usize,
    /// Most messages per tunnel, both directions together.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_messages_per_tunnel)]
    max_messages: u64,
    /// Most a tunnel lives, from the phone's request, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = Config::default().tunnel_lifetime.as_secs())]
    tunnel_lifetime: u64,
    /// How long a phone's tunnel waits for its browser, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = Config::default().join_timeout.as_secs())]
    join_timeout: u64,
    /// Most tunnels open at once (more: 503).
    #[arg(long, value_name = "N", default_value_t = Config::default().max_tunnels)]
    max_tunnels: usize,
    /// Most messages a phone may send before its browser joins.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_pending_messages)]
    max_pending: usize,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

impl Args {
    fn config(&self) -> Config {
        Config {
            max_message_size: self.max_message_size,
            max_messages_per_tunnel: self.max_messages,
            tunnel_lifetime: Duration::from_secs(self.tunnel_lifetime),
            join_timeout: Duration::from_secs(self.join_timeout),
            max_tunnels: self.max_tunnels,
            max_pending_messages: self.max_pending,
            ..Config::default()
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Ctrl-C and SIGTERM. The handlers are installed when this is created: before the
/// `listening on` line, so that a signal sent right after it is not fatal.
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let config = args.config();
    let mut signals = match ShutdownSignals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("pocketkey-relay: cannot handle signals: {error}");
            return ExitCode::FAILURE;
        }
    };

    let listener = match TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("pocketkey-relay: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let relay = match serve(listener, config) {
        Ok(relay) => relay,
        Err(error) => {
            eprintln!("pocketkey-relay: {error}");
            return ExitCode::FAILURE;
        }
    };
    let addr = relay.local_addr();
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on {addr}");
        let _ = stdout.flush();
    }
    info!(%addr, "listening");

    signals.recv().await;
    info!("shutting down");
    relay.shutdown().await;
    info!("stopped");
    ExitCode::SUCCESS
}
