//! Reviews in `airlock_reviews` with their rounds, votes and history. Releases and the ledger
//! are in `ledger.rs`; the tables in `schema.rs`.
//!
//! Reviews are loaded whole, changed by the pure logic in `workflow.rs`, and saved in the same
//! write transaction (`Db::write`). In a write, the review's row is loaded `FOR UPDATE` on
//! PostgreSQL: a second node acting on the same review waits, then loads what the first saved.
//! Votes and history rows are only ever appended; saving checks that the review still has the
//! history it was loaded with (a guard: the lock makes it hold), and the primary keys of
//! `airlock_votes` and `airlock_history` refuse a second vote by one checker in one round, or
//! two entries at one position, even if the logic above were bypassed.

use crate::error::AirlockError;
use crate::store::{from_json, parse_ts, to_json, ts};
use crate::workflow::{
    CheckStamp, Context, Decision, HistoryEntry, Outcome, Review, Round, StagedOutput, State, Vote,
};
use kura_sql::{args, Row, Sql};

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

/// Whether a load is the first step of a write (and takes the review's row lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Load {
    Read,
    ForUpdate,
}

const REVIEW_COLUMNS: &str = "output_id, project, author, title, output_sha256, query_id, sql, \
    snapshot_sha256, staged_at, state, context, created_at, updated_at";

pub(crate) fn load_review(
    c: &mut dyn Sql,
    id: &str,
    load: Load,
) -> Result<Option<(Review, Stored)>, AirlockError> {
    // SQLite has no row locks: its write transaction already holds the database's write lock.
    let lock = if load == Load::ForUpdate && c.is_postgres() {
        " FOR UPDATE"
    } else {
        ""
    };
    let Some(row) = c.query_opt(
        &format!("SELECT {REVIEW_COLUMNS} FROM airlock_reviews WHERE output_id = ?1{lock}"),
        args![id],
    )?
    else {
        return Ok(None);
    };
    let output = StagedOutput {
        id: row.text(0)?,
        project: row.text(1)?,
        author: row.text(2)?,
        title: row.text(3)?,
        sha256: row.text(4)?,
        query_id: row.text(5)?,
        sql: row.text(6)?,
        snapshot_sha256: row.text(7)?,
        staged_at: parse_ts("review", &row.text(8)?)?,
    };
    let state_text = row.text(9)?;
    let state = State::parse(&state_text).ok_or(AirlockError::Corrupt {
        what: "review state",
        why: state_text,
    })?;
    let context: Option<Context> = row
        .opt_text(10)?
        .map(|c| from_json("review context", &c))
        .transpose()?;
    let rounds = load_rounds(c, id)?;
    let votes = load_votes(c, id)?;
    let history = load_history(c, id)?;
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
        created_at: parse_ts("review", &row.text(11)?)?,
        updated_at: parse_ts("review", &row.text(12)?)?,
    };
    Ok(Some((review, stored)))
}

fn load_rounds(c: &mut dyn Sql, id: &str) -> Result<Vec<Round>, AirlockError> {
    c.query(
        "SELECT number, submitted_at, context, check_stamp, outcome, closed_at
         FROM airlock_rounds WHERE output_id = ?1 ORDER BY number",
        args![id],
    )?
    .iter()
    .map(|r: &Row| {
        Ok(Round {
            number: r.u32(0)?,
            submitted_at: parse_ts("round", &r.text(1)?)?,
            context: from_json("round context", &r.text(2)?)?,
            check: from_json::<CheckStamp>("round check", &r.text(3)?)?,
            outcome: r
                .opt_text(4)?
                .map(|o| {
                    Outcome::parse(&o).ok_or(AirlockError::Corrupt {
                        what: "round outcome",
                        why: o,
                    })
                })
                .transpose()?,
            closed_at: r.opt_text(5)?.map(|t| parse_ts("round", &t)).transpose()?,
        })
    })
    .collect()
}

fn load_votes(c: &mut dyn Sql, id: &str) -> Result<Vec<Vote>, AirlockError> {
    // `rowid`: the order the votes were cast (see schema.rs).
    c.query(
        "SELECT round, checker, decision, comment, voted_at FROM airlock_votes
         WHERE output_id = ?1 ORDER BY rowid",
        args![id],
    )?
    .iter()
    .map(|r| {
        let decision = r.text(2)?;
        Ok(Vote {
            round: r.u32(0)?,
            checker: r.text(1)?,
            decision: Decision::parse(&decision).ok_or(AirlockError::Corrupt {
                what: "vote",
                why: decision,
            })?,
            comment: r.text(3)?,
            at: parse_ts("vote", &r.text(4)?)?,
        })
    })
    .collect()
}

