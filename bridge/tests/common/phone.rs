//! A phone for the tests, in this process: a real engine that approves everything and a
//! pairing store in a temporary directory, paired and served by `pocketkey-net`'s runtime.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use pocketkey_core::approver::{Approver, AutoApprover};
use pocketkey_core::authenticator::{Authenticator, Config};
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::pairing::{PairingRecord, PairingStore, UrlPolicy};
use pocketkey_core::store::Store;
use pocketkey_net::pairing::{self as runtime, ServeEvent};

use super::bridge::{Bridge, WAIT};

pub struct Phone {
    _dir: tempfile::TempDir,
    pub engine: Arc<Mutex<Authenticator>>,
    pub pairings: Arc<Mutex<PairingStore>>,
}

impl Phone {
    pub fn new() -> Self {
        Self::with_approver(Box::new(AutoApprover))
    }

    /// A phone whose user answers through `approver`.
    pub fn with_approver(approver: Box<dyn Approver>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let store = Store::open(&dir.path().join("credentials.db"), &master).unwrap();
        let authenticator =
            Authenticator::new(store, &master, approver, Config::default()).unwrap();
        let pairings = Arc::new(Mutex::new(
            PairingStore::open(&dir.path().join("pairings.db"), &master).unwrap(),
        ));
        Self {
            _dir: dir,
            engine: Arc::new(Mutex::new(authenticator)),
            pairings,
        }
    }

    /// Pairs with the code `bridge` shows, under the phone name `name`.
    pub fn pair(&self, bridge: &Bridge, name: &str) -> PairingRecord {
        runtime::pair(
            &bridge.pairing_url(),
            UrlPolicy::Strict,
            name,
            &*self.engine,
            &self.pairings,
        )
        .unwrap()
    }

    /// Serves the pairings (`pocketkey listen`'s runtime) as `name` on a thread; the receiver
    /// hears every event.
    pub fn listen(
        &self,
        name: &str,
    ) -> (
        Arc<AtomicBool>,
        thread::JoinHandle<()>,
        Receiver<ServeEvent>,
    ) {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel();
        let tx = Mutex::new(tx);
        let on_event: runtime::OnEvent = Arc::new(move |_, event| {
            let _ = tx.lock().unwrap().send(event);
        });
        let (engine, store, s) = (
            Arc::clone(&self.engine),
            Arc::clone(&self.pairings),
            stop.clone(),
        );
        let name = name.to_string();
        let handle = thread::spawn(move || {
            runtime::listen(&name, engine, store, s, on_event).unwrap();
        });
        (stop, handle, events)
    }

    pub fn stored(&self, record: &PairingRecord) -> Option<PairingRecord> {
        self.pairings.lock().unwrap().get(&record.id).unwrap()
    }

    /// How many discoverable credentials this phone's key holds.
    pub fn credentials(&self) -> u32 {
        self.engine
            .lock()
            .unwrap()
            .store()
            .credential_count()
            .unwrap()
    }
}

/// Waits (up to `WAIT`) for the event `wanted`, skipping others.
pub fn wait_for(events: &Receiver<ServeEvent>, wanted: &ServeEvent) {
    let until = Instant::now() + WAIT;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let event = events
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {wanted:?} event"));
        if &event == wanted {
            return;
        }
    }
}
