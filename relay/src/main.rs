//! `pocketkey-relay`: the caBLE v2 tunnel server and the PocketKey pairing relay as a program.
//! See the library documentation for the protocols, statuses and deployment behind a TLS
//! reverse proxy.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use pocketkey_relay::push::ProviderOptions;
use pocketkey_relay::{
    serve_with, Config, MailboxStore, MemoryMailboxStore, PairingLimits, PushService, RedisState,
    Services, SqliteMailboxStore, StoreLimits,
};
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
/// opaque. And the PocketKey pairing relay (docs/pairing-protocol.md): mailboxes at
/// `/pair/v1/<mailbox id>` joining a computer's bridge and a phone, which it wakes through a
/// push provider (webhook, FCM, APNs) when the phone is not connected. Plain ws:// only: put a
/// TLS reverse proxy in front of it.
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
    /// Pairing mailboxes: most connections attached at once (more: 503).
    #[arg(long, value_name = "N", default_value_t = PairingLimits::default().max_connections)]
    pair_max_connections: usize,
    /// Pairing mailboxes: frames per second each connection may send.
    #[arg(long, value_name = "N", default_value_t = PairingLimits::default().frames_per_sec)]
    pair_rate: u32,
    /// Pairing mailboxes: frames a connection may send in a burst.
    #[arg(long, value_name = "N", default_value_t = PairingLimits::default().burst)]
    pair_burst: u32,
    /// Pairing mailboxes: frames queued towards a slow connection before it is closed.
    #[arg(long, value_name = "N", default_value_t = PairingLimits::default().write_queue)]
    pair_queue: usize,
    /// Most websockets (tunnels and pairing connections) open at once from one client address
    /// (IPv4 address or IPv6 /64; more: 429).
    #[arg(long, value_name = "N", default_value_t = Config::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Pairing mailboxes: most new mailboxes (not attached, no push target) one client address
    /// may open per --new-mailbox-window.
    #[arg(long, value_name = "N", default_value_t = Config::default().new_mailboxes_per_ip)]
    new_mailboxes_per_ip: u32,
    /// The window of --new-mailboxes-per-ip, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = Config::default().new_mailbox_window.as_secs())]
    new_mailbox_window: u64,
    /// A request header holding the client's address, written by the reverse proxy in front
    /// (e.g. X-Real-IP); the per-address limits count it instead of the TCP peer. Only with a
    /// proxy that overwrites it: clients can send it too.
    #[arg(long, value_name = "NAME")]
    client_ip_header: Option<String>,
    /// The SQLite file holding the pairing mailboxes' routing data (push targets, tombstones
    /// of revoked pairings), created with its directory if missing; `:memory:` = --memory.
    /// Default, first that applies: $POCKETKEY_RELAY_STATE (a file or `:memory:`);
    /// $STATE_DIRECTORY/relay.sqlite (systemd StateDirectory=);
    /// $XDG_STATE_HOME/pocketkey-relay/relay.sqlite;
    /// $HOME/.local/state/pocketkey-relay/relay.sqlite; ./pocketkey-relay.sqlite.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Keep the routing data in memory only, lost at exit (tests, throw-away relays): a
    /// revoked pairing is forgotten by the relay when it restarts.
    #[arg(long, conflicts_with = "state")]
    memory: bool,
    /// Share all state with the other nodes using this Redis (`redis://HOST:PORT[/DB]`):
    /// tunnel routing, push targets, tombstones, the push and new-mailbox budgets, and the
    /// way to connections on other nodes (docs/relay.md §7). Instead of --state / --memory.
    /// Redis unreachable at start: the program stops; later: requests that need it are
    /// refused (503 before an upgrade) until it is back.
    #[arg(long, value_name = "URL", conflicts_with_all = ["state", "memory"])]
    redis: Option<String>,

    /// Most push wake-ups per --push-window, all mailboxes together (beyond: WAKE_RESULT 4).
    #[arg(long, value_name = "N", default_value_t = Config::default().push_budget, help_heading = "Push")]
    push_budget: u32,
    /// The window of --push-budget, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = Config::default().push_window.as_secs(), help_heading = "Push")]
    push_window: u64,
    /// Most push wake-ups per mailbox per hour, besides one per --mailbox-push-interval-ms
    /// (beyond: WAKE_RESULT 4).
    #[arg(long, value_name = "N", default_value_t = Config::default().mailbox_wakes_per_hour, help_heading = "Push")]
    mailbox_wakes_per_hour: u32,
    /// Least time between two push wake-ups of one mailbox, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 3000, help_heading = "Push")]
    mailbox_push_interval_ms: u64,
    /// Longest push target (FCM or APNs token, webhook URL) accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_push_target_len, help_heading = "Push")]
    max_push_target_len: usize,
    /// Most push targets stored (a registration for a new mailbox beyond it is refused).
    #[arg(long, value_name = "N", default_value_t = StoreLimits::default().max_push_targets, help_heading = "Push")]
    max_push_targets: usize,
    /// Most tombstones of revoked pairings stored (beyond it the oldest goes).
    #[arg(long, value_name = "N", default_value_t = StoreLimits::default().max_tombstones)]
    max_tombstones: usize,
    /// How long the tombstone of a revoked pairing is kept, in days.
    #[arg(long, value_name = "DAYS", default_value_t = StoreLimits::default().tombstone_ttl.as_secs() / 86_400)]
    tombstone_days: u64,
    /// The push providers (webhook allow-list, FCM, APNs).
    #[command(flatten)]
    providers: ProviderOptions,
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
            max_connections_per_ip: self.max_connections_per_ip.max(1),
            new_mailboxes_per_ip: self.new_mailboxes_per_ip,
            new_mailbox_window: Duration::from_secs(self.new_mailbox_window),
            push_budget: self.push_budget,
            push_window: Duration::from_secs(self.push_window),
            mailbox_wakes_per_hour: self.mailbox_wakes_per_hour,
            max_push_target_len: self.max_push_target_len,
            client_ip_header: self.client_ip_header.clone(),
            ..Config::default()
        }
    }
}

