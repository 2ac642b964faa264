//! The serialized large-blob array (CTAP 2.1 §6.10), one row.

use rusqlite::types::Value;
use rusqlite::OptionalExtension;

use super::open::Store;
use super::rows::blob;
use super::types::*;

impl Store {
    pub fn load_large_blob_array(&self) -> Result<Vec<u8>, StoreError> {
        let data: Option<Value> = self
            .conn
            .prepare_cached("SELECT data FROM large_blob WHERE id = 0")?
            .query_row([], |r| r.get(0))
            .optional()?;
        match data {
            None => Ok(EMPTY_LARGE_BLOB_ARRAY.to_vec()),
            Some(v) => blob(v, "large_blob"),
        }
    }

    pub fn save_large_blob_array(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO large_blob (id, data) VALUES (0, ?1) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            )?
            .execute([bytes])?;
        Ok(())
    }
}
