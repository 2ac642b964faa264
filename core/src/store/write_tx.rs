//! A write transaction (`BEGIN IMMEDIATE` … `COMMIT`) on cached statements, for the writes
//! requests make (the signature counter, a discoverable credential): `rusqlite::Transaction`
//! runs `BEGIN` and `COMMIT` through `execute_batch`, which parses them on every call.

use std::ops::Deref;

use rusqlite::Connection;

use super::types::StoreError;

/// Rolls back when dropped without [`commit`](Self::commit), like `rusqlite::Transaction`.
pub(super) struct WriteTx<'c> {
    conn: &'c Connection,
    committed: bool,
}

impl<'c> WriteTx<'c> {
    /// Takes the write lock now (`BEGIN IMMEDIATE`), waiting up to the busy timeout.
    pub(super) fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Self {
            conn,
            committed: false,
        })
    }

    /// Commits; with `synchronous=FULL` the transaction is durable when this returns. A
    /// failed commit leaves the transaction open, and dropping the guard rolls it back.
    pub(super) fn commit(mut self) -> Result<(), StoreError> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.committed = true;
        Ok(())
    }
}

impl Deref for WriteTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if !self.committed && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        conn
    }

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn commits_or_rolls_back_when_dropped() {
        let conn = table();
        let tx = WriteTx::begin(&conn).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        drop(tx);
        assert_eq!(rows(&conn), 0);
        assert!(conn.is_autocommit());
        for _ in 0..2 {
            let tx = WriteTx::begin(&conn).unwrap();
            tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(rows(&conn), 2);
        assert!(conn.is_autocommit());
        let _open = WriteTx::begin(&conn).unwrap();
        assert!(WriteTx::begin(&conn).is_err(), "no nesting");
    }
}
