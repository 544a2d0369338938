//! `LeafStore` on the control-plane SQLite file `<state>/kura.sqlite` (WAL, `synchronous=FULL`).
//! The log's tables are prefixed `audit_`; other crates keep their own tables in the same file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::store::{EntryChunk, LeafStore, NewEntry, ScanEnd, StoredCheckpoint, StoredEntry};
use crate::AuditError;

pub const DB_FILE: &str = "kura.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_leaves (
    idx  INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_payloads (
    idx     INTEGER PRIMARY KEY,
    salt    BLOB NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL
);
";

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the store for writing.
    pub fn open(state_dir: &Path) -> Result<SqliteStore, AuditError> {
        let path = state_dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|e| db(&path, e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| db(&path, e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| db(&path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(AuditError::Config(format!(
                "{} refused WAL mode (got {mode}); is it on a network file system?",
                path.display()
            )));
        }
        conn.execute_batch("PRAGMA synchronous=FULL;")
            .map_err(|e| db(&path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| db(&path, e))?;
        Ok(SqliteStore { conn, path })
    }

    /// Opens an existing store read-only (verifier, search, proofs).
    pub fn open_read_only(state_dir: &Path) -> Result<SqliteStore, AuditError> {
        let path = state_dir.join(DB_FILE);
        if !path.exists() {
            return Err(AuditError::Config(format!(
                "no audit store at {}: is --state the right directory?",
                path.display()
            )));
        }
        // NO_MUTEX: the connection is owned by one thread at a time (it is Send, not Sync), and
        // SQLite's per-call mutex showed up in the verifier's profile.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| db(&path, e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| db(&path, e))?;
        let store = SqliteStore { conn, path };
        // A store created by another component may not hold the log's tables yet.
        let has: bool = store
            .conn
            .query_row(
                "SELECT count(*) = 3 FROM sqlite_master WHERE name IN \
                 ('audit_leaves','audit_payloads','audit_checkpoints')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| store.err(e))?;
        if !has {
            return Err(AuditError::Config(format!(
                "{} holds no audit log tables",
                store.path.display()
            )));
        }
        Ok(store)
    }

    /// Direct SQL access for tests that play the attacker.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn err(&self, e: rusqlite::Error) -> AuditError {
        db(&self.path, e)
    }
}

fn db(path: &Path, e: rusqlite::Error) -> AuditError {
    AuditError::Store(format!("{}: {e}", path.display()))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    Ok(StoredEntry::from_columns(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
    ))
}

/// The bytes of a BLOB or TEXT column. Any other type can only come from tampering (the writer
/// stores blobs and text); it reads as empty so the leaf or commitment check reports it.
fn column_bytes<'a>(v: ValueRef<'a>) -> &'a [u8] {
    match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => b,
        _ => &[],
    }
}

