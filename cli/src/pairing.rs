//! `pocketkey pair | listen | pairings | unpair`: the terminal as the phone of a paired computer
//! (`docs/pairing-protocol.md`), on the phone side of `pocketkey-net`
//! (`pocketkey_net::pairing`) and the same engine and store as `serve`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

use std::collections::HashMap;
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use clap::Args;
use pocketkey_core::clock::unix_now;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::engine::Engine;
use pocketkey_core::pairing::relay::{PushProvider, PushTarget, WakeId};
use pocketkey_core::pairing::store::FILE_NAME;
use pocketkey_core::pairing::{
    ConfirmationCode, MailboxId, PairingRecord, PairingStore, Role, UrlPolicy,
};
use pocketkey_core::store::OrgStatus;
use pocketkey_net::pairing::{self as runtime, ServeEvent};
use pocketkey_net::revocation::{delete_at_relay, retry_pending_revocations, revocation_guard};
use pocketkey_net::wake::{finish_wake, woken_pairing, woken_wake_id, Woken};

use crate::{approver, webhook};
use pocketkey_desktop::engine::DesktopKey;

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The state directory (as for `serve`); pairings live in pairings.db there.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Master key from the OS keyring (as for `serve`).
    #[arg(long)]
    keyring: bool,
}

#[derive(Debug, Args)]
pub struct PairArgs {
    /// The `pocketkey://pair?…` URL the computer's pairing tool shows.
    url: String,
    /// The name the computer will show for this phone.
    #[arg(long, value_name = "NAME", default_value = "PocketKey CLI")]
    phone_name: String,
    /// Accept a ws:// relay that is not on loopback (developer mode).
    #[arg(long)]
    insecure_relay: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Approve every request without asking (verified). For unattended tests only.
    #[arg(long)]
    auto_approve: bool,
    /// The name the computers show for this phone.
    #[arg(long, value_name = "NAME", default_value = "PocketKey CLI")]
    phone_name: String,
    /// Push mode: register this webhook URL (http://HOST:PORT/PATH, served here) as every
    /// pairing's push target and connect to a computer only when the relay calls it.
    #[arg(long, value_name = "URL")]
    wake_url: Option<String>,
    /// Attach through this relay URL instead of each pairing's own (repeatable: the nodes of
    /// one relay deployment, in order of preference; when one fails the next is tried, with
    /// a jittered backoff between rounds).
    #[arg(long = "relay", value_name = "URL", conflicts_with = "wake_url")]
    relays: Vec<String>,
    /// Push mode: detach after this many idle seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    idle: u64,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct UnpairArgs {
    /// The computer's name, as `pocketkey pairings` lists it.
    name: String,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The computer's name, as `pocketkey pairings` lists it.
    name: String,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The computer's name, as `pocketkey pairings` lists it.
    name: String,
    /// The new name (shown in approvals and by `pocketkey pairings`; this phone only).
    new_name: String,
    #[command(flatten)]
    common: CommonArgs,
}

fn open(common: &CommonArgs) -> Result<(PathBuf, MasterKey, PairingStore), String> {
    let dir = crate::open_state_dir(common.state_dir.clone())?;
    let master = crate::master_key(&dir, common.keyring)?;
    let store = open_store(&dir, &master)?;
    Ok((dir, master, store))
}

