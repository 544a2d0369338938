//! Where the airlock's tables live and how work on them is isolated: [`Db`] is either the state
//! directory's SQLite file (one connection behind a mutex, as before) or a pool of connections to
//! a PostgreSQL database shared by several `kura serve` nodes.
//!
//! Every unit of work is one transaction (`Db::read`, `Db::write`). What keeps two nodes from
//! interleaving:
//!
//! - SQLite: `BEGIN IMMEDIATE` takes the file's write lock first, so writers (this process's, and
//!   the CLI's) run one after the other; reads see one snapshot (`BEGIN DEFERRED`).
//! - PostgreSQL: a write loads the review `FOR UPDATE` (`reviews::load_review`), so two
//!   requests on one review run one after the other, the second seeing the first's result; a
//!   step that reads the ledger to decide what it records (a release, `PersistentLedger::record`)
//!   first takes the snapshot's ledger lock (`lock_ledger`), so two releases from one snapshot
//!   cannot both check against a ledger without the other's cells. Reads run in
//!   `REPEATABLE READ READ ONLY`: a review's row, rounds and votes come from one snapshot.
//!
//! Also the encodings shared by the tables: RFC 3339 times and JSON columns.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kura_sql::{args, Database, PgOptions, Sql, Tx};
use sha2::{Digest, Sha256};

use crate::error::AirlockError;
use crate::ledger::LedgerCache;
use crate::schema;

/// Where the airlock's tables live, as configured.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum AirlockDatabase {
    /// `<state_dir>/kura.sqlite`, next to kura-store's and kura-audit's tables: one server
    /// process (the CLI may use it alongside).
    #[default]
    StateDir,
    /// A PostgreSQL database (`postgres://user@host:port/db`, libpq-style parameters allowed,
    /// e.g. `?options=-csearch_path%3Dkura` for a schema) shared by any number of nodes; the
    /// same `database_url` as the control plane's.
    Postgres(String),
}

impl AirlockDatabase {
    /// The configured `database_url` if any, else the state directory.
    pub fn from_url(database_url: Option<&str>) -> AirlockDatabase {
        match database_url {
            Some(url) => AirlockDatabase::Postgres(url.to_string()),
            None => AirlockDatabase::StateDir,
        }
    }
}

/// Shows a PostgreSQL location without its password.
impl fmt::Debug for AirlockDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AirlockDatabase::StateDir => f.write_str("StateDir"),
            AirlockDatabase::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&kura_sql::label_of_url(url))
                .finish(),
        }
    }
}

/// The airlock's tables on one database, and this process's index of their release ledger.
pub(crate) struct Db {
    db: Database,
    ledger: LedgerCache,
}

impl Db {
    /// Opens the database (creating the tables if missing): `state_dir`'s SQLite file, or
    /// PostgreSQL, which fails now, with what to check, when it cannot be reached.
    pub(crate) fn open(state_dir: &Path, database: &AirlockDatabase) -> Result<Db, AirlockError> {
        let db = match database {
            AirlockDatabase::StateDir => {
                Database::open_sqlite(&state_dir.join(schema::DB_FILE), &schema::sqlite())?
            }
            AirlockDatabase::Postgres(url) => {
                let options = PgOptions {
                    application_name: "kura-airlock",
                    max_connections: 8,
                    // A release holds its review's row and its snapshot's ledger lock while it
                    // re-runs the rule pack and writes the release files, which can take
                    // seconds for a large table.
                    lock_timeout: Duration::from_secs(60),
                    // Between two statements of a release the node checks the table and writes
                    // files.
                    idle_in_transaction: Duration::from_secs(300),
                    database: "the airlock's database",
                    connection: "the airlock's PostgreSQL connection",
                    tables: "the airlock's tables",
                };
                Database::open_postgres(url, options, schema::ensure_postgres)?
            }
        };
        Ok(Db {
            db,
            ledger: LedgerCache::default(),
        })
    }

    /// The released cells of each snapshot as this process last read them.
    pub(crate) fn ledger_cache(&self) -> &LedgerCache {
        &self.ledger
    }

    /// The SQLite file, or `postgres://user@host:port/db` (no password): for messages.
    pub(crate) fn label(&self) -> String {
        self.db.label().to_string()
    }

    pub(crate) fn is_postgres(&self) -> bool {
        self.db.is_postgres()
    }

    /// Runs `f`'s reads against one snapshot of the database.
    pub(crate) fn read<T: Send>(
        &self,
        f: impl FnMut(&mut dyn Sql) -> Result<T, AirlockError> + Send,
    ) -> Result<T, AirlockError> {
        self.db.run(Tx::Read, f)
    }

    /// Runs `f` in one write transaction, rolled back if `f` fails. On PostgreSQL `f` may run
    /// again (after a deadlock), so whatever it does outside the database must be undone when
    /// it fails (the release removes its files).
    pub(crate) fn write<T: Send>(
        &self,
        f: impl FnMut(&mut dyn Sql) -> Result<T, AirlockError> + Send,
    ) -> Result<T, AirlockError> {
        self.db.run(Tx::Write, f)
    }
}

/// Serialises, until the transaction ends, every step that checks `snapshot`'s released cells
/// and then records more (releases; `PersistentLedger::record`). On SQLite the write
/// transaction already holds the only write lock. On PostgreSQL it is a transaction-level
/// advisory lock keyed by the snapshot: a release that waited for it then reads the ledger with
/// the other release's cells committed.
pub(crate) fn lock_ledger(c: &mut dyn Sql, snapshot: &str) -> Result<(), AirlockError> {
    if !c.is_postgres() {
        return Ok(());
    }
    c.execute(
        "SELECT pg_advisory_xact_lock(?1)",
        args![ledger_lock_key(snapshot)],
    )?;
    Ok(())
}

/// The advisory lock of a snapshot's ledger: the first 8 bytes of a SHA-256 naming it, so that
/// it does not collide with the advisory locks of kura-store or kura-audit.
fn ledger_lock_key(snapshot: &str) -> i64 {
    let digest = Sha256::digest(format!("kura-airlock/ledger\n{snapshot}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Times are RFC 3339 UTC with microseconds (sorts chronologically), as in kura-store.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(what: &'static str, s: &str) -> Result<DateTime<Utc>, AirlockError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| AirlockError::Corrupt {
            what,
            why: format!("time {s:?}: {e}"),
        })
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    s: &str,
) -> Result<T, AirlockError> {
    serde_json::from_str(s).map_err(|e| AirlockError::Corrupt {
        what,
        why: e.to_string(),
    })
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, AirlockError> {
    serde_json::to_string(v).map_err(|e| AirlockError::Corrupt {
        what: "json",
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_location_never_shows_its_password() {
        let d = AirlockDatabase::from_url(Some("postgres://kura:s3cret@db.internal:5433/kura"));
        let shown = format!("{d:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://kura@db.internal:5433/kura"),
            "{shown}"
        );
        assert_eq!(AirlockDatabase::from_url(None), AirlockDatabase::StateDir);
    }

    #[test]
    fn snapshots_have_their_own_ledger_locks() {
        assert_eq!(ledger_lock_key("a"), ledger_lock_key("a"));
        assert_ne!(ledger_lock_key("a"), ledger_lock_key("b"));
    }
}
