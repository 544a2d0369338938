//! The one interface the airlock's statements go through, whichever database holds them:
//! parameters (`Arg`), rows converted to one form (`Row`), and `Sql`, implemented for a SQLite
//! connection here and for a PostgreSQL connection in `pg.rs`.
//!
//! This is kura-store's `db.rs` (same names, same rules) with floating-point values added
//! (`Arg::Real`, `Cell::Real`, for the ledger's cell values) and `AirlockError` for
//! `StoreError`. It is a copy because kura-store keeps its layer private; the names are kept so
//! that, once both use one shared module, switching is replacing the imports.
//!
//! Statements are written once, in the dialect both databases share, with SQLite's numbered
//! placeholders (`?1`); `postgres_placeholders` rewrites them to `$1`. Where the dialects really
//! differ (a row lock, an advisory lock), the statement asks `Sql::is_postgres`.

use std::borrow::Cow;
use std::path::Path;

use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::error::AirlockError;

/// A statement parameter: text, integers and (for ledger values) doubles.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Real(Option<f64>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Arg<'a> {
        Arg::Text(Some(s))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Arg<'a> {
        Arg::Text(Some(s))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(s: Option<&'a str>) -> Arg<'a> {
        Arg::Text(s)
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(s: &'a Option<String>) -> Arg<'a> {
        Arg::Text(s.as_deref())
    }
}

impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Arg::Int(Some(n))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(n: Option<i64>) -> Self {
        Arg::Int(n)
    }
}

impl From<f64> for Arg<'_> {
    fn from(x: f64) -> Self {
        Arg::Real(Some(x))
    }
}

/// The parameters of a statement: `args![a, b]` is `&[Arg::from(a), Arg::from(b)]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$($crate::db::Arg::from($a)),*] };
}
pub(crate) use args;

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Arg::Int(Some(n)) => ToSqlOutput::Borrowed(ValueRef::Integer(n)),
            Arg::Real(Some(x)) => ToSqlOutput::Borrowed(ValueRef::Real(x)),
            Arg::Text(None) | Arg::Int(None) | Arg::Real(None) => {
                ToSqlOutput::Borrowed(ValueRef::Null)
            }
        })
    }
}

/// One column value of a result row, from either database.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Real(f64),
    /// PostgreSQL's `BOOLEAN`; SQLite keeps booleans as integers.
    Bool(bool),
    Text(String),
}

/// A result row, converted from the backend's own row type so that the mapping from rows to
/// reviews, rounds, votes, cells... is written once.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub(crate) Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, AirlockError> {
        self.0.get(i).ok_or_else(|| AirlockError::Corrupt {
            what: "row",
            why: format!("no column {i}"),
        })
    }

    fn mismatch(&self, i: usize, want: &str) -> AirlockError {
        AirlockError::Corrupt {
            what: "row",
            why: format!("column {i}: expected {want}, found {:?}", self.0.get(i)),
        }
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, AirlockError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(s) => Ok(Some(s.clone())),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, AirlockError> {
        self.opt_text(i)?.ok_or_else(|| self.mismatch(i, "text"))
    }

    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>, AirlockError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(n) => Ok(Some(*n)),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64, AirlockError> {
        self.opt_int(i)?
            .ok_or_else(|| self.mismatch(i, "an integer"))
    }

    /// A round number: positive and small.
    pub(crate) fn u32(&self, i: usize) -> Result<u32, AirlockError> {
        let n = self.int(i)?;
        u32::try_from(n).map_err(|_| self.mismatch(i, "a round number"))
    }

    /// A double; SQLite may hand back an integer for a whole value.
    pub(crate) fn real(&self, i: usize) -> Result<f64, AirlockError> {
        match self.cell(i)? {
            Cell::Real(x) => Ok(*x),
            Cell::Int(n) => Ok(*n as f64),
            _ => Err(self.mismatch(i, "a number")),
        }
    }
}

/// How a unit of work is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tx {
    /// Reads that must see one state of the database: a review with its rounds and votes
    /// (blinding depends on the state and the votes agreeing), a ledger.
    Read,
    /// Load -> change -> save, serialised with every other writer of the same review (and,
    /// for releases, of the same snapshot's ledger).
    Write,
}

/// Runs the airlock's statements on one connection (inside a transaction or not).
pub(crate) trait Sql {
    /// Runs a statement that returns no rows (or whose rows are not wanted); the number of
    /// rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, AirlockError>;

    /// Runs a statement (a `SELECT`, or a write with `RETURNING`) and returns its rows.
    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, AirlockError>;

    /// True on PostgreSQL, for the few statements whose text differs.
    fn is_postgres(&self) -> bool;

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>, AirlockError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }
}

/// `?N` placeholders as PostgreSQL's `$N`, leaving quoted text and identifiers alone.
pub(crate) fn postgres_placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' => {
                out.push('$');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// The SQLite side: a connection (or an open transaction on it) and the file, for messages.
pub(crate) struct Sqlite<'a> {
    pub(crate) conn: &'a rusqlite::Connection,
    pub(crate) path: &'a Path,
}

impl Sqlite<'_> {
    fn err(&self, source: rusqlite::Error) -> AirlockError {
        AirlockError::Db {
            path: self.path.to_path_buf(),
            source,
        }
    }
}

impl Sql for Sqlite<'_> {
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, AirlockError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let n = stmt
            .execute(rusqlite::params_from_iter(args))
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, AirlockError> {
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
                            AirlockError::Corrupt {
                                what: "row",
                                why: format!("column {i}: {e}"),
                            }
                        })?)
                    }
                    ValueRef::Blob(_) => {
                        return Err(AirlockError::Corrupt {
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

#[cfg(test)]
mod tests {
    use super::postgres_placeholders;

    #[test]
    fn placeholders_are_rewritten_outside_quotes_only() {
        assert_eq!(
            postgres_placeholders("SELECT \"a?1\", '?2' FROM t WHERE x = ?1 AND y = ?12"),
            "SELECT \"a?1\", '?2' FROM t WHERE x = $1 AND y = $12"
        );
        assert_eq!(postgres_placeholders("SELECT 1"), "SELECT 1");
    }
}
