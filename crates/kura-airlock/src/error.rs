//! The crate's error type. Each variant tells the server which answer to give (see the comment
//! on each) and each message tells the person what to do next.

use std::path::PathBuf;

use crate::workflow::State;

#[derive(Debug, thiserror::Error)]
pub enum AirlockError {
    /// 404: no review (or release) with this id.
    #[error("{what} {id:?} does not exist")]
    NotFound { what: &'static str, id: String },
    /// 409: a review for this output already exists.
    #[error("{what} {id:?} already exists")]
    Conflict { what: &'static str, id: String },
    /// 403: only the output's author may do this.
    #[error("only the author of output {output} may {action}")]
    NotAuthor {
        output: String,
        action: &'static str,
    },
    /// 403: separation of duties.
    #[error("{actor} wrote output {output} and can never review it: another output checker must")]
    SelfReview { output: String, actor: String },
    /// 409: one vote per checker per round.
    #[error("{checker} already voted in round {round} of output {output}; each checker votes once per round")]
    AlreadyVoted {
        output: String,
        checker: String,
        round: u32,
    },
    /// 409: the action does not apply in the review's current state.
    #[error("output {output} is {state}: cannot {action} now ({hint})")]
    WrongState {
        output: String,
        state: State,
        action: &'static str,
        hint: &'static str,
    },
    /// 422: the author's context (or a checker's comment) is missing, too short or too long.
    #[error("{0}")]
    Invalid(String),
    /// 422: the staged output cannot go through the airlock as it is. Every reason is listed.
    #[error("output {output} is refused: {}", reasons.join("; "))]
    Refused {
        output: String,
        reasons: Vec<String>,
    },
    /// 409 (and an alert): the staged file is not the file that was staged.
    #[error("staged file {path} has SHA-256 {found}, but {expected} was recorded when it was staged: the file was changed or replaced; it is refused (stage the result again)")]
    Tampered {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// 409: the automatic check at release differs from what the checkers approved; the review
    /// went back to `changes_requested` and nothing was released.
    #[error("output {output} was not released: {reason}; the review is back to changes requested, resubmit it for a new round")]
    CheckChanged { output: String, reason: String },
    /// 500 (or 409 for a supervisor's verification): a released file or manifest is not intact.
    #[error("release {dir}: {why}")]
    Verify { dir: PathBuf, why: String },
    /// 500: the release signing key.
    #[error("release signing key {path}: {why}")]
    Key { path: PathBuf, why: String },
    /// 500: rule pack or another statistical-disclosure-control failure.
    #[error(transparent)]
    Sdc(#[from] kura_sdc::SdcError),
    /// 500.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// 409: another request changed the review between this one's load and save. The review's
    /// lock prevents it; this is the guard should a path ever skip the lock. Try again.
    #[error(
        "output {output} was changed by another request at the same time; reload it and try again"
    )]
    Raced { output: String },
    /// 500 / 503: the SQLite database.
    #[error("airlock database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// 500 / 503: the PostgreSQL database. `database` is `postgres://user@host:port/db` (never
    /// the password); `code` the SQLSTATE when the server answered with an error.
    #[error("airlock database {database}: {message}")]
    Postgres {
        database: String,
        code: Option<String>,
        message: String,
    },
    /// At start-up: the configured database cannot be used as it is (the message says why).
    #[error("airlock database: {0}")]
    Config(String),
    /// 500: a stored row does not parse.
    #[error("stored {what} is damaged: {why}")]
    Corrupt { what: &'static str, why: String },
}

// The statement layer's errors become the variants above, named for the airlock.
kura_sql::impl_sql_error!(AirlockError);

impl AirlockError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AirlockError {
        let path = path.into();
        move |source| AirlockError::Io { path, source }
    }
}
