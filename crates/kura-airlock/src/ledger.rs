//! Releases and the persistent release ledger, in the `airlock_releases` and `airlock_ledger`
//! tables: which outputs were released (file and manifest hashes), and every cell released from
//! each snapshot, so that differencing is checked against all of them across restarts.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use kura_sdc::{LedgerError, ReleaseLedger, ReleasedCell};
use rusqlite::{params, Connection, OptionalExtension};

use crate::db::{db_err, from_json, open, parse_ts, ts};
use crate::error::AirlockError;

/// A recorded release.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseRecord {
    pub output_id: String,
    pub project: String,
    pub file_name: String,
    pub file_sha256: String,
    pub manifest_sha256: String,
    pub released_at: DateTime<Utc>,
}

pub(crate) fn insert_release(conn: &Connection, r: &ReleaseRecord) -> Result<(), AirlockError> {
    conn.execute(
        "INSERT INTO airlock_releases (output_id, project, file_name, file_sha256,
                                       manifest_sha256, released_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            r.output_id,
            r.project,
            r.file_name,
            r.file_sha256,
            r.manifest_sha256,
            ts(r.released_at)
        ],
    )
    .map_err(db_err(conn))?;
    Ok(())
}

pub(crate) fn release_record(
    conn: &Connection,
    id: &str,
) -> Result<Option<ReleaseRecord>, AirlockError> {
    let row = conn
        .query_row(
            "SELECT output_id, project, file_name, file_sha256, manifest_sha256, released_at
             FROM airlock_releases WHERE output_id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            },
        )
        .optional()
        .map_err(db_err(conn))?;
    row.map(
        |(output_id, project, file_name, file_sha256, manifest_sha256, at)| {
            Ok(ReleaseRecord {
                output_id,
                project,
                file_name,
                file_sha256,
                manifest_sha256,
                released_at: parse_ts("release", &at)?,
            })
        },
    )
    .transpose()
}

/// A released cell with where it came from, for the checkers' overlap report.
#[derive(Debug, Clone)]
pub(crate) struct ProjectCell {
    pub cell: ReleasedCell,
    pub snapshot: String,
    pub released_at: DateTime<Utc>,
}

/// Every cell released by `project` (from any snapshot).
pub(crate) fn project_cells(
    conn: &Connection,
    project: &str,
) -> Result<Vec<ProjectCell>, AirlockError> {
    let mut stmt = conn
        .prepare(
            "SELECT l.release, l.measure, l.definition, l.value, l.snapshot, r.released_at
             FROM airlock_ledger l JOIN airlock_releases r ON r.output_id = l.release
             WHERE r.project = ?1 ORDER BY r.released_at, l.rowid",
        )
        .map_err(db_err(conn))?;
    let rows = stmt
        .query_map([project], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .map_err(db_err(conn))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err(conn))?;
    rows.into_iter()
        .map(|(release, measure, definition, value, snapshot, at)| {
            Ok(ProjectCell {
                cell: ReleasedCell {
                    release,
                    measure,
                    definition: from_json::<BTreeSet<String>>("ledger definition", &definition)?,
                    value,
                },
                snapshot,
                released_at: parse_ts("release", &at)?,
            })
        })
        .collect()
}

fn ledger_cells(conn: &Connection, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError> {
    let le = |e: rusqlite::Error| LedgerError(format!("airlock_ledger: {e}"));
    let mut stmt = conn
        .prepare(
            "SELECT release, measure, definition, value FROM airlock_ledger
             WHERE snapshot = ?1 ORDER BY rowid",
        )
        .map_err(le)?;
    let rows = stmt
        .query_map([snapshot], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
            ))
        })
        .map_err(le)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(le)?;
    rows.into_iter()
        .map(|(release, measure, definition, value)| {
            Ok(ReleasedCell {
                release,
                measure,
                definition: serde_json::from_str(&definition)
                    .map_err(|e| LedgerError(format!("airlock_ledger definition: {e}")))?,
                value,
            })
        })
        .collect()
}

fn insert_cells(
    conn: &Connection,
    snapshot: &str,
    cells: &[ReleasedCell],
) -> Result<(), LedgerError> {
    let le = |e: rusqlite::Error| LedgerError(format!("airlock_ledger: {e}"));
    let mut stmt = conn
        .prepare(
            "INSERT INTO airlock_ledger (snapshot, release, measure, definition, value)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(le)?;
    for c in cells {
        let def = serde_json::to_string(&c.definition)
            .map_err(|e| LedgerError(format!("airlock_ledger definition: {e}")))?;
        stmt.execute(params![snapshot, c.release, c.measure, def, c.value])
            .map_err(le)?;
    }
    Ok(())
}

/// The ledger seen through an open transaction (used by the release, so that checking and
/// recording happen under one write lock).
pub(crate) struct TxLedger<'c>(pub &'c Connection);

impl ReleaseLedger for TxLedger<'_> {
    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError> {
        ledger_cells(self.0, snapshot)
    }

    fn record(&mut self, snapshot: &str, cells: Vec<ReleasedCell>) -> Result<(), LedgerError> {
        insert_cells(self.0, snapshot, &cells)
    }
}

/// The persistent release ledger: every cell released from each snapshot, in `airlock_ledger`,
/// surviving restarts. Implements [`kura_sdc::ReleaseLedger`].
pub struct PersistentLedger {
    conn: Connection,
}

impl PersistentLedger {
    /// Opens the ledger in `<state_dir>/kura.sqlite`.
    pub fn open(state_dir: &Path) -> Result<PersistentLedger, AirlockError> {
        Ok(PersistentLedger {
            conn: open(state_dir)?,
        })
    }
}

impl ReleaseLedger for PersistentLedger {
    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError> {
        ledger_cells(&self.conn, snapshot)
    }

    /// All cells or none (one transaction).
    fn record(&mut self, snapshot: &str, cells: Vec<ReleasedCell>) -> Result<(), LedgerError> {
        let le = |e: rusqlite::Error| LedgerError(format!("airlock_ledger: {e}"));
        let tx = self.conn.transaction().map_err(le)?;
        insert_cells(&tx, snapshot, &cells)?;
        tx.commit().map_err(le)
    }
}
