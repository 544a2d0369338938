//! The SQLite side: opening the state directory's file the one way every crate does (WAL,
//! `synchronous=FULL`, busy timeout, foreign keys), and `Sql` for a connection.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::{Arg, Cell, Row, Sql, SqlError};

/// Opens (creating if needed) the SQLite file at `path` and runs `schema` (the crate's
/// `CREATE TABLE IF NOT EXISTS` statements).
pub fn open_sqlite(path: &Path, schema: &str) -> Result<Connection, SqlError> {
    let err = |source| SqlError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .map_err(err)?;
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(err)?;
    conn.execute_batch(schema).map_err(err)?;
    Ok(conn)
}

/// A SQLite connection (or an open transaction on it) and the file, for messages.
pub struct Sqlite<'a> {
    pub conn: &'a Connection,
    pub path: &'a Path,
}

impl Sqlite<'_> {
    fn err(&self, source: rusqlite::Error) -> SqlError {
        SqlError::Sqlite {
            path: self.path.to_path_buf(),
            source,
        }
    }
}

impl Sql for Sqlite<'_> {
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, SqlError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let n = stmt
            .execute(rusqlite::params_from_iter(args))
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, SqlError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let mut cells = Vec::with_capacity(width);
            for i in 0..width {
                cells.push(match r.get_ref(i).map_err(|e| self.err(e))? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Real(x) => Cell::Real(x),
                    ValueRef::Text(t) => {
                        Cell::Text(String::from_utf8(t.to_vec()).map_err(|e| {
                            SqlError::Corrupt {
                                what: "row",
                                why: format!("column {i}: {e}"),
                            }
                        })?)
                    }
                    ValueRef::Blob(_) => {
                        return Err(SqlError::Corrupt {
                            what: "row",
                            why: format!("column {i}: unexpected blob value"),
                        })
                    }
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn is_postgres(&self) -> bool {
        false
    }
}
