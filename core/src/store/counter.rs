//! The global signature counter: tagged under the master key, bumped durably, never backwards.

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

use super::integrity;
use super::open::Store;
use super::rows::opt_blob;
use super::sealing::StoreKeys;
use super::types::StoreError;
use super::write_tx::WriteTx;

impl Store {
    /// Increments the global signature counter by one, durably, and returns the new value.
    ///
    /// The first value is 1. At `u32::MAX` the counter stays there instead of wrapping.
    pub fn next_sign_count(&mut self) -> Result<u32, StoreError> {
        let tx = WriteTx::begin(&self.conn)?;
        let value = bump_counter(&tx, &self.keys)?;
        // synchronous=FULL: the commit is on stable storage before we hand the value out.
        tx.commit()?;
        Ok(value)
    }

    /// The signature counter's current value (what the last [`Store::next_sign_count`]
    /// returned, or 0), without changing it.
    pub fn sign_count(&self) -> Result<u32, StoreError> {
        verified_counter(&self.conn, &self.keys)
    }
}

/// The signature counter and its tag, unchecked.
pub(super) fn read_counter(conn: &Connection) -> Result<(u32, Option<Vec<u8>>), StoreError> {
    let row: Option<(i64, Value)> = conn
        .prepare_cached("SELECT value, mac FROM sign_counter WHERE id = 0")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (value, tag) =
        row.ok_or_else(|| StoreError::Corrupt("the signature counter is missing".into()))?;
    let value = u32::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("signature counter {value} is out of range")))?;
    Ok((value, opt_blob(tag, "sign_counter.mac")?))
}

/// Increments the signature counter inside `tx` (and re-tags it); the new value.
pub(super) fn bump_counter(tx: &Connection, keys: &StoreKeys) -> Result<u32, StoreError> {
    let value = verified_counter(tx, keys)?.saturating_add(1);
    tx.prepare_cached("UPDATE sign_counter SET value = ?1, mac = ?2 WHERE id = 0")?
        .execute(params![value, integrity::counter_tag(&keys.mac, value)])?;
    Ok(value)
}

fn verified_counter(conn: &Connection, keys: &StoreKeys) -> Result<u32, StoreError> {
    let (value, tag) = read_counter(conn)?;
    integrity::check_counter(&keys.mac, value, tag.as_deref())?;
    Ok(value)
}
