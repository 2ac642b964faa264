//! `pocketkey-org`: the organisation server (invites, attestation CA, inventory, audit log).
//! See docs/org.md.

mod activation;
mod api;
mod audit;
mod ca;
mod clock;
mod devices;
mod error;
mod lifecycle;
mod limits;
mod mail;
mod migrations;
mod org;
mod pages;
mod policy;
mod secret;
mod serve;
mod state;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lettre::message::Mailbox;

#[derive(Parser)]
#[command(
    name = "pocketkey-org",
    version,
    about = "PocketKey organisation server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the organisation: attestation root CA, batch key, default policy (once).
    Init {
        /// State directory [default: $XDG_STATE_HOME/pocketkey-org]
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The organisation's name, as users see it
        #[arg(long)]
        name: String,
    },
    /// Serve the admin REST API (/api/v1) and the activation pages.
    Serve(ServeArgs),
    /// Manage admin API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Show or change the organisation's policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Change the policy (options not given keep their value); prints the policy as JSON.
    Set {
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// An RP id that gets enterprise attestation (repeatable; replaces the list)
        #[arg(long = "enterprise-rp-id")]
        enterprise_rp_ids: Vec<String>,
        /// An RP id the key may serve for the organisation (repeatable; replaces the list)
        #[arg(long = "allowed-rp-id")]
        allowed_rp_ids: Vec<String>,
        #[arg(long)]
        user_verification_required: Option<bool>,
        #[arg(long)]
        min_pin_length: Option<u8>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// State directory [default: $XDG_STATE_HOME/pocketkey-org]
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8443 (port 0 picks a free one)
    #[arg(long)]
    listen: SocketAddr,
    /// The URL users reach this server at; activation links start with it
    #[arg(long)]
    public_url: String,
    /// Folder invite mails are written to as .eml files [default: <state dir>/outbox]
    #[arg(long)]
    outbox: Option<PathBuf>,
    /// Deadline for one request, reading its body included; then 408
    #[arg(long, value_name = "SECS", default_value_t = api::REQUEST_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout: u64,
    /// Sender of invite mails
    #[arg(long, default_value = "PocketKey <pocketkey-org@localhost>")]
    mail_from: String,
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key; prints `api-key: <secret>` once (only its hash is stored).
    Create {
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// A name for the key, shown in the audit log
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain; names the first broken entry (exit 1).
    Verify {
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Init { state_dir, name } => {
            let dir = state::open_dir(state_dir)?;
            let pool = state::connect(&dir, state::Open::Create).await?;
            let master = state::master_key(&dir)?;
            org::init(&pool, &name, &state::sealer(&master))
                .await
                .map_err(|e| e.to_string())?;
            println!("initialised: {name}");
            Ok(ExitCode::SUCCESS)
        }
        Command::ApiKey(ApiKeyCommand::Create { state_dir, name }) => {
            let dir = state::open_dir(state_dir)?;
            let pool = state::connect(&dir, state::Open::Existing).await?;
            let secret = org::create_api_key(&pool, &name)
                .await
                .map_err(|e| e.to_string())?;
            println!("api-key: {}", secret.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { state_dir }) => {
            let dir = state::open_dir(state_dir)?;
            let pool = state::connect(&dir, state::Open::Existing).await?;
            let entries = audit::all(&pool).await.map_err(|e| e.to_string())?;
            match audit::verify(&entries) {
                Ok(n) => {
                    println!("audit: {n} entries, chain intact");
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    println!("audit: entry {} is broken: {}", broken.seq, broken.reason);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Policy(PolicyCommand::Set {
            state_dir,
            enterprise_rp_ids,
            allowed_rp_ids,
            user_verification_required,
            min_pin_length,
        }) => {
            let dir = state::open_dir(state_dir)?;
            let pool = state::connect(&dir, state::Open::Existing).await?;
            let given = |ids: Vec<String>| (!ids.is_empty()).then_some(ids);
            let policy = policy::set(
                &pool,
                policy::Change {
                    enterprise_rp_ids: given(enterprise_rp_ids),
                    allowed_rp_ids: given(allowed_rp_ids),
                    user_verification_required,
                    min_pin_length,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string(&policy).expect("policy serialises")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POCKETKEY_ORG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let public_url = args.public_url.trim_end_matches('/').to_string();
    if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
        return Err("--public-url must be an http:// or https:// URL".into());
    }
    let mail_from =
        Mailbox::from_str(&args.mail_from).map_err(|e| format!("bad --mail-from: {e}"))?;
    let dir = state::open_dir(args.state_dir)?;
    let pool = state::connect(&dir, state::Open::Existing).await?;
    let org = org::load(&pool).await.map_err(|e| e.to_string())?;
    let sealer = state::sealer(&state::master_key(&dir)?);
    let (activate_limit, auth_fail_limit) = api::limiters();
    let app_state = Arc::new(api::AppState {
        pool: pool.clone(),
        org,
        public_url,
        outbox: args.outbox.unwrap_or_else(|| dir.join("outbox")),
        mail_from,
        activate_limit,
        auth_fail_limit,
        sealer,
    });
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%local, org = %app_state.org.name, "serving");
    // One line on stdout for whoever started the server (tests read the port from it).
    println!("listening: http://{local}");
    let _ = std::io::stdout().flush();
    let deadline = Duration::from_secs(args.request_timeout);
    serve::run(
        listener,
        api::router(app_state, deadline),
        deadline,
        shutdown,
    )
    .await;
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM: stop accepting, finish the requests in flight, close the database.
/// The handlers are installed here, before the server says it listens: a signal that comes
/// right after that line must not find the default action (death) still in place.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
    })
}
