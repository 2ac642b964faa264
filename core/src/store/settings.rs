//! The settings row (PIN hash, retries, policy) and its rp id list: read with their integrity
//! tag checked, written re-tagged, and the PIN/UV retries spent and refilled durably.

use std::cell::RefCell;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};
use zeroize::Zeroizing;

use super::integrity::StoredSettings;
use super::open::Store;
use super::rows::{boolean, hash32, opt_blob, small_int, text};
use super::sealing::{settings_aad, StoreKeys};
use super::types::*;
use super::write_tx::WriteTx;

/// The settings row (sealed fields still sealed) as last read and verified, with the
/// connection's `PRAGMA data_version` of that read, so that a request does not read and
/// check the row again while nothing changed it.
///
/// `data_version` changes when another connection commits (SQLite: "PRAGMA data_version"),
/// not for this connection's own writes: every [`Store`] method that writes the settings
/// begins with `begin_settings_write`, which clears the cache. A row edited behind the store's back by another
/// program is therefore read and verified (and refused) as before.
#[derive(Default)]
pub(super) struct SettingsCache(RefCell<Option<(i64, StoredSettings)>>);

impl SettingsCache {
    pub(super) fn clear(&self) {
        self.0.borrow_mut().take();
    }
}

fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?)
}

impl Store {
    /// The settings row, verified: from the cache while no other connection committed since
    /// it was read, from the database otherwise.
    fn cached_settings(&self) -> Result<StoredSettings, StoreError> {
        let version = data_version(&self.conn)?;
        if let Some((cached, stored)) = &*self.settings_cache.0.borrow() {
            if *cached == version {
                return Ok(stored.clone());
            }
        }
        let stored = verified_settings(&self.conn, &self.keys)?;
        *self.settings_cache.0.borrow_mut() = Some((version, stored.clone()));
        Ok(stored)
    }

    pub fn load_settings(&self) -> Result<Settings, StoreError> {
        let stored = self.cached_settings()?;
        let pin_hash = match &stored.pin_hash {
            None => None,
            Some(sealed) => {
                let opened = self.keys.open(sealed, &settings_aad("pin_hash"))?;
                let hash: [u8; 16] = opened[..].try_into().map_err(|_| {
                    StoreError::Corrupt(format!("PIN hash is {} bytes, not 16", opened.len()))
                })?;
                Some(Zeroizing::new(hash))
            }
        };
        let StoredSettings {
            pin_code_points,
            pin_retries,
            uv_retries,
            min_pin_length,
            force_pin_change,
            always_uv,
            enterprise_attestation,
            label,
            wrap_salt,
            min_pin_length_rp_ids,
            uv_public_key,
            ..
        } = stored;
        Ok(Settings {
            pin_hash,
            pin_code_points,
            pin_retries,
            uv_retries,
            min_pin_length,
            min_pin_length_rp_ids,
            force_pin_change,
            always_uv,
            enterprise_attestation,
            label,
            wrap_salt,
            uv_public_key,
        })
    }

