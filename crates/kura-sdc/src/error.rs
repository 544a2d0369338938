//! The crate's error type: every message names the file, line, column or value a user must fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SdcError {
    #[error("cannot read rule pack {path}: {source}")]
    PackRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rule pack {origin} is not valid TOML for a rule pack: {message}")]
    PackParse { origin: String, message: String },
    #[error("rule pack {origin}: {message}")]
    PackInvalid { origin: String, message: String },
    #[error("no rule pack named {name:?}: looked in {searched} and among the built-in packs ({builtin})")]
    PackNotFound {
        name: String,
        searched: String,
        builtin: String,
    },
    #[error("{origin}: line {line}, column {column} ({header}): {message}")]
    Cell {
        origin: String,
        line: u64,
        column: usize,
        header: String,
        message: String,
    },
    #[error("{origin}: line {line}: {message}")]
    Line {
        origin: String,
        line: u64,
        message: String,
    },
    #[error("{origin}: {message}")]
    Table { origin: String, message: String },
    #[error("release ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
}
