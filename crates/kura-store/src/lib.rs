//! Control-plane state: accounts, projects and their members, sign-in sessions, pending OpenID
//! logins, query history and staged outputs.
//!
//! Everything lives in `ctl_*` tables of the state directory's SQLite file (`kura.sqlite`, WAL,
//! `synchronous=FULL`), next to the audit log's own `audit_*` tables, which only `kura-audit`
//! writes. The store knows nothing of HTTP or authorization: callers decide who may do what,
//! audit it, then call the store. Time is always a parameter.

mod accounts;
mod projects;
mod queries;
mod sessions;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

pub use accounts::{Account, AccountSource, NewAccount};
pub use projects::{Member, Project};
pub use queries::{OutputRecord, QueryRecord, QueryStatus};
pub use sessions::{Session, SessionLimits};

pub const DB_FILE: &str = "kura.sqlite";

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("control-plane database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{what} {id:?} already exists")]
    Conflict { what: &'static str, id: String },
    #[error("{what} {id:?} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error("stored {what} is damaged: {why}")]
    Corrupt { what: &'static str, why: String },
    #[error("cannot draw random bytes: {0}")]
    Random(String),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ctl_accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    roles       TEXT NOT NULL,          -- JSON array
    password    TEXT,                   -- argon2id PHC string; NULL for OpenID accounts
    source      TEXT NOT NULL,          -- local | oidc
    subject     TEXT,                   -- OpenID issuer + subject
    disabled    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ctl_accounts_subject ON ctl_accounts(subject);
CREATE TABLE IF NOT EXISTS ctl_projects (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    snapshot    TEXT NOT NULL,
    tables      TEXT NOT NULL,          -- JSON object: table -> [columns]
    starts      TEXT NOT NULL,
    expires     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ctl_members (
    project     TEXT NOT NULL REFERENCES ctl_projects(id),
    user        TEXT NOT NULL REFERENCES ctl_accounts(id),
    role        TEXT NOT NULL,
    expires     TEXT NOT NULL,
    PRIMARY KEY (project, user)
);
CREATE TABLE IF NOT EXISTS ctl_sessions (
    token_hash  TEXT PRIMARY KEY,       -- SHA-256 of the cookie value; the value is never stored
    user        TEXT NOT NULL,
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ctl_sessions_user ON ctl_sessions(user);
CREATE TABLE IF NOT EXISTS ctl_pending_logins (
    key_hash    TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ctl_queries (
    id              TEXT PRIMARY KEY,
    project         TEXT NOT NULL,
    user            TEXT NOT NULL,
    sql             TEXT NOT NULL,
    status          TEXT NOT NULL,
    row_count       INTEGER,
    duration_ms     INTEGER,
    result_sha256   TEXT,
    snapshot_sha256 TEXT NOT NULL,
    error           TEXT,
    started_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ctl_queries_by_user ON ctl_queries(project, user, started_at);
CREATE TABLE IF NOT EXISTS ctl_outputs (
    id          TEXT PRIMARY KEY,
    project     TEXT NOT NULL,
    query_id    TEXT NOT NULL REFERENCES ctl_queries(id),
    author      TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    status      TEXT NOT NULL,
    row_count   INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ctl_outputs_by_project ON ctl_outputs(project, created_at);
";

/// The control-plane store. One connection behind a mutex: every operation is a few
/// indexed statements, far shorter than the audit append that precedes it.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) `<state_dir>/kura.sqlite`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join(DB_FILE);
        Store::open_file(&path)
    }

    pub fn open_file(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Db {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .map_err(err)?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers when the database can be read (readiness probe).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn()
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(|e| self.db(e))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done statement behind (SQLite
        // rolls back an open transaction when its guard drops), so the poison is ignored.
        match self.conn.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn db(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }
}

/// Times are stored as RFC 3339 UTC text with microseconds, which sorts chronologically.
pub(crate) fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(
    what: &'static str,
    s: &str,
) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| StoreError::Corrupt {
            what,
            why: format!("time {s:?}: {e}"),
        })
}

/// A random token as lower-case hex (`bytes` random bytes).
pub fn random_token(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

pub(crate) fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Ids of accounts and projects: lower-case letters, digits, `-`, `_`, `.`, 1..=64 chars,
/// starting with a letter or digit (they appear in URLs, policies and audit entries).
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.len() <= 64
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        })
}