    /// Begins a write of the settings (`BEGIN IMMEDIATE`). The cache is dropped first: this
    /// connection's own commits do not change `data_version`, so every settings writer goes
    /// through here.
    pub(super) fn begin_settings_write(&self) -> Result<WriteTx<'_>, StoreError> {
        self.settings_cache.clear();
        WriteTx::begin(&self.conn)
    }

    pub fn save_settings(&mut self, settings: &Settings) -> Result<(), StoreError> {
        let tx = self.begin_settings_write()?;
        write_settings(&tx, &self.keys, settings)?;
        tx.commit()?;
        Ok(())
    }

    /// Spends one PIN or UV retry and returns how many are left (0 stays 0).
    ///
    /// One read-check-write under the write lock (`BEGIN IMMEDIATE`), durable before it
    /// returns: a retry spent by another connection meanwhile is never written back, and
    /// pulling the plug after the call cannot give the retry back (CTAP 2.1 §6.5.5.5).
    pub fn spend_retry(&mut self, which: Retries) -> Result<u8, StoreError> {
        self.update_retries(which, |n| n.saturating_sub(1))
    }

    /// Restores the PIN or UV retries to their maximum (after a correct PIN or a successful
    /// verification), leaving every other setting as it is on disk.
    pub fn refill_retries(&mut self, which: Retries) -> Result<(), StoreError> {
        self.update_retries(which, |_| which.max()).map(drop)
    }

    fn update_retries(
        &mut self,
        which: Retries,
        change: impl FnOnce(u8) -> u8,
    ) -> Result<u8, StoreError> {
        let tx = self.begin_settings_write()?;
        let mut stored = verified_settings(&tx, &self.keys)?;
        let (field, sql) = match which {
            Retries::Pin => (
                &mut stored.pin_retries,
                "UPDATE settings SET pin_retries = ?1, mac = ?2 WHERE id = 0 RETURNING pin_retries",
            ),
            Retries::Uv => (
                &mut stored.uv_retries,
                "UPDATE settings SET uv_retries = ?1, mac = ?2 WHERE id = 0 RETURNING uv_retries",
            ),
        };
        *field = change(*field);
        let value = *field;
        let tag = stored.tag(&self.keys.mac);
        let written: i64 = tx
            .prepare_cached(sql)?
            .query_row(params![value, tag], |r| r.get(0))?;
        if written != i64::from(value) {
            return Err(StoreError::Corrupt(format!(
                "retries read back as {written}"
            )));
        }
        tx.commit()?;
        Ok(value)
    }

    /// Writes `Settings::default()` (with its fresh random wrap_salt) if the store has no
    /// settings yet. Race-free against another connection doing the same.
    pub(super) fn ensure_settings(&mut self) -> Result<(), StoreError> {
        if settings_exist(&self.conn)? {
            return Ok(());
        }
        let tx = self.begin_settings_write()?;
        if !settings_exist(&tx)? {
            write_settings(&tx, &self.keys, &Settings::default())?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// A read transaction that works with `&Connection` and also nests (a savepoint).
struct ReadSnapshot<'c>(&'c Connection);

impl<'c> ReadSnapshot<'c> {
    // Cached statements: `execute_batch` would parse them again on every settings read.
    fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        conn.prepare_cached("SAVEPOINT store_read")?.execute([])?;
        Ok(Self(conn))
    }

    fn end(self) -> Result<(), StoreError> {
        let conn = self.0;
        std::mem::forget(self);
        conn.prepare_cached("RELEASE store_read")?.execute([])?;
        Ok(())
    }
}

impl Drop for ReadSnapshot<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .execute_batch("ROLLBACK TO store_read; RELEASE store_read");
    }
}

fn settings_exist(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM settings WHERE id = 0")?
        .exists([])?)
}

/// The settings row and its rp id list as stored, after checking their integrity tag.
pub(super) fn verified_settings(
    conn: &Connection,
    keys: &StoreKeys,
) -> Result<StoredSettings, StoreError> {
    let (stored, tag) = read_settings(conn)?
        // The row is written when the store is created and by every reset; defaults here
        // would hand out a different random wrap_salt on every call.
        .ok_or_else(|| StoreError::Corrupt("the settings row is missing".into()))?;
    stored.check(&keys.mac, tag.as_deref())?;
    Ok(stored)
}

/// A settings row and its stored tag (`None`: the column is empty).
pub(super) type TaggedSettings = (StoredSettings, Option<Vec<u8>>);

/// The settings row, its rp id list and its tag, unchecked; `None` if there is no row yet.
pub(super) fn read_settings(conn: &Connection) -> Result<Option<TaggedSettings>, StoreError> {
    read_settings_with(conn, "uv_public_key")
}

/// As [`read_settings`], for migrations that run before schema v4 added `uv_public_key`.
pub(super) fn read_settings_before_v4(
    conn: &Connection,
) -> Result<Option<TaggedSettings>, StoreError> {
    read_settings_with(conn, "NULL")
}

