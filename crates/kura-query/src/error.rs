//! Errors of the query engine, each saying what went wrong and what the caller can do.

use std::path::PathBuf;
use std::time::Duration;

use crate::gate::Rule;
use crate::scope::ScopeError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the audit log did not record the query, so it was not run (or its result is withheld): {0}")]
    Audit(#[from] kura_audit::AuditError),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error("syntax error: {message}{}", .position.map(|p| format!(" (at character {p})")).unwrap_or_default())]
    Syntax {
        message: String,
        position: Option<u64>,
    },
    #[error("query refused by rule {rule}: {detail}")]
    Refused { rule: Rule, detail: String },
    #[error("the query failed in DuckDB: {message}")]
    Execution { message: String },
    #[error("the query ran longer than {0:?} and its worker was killed")]
    Timeout(Duration),
    #[error("the query was cancelled and its worker was killed")]
    Cancelled,
    #[error("the result has more than {cap} rows; aggregate or add LIMIT")]
    RowCap { cap: u64 },
    #[error("the result is larger than {cap} bytes; select fewer columns or rows")]
    ByteCap { cap: u64 },
    #[error("the query worker died ({status}) without finishing; stderr: {stderr}")]
    WorkerCrashed { status: String, stderr: String },
    #[error("the query sandbox is not available: {0}")]
    Sandbox(String),
    #[error("preparing the query worker failed: {0}")]
    Setup(String),
    #[error("cannot start the query worker {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("the snapshot {path} cannot be used: {source}")]
    Snapshot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the query worker broke the protocol: {0}")]
    Protocol(String),
}

impl QueryError {
    /// The gate rule (or `syntax`, `scope`) when the query was refused rather than failed;
    /// refusals are audited as `query.refused`.
    pub fn refusal_rule(&self) -> Option<&'static str> {
        match self {
            QueryError::Refused { rule, .. } => Some(rule.as_str()),
            QueryError::Syntax { .. } => Some("syntax"),
            QueryError::Scope(_) => Some("scope"),
            _ => None,
        }
    }

    /// A short stable word for audit payloads and metrics.
    pub fn status(&self) -> &'static str {
        match self {
            QueryError::Audit(_) => "audit",
            QueryError::Scope(_) | QueryError::Syntax { .. } | QueryError::Refused { .. } => {
                "refused"
            }
            QueryError::Execution { .. } => "failed",
            QueryError::Timeout(_) => "timeout",
            QueryError::Cancelled => "cancelled",
            QueryError::RowCap { .. } | QueryError::ByteCap { .. } => "too_large",
            QueryError::WorkerCrashed { .. } => "crashed",
            QueryError::Sandbox(_) => "sandbox_unavailable",
            QueryError::Setup(_)
            | QueryError::Spawn { .. }
            | QueryError::Snapshot { .. }
            | QueryError::Protocol(_) => "engine_error",
        }
    }
}
