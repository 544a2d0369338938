//! The sandboxed query engine over pseudonymised snapshots (docs/query.md).
//!
//! A researcher's SQL is untrusted code. [`QueryEngine::run`] audits it, then runs it in a
//! fresh worker process (`kura sandbox-worker`) confined by rlimits, Landlock and seccomp,
//! which gates the statement with DuckDB's own parser, opens the snapshot read-only with locked
//! settings behind views of the granted columns, and streams Arrow batches back under a
//! wall-clock timeout and row/byte caps.

pub mod bench;
pub mod duck;
mod engine;
mod error;
pub mod export;
pub mod fixture;
pub mod gate;
pub mod policy;
mod probes;
mod process;
pub mod protocol;
pub mod sandbox;
pub mod scope;
mod session;
pub mod worker;

pub use engine::{
    CancelHandle, EngineConfig, QueryEngine, QueryOutcome, QueryRequest, QueryResult,
};
pub use error::QueryError;
pub use gate::{GateError, Rule};
pub use protocol::{Layers, Limits};
pub use sandbox::Mechanism;
pub use scope::{ProjectScope, ScopeError};
pub use session::{ident, literal};
pub use worker::{worker_main, Probe};

/// Re-exported so callers use the same Arrow as the engine.
pub use duckdb::arrow;
