//! Persistence: the airlock's own `airlock_*` tables in the state directory's `kura.sqlite`
//! (WAL, `synchronous=FULL`, busy timeout, like kura-store): the schema, and reviews with their
//! rounds, votes and history. Releases and the ledger are in `ledger.rs`.
//!
//! Other crates own `ctl_*` (kura-store) and `audit_*` (kura-audit); this module touches only
//! `airlock_*`. Reviews are loaded whole, changed by the pure logic in `workflow.rs`, and saved
//! in the same `BEGIN IMMEDIATE` transaction: votes and history rows are only ever appended,
//! and the primary key of `airlock_votes` refuses a second vote by one checker in one round
//! even if the logic above it were bypassed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::AirlockError;
use crate::workflow::{
    CheckStamp, Context, Decision, HistoryEntry, Outcome, Review, Round, StagedOutput, State, Vote,
};

pub const DB_FILE: &str = "kura.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS airlock_reviews (
    output_id       TEXT PRIMARY KEY,
    project         TEXT NOT NULL,
    author          TEXT NOT NULL,
    title           TEXT NOT NULL,
    output_sha256   TEXT NOT NULL,      -- as recorded at staging
    query_id        TEXT NOT NULL,
    sql             TEXT NOT NULL,
    snapshot_sha256 TEXT NOT NULL,
    staged_at       TEXT NOT NULL,
    state           TEXT NOT NULL,
    context         TEXT,               -- JSON: the author's current context
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS airlock_reviews_by_project ON airlock_reviews(project, created_at);
CREATE INDEX IF NOT EXISTS airlock_reviews_by_state ON airlock_reviews(state, updated_at);
CREATE TABLE IF NOT EXISTS airlock_rounds (
    output_id       TEXT NOT NULL REFERENCES airlock_reviews(output_id),
    number          INTEGER NOT NULL,
    submitted_at    TEXT NOT NULL,
    context         TEXT NOT NULL,      -- JSON: the context as submitted
    check_stamp     TEXT NOT NULL,      -- JSON: rule pack, version, protected-table SHA-256
    outcome         TEXT,
    closed_at       TEXT,
    PRIMARY KEY (output_id, number)
);
CREATE TABLE IF NOT EXISTS airlock_votes (
    output_id       TEXT NOT NULL REFERENCES airlock_reviews(output_id),
    round           INTEGER NOT NULL,
    checker         TEXT NOT NULL,
    decision        TEXT NOT NULL,
    comment         TEXT NOT NULL,
    voted_at        TEXT NOT NULL,
    PRIMARY KEY (output_id, round, checker)
);
CREATE TABLE IF NOT EXISTS airlock_history (
    output_id       TEXT NOT NULL REFERENCES airlock_reviews(output_id),
    seq             INTEGER NOT NULL,
    at              TEXT NOT NULL,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    state           TEXT NOT NULL,
    note            TEXT NOT NULL,
    PRIMARY KEY (output_id, seq)
);
CREATE TABLE IF NOT EXISTS airlock_releases (
    output_id       TEXT PRIMARY KEY REFERENCES airlock_reviews(output_id),
    project         TEXT NOT NULL,
    file_name       TEXT NOT NULL,
    file_sha256     TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    released_at     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS airlock_ledger (
    snapshot        TEXT NOT NULL,      -- snapshot SHA-256
    release         TEXT NOT NULL,      -- output id of the release
    measure         TEXT NOT NULL,
    definition      TEXT NOT NULL,      -- JSON array of predicates, sorted
    value           REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS airlock_ledger_by_snapshot ON airlock_ledger(snapshot);
CREATE INDEX IF NOT EXISTS airlock_ledger_by_release ON airlock_ledger(release);
";

/// Opens `<state_dir>/kura.sqlite` the way kura-store does and creates the airlock's tables.
pub(crate) fn open(state_dir: &Path) -> Result<Connection, AirlockError> {
    let path = state_dir.join(DB_FILE);
    let err = |source| AirlockError::Db {
        path: path.clone(),
        source,
    };
    let conn = Connection::open(&path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .map_err(err)?;
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    Ok(conn)
}

/// Maps SQLite errors to [`AirlockError::Db`] naming the database file.
pub(crate) fn db_err(conn: &Connection) -> impl Fn(rusqlite::Error) -> AirlockError + '_ {
    move |source| AirlockError::Db {
        path: conn
            .path()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DB_FILE)),
        source,
    }
}

