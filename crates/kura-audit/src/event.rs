//! Typed audit events: what happened, who did it, in which session and project, on which object.
//! This is the one vocabulary every crate uses to write to the log (see `docs/audit.md`).

use serde::{Deserialize, Serialize};

/// What happened. The string form (`as_str`) is stored in every leaf and is stable: supervisors
/// filter on it and independent verifiers decode it, so variants are only ever added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    SignIn,
    SignInFailed,
    SignOut,
    QuerySubmitted,
    QueryCompleted,
    QueryRefused,
    ResultViewed,
    OutputStaged,
    ExportRequested,
    ReviewDecision,
    OutputReleased,
    AdminAction,
    SnapshotBuilt,
    OperatorNote,
    /// A signed-in caller asked for something the policies refused.
    AccessDenied,
    /// A released output was downloaded.
    OutputDownloaded,
    /// Someone ran the full verification of the log from the console (and what it found).
    AuditVerified,
    /// A trial-feasibility explorer run: its filters, before its numbers are computed.
    ExplorerRun,
}

impl EventKind {
    pub const ALL: &'static [EventKind] = &[
        EventKind::SignIn,
        EventKind::SignInFailed,
        EventKind::SignOut,
        EventKind::QuerySubmitted,
        EventKind::QueryCompleted,
        EventKind::QueryRefused,
        EventKind::ResultViewed,
        EventKind::OutputStaged,
        EventKind::ExportRequested,
        EventKind::ReviewDecision,
        EventKind::OutputReleased,
        EventKind::AdminAction,
        EventKind::SnapshotBuilt,
        EventKind::OperatorNote,
        EventKind::AccessDenied,
        EventKind::OutputDownloaded,
        EventKind::AuditVerified,
        EventKind::ExplorerRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SignIn => "signin",
            EventKind::SignInFailed => "signin.failed",
            EventKind::SignOut => "signout",
            EventKind::QuerySubmitted => "query.submitted",
            EventKind::QueryCompleted => "query.completed",
            EventKind::QueryRefused => "query.refused",
            EventKind::ResultViewed => "result.viewed",
            EventKind::OutputStaged => "output.staged",
            EventKind::ExportRequested => "export.requested",
            EventKind::ReviewDecision => "review.decision",
            EventKind::OutputReleased => "output.released",
            EventKind::AdminAction => "admin.action",
            EventKind::SnapshotBuilt => "snapshot.built",
            EventKind::OperatorNote => "operator.note",
            EventKind::AccessDenied => "access.denied",
            EventKind::OutputDownloaded => "output.downloaded",
            EventKind::AuditVerified => "audit.verified",
            EventKind::ExplorerRun => "explorer.run",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// One event to append. `payload` holds the details (SQL text, row counts, decisions); only its
/// salted commitment enters the tree, so it can be erased later without breaking verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub actor: String,
    pub session: Option<String>,
    pub project: Option<String>,
    pub object: Option<String>,
    pub payload: serde_json::Value,
}

impl Event {
    pub fn new(kind: EventKind, actor: impl Into<String>) -> Event {
        Event {
            kind,
            actor: actor.into(),
            session: None,
            project: None,
            object: None,
            payload: serde_json::Value::Null,
        }
    }

    pub fn session(mut self, session: impl Into<String>) -> Event {
        self.session = Some(session.into());
        self
    }

    pub fn project(mut self, project: impl Into<String>) -> Event {
        self.project = Some(project.into());
        self
    }

    pub fn object(mut self, object: impl Into<String>) -> Event {
        self.object = Some(object.into());
        self
    }

    pub fn payload(mut self, payload: serde_json::Value) -> Event {
        self.payload = payload;
        self
    }
}

/// Where a durable append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub leaf_hash: [u8; 32],
}

/// Anything that records events durably before the action they describe takes effect.
/// Implemented by the audit log; other crates take `&dyn AuditSink` so they need not know how
/// the log is stored. An `Err` means the action must not run (fail closed).
pub trait AuditSink: Send + Sync {
    fn append(&self, event: Event) -> Result<Appended, crate::AuditError>;
}
