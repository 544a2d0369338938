//! `LeafStore` on PostgreSQL, for deployments where several `kura serve` nodes share one database
//! (`docs/audit.md`, "PostgreSQL and several nodes"). The tables mirror SQLite's
//! (`audit_leaves`, `audit_payloads`, `audit_checkpoints`, the last with the signer's lease term)
//! plus three one-row tables: `audit_head` (the log's size and last leaf hash; its row lock
//! serialises appenders), `audit_lease` (which node signs checkpoints, until when) and
//! `audit_meta` (schema version, the log's verifier key).
//!
//! `PgStore` is the plain store: reads for the reader and the verifier, and the `LeafStore`
//! writes. The multi-writer protocol (sequencing, catching up, the lease, signing) is in
//! `postgres/shared.rs`, the DDL in `postgres/schema.rs`. The client is the synchronous
//! `postgres` crate: the log writes from one thread and the verifier reads from one.

mod schema;
mod shared;

use std::time::Duration;

use postgres::config::SslMode;
use postgres::types::{ToSql, Type};
use postgres::{Client, Config, NoTls, Row};

use crate::merkle::{leaf_hash, Hash};
use crate::store::{EntryChunk, LeafStore, NewEntry, ScanEnd, StoredCheckpoint, StoredEntry};
use crate::AuditError;

pub(crate) use shared::PgSequencer;

/// Rows read per query when scanning; each page is one short statement.
const PAGE: i64 = 8192;

/// How long a statement waits for a row lock (the append lock) before the append fails: a
/// node that hangs inside a transaction must not stall every other node forever.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Session settings for every connection.
#[derive(Debug, Clone, Copy)]
struct Session {
    read_only: bool,
    /// The server ends a transaction left idle this long (a paused or hung node), releasing
    /// its locks.
    idle_in_transaction: Duration,
}

pub struct PgStore {
    config: Config,
    /// `postgres://user@host:port/db`, never the password: used in every message.
    label: String,
    session: Session,
    client: Option<Client>,
    /// Inside `consistent_read`: a lost connection must not silently leave the snapshot.
    in_snapshot: bool,
}