/// Times are RFC 3339 UTC with microseconds (sorts chronologically), as in kura-store.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(what: &'static str, s: &str) -> Result<DateTime<Utc>, AirlockError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| AirlockError::Corrupt {
            what,
            why: format!("time {s:?}: {e}"),
        })
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    s: &str,
) -> Result<T, AirlockError> {
    serde_json::from_str(s).map_err(|e| AirlockError::Corrupt {
        what,
        why: e.to_string(),
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, AirlockError> {
    serde_json::to_string(v).map_err(|e| AirlockError::Corrupt {
        what: "json",
        why: e.to_string(),
    })
}

/// How many votes and history entries were stored when a review was loaded: saving appends
/// only what the transition added.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored {
    votes: usize,
    history: usize,
    exists: bool,
}

impl Stored {
    pub(crate) fn new_review() -> Stored {
        Stored {
            votes: 0,
            history: 0,
            exists: false,
        }
    }
}

const REVIEW_COLUMNS: &str = "output_id, project, author, title, output_sha256, query_id, sql, \
    snapshot_sha256, staged_at, state, context, created_at, updated_at";

type ReviewRow = (Vec<String>, Option<String>);

pub(crate) fn load_review(
    conn: &Connection,
    id: &str,
) -> Result<Option<(Review, Stored)>, AirlockError> {
    let row: Option<ReviewRow> = conn
        .query_row(
            &format!("SELECT {REVIEW_COLUMNS} FROM airlock_reviews WHERE output_id = ?1"),
            [id],
            |r| {
                let mut v = Vec::with_capacity(13);
                for i in 0..13 {
                    if i != 10 {
                        v.push(r.get::<_, String>(i)?);
                    }
                }
                Ok((v, r.get::<_, Option<String>>(10)?))
            },
        )
        .optional()
        .map_err(db_err(conn))?;
    let Some((v, context)) = row else {
        return Ok(None);
    };
    let output = StagedOutput {
        id: v[0].clone(),
        project: v[1].clone(),
        author: v[2].clone(),
        title: v[3].clone(),
        sha256: v[4].clone(),
        query_id: v[5].clone(),
        sql: v[6].clone(),
        snapshot_sha256: v[7].clone(),
        staged_at: parse_ts("review", &v[8])?,
    };
    let state = State::parse(&v[9]).ok_or_else(|| AirlockError::Corrupt {
        what: "review state",
        why: v[9].clone(),
    })?;
    let context: Option<Context> = context
        .map(|c| from_json("review context", &c))
        .transpose()?;
    let rounds = load_rounds(conn, id)?;
    let votes = load_votes(conn, id)?;
    let history = load_history(conn, id)?;
    let stored = Stored {
        votes: votes.len(),
        history: history.len(),
        exists: true,
    };
    let review = Review {
        output,
        state,
        context,
        rounds,
        votes,
        history,
        created_at: parse_ts("review", &v[10])?,
        updated_at: parse_ts("review", &v[11])?,
    };
    Ok(Some((review, stored)))
}

fn load_rounds(conn: &Connection, id: &str) -> Result<Vec<Round>, AirlockError> {
    let mut stmt = conn
        .prepare(
            "SELECT number, submitted_at, context, check_stamp, outcome, closed_at
             FROM airlock_rounds WHERE output_id = ?1 ORDER BY number",
        )
        .map_err(db_err(conn))?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .map_err(db_err(conn))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err(conn))?;
    rows.into_iter()
        .map(|(number, at, context, stamp, outcome, closed)| {
            Ok(Round {
                number,
                submitted_at: parse_ts("round", &at)?,
                context: from_json("round context", &context)?,
                check: from_json::<CheckStamp>("round check", &stamp)?,
                outcome: outcome
                    .map(|o| {
                        Outcome::parse(&o).ok_or(AirlockError::Corrupt {
                            what: "round outcome",
                            why: o,
                        })
                    })
                    .transpose()?,
                closed_at: closed.map(|c| parse_ts("round", &c)).transpose()?,
            })
        })
        .collect()
}

fn load_votes(conn: &Connection, id: &str) -> Result<Vec<Vote>, AirlockError> {
    let mut stmt = conn
        .prepare(
            "SELECT round, checker, decision, comment, voted_at FROM airlock_votes
             WHERE output_id = ?1 ORDER BY rowid",
        )
        .map_err(db_err(conn))?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .map_err(db_err(conn))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err(conn))?;
    rows.into_iter()
        .map(|(round, checker, decision, comment, at)| {
            Ok(Vote {
                round,
                checker,
                decision: Decision::parse(&decision).ok_or(AirlockError::Corrupt {
                    what: "vote",
                    why: decision,
                })?,
                comment,
                at: parse_ts("vote", &at)?,
            })
        })
        .collect()
}