fn open_store(dir: &Path, master: &MasterKey) -> Result<PairingStore, String> {
    let path = dir.join(FILE_NAME);
    PairingStore::open(&path, master).map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// The key of `serve`, shared by every pairing's thread.
fn open_engine(dir: &Path, master: &MasterKey, auto_approve: bool) -> Result<DesktopKey, String> {
    let approver = approver::desktop_approver(auto_approve);
    let config = crate::key_config(dir, master)?;
    crate::open_key(dir, master, approver, config)
}

/// Retries the pending revocations (the relay was unreachable at `unpair`); says on standard
/// error which reached the relay now and which still wait.
fn retry_revocations(store: &PairingStore) -> Result<(), String> {
    for name in retry_pending_revocations(store).map_err(|e| e.to_string())? {
        eprintln!("unpaired: {name} (the relay was told now)");
    }
    for record in store.pending_revocations().map_err(|e| e.to_string())? {
        eprintln!(
            "revoked: {} (the relay could not be told yet; retried at the next pair, pairings, listen or unpair)",
            record.name
        );
    }
    Ok(())
}

pub fn pair(args: PairArgs) -> Result<(), String> {
    let (dir, master, store) = open(&args.common)?;
    retry_revocations(&store)?;
    // Approvals are not needed for pairing; getInfo only.
    let engine = open_engine(&dir, &master, true)?;
    drop(master);
    let policy = if args.insecure_relay {
        UrlPolicy::AllowInsecureRelay
    } else {
        UrlPolicy::Strict
    };
    let store = Mutex::new(store);
    // The confirmation code, one line on stdout as soon as the handshake is done: the
    // computer asks its user to compare it before it completes the pairing.
    let mut show = |code: ConfirmationCode| {
        println!("code: {code}");
        let _ = std::io::stdout().flush();
        eprintln!("check that the computer shows the same code, and confirm there");
    };
    let record = runtime::pair_showing_code(
        &args.url,
        policy,
        &args.phone_name,
        &engine,
        &store,
        &mut show,
    )
    .map_err(|e| e.to_string())?;
    println!("paired: {} {}", record.id.to_hex(), record.name);
    Ok(())
}

pub fn listen(args: ListenArgs) -> Result<(), String> {
    let stop = crate::stop_flag()?;
    let (dir, master, store) = open(&args.common)?;
    let engine = Arc::new(open_engine(&dir, &master, args.auto_approve)?);
    // In push mode a key of an organisation is woken by it too (docs/org.md, "Wake-ups"): the
    // master key stays open to run the organisation sync then.
    let org = match &args.wake_url {
        Some(_) => crate::org::identity(&dir, &master)?
            .filter(|identity| identity.status != OrgStatus::Revoked)
            .map(|_| OrgWake {
                dir: dir.clone(),
                master,
                key: Arc::clone(&engine),
                auto_approve: args.auto_approve,
                wake: WakeId::random(),
            }),
        None => {
            drop(master);
            None
        }
    };
    retry_revocations(&store)?;
    let phones = store.list().map_err(|e| e.to_string())?;
    let phones: Vec<&PairingRecord> = phones.iter().filter(|r| r.role == Role::Phone).collect();
    for record in phones.iter().filter(|r| r.suspended_at.is_some()) {
        eprintln!("{}: {}", record.name, suspended_advice(&record.name));
    }
    let count = phones.iter().filter(|r| r.suspended_at.is_none()).count();
    if count == 0 && org.is_some() {
        eprintln!("no computer to serve: woken by the organisation only");
    } else if count == 0 && !phones.is_empty() {
        return Err("every paired computer is suspended: nothing to serve".into());
    }
    if count == 0 && org.is_none() {
        return Err("no computer is paired: run `pocketkey pair '<pairing URL>'` first".into());
    }
    eprintln!("listening for {count} paired computer(s); Ctrl-C to stop");
    if args.auto_approve {
        eprintln!("auto-approving every request (--auto-approve)");
    }
    let store = Arc::new(Mutex::new(store));
    // A pairing unpaired (by another `pocketkey unpair`) while the relay was unreachable is
    // revoked at the relay when its mailbox is attached again, not served.
    let on_event = revocation_guard(
        Arc::clone(&store),
        Arc::new(|record: &PairingRecord, event: ServeEvent| {
            eprintln!("{}: {event:?}", record.name);
            if event == ServeEvent::Suspended {
                eprintln!("{}: {}", record.name, suspended_advice(&record.name));
            }
        }),
    );
    if let Some(wake_url) = &args.wake_url {
        return wake_mode(
            wake_url,
            &args.phone_name,
            engine,
            store,
            stop,
            Duration::from_secs(args.idle),
            on_event,
            org,
        );
    }
    let relays = (!args.relays.is_empty()).then(|| args.relays.join(" "));
    runtime::listen_via(
        relays.as_deref(),
        &args.phone_name,
        engine,
        store,
        stop,
        on_event,
    )
    .map_err(|e| e.to_string())?;
    eprintln!("stopped");
    Ok(())
}

/// What a suspended pairing means and what the user can do about it.
fn suspended_advice(name: &str) -> String {
    format!(
        "suspended: the relay says this computer removed the pairing, which the relay cannot \
         prove, so its keys are kept and it is not served; `pocketkey resume {name:?}` tries \
         again, `pocketkey unpair {name:?}` removes it"
    )
}

/// One line per paired computer: name, relay, pairing id, and `suspended` in a fourth column
/// for a suspended pairing.
pub fn list(args: ListArgs) -> Result<(), String> {
    let (_, _, store) = open(&args.common)?;
    retry_revocations(&store)?;
    for r in store.list().map_err(|e| e.to_string())? {
        if r.role == Role::Phone {
            let state = if r.suspended_at.is_some() {
                "\tsuspended"
            } else {
                ""
            };
            println!("{}\t{}\t{}{state}", r.name, r.relay_url, r.id.to_hex());
        }
    }
    Ok(())
}

/// `pocketkey resume NAME`: a suspended pairing is served again by the next `listen`; if the
/// computer really removed it, the relay says so again and it is suspended again.
pub fn resume(args: ResumeArgs) -> Result<(), String> {
    let (_, _, store) = open(&args.common)?;
    let found = computers_named(&store, &args.name)?;
    if found.is_empty() {
        return Err(format!("no pairing named {:?}", args.name));
    }
    for record in found {
        if record.suspended_at.is_none() {
            println!("not suspended: {}", record.name);
            continue;
        }
        store.resume(&record.id).map_err(|e| e.to_string())?;
        println!("resumed: {}", record.name);
    }
    Ok(())
}

/// Revokes locally, then tells the computer in a session if it is attached (it then deletes
/// its record; told only by the relay, it would suspend it) and the relay (DELETE, waits for
/// the ACK); forgets on ACK. Without the relay the record stays as a pending revocation.
/// While `pocketkey listen` holds the key's store, there is no engine for the session's
/// `Hello`: the relay alone is told.
pub fn unpair(args: UnpairArgs) -> Result<(), String> {
    let (dir, master, store) = open(&args.common)?;
    let engine = open_engine(&dir, &master, true).ok();
    drop(master);
    retry_revocations(&store)?;
    let found = computers_named(&store, &args.name)?;
    if found.is_empty() {
        return Err(format!("no pairing named {:?}", args.name));
    }
    let store = Mutex::new(store);
    for record in found {
        let lock = || store.lock().unwrap_or_else(PoisonError::into_inner);
        lock()
            .revoke(&record.id, unix_now())
            .map_err(|e| e.to_string())?;
        let deleted = match &engine {
            Some(engine) => runtime::revoke_with_computer(&record, engine).is_ok(),
            None => delete_at_relay(&record),
        };
        if deleted {
            lock().forget(&record.id).map_err(|e| e.to_string())?;
            println!("unpaired: {}", record.name);
        } else {
            println!("unpaired: {} (the relay will be told later)", record.name);
        }
    }
    Ok(())
}

/// The paired computers called `name` (pairings with the same name are possible).
fn computers_named(store: &PairingStore, name: &str) -> Result<Vec<PairingRecord>, String> {
    Ok(store
        .find_by_name(name)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|r| r.role == Role::Phone)
        .collect())
}

