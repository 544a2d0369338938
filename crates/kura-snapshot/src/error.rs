//! The one error type of the snapshot build and verification. Every variant names what a data
//! steward has to fix: the file, and where it applies the line, column and offending value.

use std::path::PathBuf;

/// Why a snapshot could not be built or verified.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("key file {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },

    #[error("policy {}: {message}", path.display())]
    Policy { path: PathBuf, message: String },

    #[error(
        "policy {} names column `{column}` of table `{table}`, but the header of {} has no such \
         column",
        policy.display(), file.display()
    )]
    PolicyColumnNotInRaw {
        policy: PathBuf,
        file: PathBuf,
        table: String,
        column: String,
    },

    #[error(
        "{} (table `{table}`) has column `{column}`, which policy {} does not mention: every raw \
         column needs an action (`drop` if unsure)",
        file.display(), policy.display()
    )]
    RawColumnNotInPolicy {
        policy: PathBuf,
        file: PathBuf,
        table: String,
        column: String,
    },

    #[error("{}: line {line}: {message}", file.display())]
    Csv {
        file: PathBuf,
        line: u64,
        message: String,
    },

    #[error("{}: line {line}, column `{column}`: {reason}: {value:?}", file.display())]
    Value {
        file: PathBuf,
        line: u64,
        column: String,
        value: String,
        reason: String,
    },

    #[error("{}: line {line}, column `{column}`: not valid UTF-8 (bytes {bytes})", file.display())]
    InvalidUtf8 {
        file: PathBuf,
        line: u64,
        column: String,
        bytes: String,
    },

    #[error(
        "{}: line {line}: {found} fields, but the header has {expected}",
        file.display()
    )]
    FieldCount {
        file: PathBuf,
        line: u64,
        expected: usize,
        found: usize,
    },

    #[error("DuckDB ({context}): {source}")]
    DuckDb {
        context: String,
        #[source]
        source: duckdb::Error,
    },

    #[error("manifest {}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },

    #[error("{0}")]
    Other(String),
}

impl SnapshotError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SnapshotError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(duckdb::Error) -> Self {
        let context = context.into();
        move |source| SnapshotError::DuckDb { context, source }
    }
}

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;