fn row_checkpoint(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCheckpoint> {
    let size: i64 = r.get(0)?;
    let root: Vec<u8> = r.get(1)?;
    let mut fixed = [0u8; 32];
    // A root of the wrong length is kept as zeros; the verifier then reports a mismatch.
    if root.len() == 32 {
        fixed.copy_from_slice(&root);
    }
    Ok(StoredCheckpoint {
        size: size as u64,
        root: fixed,
        note: r.get(2)?,
    })
}

const ENTRY_SELECT: &str = "SELECT l.idx, l.leaf, p.salt, p.payload FROM audit_leaves l \
                            LEFT JOIN audit_payloads p ON p.idx = l.idx";

impl LeafStore for SqliteStore {
    fn append(&mut self, entries: &[NewEntry]) -> Result<(), AuditError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| db(&path, e))?;
        {
            let mut leaf = tx
                .prepare_cached("INSERT INTO audit_leaves (idx, leaf) VALUES (?1, ?2)")
                .map_err(|e| db(&path, e))?;
            let mut payload = tx
                .prepare_cached(
                    "INSERT INTO audit_payloads (idx, salt, payload) VALUES (?1, ?2, ?3)",
                )
                .map_err(|e| db(&path, e))?;
            for e in entries {
                leaf.execute(params![to_i64(e.index), e.leaf])
                    .map_err(|err| db(&path, err))?;
                payload
                    .execute(params![to_i64(e.index), &e.salt[..], e.payload])
                    .map_err(|err| db(&path, err))?;
            }
        }
        tx.commit().map_err(|e| db(&path, e))
    }

    fn scan(
        &mut self,
        from: u64,
        visit: &mut dyn FnMut(StoredEntry) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        let sql = format!("{ENTRY_SELECT} WHERE l.idx >= ?1 ORDER BY l.idx");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| db(&self.path, e))?;
        let mut rows = stmt
            .query(params![to_i64(from)])
            .map_err(|e| db(&self.path, e))?;
        while let Some(row) = rows.next().map_err(|e| db(&self.path, e))? {
            let entry = row_entry(row).map_err(|e| db(&self.path, e))?;
            if !visit(entry)? {
                break;
            }
        }
        Ok(())
    }

    /// Two ordered cursors, leaves and payloads, merged by index inside one read transaction:
    /// cheaper than the join, no allocation per row, and orphan payloads fall out of the merge.
    fn scan_chunks(
        &mut self,
        from: u64,
        chunk_len: usize,
        visit: &mut dyn FnMut(EntryChunk) -> Result<bool, AuditError>,
    ) -> Result<ScanEnd, AuditError> {
        let path = self.path.clone();
        let e = |err| db(&path, err);
        let chunk_len = chunk_len.max(1);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(e)?;
        let mut leaves = tx
            .prepare("SELECT idx, leaf FROM audit_leaves WHERE idx >= ?1 ORDER BY idx")
            .map_err(e)?;
        // From 0 every payload row is read, so that rows filed under a negative index (which no
        // entry can have) show up as orphans too.
        let payload_sql = if from == 0 {
            "SELECT idx, salt, payload FROM audit_payloads WHERE ?1 = 0 ORDER BY idx"
        } else {
            "SELECT idx, salt, payload FROM audit_payloads WHERE idx >= ?1 ORDER BY idx"
        };
        let mut payloads = tx.prepare(payload_sql).map_err(e)?;
        let mut leaf_rows = leaves.query(params![to_i64(from)]).map_err(e)?;
        let mut payload_rows = payloads.query(params![to_i64(from)]).map_err(e)?;
        let mut orphans = Vec::new();
        let mut chunk = EntryChunk::with_capacity(chunk_len);
        let mut p = payload_rows.next().map_err(e)?;
        while let Some(l) = leaf_rows.next().map_err(e)? {
            let idx: i64 = l.get(0).map_err(e)?;
            while let Some(r) = p {
                let pidx: i64 = r.get(0).map_err(e)?;
                if pidx >= idx {
                    break;
                }
                orphans.push(pidx as u64);
                p = payload_rows.next().map_err(e)?;
            }
            let leaf = column_bytes(l.get_ref(1).map_err(e)?);
            let mut matched = false;
            if let Some(r) = p {
                if r.get::<_, i64>(0).map_err(e)? == idx {
                    let salt = column_bytes(r.get_ref(1).map_err(e)?);
                    let payload = column_bytes(r.get_ref(2).map_err(e)?);
                    chunk.push(idx as u64, leaf, Some((salt, payload)));
                    matched = true;
                }
            }
            if matched {
                p = payload_rows.next().map_err(e)?;
            } else {
                chunk.push(idx as u64, leaf, None);
            }
            if chunk.len() >= chunk_len {
                let full = std::mem::replace(&mut chunk, EntryChunk::with_capacity(chunk_len));
                if !visit(full)? {
                    return Ok(ScanEnd::Stopped);
                }
            }
        }
        if !chunk.is_empty() && !visit(chunk)? {
            return Ok(ScanEnd::Stopped);
        }
        while let Some(r) = p {
            orphans.push(r.get::<_, i64>(0).map_err(e)? as u64);
            p = payload_rows.next().map_err(e)?;
        }
        Ok(ScanEnd::Complete { orphans })
    }

    fn orphan_payloads(&mut self) -> Result<Vec<u64>, AuditError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT p.idx FROM audit_payloads p LEFT JOIN audit_leaves l ON l.idx = p.idx \
                 WHERE l.idx IS NULL ORDER BY p.idx",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(|e| db(&self.path, e))?;
        rows.map(|r| r.map(|i| i as u64).map_err(|e| db(&self.path, e)))
            .collect()
    }

    fn entry(&mut self, index: u64) -> Result<Option<StoredEntry>, AuditError> {
        let sql = format!("{ENTRY_SELECT} WHERE l.idx = ?1");
        self.conn
            .query_row(&sql, params![to_i64(index)], row_entry)
            .optional()
            .map_err(|e| self.err(e))
    }

    fn leaves(&mut self, size: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        let mut stmt = self
            .conn
            .prepare("SELECT leaf FROM audit_leaves WHERE idx < ?1 ORDER BY idx")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![to_i64(size)], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| db(&self.path, e))?;
        rows.map(|r| r.map_err(|e| db(&self.path, e))).collect()
    }

    fn count(&mut self) -> Result<u64, AuditError> {
        self.conn
            .query_row("SELECT count(*) FROM audit_leaves", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    fn erase_payload(&mut self, index: u64) -> Result<bool, AuditError> {
        self.conn
            .execute(
                "DELETE FROM audit_payloads WHERE idx = ?1",
                params![to_i64(index)],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    fn add_checkpoint(&mut self, c: &StoredCheckpoint) -> Result<(), AuditError> {
        self.conn
            .execute(
                "INSERT INTO audit_checkpoints (size, root, note) VALUES (?1, ?2, ?3)",
                params![to_i64(c.size), &c.root[..], c.note],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        let mut stmt = self
            .conn
            .prepare("SELECT size, root, note FROM audit_checkpoints ORDER BY size")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], row_checkpoint)
            .map_err(|e| db(&self.path, e))?;
        rows.map(|r| r.map_err(|e| db(&self.path, e))).collect()
    }

    fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, AuditError> {
        self.conn
            .query_row(
                "SELECT size, root, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
                [],
                row_checkpoint,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn truncate(&mut self, from: u64) -> Result<u64, AuditError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| db(&path, e))?;
        let n = tx
            .execute(
                "DELETE FROM audit_leaves WHERE idx >= ?1",
                params![to_i64(from)],
            )
            .map_err(|e| db(&path, e))?;
        tx.execute(
            "DELETE FROM audit_payloads WHERE idx >= ?1",
            params![to_i64(from)],
        )
        .map_err(|e| db(&path, e))?;
        tx.commit().map_err(|e| db(&path, e))?;
        Ok(n as u64)
    }
}