/// `pocketkey rename NAME NEW_NAME`: a local label; the computer is not told.
pub fn rename(args: RenameArgs) -> Result<(), String> {
    let (_, _, store) = open(&args.common)?;
    let found = computers_named(&store, &args.name)?;
    match found.as_slice() {
        [] => Err(format!("no pairing named {:?}", args.name)),
        [record] => {
            store
                .rename(&record.id, &args.new_name)
                .map_err(|e| format!("cannot rename to {:?}: {e}", args.new_name))?;
            println!("renamed: {} -> {}", args.name, args.new_name);
            Ok(())
        }
        _ => Err(format!(
            "{} pairings are named {:?}: unpair the ones you do not use",
            found.len(),
            args.name
        )),
    }
}

/// `listen --wake-url`: registers the webhook with the relay for every pairing, serves the
/// webhook (one small HTTP/1.1 POST per wake-up, `{"v":1,"w":"<hex wake id>"}`), and serves
/// the woken pairing until it is idle. A wake id this phone did not register for a pairing in
/// use is ignored; so are the wakes of a pairing whose recent wakes brought no request
/// (`pocketkey_core::pairing::wake`), with a line saying so.
/// What `listen --wake-url` needs to act on its organisation's wake-ups.
struct OrgWake {
    dir: PathBuf,
    master: MasterKey,
    /// The running key, made to follow the identity after each sync.
    key: Arc<DesktopKey>,
    auto_approve: bool,
    /// The wake id registered with the organisation (a new one at each start).
    wake: WakeId,
}

