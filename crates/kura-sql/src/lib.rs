//! The SQL statement layer shared by the control-plane crates (kura-store, kura-airlock): one
//! statement text for SQLite and PostgreSQL, typed parameters and rows, and the PostgreSQL
//! connection pool.
//!
//! Statements are written once, in the dialect both databases share, with SQLite's numbered
//! placeholders (`?1`); `postgres_placeholders` rewrites them to `$1`. Where the dialects really
//! differ (a row lock, an advisory lock), the statement asks `Sql::is_postgres`.
//!
//! Each crate keeps its own error type: the closures given to [`Database::run`] return any
//! `E: From<SqlError> + SqlErrorCode`, so that `?` converts this crate's errors and a deadlock or
//! serialization failure is still recognised (and the work run again) inside `E`.

mod database;
mod error;
mod pg;
mod row;
pub mod schema;
mod sqlite;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use database::{Database, Tx};
pub use error::{SqlError, SqlErrorCode};
pub use pg::{label_of, label_of_url, Pg, PgOptions};
pub use row::{postgres_placeholders, Arg, Cell, Row, Sql};
pub use sqlite::{open_sqlite, Sqlite};

/// The parameters of a statement: `args![a, b]` is `&[Arg::from(a), Arg::from(b)]`.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$($crate::Arg::from($a)),*] };
}

/// A count or size as stored: the databases' integers are signed 64-bit.
pub fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