/// The environment variable naming the state file (or `:memory:`) when `--state` is not given.
const STATE_ENV: &str = "POCKETKEY_RELAY_STATE";
/// The `--state` / `$POCKETKEY_RELAY_STATE` value that means `--memory`.
const MEMORY: &str = ":memory:";

/// Where the pairing mailboxes' routing data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StateLocation {
    Memory,
    File(PathBuf),
}

impl StateLocation {
    fn from_value(value: PathBuf) -> Self {
        if value.as_os_str() == MEMORY {
            Self::Memory
        } else {
            Self::File(value)
        }
    }

    /// `--memory`, else `--state`, else the default (see `--state` in `--help`); `env` reads an
    /// environment variable. Unset and empty variables are alike; relative `XDG_STATE_HOME`,
    /// `STATE_DIRECTORY` and `HOME` values are ignored (XDG base directory rules).
    fn resolve(
        state: Option<&std::path::Path>,
        memory: bool,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Self {
        if memory {
            return Self::Memory;
        }
        if let Some(path) = state {
            return Self::from_value(path.to_path_buf());
        }
        let set = |name: &str| env(name).filter(|value| !value.is_empty());
        if let Some(value) = set(STATE_ENV) {
            return Self::from_value(value.into());
        }
        let absolute = |name: &str| {
            set(name).and_then(|value| {
                // systemd joins several StateDirectory= entries with ':'; the first is ours.
                std::env::split_paths(&value)
                    .next()
                    .filter(|path| path.is_absolute())
            })
        };
        let file = if let Some(dir) = absolute("STATE_DIRECTORY") {
            dir.join("relay.sqlite")
        } else if let Some(dir) = absolute("XDG_STATE_HOME") {
            dir.join("pocketkey-relay").join("relay.sqlite")
        } else if let Some(home) = absolute("HOME") {
            home.join(".local/state/pocketkey-relay/relay.sqlite")
        } else {
            PathBuf::from("pocketkey-relay.sqlite")
        };
        Self::File(file)
    }
}

impl Args {
    fn store_limits(&self) -> StoreLimits {
        StoreLimits {
            max_push_targets: self.max_push_targets,
            max_tombstones: self.max_tombstones,
            tombstone_ttl: Duration::from_secs(self.tombstone_days.saturating_mul(86_400)),
        }
    }
}

/// Opens (creating it and its directory, owner-only, if missing) the SQLite state file.
fn open_state(path: &std::path::Path, limits: StoreLimits) -> Result<SqliteMailboxStore, String> {
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| format!("cannot create the directory of the state file {shown}: {e}"))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|e| format!("cannot open the state file {shown}: {e}"))?;
    SqliteMailboxStore::open_with_limits(path, limits)
        .map_err(|e| format!("cannot open the state file {shown}: {}", e.0))
}

