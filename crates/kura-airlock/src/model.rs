//! The airlock's data: review states, checker decisions, round outcomes, the staged output as
//! recorded at staging, the author's context (with its limits), rounds, votes and history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::AirlockError;

/// Minimum length (characters, after trimming) of each context field at submission.
pub const MIN_CONTEXT_CHARS: usize = 20;
/// Maximum size of each free-text field (context fields, comments), in bytes.
pub const MAX_TEXT_BYTES: usize = 10_000;
/// Population filters: at most this many, each at most 500 bytes.
pub const MAX_FILTERS: usize = 20;
/// The actor recorded for transitions the airlock itself makes.
pub const SYSTEM_ACTOR: &str = "kura-airlock";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Draft,
    Submitted,
    ChangesRequested,
    Rejected,
    Approved,
    Released,
    Withdrawn,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Submitted => "submitted",
            State::ChangesRequested => "changes_requested",
            State::Rejected => "rejected",
            State::Approved => "approved",
            State::Released => "released",
            State::Withdrawn => "withdrawn",
        }
    }

    /// Every state, in workflow order.
    pub const ALL: [State; 7] = [
        State::Draft,
        State::Submitted,
        State::ChangesRequested,
        State::Rejected,
        State::Approved,
        State::Released,
        State::Withdrawn,
    ];

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checker's decision. Ordered by severity: the round takes the median.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    RequestChanges,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::RequestChanges => "request_changes",
            Decision::Reject => "reject",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        [
            Decision::Approve,
            Decision::RequestChanges,
            Decision::Reject,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }

    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Decision::Approve => Outcome::Approved,
            Decision::RequestChanges => Outcome::ChangesRequested,
            Decision::Reject => Outcome::Rejected,
        }
    }
}

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Approved,
    ChangesRequested,
    Rejected,
    Withdrawn,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::ChangesRequested => "changes_requested",
            Outcome::Rejected => "rejected",
            Outcome::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Approved,
            Outcome::ChangesRequested,
            Outcome::Rejected,
            Outcome::Withdrawn,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }

    pub(crate) fn state(self) -> State {
        match self {
            Outcome::Approved => State::Approved,
            Outcome::ChangesRequested => State::ChangesRequested,
            Outcome::Rejected => State::Rejected,
            Outcome::Withdrawn => State::Withdrawn,
        }
    }
}

/// What the staged output is, as recorded when it was staged (`ctl_outputs` and `ctl_queries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedOutput {
    pub id: String,
    pub project: String,
    pub author: String,
    pub title: String,
    /// SHA-256 of `<state>/outputs/<id>.arrow`, recorded at staging.
    pub sha256: String,
    pub query_id: String,
    /// The SQL that produced the output (checkers read it; its hash goes in the manifest).
    pub sql: String,
    /// The snapshot the query ran on; the release ledger is kept per snapshot.
    pub snapshot_sha256: String,
    pub staged_at: DateTime<Utc>,
}

/// The author's explanation of the output, required before submission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// What the table shows (each dimension and measure).
    pub description: String,
    /// The denominators: which population each count is out of.
    pub denominators: String,
    /// How it was made: data, filters, derivations (checkers compare it with the SQL).
    pub method: String,
    /// Conditions beyond the table's dimensions that define its population (the SQL's WHERE),
    /// e.g. `disease_no = 11`; used to compare cells with earlier releases (docs/sdc.md).
    #[serde(default)]
    pub population_filters: Vec<String>,
}

impl Context {
    fn fields(&self) -> [(&'static str, &str); 3] {
        [
            ("description (what the table shows)", &self.description),
            ("denominators", &self.denominators),
            ("method (how the table was made)", &self.method),
        ]
    }

    /// Size limits, checked whenever the context is saved.
    pub fn check_limits(&self) -> Result<(), AirlockError> {
        for (name, text) in self.fields() {
            if text.len() > MAX_TEXT_BYTES {
                return Err(AirlockError::Invalid(format!(
                    "context field {name} is {} bytes; at most {MAX_TEXT_BYTES} are allowed",
                    text.len()
                )));
            }
        }
        if self.population_filters.len() > MAX_FILTERS {
            return Err(AirlockError::Invalid(format!(
                "at most {MAX_FILTERS} population filters are allowed"
            )));
        }
        for f in &self.population_filters {
            if f.trim().is_empty() || f.len() > 500 {
                return Err(AirlockError::Invalid(
                    "each population filter must be 1-500 bytes (e.g. `disease_no = 11`)".into(),
                ));
            }
        }
        Ok(())
    }

    /// Completeness, checked at submission: every field says something.
    pub fn check_complete(&self) -> Result<(), AirlockError> {
        self.check_limits()?;
        let short: Vec<&str> = self
            .fields()
            .into_iter()
            .filter(|(_, text)| text.trim().chars().count() < MIN_CONTEXT_CHARS)
            .map(|(name, _)| name)
            .collect();
        if !short.is_empty() {
            return Err(AirlockError::Invalid(format!(
                "before submitting, explain the output for the checkers: {} must each have at \
                 least {MIN_CONTEXT_CHARS} characters",
                short.join(", ")
            )));
        }
        Ok(())
    }
}

/// The automatic check's result when a round opened: the checkers review exactly this protected
/// table, and the release must produce the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckStamp {
    pub rule_pack: String,
    pub rule_pack_version: String,
    /// SHA-256 of the protected table's CSV text.
    pub protected_sha256: String,
    pub cells: usize,
    pub failing_cells: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    pub number: u32,
    pub submitted_at: DateTime<Utc>,
    /// The context as submitted for this round.
    pub context: Context,
    pub check: CheckStamp,
    pub outcome: Option<Outcome>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub round: u32,
    pub checker: String,
    pub decision: Decision,
    pub comment: String,
    pub at: DateTime<Utc>,
}

/// One line of the review's history. Vote entries never carry the decision (it would unblind
/// the round); closed rounds show their votes through [`Review::visible_votes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    /// The state after the action.
    pub state: State,
    pub note: String,
}
