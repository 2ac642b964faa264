//! Which paired phone the bridge serves, kept across restarts in `served` beside the pairing
//! store (the pairing id in hex), so that a restart does not switch to the newest pairing: a
//! phone paired with `--pair-another` whose user answered no to serving it stays unserved
//! (docs/pairing-protocol.md §5.3). `--phone NAME` still wins, and is remembered in turn.

use std::path::{Path, PathBuf};

use pocketkey_core::pairing::{PairingId, PairingRecord};

/// The file's name in the state directory.
pub const FILE_NAME: &str = "served";

pub struct ServedChoice {
    path: PathBuf,
}

impl ServedChoice {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE_NAME),
        }
    }

    /// The phone served last, if it is among `phones`.
    pub fn find(&self, phones: &[PairingRecord]) -> Option<PairingRecord> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let id = PairingId::from_hex(text.trim())?;
        phones.iter().find(|r| r.id == id).cloned()
    }

    /// Remembers `id` as the served phone (written aside, then renamed into place). A
    /// failure is reported and otherwise ignored: the bridge then serves the newest pairing
    /// at its next start.
    pub fn remember(&self, id: &PairingId) {
        let aside = self.path.with_extension("new");
        let written = std::fs::write(&aside, format!("{}\n", id.to_hex()))
            .and_then(|()| std::fs::rename(&aside, &self.path));
        if let Err(e) = written {
            eprintln!(
                "cannot remember the served phone in {}: {e}",
                self.path.display()
            );
        }
    }
}
