//! `pocketkey-org`: the organisation server (invites, attestation CA, inventory, audit log).
//! See docs/org.md.

mod activation;
mod api;
mod api_keys;
mod app_links;
mod audit;
mod ca;
mod clock;
mod console;
mod creation_options;
mod devices;
mod error;
mod graph_post;
mod lifecycle;
mod limits;
mod lookout;
mod mail;
mod migrations;
mod openapi;
mod org;
mod pages;
mod policy;
mod push_targets;
mod registrations;
mod secret;
mod serve;
mod stale;
mod state;
mod wake;

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
        #[command(flatten)]
        db: DbArgs,
        /// The organisation's name, as users see it
        #[arg(long)]
        name: String,
        /// The URL the server will be reached at (as `serve --public-url`); the one-time
        /// admin link printed on the `admin:` line starts with it
        #[arg(long, default_value = DEFAULT_PUBLIC_URL)]
        public_url: String,
    },
    /// Serve the admin REST API (/api/v1) and the activation pages.
    Serve(Box<ServeArgs>),
    /// Manage admin API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print a one-time link (`admin: <URL>`) that lets a new console admin register a
    /// passkey: the way back in when init's link expired or every owner lost their passkey.
    AdminLink {
        #[command(flatten)]
        db: DbArgs,
        /// owner, key_admin or auditor
        #[arg(long, default_value = "owner")]
        role: String,
        /// The admin's e-mail address [default: the page asks for it]
        #[arg(long)]
        email: Option<String>,
        /// The URL the server is reached at (as `serve --public-url`)
        #[arg(long, default_value = DEFAULT_PUBLIC_URL)]
        public_url: String,
    },
    /// Show or change the organisation's policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Change the policy (options not given keep their value); prints the policy as JSON.
    Set {
        #[command(flatten)]
        db: DbArgs,
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
    /// The stale-key policy: `serve` suspends active keys not seen for DAYS days (0: off, the
    /// default), audited per key as `policy:stale`.
    StaleKeys {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, value_name = "DAYS",
              value_parser = clap::value_parser!(u16).range(0..=i64::from(stale::MAX_DAYS)))]
        suspend_unseen_days: u16,
    },
}

/// Where `init`'s admin link points unless told: the console opened on this computer.
const DEFAULT_PUBLIC_URL: &str = "http://localhost:8080";