/// A PostgreSQL error with its causes, naming the database and what was being done.
pub(crate) fn pg_error(label: &str, what: &str, e: &postgres::Error) -> AuditError {
    let mut msg = format!("{label}: {what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    AuditError::Store(msg)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored hash column; a value of the wrong length (tampering) reads as zeros, which no
/// check accepts.
pub(crate) fn hash_of(bytes: &[u8]) -> Hash {
    <[u8; 32]>::try_from(bytes).unwrap_or([0; 32])
}

impl PgStore {
    fn connect_with(url: &str, session: Session) -> Result<PgStore, AuditError> {
        let mut config: Config = url.parse().map_err(|e: postgres::Error| {
            AuditError::Config(format!(
                "the audit database URL is not a PostgreSQL connection string \
                 (postgres://user@host:port/db): {e}"
            ))
        })?;
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(AuditError::Config(format!(
                "{}: sslmode requires TLS, which the audit log's PostgreSQL connection does not \
                 support yet; connect through a Unix socket (host=/var/run/postgresql) or a \
                 private network",
                kura_sql::label_of(&config)
            )));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("kura-audit");
        }
        let label = kura_sql::label_of(&config);
        let mut store = PgStore {
            config,
            label,
            session,
            client: None,
            in_snapshot: false,
        };
        store.client()?;
        Ok(store)
    }

    /// Connects for writing and creates the log's tables if they do not exist.
    pub fn open(url: &str) -> Result<PgStore, AuditError> {
        PgStore::open_writer(url, Duration::from_secs(30))
    }

    pub(crate) fn open_writer(url: &str, idle: Duration) -> Result<PgStore, AuditError> {
        let mut store = PgStore::connect_with(
            url,
            Session {
                read_only: false,
                idle_in_transaction: idle,
            },
        )?;
        let label = store.label.clone();
        let client = store.client()?;
        schema::ensure(client).map_err(|e| pg_error(&label, "creating the audit tables", &e))?;
        Ok(store)
    }

    /// Connects read-only (verifier, search, proofs); the log's tables must exist.
    pub fn open_read_only(url: &str) -> Result<PgStore, AuditError> {
        let mut store = PgStore::connect_with(
            url,
            Session {
                read_only: true,
                idle_in_transaction: Duration::from_secs(600),
            },
        )?;
        let has: bool = store.with("looking for the audit tables", |c| {
            c.query_one(
                "SELECT to_regclass('audit_leaves') IS NOT NULL \
                 AND to_regclass('audit_payloads') IS NOT NULL \
                 AND to_regclass('audit_checkpoints') IS NOT NULL",
                &[],
            )?
            .try_get(0)
        })?;
        if !has {
            return Err(AuditError::Config(format!(
                "{} holds no audit log tables (in its search_path): is the URL right?",
                store.label
            )));
        }
        Ok(store)
    }

    /// The value of a setting on this store's connection (e.g. `synchronous_commit`).
    pub fn session_setting(&mut self, name: &str) -> Result<String, AuditError> {
        self.with("reading a session setting", |c| {
            c.query_one("SELECT current_setting($1)", &[&name])?
                .try_get(0)
        })
    }

    /// `postgres://user@host:port/db` of this store (no password).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The open connection, reconnecting if the last one was dropped after an error.
    pub(crate) fn client(&mut self) -> Result<&mut Client, AuditError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            if self.in_snapshot {
                return Err(AuditError::Store(format!(
                    "{}: the connection was lost during a consistent read",
                    self.label
                )));
            }
            let client = self.connect()?;
            self.client = Some(client);
        }
        self.client.as_mut().ok_or_else(|| {
            AuditError::Store(format!("{}: no connection to the database", self.label))
        })
    }

    fn connect(&self) -> Result<Client, AuditError> {
        let mut client = self.config.connect(NoTls).map_err(|e| {
            let AuditError::Store(msg) = pg_error(&self.label, "cannot connect", &e) else {
                return AuditError::Store(e.to_string());
            };
            AuditError::Store(format!(
                "{msg} (is PostgreSQL running there, and does the URL name the right user and database?)"
            ))
        })?;
        // `client_min_messages`: the tables' `CREATE .. IF NOT EXISTS` would otherwise log a
        // NOTICE per existing table at every node's start.
        let mut settings = format!(
            "SET idle_in_transaction_session_timeout = {}; SET lock_timeout = {}; \
             SET client_min_messages = warning;",
            self.session.idle_in_transaction.as_millis().max(1),
            LOCK_TIMEOUT.as_millis()
        );
        if self.session.read_only {
            settings.push_str(" SET default_transaction_read_only = on;");
        } else {
            // Acknowledged means flushed: never trust a server-wide `synchronous_commit = off`.
            settings.push_str(" SET synchronous_commit = on;");
        }
        client
            .batch_execute(&settings)
            .map_err(|e| pg_error(&self.label, "setting up the session", &e))?;
        Ok(client)
    }

    /// Drops the connection, so that the server ends any open transaction and releases its
    /// locks; the next call reconnects.
    pub(crate) fn reset(&mut self) {
        self.client = None;
    }

    /// Runs `f` on the connection; any error drops the connection (its state is unknown).
    fn with<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, AuditError> {
        let client = self.client()?;
        match f(client) {
            Ok(v) => Ok(v),
            Err(e) => {
                let err = pg_error(&self.label, what, &e);
                self.reset();
                Err(err)
            }
        }
    }

    /// Runs `f` with every read in one snapshot (a repeatable-read, read-only transaction), so
    /// that the checkpoints and the leaves it reads belong to one moment of a log that other
    /// nodes keep appending to.
    pub fn consistent_read<T>(
        &mut self,
        f: impl FnOnce(&mut dyn LeafStore) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        self.with("starting a consistent read", |c| {
            // No locks are held, so the idle limit that frees a paused writer's locks is
            // lifted for the snapshot: recovery may check many checkpoints between reads.
            c.batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                 SET LOCAL idle_in_transaction_session_timeout = 0",
            )
        })?;
        self.in_snapshot = true;
        let result = f(self);
        self.in_snapshot = false;
        if self.client.is_some() {
            self.with("ending a consistent read", |c| c.batch_execute("ROLLBACK"))?;
        }
        result
    }

    fn query_typed(
        &mut self,
        what: &str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, AuditError> {
        self.with(what, |c| c.query_typed(sql, params))
    }

    fn err(&self, what: &str, e: &postgres::Error) -> AuditError {
        pg_error(&self.label, what, e)
    }
}

fn row_entry(r: &Row) -> Result<StoredEntry, postgres::Error> {
    Ok(StoredEntry::from_columns(
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
    ))
}

fn row_checkpoint(r: &Row) -> Result<StoredCheckpoint, postgres::Error> {
    let size: i64 = r.try_get(0)?;
    let root: &[u8] = r.try_get(1)?;
    Ok(StoredCheckpoint {
        size: size as u64,
        root: hash_of(root),
        note: r.try_get(2)?,
    })
}

const ENTRY_PAGE: &str = "SELECT l.idx, l.leaf, p.salt, p.payload FROM audit_leaves l \
                          LEFT JOIN audit_payloads p ON p.idx = l.idx \
                          WHERE l.idx >= $1 ORDER BY l.idx LIMIT $2";