fn load_history(conn: &Connection, id: &str) -> Result<Vec<HistoryEntry>, AirlockError> {
    let mut stmt = conn
        .prepare(
            "SELECT at, actor, action, state, note FROM airlock_history
             WHERE output_id = ?1 ORDER BY seq",
        )
        .map_err(db_err(conn))?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .map_err(db_err(conn))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err(conn))?;
    rows.into_iter()
        .map(|(at, actor, action, state, note)| {
            Ok(HistoryEntry {
                at: parse_ts("history", &at)?,
                actor,
                action,
                state: State::parse(&state).ok_or(AirlockError::Corrupt {
                    what: "history state",
                    why: state,
                })?,
                note,
            })
        })
        .collect()
}

/// Writes a review changed by the workflow: the review row, every round (few, upserted), and the
/// votes and history entries added since it was loaded. Call inside a transaction.
pub(crate) fn save_review(
    conn: &Connection,
    review: &Review,
    stored: Stored,
) -> Result<(), AirlockError> {
    let e = db_err(conn);
    let o = &review.output;
    let context = review.context.as_ref().map(to_json).transpose()?;
    if stored.exists {
        conn.execute(
            "UPDATE airlock_reviews SET state = ?2, context = ?3, updated_at = ?4
             WHERE output_id = ?1",
            params![o.id, review.state.as_str(), context, ts(review.updated_at)],
        )
        .map_err(&e)?;
    } else {
        conn.execute(
            &format!(
                "INSERT INTO airlock_reviews ({REVIEW_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ),
            params![
                o.id,
                o.project,
                o.author,
                o.title,
                o.sha256,
                o.query_id,
                o.sql,
                o.snapshot_sha256,
                ts(o.staged_at),
                review.state.as_str(),
                context,
                ts(review.created_at),
                ts(review.updated_at)
            ],
        )
        .map_err(&e)?;
    }
    for r in &review.rounds {
        conn.execute(
            "INSERT INTO airlock_rounds (output_id, number, submitted_at, context, check_stamp,
                                         outcome, closed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(output_id, number) DO UPDATE SET outcome = ?6, closed_at = ?7",
            params![
                o.id,
                r.number,
                ts(r.submitted_at),
                to_json(&r.context)?,
                to_json(&r.check)?,
                r.outcome.map(Outcome::as_str),
                r.closed_at.map(ts)
            ],
        )
        .map_err(&e)?;
    }
    for v in review.votes.iter().skip(stored.votes) {
        conn.execute(
            "INSERT INTO airlock_votes (output_id, round, checker, decision, comment, voted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                o.id,
                v.round,
                v.checker,
                v.decision.as_str(),
                v.comment,
                ts(v.at)
            ],
        )
        .map_err(&e)?;
    }
    for (seq, h) in review.history.iter().enumerate().skip(stored.history) {
        conn.execute(
            "INSERT INTO airlock_history (output_id, seq, at, actor, action, state, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                o.id,
                seq as i64,
                ts(h.at),
                h.actor,
                h.action,
                h.state.as_str(),
                h.note
            ],
        )
        .map_err(&e)?;
    }
    Ok(())
}

/// Output ids of reviews, newest first: of one project, or (None) in one state.
pub(crate) fn review_ids(
    conn: &Connection,
    project: Option<&str>,
    state: Option<State>,
) -> Result<Vec<String>, AirlockError> {
    let mut stmt = conn
        .prepare(
            "SELECT output_id FROM airlock_reviews
             WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR state = ?2)
             ORDER BY updated_at DESC, output_id",
        )
        .map_err(db_err(conn))?;
    let ids = stmt
        .query_map(params![project, state.map(State::as_str)], |r| r.get(0))
        .map_err(db_err(conn))?
        .collect::<Result<Vec<String>, _>>()
        .map_err(db_err(conn))?;
    Ok(ids)
}
