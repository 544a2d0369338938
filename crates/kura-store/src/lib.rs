//! Control-plane state: accounts, projects and their members, sign-in sessions, pending OpenID
//! logins, query history and staged outputs.
//!
//! Everything lives in `ctl_*` tables (`schema.rs`), either in the state directory's SQLite file
//! (`kura.sqlite`, WAL, `synchronous=FULL`), next to the audit log's own `audit_*` tables, which
//! only `kura-audit` writes; or in a PostgreSQL database shared by several `kura serve` nodes.
//! Statements go through `kura-sql`, the layer shared with kura-airlock. The store knows nothing of HTTP or authorization: callers decide who may do what,
//! audit it, then call the store. Time is always a parameter.
//!
//! Every operation that must hold when two nodes race is one statement or one transaction:
//! creating an account, project, query or output that must not exist (`INSERT .. ON CONFLICT
//! DO NOTHING`), taking a pending login (`DELETE .. RETURNING`), finishing a query (only while it
//! is running), the first OpenID sign-in of an identity, and starting a session, which locks the
//! account row so that it cannot slip past a concurrent disabling or password change.

mod accounts;
mod projects;
mod queries;
mod schema;
mod sessions;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kura_sql::{Database, PgOptions, Sql, Tx};

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
    /// `database` is `postgres://user@host:port/db` (never the password); `code` the SQLSTATE
    /// when the server answered with an error.
    #[error("control-plane database {database}: {message}")]
    Postgres {
        database: String,
        code: Option<String>,
        message: String,
    },
    #[error("control-plane database: {0}")]
    Config(String),
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

// The statement layer's errors become the variants above, named for the control plane.
kura_sql::impl_sql_error!(StoreError);

/// Where the control plane lives, as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `<dir>/kura.sqlite`: one server process (the CLI may use it alongside).
    State(PathBuf),
    /// A PostgreSQL database (`postgres://user@host:port/db`, libpq-style parameters allowed,
    /// e.g. `?options=-csearch_path%3Dkura` for a schema) shared by any number of nodes.
    Postgres(String),
}

impl StoreLocation {
    /// The configured `database_url` if any, else the state directory.
    pub fn from_config(state_dir: &Path, database_url: Option<&str>) -> StoreLocation {
        match database_url {
            Some(url) => StoreLocation::Postgres(url.to_string()),
            None => StoreLocation::State(state_dir.to_path_buf()),
        }
    }
}

/// Shows a PostgreSQL location without its password.
impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::State(dir) => f.debug_tuple("State").field(dir).finish(),
            StoreLocation::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&kura_sql::label_of_url(url))
                .finish(),
        }
    }
}

/// The control-plane store, on SQLite or PostgreSQL.
pub struct Store {
    db: Database,
}

// The server shares one store between its tasks (`Arc<Store>`).
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Store>();
};

impl Store {
    /// Opens (creating if needed) `<state_dir>/kura.sqlite`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join(DB_FILE);
        Store::open_file(&path)
    }

    pub fn open_file(path: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            db: Database::open_sqlite(path, &schema::sqlite())?,
        })
    }

    /// Connects to a PostgreSQL database (`postgres://user@host:port/db`) and creates the
    /// tables if missing, in the first schema of the connection's `search_path`. Fails now,
    /// with what to check, when the database cannot be reached.
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let options = PgOptions {
            application_name: "kura-store",
            // Every operation is a few indexed statements, so a few connections serve many
            // requests.
            max_connections: 8,
            lock_timeout: Duration::from_secs(30),
            idle_in_transaction: Duration::from_secs(60),
            database: "the control-plane database",
            connection: "the control plane's PostgreSQL connection",
            tables: "the control-plane tables",
        };
        Ok(Store {
            db: Database::open_postgres(url, options, schema::ensure_postgres)?,
        })
    }

    /// Opens the store where the configuration says.
    pub fn open_at(location: &StoreLocation) -> Result<Store, StoreError> {
        match location {
            StoreLocation::State(dir) => Store::open(dir),
            StoreLocation::Postgres(url) => Store::open_postgres(url),
        }
    }

    /// The SQLite file; None on PostgreSQL.
    pub fn path(&self) -> Option<&Path> {
        self.db.path()
    }

    /// The SQLite file, or `postgres://user@host:port/db` (no password): for messages.
    pub fn label(&self) -> &str {
        self.db.label()
    }

    pub fn is_postgres(&self) -> bool {
        self.db.is_postgres()
    }

    /// Answers when the database can be read (readiness probe).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| Ok(c.query("SELECT 1", &[])?)).map(|_| ())
    }

    /// Runs `f`'s statements, each committed on its own.
    pub(crate) fn run<T: Send>(
        &self,
        f: impl FnMut(&mut dyn Sql) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.db.run(Tx::Autocommit, f)
    }

    /// Runs `f`'s statements in one transaction, rolled back if `f` fails. On PostgreSQL `f`
    /// may run again (after a deadlock), so it must not have effects outside the database.
    pub(crate) fn transaction<T: Send>(
        &self,
        f: impl FnMut(&mut dyn Sql) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.db.run(Tx::Write, f)
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