/// Inserts a batch of entries with one statement per table.
pub(crate) fn insert_entries(
    c: &mut impl postgres::GenericClient,
    entries: &[NewEntry],
) -> Result<(), postgres::Error> {
    let idx: Vec<i64> = entries.iter().map(|e| to_i64(e.index)).collect();
    let leaves: Vec<&[u8]> = entries.iter().map(|e| &e.leaf[..]).collect();
    let salts: Vec<&[u8]> = entries.iter().map(|e| &e.salt[..]).collect();
    let payloads: Vec<&str> = entries.iter().map(|e| e.payload.as_str()).collect();
    c.execute_typed(
        "INSERT INTO audit_leaves (idx, leaf) SELECT * FROM unnest($1::int8[], $2::bytea[])",
        &[(&idx, Type::INT8_ARRAY), (&leaves, Type::BYTEA_ARRAY)],
    )?;
    c.execute_typed(
        "INSERT INTO audit_payloads (idx, salt, payload) \
         SELECT * FROM unnest($1::int8[], $2::bytea[], $3::text[])",
        &[
            (&idx, Type::INT8_ARRAY),
            (&salts, Type::BYTEA_ARRAY),
            (&payloads, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}

impl LeafStore for PgStore {
    /// Appends after the head, under the head's row lock. The log's own writer uses the shared
    /// sequencer instead, which also catches up with other nodes; this is for direct users.
    fn append(&mut self, entries: &[NewEntry]) -> Result<(), AuditError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let label = self.label.clone();
        let client = self.client()?;
        let result = (|| -> Result<Result<(), AuditError>, postgres::Error> {
            let mut tx = client.transaction()?;
            let head: i64 = tx
                .query_one("SELECT size FROM audit_head WHERE id = 1 FOR UPDATE", &[])?
                .try_get(0)?;
            if head != to_i64(first.index) {
                return Ok(Err(AuditError::Store(format!(
                    "{label}: the log holds {head} entries, cannot append at {}",
                    first.index
                ))));
            }
            insert_entries(&mut tx, entries)?;
            let last_hash = leaf_hash(&last.leaf);
            tx.execute_typed(
                "UPDATE audit_head SET size = $1, last_hash = $2 WHERE id = 1",
                &[
                    (&to_i64(last.index + 1), Type::INT8),
                    (&&last_hash[..], Type::BYTEA),
                ],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })();
        match result {
            Ok(r) => r,
            Err(e) => {
                self.reset();
                Err(pg_error(&label, "appending entries", &e))
            }
        }
    }

    fn scan(
        &mut self,
        from: u64,
        visit: &mut dyn FnMut(StoredEntry) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        let mut next = to_i64(from);
        loop {
            let rows = self.query_typed(
                "reading entries",
                ENTRY_PAGE,
                &[(&next, Type::INT8), (&PAGE, Type::INT8)],
            )?;
            for r in &rows {
                let entry = row_entry(r).map_err(|e| self.err("reading an entry", &e))?;
                next = to_i64(entry.index).saturating_add(1);
                if !visit(entry)? {
                    return Ok(());
                }
            }
            if (rows.len() as i64) < PAGE {
                return Ok(());
            }
        }
    }

    /// Pages of the leaves joined with their payloads, packed into chunks without a copy per
    /// column value; orphan payloads from one anti-join at the end.
    fn scan_chunks(
        &mut self,
        from: u64,
        chunk_len: usize,
        visit: &mut dyn FnMut(EntryChunk) -> Result<bool, AuditError>,
    ) -> Result<ScanEnd, AuditError> {
        let chunk_len = chunk_len.max(1);
        let mut chunk = EntryChunk::with_capacity(chunk_len);
        let mut next = to_i64(from);
        loop {
            let rows = self.query_typed(
                "reading entries",
                ENTRY_PAGE,
                &[(&next, Type::INT8), (&PAGE, Type::INT8)],
            )?;
            for r in &rows {
                let read = || -> Result<_, postgres::Error> {
                    let idx: i64 = r.try_get(0)?;
                    let leaf: &[u8] = r.try_get(1)?;
                    let salt: Option<&[u8]> = r.try_get(2)?;
                    let payload: Option<&str> = r.try_get(3)?;
                    Ok((idx, leaf, salt.zip(payload.map(str::as_bytes))))
                };
                let (idx, leaf, payload) = read().map_err(|e| self.err("reading an entry", &e))?;
                next = idx.saturating_add(1);
                chunk.push(idx as u64, leaf, payload);
                if chunk.len() >= chunk_len {
                    let full = std::mem::replace(&mut chunk, EntryChunk::with_capacity(chunk_len));
                    if !visit(full)? {
                        return Ok(ScanEnd::Stopped);
                    }
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        if !chunk.is_empty() && !visit(chunk)? {
            return Ok(ScanEnd::Stopped);
        }
        // From 0 every payload row counts, so rows filed under a negative index show up too.
        let orphans = if from == 0 {
            self.orphan_payloads()?
        } else {
            self.orphans_from(to_i64(from))?
        };
        Ok(ScanEnd::Complete { orphans })
    }

    fn orphan_payloads(&mut self) -> Result<Vec<u64>, AuditError> {
        self.orphans_from(i64::MIN)
    }

    fn entry(&mut self, index: u64) -> Result<Option<StoredEntry>, AuditError> {
        let rows = self.query_typed(
            "reading an entry",
            "SELECT l.idx, l.leaf, p.salt, p.payload FROM audit_leaves l \
             LEFT JOIN audit_payloads p ON p.idx = l.idx WHERE l.idx = $1",
            &[(&to_i64(index), Type::INT8)],
        )?;
        rows.first()
            .map(row_entry)
            .transpose()
            .map_err(|e| self.err("reading an entry", &e))
    }

    fn leaves(&mut self, size: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        let mut out = Vec::new();
        let mut next = 0i64;
        let end = to_i64(size);
        loop {
            let rows = self.query_typed(
                "reading leaves",
                "SELECT idx, leaf FROM audit_leaves WHERE idx >= $1 AND idx < $2 \
                 ORDER BY idx LIMIT $3",
                &[(&next, Type::INT8), (&end, Type::INT8), (&PAGE, Type::INT8)],
            )?;
            for r in &rows {
                let read = || -> Result<(i64, Vec<u8>), postgres::Error> {
                    Ok((r.try_get(0)?, r.try_get(1)?))
                };
                let (idx, leaf) = read().map_err(|e| self.err("reading a leaf", &e))?;
                next = idx.saturating_add(1);
                out.push(leaf);
            }
            if (rows.len() as i64) < PAGE {
                return Ok(out);
            }
        }
    }

    fn count(&mut self) -> Result<u64, AuditError> {
        let rows =
            self.query_typed("counting entries", "SELECT count(*) FROM audit_leaves", &[])?;
        let n: i64 = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| self.err("counting entries", &e))?
            .unwrap_or(0);
        Ok(n as u64)
    }

    fn erase_payload(&mut self, index: u64) -> Result<bool, AuditError> {
        self.with("erasing a payload", |c| {
            c.execute_typed(
                "DELETE FROM audit_payloads WHERE idx = $1",
                &[(&to_i64(index), Type::INT8)],
            )
        })
        .map(|n| n > 0)
    }

    /// Stores a checkpoint as given. The shared writer signs in its own transaction, under the
    /// lease and the head lock (`shared.rs`); this is for direct users.
    fn add_checkpoint(&mut self, c: &StoredCheckpoint) -> Result<(), AuditError> {
        self.with("storing a checkpoint", |client| {
            client.execute_typed(
                "INSERT INTO audit_checkpoints (size, root, note) VALUES ($1, $2, $3)",
                &[
                    (&to_i64(c.size), Type::INT8),
                    (&&c.root[..], Type::BYTEA),
                    (&c.note, Type::TEXT),
                ],
            )
        })
        .map(|_| ())
    }

    fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        let rows = self.query_typed(
            "reading checkpoints",
            "SELECT size, root, note FROM audit_checkpoints ORDER BY size",
            &[],
        )?;
        rows.iter()
            .map(row_checkpoint)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err("reading a checkpoint", &e))
    }

    fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, AuditError> {
        let rows = self.query_typed(
            "reading the latest checkpoint",
            "SELECT size, root, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
            &[],
        )?;
        rows.first()
            .map(row_checkpoint)
            .transpose()
            .map_err(|e| self.err("reading a checkpoint", &e))
    }

    /// Never on a shared log: any stored entry may have been acknowledged by another node.
    fn truncate(&mut self, from: u64) -> Result<u64, AuditError> {
        Err(AuditError::Config(format!(
            "{}: refusing to remove entries from {from} on: in a shared PostgreSQL log every \
             committed entry may have been acknowledged by another node",
            self.label
        )))
    }
}

impl PgStore {
    fn orphans_from(&mut self, from: i64) -> Result<Vec<u64>, AuditError> {
        let rows = self.query_typed(
            "looking for orphan payloads",
            "SELECT p.idx FROM audit_payloads p WHERE p.idx >= $1 AND NOT EXISTS \
             (SELECT 1 FROM audit_leaves l WHERE l.idx = p.idx) ORDER BY p.idx",
            &[(&from, Type::INT8)],
        )?;
        rows.iter()
            .map(|r| r.try_get::<_, i64>(0).map(|i| i as u64))
            .collect::<Result<_, _>>()
            .map_err(|e| self.err("reading an orphan payload", &e))
    }
}
