//! What can go wrong in the statement layer, and how a caller's own error type tells the pool
//! which PostgreSQL error it holds (to run a deadlocked unit of work again).

use std::path::PathBuf;

use postgres::error::SqlState;

/// A failure of the statement layer; each crate converts it into its own error type (with the
/// same variants: `Db`, `Postgres`, `Config`, `Corrupt`) so its messages name the crate's tables.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The SQLite file.
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// `database` is `postgres://user@host:port/db` (never the password); `code` the SQLSTATE
    /// when the server answered with an error.
    #[error("database {database}: {message}")]
    Postgres {
        database: String,
        code: Option<String>,
        message: String,
    },
    /// The configured database cannot be used as it is (the message says why).
    #[error("database: {0}")]
    Config(String),
    /// A stored row does not have the shape the statement expects.
    #[error("stored {what} is damaged: {why}")]
    Corrupt { what: &'static str, why: String },
}

/// The SQLSTATE a caller's error carries, if it is a PostgreSQL error.
pub trait SqlErrorCode {
    fn sqlstate(&self) -> Option<&str>;
}

/// Implements `From<SqlError>` and `SqlErrorCode` for a crate's error enum that has the same
/// four variants as `SqlError` (`Db { path, source }` for SQLite, `Postgres { database, code,
/// message }`, `Config(String)`, `Corrupt { what, why }`), each with the crate's own message.
#[macro_export]
macro_rules! impl_sql_error {
    ($error:ident) => {
        impl ::core::convert::From<$crate::SqlError> for $error {
            fn from(e: $crate::SqlError) -> $error {
                match e {
                    $crate::SqlError::Sqlite { path, source } => $error::Db { path, source },
                    $crate::SqlError::Postgres {
                        database,
                        code,
                        message,
                    } => $error::Postgres {
                        database,
                        code,
                        message,
                    },
                    $crate::SqlError::Config(m) => $error::Config(m),
                    $crate::SqlError::Corrupt { what, why } => $error::Corrupt { what, why },
                }
            }
        }

        /// The pool runs a unit of work again when PostgreSQL aborted it for a deadlock or a
        /// serialization failure: this is where it finds the SQLSTATE.
        impl $crate::SqlErrorCode for $error {
            fn sqlstate(&self) -> ::core::option::Option<&str> {
                match self {
                    $error::Postgres {
                        code: Some(code), ..
                    } => Some(code),
                    _ => None,
                }
            }
        }
    };
}

impl SqlErrorCode for SqlError {
    fn sqlstate(&self) -> Option<&str> {
        match self {
            SqlError::Postgres {
                code: Some(code), ..
            } => Some(code),
            _ => None,
        }
    }
}

/// A deadlock or serialization failure: PostgreSQL rolled the transaction back, so running it
/// again is safe.
pub(crate) fn retryable(e: &impl SqlErrorCode) -> bool {
    e.sqlstate().is_some_and(|code| {
        code == SqlState::T_R_SERIALIZATION_FAILURE.code()
            || code == SqlState::T_R_DEADLOCK_DETECTED.code()
    })
}