fn read_settings_with(
    conn: &Connection,
    uv_public_key_column: &str,
) -> Result<Option<TaggedSettings>, StoreError> {
    // Both queries read one snapshot.
    let snapshot = ReadSnapshot::begin(conn)?;
    let row = conn
        .prepare_cached(&format!(
            "SELECT pin_hash, pin_code_points, pin_retries, uv_retries, min_pin_length, \
             force_pin_change, always_uv, enterprise_attestation, label, wrap_salt, mac, \
             {uv_public_key_column} FROM settings WHERE id = 0",
        ))?
        .query_row([], |r| {
            (0..12)
                .map(|i| r.get::<_, Value>(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .optional()?;
    let Some(row) = row else {
        snapshot.end()?;
        return Ok(None);
    };
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(Value::Null);
    let pin_hash = opt_blob(next(), "pin_hash")?;
    let pin_code_points = small_int(next(), "pin_code_points")?;
    let pin_retries = small_int(next(), "pin_retries")?;
    let uv_retries = small_int(next(), "uv_retries")?;
    let min_pin_length = small_int(next(), "min_pin_length")?;
    let force_pin_change = boolean(next(), "force_pin_change")?;
    let always_uv = boolean(next(), "always_uv")?;
    let enterprise_attestation = boolean(next(), "enterprise_attestation")?;
    let label = text(next(), "label")?;
    let wrap_salt = hash32(next(), "wrap_salt")?;
    let tag = opt_blob(next(), "settings.mac")?;
    let uv_public_key = match opt_blob(next(), "uv_public_key")? {
        None => None,
        Some(key) => Some(<[u8; 65]>::try_from(&key[..]).map_err(|_| {
            StoreError::Corrupt(format!("UV public key is {} bytes, not 65", key.len()))
        })?),
    };

    let mut min_pin_length_rp_ids = Vec::new();
    {
        let mut stmt =
            conn.prepare_cached("SELECT rp_id FROM min_pin_length_rp_ids ORDER BY position")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            min_pin_length_rp_ids.push(text(r.get(0)?, "min_pin_length_rp_ids.rp_id")?);
        }
    }
    snapshot.end()?;
    let stored = StoredSettings {
        pin_hash,
        pin_code_points,
        pin_retries,
        uv_retries,
        min_pin_length,
        force_pin_change,
        always_uv,
        enterprise_attestation,
        label,
        wrap_salt,
        min_pin_length_rp_ids,
        uv_public_key,
    };
    Ok(Some((stored, tag)))
}

/// Replaces the settings row and its rp id list (inside the caller's transaction).
pub(super) fn write_settings(
    conn: &Connection,
    keys: &StoreKeys,
    settings: &Settings,
) -> Result<(), StoreError> {
    let stored = StoredSettings {
        pin_hash: settings
            .pin_hash
            .as_ref()
            .map(|h| keys.sealer.seal(&h[..], &settings_aad("pin_hash"))),
        pin_code_points: settings.pin_code_points,
        pin_retries: settings.pin_retries,
        uv_retries: settings.uv_retries,
        min_pin_length: settings.min_pin_length,
        force_pin_change: settings.force_pin_change,
        always_uv: settings.always_uv,
        enterprise_attestation: settings.enterprise_attestation,
        label: settings.label.clone(),
        wrap_salt: settings.wrap_salt,
        min_pin_length_rp_ids: settings.min_pin_length_rp_ids.clone(),
        uv_public_key: settings.uv_public_key,
    };
    conn.prepare_cached(
        "INSERT INTO settings (id, pin_hash, pin_code_points, pin_retries, uv_retries, \
         min_pin_length, force_pin_change, always_uv, enterprise_attestation, label, wrap_salt, \
         mac, uv_public_key) VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (id) DO UPDATE SET pin_hash = excluded.pin_hash, \
         pin_code_points = excluded.pin_code_points, pin_retries = excluded.pin_retries, \
         uv_retries = excluded.uv_retries, min_pin_length = excluded.min_pin_length, \
         force_pin_change = excluded.force_pin_change, always_uv = excluded.always_uv, \
         enterprise_attestation = excluded.enterprise_attestation, label = excluded.label, \
         wrap_salt = excluded.wrap_salt, mac = excluded.mac, \
         uv_public_key = excluded.uv_public_key",
    )?
    .execute(params![
        stored.pin_hash,
        stored.pin_code_points,
        stored.pin_retries,
        stored.uv_retries,
        stored.min_pin_length,
        stored.force_pin_change,
        stored.always_uv,
        stored.enterprise_attestation,
        stored.label,
        &stored.wrap_salt[..],
        stored.tag(&keys.mac),
        stored.uv_public_key.as_ref().map(|k| &k[..]),
    ])?;
    conn.prepare_cached("DELETE FROM min_pin_length_rp_ids")?
        .execute([])?;
    let mut insert =
        conn.prepare_cached("INSERT INTO min_pin_length_rp_ids (position, rp_id) VALUES (?1, ?2)")?;
    for (position, rp_id) in stored.min_pin_length_rp_ids.iter().enumerate() {
        insert.execute(params![position as i64, rp_id])?;
    }
    Ok(())
}
