//! The crate's error type: a bad request names the field and the values it accepts; bad rows
//! from the engine name the view, the row and what was expected.

#[derive(Debug, thiserror::Error)]
pub enum ExplorerError {
    /// A request field holds a value outside its closed list (or of the wrong JSON type).
    #[error("field `{field}`: {problem}; allowed: {allowed}")]
    Invalid {
        field: &'static str,
        problem: String,
        allowed: String,
    },
    /// The explorer key is unusable.
    #[error("explorer key: {0}")]
    Key(String),
    /// The catalog (closed lists taken from the snapshot) is unusable.
    #[error("catalog: {0}")]
    Catalog(String),
    /// The rows read for the in-memory index are not what the export statement returns.
    #[error("explorer index: {0}")]
    Index(String),
    /// The rows handed back for a view do not match the SQL this crate generated for it: the
    /// engine or the wiring is wrong, so nothing is shown.
    #[error("view {view}: {message}")]
    Rows { view: &'static str, message: String },
    /// The disclosure check itself failed (bad table, ledger unavailable).
    #[error("disclosure control for view {view}: {source}")]
    Sdc {
        view: &'static str,
        source: kura_sdc::SdcError,
    },
    /// The rule pack refused the whole table (should not happen for the explorer's own views).
    #[error("view {view} refused by rule pack {pack}: {reasons}")]
    Refused {
        view: &'static str,
        pack: String,
        reasons: String,
    },
}

impl ExplorerError {
    pub(crate) fn invalid(
        field: &'static str,
        problem: impl Into<String>,
        allowed: impl Into<String>,
    ) -> Self {
        ExplorerError::Invalid {
            field,
            problem: problem.into(),
            allowed: allowed.into(),
        }
    }

    pub(crate) fn rows(view: &'static str, message: impl Into<String>) -> Self {
        ExplorerError::Rows {
            view,
            message: message.into(),
        }
    }
}
