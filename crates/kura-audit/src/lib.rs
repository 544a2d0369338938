//! The tamper-evident audit log: RFC 6962 Merkle tree, hash-chained leaves, signed checkpoints.
//!
//! - `AuditLog` (`log.rs`) is the only writer: group commit on a writer thread, checkpoints
//!   signed at least every second, crash recovery on open.
//! - `LeafStore` (`store.rs`) is the storage interface; `SqliteStore` (one writer process) and
//!   `PgStore` (`postgres.rs`, several writer processes sharing one database) implement it.
//! - `AuditLocation` names a log (state directory, or PostgreSQL URL plus key file) so that the
//!   writer, reader and verifier of a deployment open the same one.
//! - `verify` is the independent verifier; it shares no tree-hashing code with the writer.
//! - `AuditReader` (`reader.rs`) serves read-only requests: checkpoints, receipts, search.
//!
//! The leaf byte layout and the checkpoint format are documented in `docs/audit.md`.

mod event;
pub mod leaf;
mod location;
mod log;
pub mod merkle;
pub mod note;
pub mod postgres;
mod reader;
mod sequencer;
pub mod sqlite;
pub mod store;
pub mod stress;
mod tip;
pub mod verify;

use std::path::PathBuf;

pub use event::{Appended, AuditSink, Event, EventKind};
pub use location::{key_file_verifier_key, AuditLocation};
pub use log::{AuditLog, AuditOptions, RecoveryReport, KEY_FILE, LOCK_FILE};
pub use postgres::PgStore;
pub use reader::{AuditReader, ReaderStore, SearchFilter, SearchHit};
pub use sqlite::SqliteStore;
pub use store::{LeafStore, StoredCheckpoint};

/// Why the log could not do what was asked. Any `Err` from an append means the action it
/// describes must not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Kept for callers written against the placeholder.
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    #[error("audit log failed closed and accepts no more entries until restarted: {0}")]
    Failed(String),
    #[error("audit log is closed")]
    Closed,
    #[error("{0}")]
    Locked(String),
    #[error("audit store error: {0}")]
    Store(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing key {path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error("audit log is damaged at or below a signed checkpoint, refusing to open: entry {index}: {what}")]
    Damaged { index: u64, what: String },
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),
    #[error("audit log configuration: {0}")]
    Config(String),
    #[error("{0}")]
    NotFound(String),
}