/// Where the organisation is kept: every command takes these two.
#[derive(Args)]
struct DbArgs {
    /// State directory: master key, default outbox, SQLite database [default: $XDG_STATE_HOME/pocketkey-org]
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Database URL: postgres://USER@HOST:PORT/DB for PostgreSQL (shared by several `serve`
    /// processes) or sqlite://PATH [default: <state dir>/org.db]
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

impl DbArgs {
    /// The state directory (created if missing) and the database, schema up to date.
    async fn open(self, open: state::Open) -> Result<(PathBuf, sqlx::AnyPool), String> {
        let dir = state::open_dir(self.state_dir)?;
        let database = state::Database::parse(self.database.as_deref(), &dir)?;
        let pool = state::connect(&database, open).await?;
        Ok((dir, pool))
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on, e.g. 127.0.0.1:8443 (port 0 picks a free one)
    #[arg(long)]
    listen: SocketAddr,
    /// The URL users reach this server at; activation links start with it
    #[arg(long)]
    public_url: String,
    /// Send invite mails through this SMTP server: smtp://HOST:PORT (plain, or
    /// ?tls=required for STARTTLS), smtps://HOST:PORT (TLS), optionally with USER:PASSWORD@
    #[arg(long, value_name = "URL", conflicts_with = "outbox")]
    smtp: Option<String>,
    /// Without --smtp: folder invite mails are written to as .eml files [default: <state dir>/outbox]
    #[arg(long)]
    outbox: Option<PathBuf>,
    /// Deadline for one request, reading its body included; then 408
    #[arg(long, value_name = "SECS", default_value_t = api::REQUEST_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout: u64,
    /// Sender of invite mails
    #[arg(long, default_value = "PocketKey <pocketkey-org@localhost>")]
    mail_from: String,
    /// The Android app that opens activation links (App Links): PACKAGE:SHA256 of its
    /// signing certificate; repeat for more certificates or apps
    #[arg(long, value_name = "PACKAGE:SHA256")]
    android_app: Vec<String>,
    /// The iOS app that opens activation links (Universal Links): TEAMID.BUNDLE; repeatable
    #[arg(long, value_name = "TEAMID.BUNDLE")]
    ios_app: Vec<String>,
    /// Least time between two wake-ups of one key's phone, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    key_wake_interval_ms: u64,
    /// Post completed registrations made with "graph_user" to Microsoft Graph at this base
    /// URL, e.g. https://graph.microsoft.com/v1.0 (http:// only to loopback)
    #[arg(long, value_name = "URL", requires = "graph_token_file")]
    graph_url: Option<String>,
    /// With --graph-url: a file holding the bearer token for Graph, read at each post (replace
    /// it when the token is renewed); never logged
    #[arg(long, value_name = "PATH", requires = "graph_url")]
    graph_token_file: Option<PathBuf>,
    /// The push providers that wake the phones (the relay's options)
    #[command(flatten)]
    push: pocketkey_push::ProviderOptions,
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key; prints `api-key: <secret>` once (only its hash is stored).
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// A name for the key, shown in the audit log
        #[arg(long)]
        name: String,
        /// admin: every REST route; read: GET only (other methods get 403); scim: /scim/v2 only
        #[arg(long, default_value = "admin", value_parser = ["admin", "read", "scim"])]
        scope: String,
        /// Refuse the key (like a wrong one) after this many days [default: never]
        #[arg(long, value_name = "DAYS",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(api_keys::MAX_EXPIRES_IN_DAYS)))]
        expires_in_days: Option<u32>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain; names the first broken entry (exit 1).
    Verify {
        #[command(flatten)]
        db: DbArgs,
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
        Command::Init {
            db,
            name,
            public_url,
        } => {
            let public_url = check_public_url(&public_url)?;
            let (dir, pool) = db.open(state::Open::Create).await?;
            let master = state::master_key(&dir)?;
            org::init(&pool, &name, &state::sealer(&master))
                .await
                .map_err(|e| e.to_string())?;
            // The first owner's one-time link to register a console passkey.
            let token = console::create_admin_link(&pool, console::Role::Owner, None, None)
                .await
                .map_err(|e| e.to_string())?;
            println!("initialised: {name}");
            println!(
                "admin: {public_url}{}{}",
                console::ENROL_PREFIX,
                token.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ApiKey(ApiKeyCommand::Create {
            db,
            name,
            scope,
            expires_in_days,
        }) => {
            let scope = scope.parse()?;
            let (_, pool) = db.open(state::Open::Existing).await?;
            let secret = org::create_api_key(&pool, &name, scope, expires_in_days, org::CLI_ACTOR)
                .await
                .map_err(|e| e.to_string())?;
            println!("api-key: {}", secret.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { db }) => {
            let (_, pool) = db.open(state::Open::Existing).await?;
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
        Command::AdminLink {
            db,
            role,
            email,
            public_url,
        } => {
            let public_url = check_public_url(&public_url)?;
            let role =
                console::Role::parse(&role).ok_or("--role must be owner, key_admin or auditor")?;
            let email = email
                .map(|e| api::parse_email(e.trim()).map(|a| a.to_string()))
                .transpose()
                .map_err(|e| e.message)?;
            let (_, pool) = db.open(state::Open::Existing).await?;
            org::load(&pool).await.map_err(|e| e.to_string())?;
            let token =
                console::create_admin_link(&pool, role, email.as_deref(), Some(org::CLI_ACTOR))
                    .await
                    .map_err(|e| e.to_string())?;
            println!(
                "admin: {public_url}{}{}",
                console::ENROL_PREFIX,
                token.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Set {
            db,
            enterprise_rp_ids,
            allowed_rp_ids,
            user_verification_required,
            min_pin_length,
        }) => {
            let (_, pool) = db.open(state::Open::Existing).await?;
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
        Command::Policy(PolicyCommand::StaleKeys {
            db,
            suspend_unseen_days,
        }) => {
            let (_, pool) = db.open(state::Open::Existing).await?;
            let days = (suspend_unseen_days > 0).then_some(suspend_unseen_days);
            stale::set(&pool, days, org::CLI_ACTOR)
                .await
                .map_err(|e| e.to_string())?;
            match days {
                Some(d) => println!("stale-keys: suspend active keys not seen for {d} days"),
                None => println!("stale-keys: off"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(*args).await.map(|()| ExitCode::SUCCESS),
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
    let public_url = check_public_url(&args.public_url)?;
    let path_prefix = url::Url::parse(&public_url)
        .map_err(|e| format!("bad --public-url: {e}"))?
        .path()
        .to_string();
    let app_links = app_links::AppLinks::parse(&args.android_app, &args.ios_app, &path_prefix)?;
    let mail_from =
        Mailbox::from_str(&args.mail_from).map_err(|e| format!("bad --mail-from: {e}"))?;
    let smtp = args.smtp.as_deref().map(mail::Mailer::smtp).transpose()?;
    let (dir, pool) = args.db.open(state::Open::Existing).await?;
    let mailer = smtp
        .unwrap_or_else(|| mail::Mailer::Outbox(args.outbox.unwrap_or_else(|| dir.join("outbox"))));
    let org = org::load(&pool).await.map_err(|e| e.to_string())?;
    let sealer = state::sealer(&state::master_key(&dir)?);
    let (activate_limit, auth_fail_limit) = api::limiters();
    let providers = args.push.providers()?;
    let waker = Arc::new(wake::Waker::new(
        providers,
        Duration::from_millis(args.key_wake_interval_ms),
    ));
    let graph = match (&args.graph_url, args.graph_token_file) {
        (Some(url), Some(token_file)) => {
            Some(Arc::new(graph_post::GraphPoster::new(url, token_file)?))
        }
        _ => None,
    };
    let app_state = Arc::new(api::AppState {
        pool: pool.clone(),
        org,
        public_url,
        mailer,
        mail_from,
        activate_limit,
        auth_fail_limit,
        sealer,
        app_links,
        wake: waker.clone(),
        graph: graph.clone(),
    });
    // The console is a WebAuthn relying party whose id is the public URL's host; a URL whose
    // host cannot be an RP id (an IP address) leaves the API serving and the console
    // answering why it is off.
    let console = match console::Console::new(app_state.clone()) {
        Ok(console) => console.router(),
        Err(why) => {
            tracing::warn!(reason = %why, "admin console off");
            console::unavailable(why)
        }
    };
    let scim = console::scim::router(app_state.clone());
    // The stale-key policy once before the server says it listens, then periodically.
    stale::log(stale::sweep(&pool).await);
    tokio::spawn(stale::run(pool.clone()));
    tokio::spawn(wake::run(pool.clone(), waker));
    if let Some(graph) = graph {
        tokio::spawn(graph_post::run(pool.clone(), graph));
    }
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
        api::router(app_state, console, scim, deadline),
        deadline,
        shutdown,
    )
    .await;
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// `--public-url` without its trailing slash, if it is an http:// or https:// URL.
fn check_public_url(url: &str) -> Result<String, String> {
    let url = url.trim_end_matches('/').to_string();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err("--public-url must be an http:// or https:// URL".into());
    }
    Ok(url)
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
