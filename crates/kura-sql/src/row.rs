//! Statement parameters (`Arg`), rows converted to one form (`Row`, `Cell`), and `Sql`, the one
//! interface statements go through, implemented for a SQLite connection (`sqlite.rs`) and a
//! PostgreSQL connection (`pg.rs`).

use std::borrow::Cow;

use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::SqlError;

/// A statement parameter: text, integers and doubles (times are RFC 3339 text).
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
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
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    /// PostgreSQL's `BOOLEAN`; SQLite keeps booleans as integers.
    Bool(bool),
    Text(String),
}

/// A result row, converted from the backend's own row type so that the mapping from rows to
/// the crates' records is written once.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, SqlError> {
        self.0.get(i).ok_or_else(|| SqlError::Corrupt {
            what: "row",
            why: format!("no column {i}"),
        })
    }

    fn mismatch(&self, i: usize, want: &str) -> SqlError {
        SqlError::Corrupt {
            what: "row",
            why: format!("column {i}: expected {want}, found {:?}", self.0.get(i)),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, SqlError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(s) => Ok(Some(s.clone())),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, SqlError> {
        self.opt_text(i)?.ok_or_else(|| self.mismatch(i, "text"))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, SqlError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(n) => Ok(Some(*n)),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, SqlError> {
        self.opt_int(i)?
            .ok_or_else(|| self.mismatch(i, "an integer"))
    }

    /// A count or duration, never negative.
    pub fn opt_count(&self, i: usize) -> Result<Option<u64>, SqlError> {
        Ok(self.opt_int(i)?.map(|n| n.max(0) as u64))
    }

    pub fn count(&self, i: usize) -> Result<u64, SqlError> {
        self.opt_count(i)?
            .ok_or_else(|| self.mismatch(i, "an integer"))
    }

    /// A round number: positive and small.
    pub fn u32(&self, i: usize) -> Result<u32, SqlError> {
        let n = self.int(i)?;
        u32::try_from(n).map_err(|_| self.mismatch(i, "a round number"))
    }

    /// A double; SQLite may hand back an integer for a whole value.
    pub fn real(&self, i: usize) -> Result<f64, SqlError> {
        match self.cell(i)? {
            Cell::Real(x) => Ok(*x),
            Cell::Int(n) => Ok(*n as f64),
            _ => Err(self.mismatch(i, "a number")),
        }
    }

    pub fn bool(&self, i: usize) -> Result<bool, SqlError> {
        match self.cell(i)? {
            Cell::Bool(b) => Ok(*b),
            Cell::Int(n) => Ok(*n != 0),
            _ => Err(self.mismatch(i, "a boolean")),
        }
    }
}

/// Runs statements on one connection (inside a transaction or not).
pub trait Sql {
    /// Runs a statement that returns no rows (or whose rows are not wanted); the number of
    /// rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, SqlError>;

    /// Runs a statement (a `SELECT`, or a write with `RETURNING`) and returns its rows.
    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, SqlError>;

    /// True on PostgreSQL, for the few statements whose text differs.
    fn is_postgres(&self) -> bool;

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>, SqlError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }
}

/// `?N` placeholders as PostgreSQL's `$N`, leaving quoted text and identifiers alone.
pub fn postgres_placeholders(sql: &str) -> Cow<'_, str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes_only() {
        assert_eq!(
            postgres_placeholders("SELECT \"a?1\", '?2' FROM t WHERE x = ?1 AND y = ?12"),
            "SELECT \"a?1\", '?2' FROM t WHERE x = $1 AND y = $12"
        );
        assert_eq!(postgres_placeholders("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn cells_convert_as_their_columns_say() {
        let row = Row(vec![
            Cell::Int(3),
            Cell::Null,
            Cell::Int(-2),
            Cell::Real(0.5),
        ]);
        assert_eq!(row.u32(0).ok(), Some(3));
        assert_eq!(row.opt_text(1).ok(), Some(None));
        assert_eq!(row.count(2).ok(), Some(0));
        assert_eq!(row.real(0).ok(), Some(3.0));
        assert_eq!(row.real(3).ok(), Some(0.5));
        assert!(row.u32(2).is_err() && row.text(0).is_err() && row.int(9).is_err());
    }
}
