//! A crate's tables on one database: the state directory's SQLite file (one connection behind a
//! mutex) or a PostgreSQL pool, and how a unit of work on them is isolated (`Tx`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, TransactionBehavior};

use crate::{open_sqlite, Pg, PgOptions, Sql, SqlError, SqlErrorCode, Sqlite};

/// How a unit of work is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tx {
    /// No transaction: each statement commits on its own.
    Autocommit,
    /// Reads that must see one state of the database: SQLite `BEGIN DEFERRED`, PostgreSQL
    /// `REPEATABLE READ, READ ONLY`.
    Read,
    /// Load -> change -> save: SQLite `BEGIN IMMEDIATE` (takes the write lock first, so a
    /// transaction that reads then writes cannot then fail on a writer in another process);
    /// PostgreSQL `READ COMMITTED`, serialised by the row and advisory locks the work takes.
    Write,
}

enum Backend {
    /// One connection behind a mutex: every unit of work is a few indexed statements.
    Sqlite {
        conn: Mutex<Connection>,
        path: PathBuf,
    },
    Postgres(Box<Pg>),
}

/// A crate's tables on SQLite or PostgreSQL.
pub struct Database {
    backend: Backend,
    label: String,
}

// The crates share one database between the server's tasks.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Database>();
};

impl Database {
    /// Opens (creating if needed) the SQLite file at `path` and runs `schema`.
    pub fn open_sqlite(path: &Path, schema: &str) -> Result<Database, SqlError> {
        let conn = open_sqlite(path, schema)?;
        Ok(Database {
            backend: Backend::Sqlite {
                conn: Mutex::new(conn),
                path: path.to_path_buf(),
            },
            label: path.display().to_string(),
        })
    }

    /// Connects to PostgreSQL (failing now, with what to check, when it cannot be reached) and
    /// creates the tables with `schema`.
    pub fn open_postgres(
        url: &str,
        options: PgOptions,
        schema: impl FnOnce(&mut postgres::Client) -> Result<(), postgres::Error> + Send,
    ) -> Result<Database, SqlError> {
        let pg = Pg::open(url, options, schema)?;
        Ok(Database {
            label: pg.label().to_string(),
            backend: Backend::Postgres(Box::new(pg)),
        })
    }

    /// The SQLite file; None on PostgreSQL.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite { path, .. } => Some(path),
            Backend::Postgres(_) => None,
        }
    }

    /// The SQLite file, or `postgres://user@host:port/db` (no password): for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Runs `f`'s statements as `tx` says, rolled back if `f` fails. On PostgreSQL `f` may run
    /// again (after a deadlock), so whatever it does outside the database must be undone when
    /// it fails.
    pub fn run<T: Send, E: From<SqlError> + SqlErrorCode + Send>(
        &self,
        tx: Tx,
        mut f: impl FnMut(&mut dyn Sql) -> Result<T, E> + Send,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Sqlite { conn, path } => {
                let mut conn = lock(conn);
                let db = |source| SqlError::Sqlite {
                    path: path.clone(),
                    source,
                };
                let behavior = match tx {
                    Tx::Autocommit => return f(&mut Sqlite { conn: &conn, path }),
                    Tx::Read => TransactionBehavior::Deferred,
                    Tx::Write => TransactionBehavior::Immediate,
                };
                let t = conn.transaction_with_behavior(behavior).map_err(db)?;
                let v = f(&mut Sqlite { conn: &t, path })?;
                t.commit().map_err(db)?;
                Ok(v)
            }
            Backend::Postgres(pg) => pg.run(tx, f),
        }
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // SQLite rolls back an open transaction when its guard drops, so a panic while holding the
    // lock cannot leave a half-done change behind: the poison is ignored.
    match conn.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::args;

    #[test]
    fn a_failed_write_is_rolled_back_on_sqlite() {
        let dir = std::env::temp_dir().join(format!("kura-sql-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.sqlite");
        let db = Database::open_sqlite(&path, "CREATE TABLE IF NOT EXISTS t (v REAL);").unwrap();
        let failed: Result<(), SqlError> = db.run(Tx::Write, |c| {
            c.execute("INSERT INTO t VALUES (?1)", args![1.5])?;
            c.execute("INSERT INTO nope VALUES (1)", &[])?;
            Ok(())
        });
        assert!(matches!(failed, Err(SqlError::Sqlite { .. })), "{failed:?}");
        db.run(Tx::Autocommit, |c| {
            c.execute("INSERT INTO t VALUES (?1)", args![2.5])
        })
        .unwrap();
        let values: Vec<f64> = db
            .run(Tx::Read, |c| c.query("SELECT v FROM t", &[]))
            .unwrap()
            .iter()
            .map(|r| r.real(0).unwrap())
            .collect();
        assert_eq!(values, vec![2.5]);
        assert_eq!(db.path(), Some(path.as_path()));
        assert!(!db.is_postgres());
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