fn load_history(c: &mut dyn Sql, id: &str) -> Result<Vec<HistoryEntry>, AirlockError> {
    c.query(
        "SELECT at, actor, action, state, note FROM airlock_history
         WHERE output_id = ?1 ORDER BY seq",
        args![id],
    )?
    .iter()
    .map(|r| {
        let state = r.text(3)?;
        Ok(HistoryEntry {
            at: parse_ts("history", &r.text(0)?)?,
            actor: r.text(1)?,
            action: r.text(2)?,
            state: State::parse(&state).ok_or(AirlockError::Corrupt {
                what: "history state",
                why: state,
            })?,
            note: r.text(4)?,
        })
    })
    .collect()
}

/// Writes a review changed by the workflow: the review row, every round (few, upserted), and the
/// votes and history entries added since it was loaded. Call inside a write transaction, after
/// loading the review there `Load::ForUpdate`.
pub(crate) fn save_review(
    c: &mut dyn Sql,
    review: &Review,
    stored: Stored,
) -> Result<(), AirlockError> {
    let o = &review.output;
    let context = review.context.as_ref().map(to_json).transpose()?;
    let state = review.state.as_str();
    let updated_at = ts(review.updated_at);
    if stored.exists {
        // Only if nobody appended to the history since the load: the row lock (or SQLite's
        // write lock) makes this hold; were it ever missing, a lost update fails here instead.
        let changed = c.execute(
            "UPDATE airlock_reviews SET state = ?2, context = ?3, updated_at = ?4
             WHERE output_id = ?1
               AND (SELECT count(*) FROM airlock_history WHERE output_id = ?1) = ?5",
            args![&o.id, state, &context, &updated_at, stored.history as i64],
        )?;
        if changed != 1 {
            return Err(AirlockError::Raced {
                output: o.id.clone(),
            });
        }
    } else {
        // Two nodes opening the same review: the second finds the first's row.
        let inserted = c.execute(
            &format!(
                "INSERT INTO airlock_reviews ({REVIEW_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (output_id) DO NOTHING"
            ),
            args![
                &o.id,
                &o.project,
                &o.author,
                &o.title,
                &o.sha256,
                &o.query_id,
                &o.sql,
                &o.snapshot_sha256,
                &ts(o.staged_at),
                state,
                &context,
                &ts(review.created_at),
                &updated_at
            ],
        )?;
        if inserted != 1 {
            return Err(AirlockError::Conflict {
                what: "review of output",
                id: o.id.clone(),
            });
        }
    }
    for r in &review.rounds {
        c.execute(
            "INSERT INTO airlock_rounds (output_id, number, submitted_at, context, check_stamp,
                                         outcome, closed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (output_id, number) DO UPDATE SET outcome = ?6, closed_at = ?7",
            args![
                &o.id,
                i64::from(r.number),
                &ts(r.submitted_at),
                &to_json(&r.context)?,
                &to_json(&r.check)?,
                r.outcome.map(Outcome::as_str),
                &r.closed_at.map(ts)
            ],
        )?;
    }
    for v in review.votes.iter().skip(stored.votes) {
        c.execute(
            "INSERT INTO airlock_votes (output_id, round, checker, decision, comment, voted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![
                &o.id,
                i64::from(v.round),
                &v.checker,
                v.decision.as_str(),
                &v.comment,
                &ts(v.at)
            ],
        )?;
    }
    for (seq, h) in review.history.iter().enumerate().skip(stored.history) {
        c.execute(
            "INSERT INTO airlock_history (output_id, seq, at, actor, action, state, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![
                &o.id,
                seq as i64,
                &ts(h.at),
                &h.actor,
                &h.action,
                h.state.as_str(),
                &h.note
            ],
        )?;
    }
    Ok(())
}

/// Reviews per state, every state listed (zero when none).
pub(crate) fn review_counts(c: &mut dyn Sql) -> Result<Vec<(State, u64)>, AirlockError> {
    let rows = c.query(
        "SELECT state, COUNT(*) FROM airlock_reviews GROUP BY state",
        args![],
    )?;
    let mut counts: Vec<(State, u64)> = State::ALL.iter().map(|s| (*s, 0)).collect();
    for r in &rows {
        let text = r.text(0)?;
        let state = State::parse(&text).ok_or(AirlockError::Corrupt {
            what: "review state",
            why: text,
        })?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
            slot.1 = r.count(1)?;
        }
    }
    Ok(counts)
}

/// Output ids of reviews, newest first: of one project, or (None) in one state.
pub(crate) fn review_ids(
    c: &mut dyn Sql,
    project: Option<&str>,
    state: Option<State>,
) -> Result<Vec<String>, AirlockError> {
    c.query(
        "SELECT output_id FROM airlock_reviews
         WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR state = ?2)
         ORDER BY updated_at DESC, output_id",
        args![project, state.map(State::as_str)],
    )?
    .iter()
    .map(|r| Ok(r.text(0)?))
    .collect()
}