impl OrgWake {
    /// Registers `wake_url` as where the organisation wakes this phone.
    fn register(&self, wake_url: &str) -> Result<(), String> {
        let identity = crate::org::identity(&self.dir, &self.master)?
            .ok_or("the organisation identity is gone")?;
        let target = PushTarget {
            provider: PushProvider::Webhook,
            target: wake_url.to_string(),
            environment: None,
            wake: self.wake,
        };
        pocketkey_net::org::register_push(&identity, &target).map_err(|e| {
            format!(
                "registering the wake-up URL with {}: {e}",
                identity.org_name
            )
        })?;
        eprintln!("{}: wake-ups go to {wake_url}", identity.org_name);
        Ok(())
    }

    /// Woken by the organisation: `pocketkey org sync`, then the running key follows the
    /// stored identity (a revoked key stops serving the organisation's RP ids at once).
    fn woken(&self) {
        eprintln!("org: woken");
        if let Err(e) = crate::org::sync_now(&self.dir, &self.master, self.auto_approve) {
            eprintln!("org: {e}");
        }
        match crate::org::engine_parts(&self.dir, &self.master) {
            Ok(parts) => self.key.follow_organisation(
                parts.attestation.unwrap_or_default(),
                parts.refused_rp_ids,
                parts.always_uv_locked,
            ),
            Err(e) => eprintln!("org: {e}"),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn wake_mode(
    wake_url: &str,
    phone_name: &str,
    key: Arc<DesktopKey>,
    store: Arc<Mutex<PairingStore>>,
    stop: Arc<AtomicBool>,
    idle: Duration,
    on_event: runtime::OnEvent,
    org: Option<OrgWake>,
) -> Result<(), String> {
    let engine: Arc<dyn Engine> = key;
    let authority = wake_url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("--wake-url {wake_url:?}: expected http://HOST:PORT/PATH"))?;
    let listener = TcpListener::bind(authority)
        .map_err(|e| format!("cannot listen on {authority} for --wake-url: {e}"))?;
    let records: Vec<PairingRecord> = store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .list()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|r| r.role == Role::Phone && r.suspended_at.is_none())
        .collect();
    for record in &records {
        let target = PushTarget {
            provider: PushProvider::Webhook,
            target: wake_url.to_string(),
            environment: None,
            wake: pocketkey_core::pairing::relay::WakeId::random(),
        };
        runtime::register_push(&store, record, target)
            .map_err(|e| format!("registering the wake-up URL for {:?}: {e}", record.name))?;
        eprintln!("{}: wake-ups go to {wake_url}", record.name);
    }
    if let Some(org) = &org {
        org.register(wake_url)?;
    }
    // A wake-up is served the moment its request is in: the webhook reads requests on
    // threads of its own (see `webhook`), and this loop checks `stop` between them.
    let (bodies, incoming) = mpsc::channel();
    webhook::spawn(listener, webhook::Limits::default(), bodies)
        .map_err(|e| format!("cannot start the webhook listener: {e}"))?;
    let mut running: HashMap<MailboxId, thread::JoinHandle<()>> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        let body = match incoming.recv_timeout(Duration::from_millis(250)) {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => return Err(format!("webhook: {e}")),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("webhook: the listener stopped".into())
            }
        };
        if let Some(org) = org
            .as_ref()
            .filter(|org| woken_wake_id(&body) == Some(org.wake))
        {
            org.woken();
            continue;
        }
        let record = match woken_pairing(&store, &body, unix_now()) {
            Ok(Some(Woken::Serve(record))) => record,
            Ok(Some(Woken::Paused { record, until })) => {
                eprintln!(
                    "{}: wake-up ignored: too many in the last hour asked nothing (ignored until {until}, Unix time); unpair it if this goes on",
                    record.name
                );
                continue;
            }
            Ok(None) => {
                eprintln!("wake-up ignored: not for a pairing in use");
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        running.retain(|_, h| !h.is_finished());
        if running.contains_key(&record.id) {
            continue;
        }
        eprintln!("{}: woken", record.name);
        let (name, engine, store, stop, on_event) = (
            phone_name.to_string(),
            Arc::clone(&engine),
            Arc::clone(&store),
            Arc::clone(&stop),
            Arc::clone(&on_event),
        );
        running.insert(
            record.id,
            thread::spawn(move || {
                let requested = runtime::serve_woken(
                    record.clone(),
                    &name,
                    engine,
                    Arc::clone(&store),
                    stop,
                    idle,
                    &*on_event,
                );
                if !requested {
                    eprintln!("{}: the wake-up brought no request", record.name);
                }
                let _ = finish_wake(&store, &record, requested, unix_now());
            }),
        );
    }
    for (_, h) in running {
        let _ = h.join();
    }
    Ok(())
}