impl Args {
    fn push(&self) -> Result<PushService, String> {
        Ok(PushService::with_providers(self.providers.providers()?)
            .with_interval(Duration::from_millis(self.mailbox_push_interval_ms)))
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
    let push = match args.push() {
        Ok(push) => push,
        Err(error) => {
            eprintln!("pocketkey-relay: {error}");
            return ExitCode::from(2);
        }
    };
    let mut signals = match ShutdownSignals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("pocketkey-relay: cannot handle signals: {error}");
            return ExitCode::FAILURE;
        }
    };

    let pairing_limits = PairingLimits {
        max_connections: args.pair_max_connections,
        frames_per_sec: args.pair_rate.max(1),
        burst: args.pair_burst.max(1),
        write_queue: args.pair_queue.max(1),
        ..PairingLimits::default()
    };
    if let Some(url) = &args.redis {
        // A presence outlives the pings that refresh it by one interval.
        let presence_ttl = pairing_limits.silence_timeout + pairing_limits.ping_interval;
        let redis = match RedisState::connect(url, args.store_limits(), presence_ttl).await {
            Ok(redis) => redis,
            Err(error) => {
                let url = redacted(url);
                eprintln!("pocketkey-relay: cannot use --redis {url}: {error}");
                return ExitCode::FAILURE;
            }
        };
        info!(node = redis.node(), "state in redis");
        let services = Services {
            push: Arc::new(push),
            pairing_limits,
            ..Services::redis(redis)
        };
        return run(&args, config, services, &mut signals).await;
    }

    let state = StateLocation::resolve(args.state.as_deref(), args.memory, |name| {
        std::env::var_os(name)
    });
    let mailboxes: Arc<dyn MailboxStore> = match &state {
        StateLocation::Memory => Arc::new(MemoryMailboxStore::with_limits(args.store_limits())),
        StateLocation::File(path) => match open_state(path, args.store_limits()) {
            Ok(store) => Arc::new(store),
            Err(error) => {
                eprintln!("pocketkey-relay: {error} (--state FILE chooses another, --memory none)");
                return ExitCode::FAILURE;
            }
        },
    };
    match &state {
        StateLocation::Memory => info!("routing state in memory (lost at exit)"),
        StateLocation::File(path) => info!(state = %path.display(), "routing state in SQLite"),
    }
    let services = Services {
        push: Arc::new(push),
        pairing_limits,
        mailboxes,
        ..Services::default()
    };
    run(&args, config, services, &mut signals).await
}

/// A Redis URL for messages: its password (`redis://:PASSWORD@host`) replaced.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "(not a URL)".to_string(),
    }
}

/// Listens, says where, serves until a signal, then shuts down.
async fn run(
    args: &Args,
    config: Config,
    services: Services,
    signals: &mut ShutdownSignals,
) -> ExitCode {
    let listener = match TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("pocketkey-relay: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let relay = match serve_with(listener, config, services) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(state: Option<&str>, memory: bool, env: &[(&str, &str)]) -> StateLocation {
        StateLocation::resolve(state.map(std::path::Path::new), memory, |name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        })
    }

    fn file(path: &str) -> StateLocation {
        StateLocation::File(PathBuf::from(path))
    }

    #[test]
    fn redis_passwords_stay_out_of_messages() {
        let shown = redacted("redis://user:s3cret@127.0.0.1:6379/2");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("127.0.0.1:6379/2"), "{shown}");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redacted("not a url s3cret"), "(not a URL)");
    }

    #[test]
    fn the_state_location_follows_flags_then_environment_then_defaults() {
        let all = [
            ("POCKETKEY_RELAY_STATE", "/srv/relay/state.db"),
            ("STATE_DIRECTORY", "/var/lib/pocketkey-relay:/var/lib/other"),
            ("XDG_STATE_HOME", "/home/op/.state"),
            ("HOME", "/home/op"),
        ];
        assert_eq!(resolve(None, true, &all), StateLocation::Memory);
        assert_eq!(resolve(Some("x.db"), false, &all), file("x.db"));
        assert_eq!(
            resolve(Some(":memory:"), false, &all),
            StateLocation::Memory
        );
        assert_eq!(resolve(None, false, &all), file("/srv/relay/state.db"));
        assert_eq!(
            resolve(None, false, &[("POCKETKEY_RELAY_STATE", ":memory:")]),
            StateLocation::Memory
        );
        assert_eq!(
            resolve(None, false, &all[1..]),
            file("/var/lib/pocketkey-relay/relay.sqlite")
        );
        assert_eq!(
            resolve(None, false, &all[2..]),
            file("/home/op/.state/pocketkey-relay/relay.sqlite")
        );
        assert_eq!(
            resolve(None, false, &all[3..]),
            file("/home/op/.local/state/pocketkey-relay/relay.sqlite")
        );
        assert_eq!(resolve(None, false, &[]), file("pocketkey-relay.sqlite"));
        // Empty and relative values do not count.
        let odd = [
            ("POCKETKEY_RELAY_STATE", ""),
            ("STATE_DIRECTORY", "relative"),
            ("XDG_STATE_HOME", "also/relative"),
            ("HOME", ""),
        ];
        assert_eq!(resolve(None, false, &odd), file("pocketkey-relay.sqlite"));
    }

    #[test]
    fn an_unusable_state_file_is_one_clear_error() {
        let dir = std::env::temp_dir().join(format!("pk-relay-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let blocker = dir.join("a-file");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let error = open_state(&blocker.join("relay.sqlite"), StoreLimits::default()).unwrap_err();
        assert!(error.starts_with("cannot create the directory"), "{error}");
        let error = open_state(&blocker, StoreLimits::default()).unwrap_err();
        assert!(error.contains("not a database"), "{error}");
        assert!(!error.contains('\n'), "{error}");
        let nested = dir.join("new/deeper/relay.sqlite");
        open_state(&nested, StoreLimits::default()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode();
            assert_eq!(mode(&nested) & 0o777, 0o600);
            assert_eq!(mode(nested.parent().unwrap()) & 0o777, 0o700);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
