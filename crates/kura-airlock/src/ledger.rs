//! Releases and the persistent release ledger, in the `airlock_releases` and `airlock_ledger`
//! tables: which outputs were released (file and manifest hashes), and every cell released from
//! each snapshot, so that differencing is checked against all of them across restarts and
//! across the nodes sharing one PostgreSQL database.
//!
//! A release's cells, its release row and its review's new state are written in one transaction
//! (`release.rs`), after the snapshot's ledger lock (`store::lock_ledger`): a cell is recorded
//! exactly when its release is, and two releases from one snapshot check one after the other.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use kura_sdc::{LedgerError, ReleaseLedger, ReleasedCell};

use crate::error::AirlockError;
use crate::store::{self, from_json, parse_ts, ts, AirlockDatabase, Db};
use kura_sql::{args, Sql};

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

pub(crate) fn insert_release(c: &mut dyn Sql, r: &ReleaseRecord) -> Result<(), AirlockError> {
    c.execute(
        "INSERT INTO airlock_releases (output_id, project, file_name, file_sha256,
                                       manifest_sha256, released_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![
            &r.output_id,
            &r.project,
            &r.file_name,
            &r.file_sha256,
            &r.manifest_sha256,
            &ts(r.released_at)
        ],
    )?;
    Ok(())
}

pub(crate) fn release_record(
    c: &mut dyn Sql,
    id: &str,
) -> Result<Option<ReleaseRecord>, AirlockError> {
    c.query_opt(
        "SELECT output_id, project, file_name, file_sha256, manifest_sha256, released_at
         FROM airlock_releases WHERE output_id = ?1",
        args![id],
    )?
    .map(|r| {
        Ok(ReleaseRecord {
            output_id: r.text(0)?,
            project: r.text(1)?,
            file_name: r.text(2)?,
            file_sha256: r.text(3)?,
            manifest_sha256: r.text(4)?,
            released_at: parse_ts("release", &r.text(5)?)?,
        })
    })
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
    c: &mut dyn Sql,
    project: &str,
) -> Result<Vec<ProjectCell>, AirlockError> {
    c.query(
        "SELECT l.release, l.measure, l.definition, l.value, l.snapshot, r.released_at
         FROM airlock_ledger l JOIN airlock_releases r ON r.output_id = l.release
         WHERE r.project = ?1 ORDER BY r.released_at, l.rowid",
        args![project],
    )?
    .iter()
    .map(|r| {
        Ok(ProjectCell {
            cell: ReleasedCell {
                release: r.text(0)?,
                measure: r.text(1)?,
                definition: from_json::<BTreeSet<String>>("ledger definition", &r.text(2)?)?,
                value: r.real(3)?,
            },
            snapshot: r.text(4)?,
            released_at: parse_ts("release", &r.text(5)?)?,
        })
    })
    .collect()
}

fn ledger_cells(c: &mut dyn Sql, snapshot: &str) -> Result<Vec<ReleasedCell>, AirlockError> {
    c.query(
        "SELECT release, measure, definition, value FROM airlock_ledger
         WHERE snapshot = ?1 ORDER BY rowid",
        args![snapshot],
    )?
    .iter()
    .map(|r| {
        Ok(ReleasedCell {
            release: r.text(0)?,
            measure: r.text(1)?,
            definition: from_json("ledger definition", &r.text(2)?)?,
            value: r.real(3)?,
        })
    })
    .collect()
}

/// Records a release's cells. Call in the release's write transaction, after the snapshot's
/// ledger lock and the check.
pub(crate) fn insert_cells(
    c: &mut dyn Sql,
    snapshot: &str,
    cells: &[ReleasedCell],
) -> Result<(), AirlockError> {
    for cell in cells {
        let def = store::to_json(&cell.definition)?;
        c.execute(
            "INSERT INTO airlock_ledger (snapshot, release, measure, definition, value)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![snapshot, &cell.release, &cell.measure, &def, cell.value],
        )?;
    }
    Ok(())
}

fn ledger_error(e: AirlockError) -> LedgerError {
    LedgerError(format!("airlock_ledger: {e}"))
}

/// The ledger seen through an open transaction (used by submission, the report and the
/// release, so that checking and recording see the same ledger).
pub(crate) struct TxLedger<'a, 'c>(RefCell<&'a mut (dyn Sql + 'c)>);

impl<'a, 'c> TxLedger<'a, 'c> {
    pub(crate) fn new(c: &'a mut (dyn Sql + 'c)) -> Self {
        TxLedger(RefCell::new(c))
    }
}

impl ReleaseLedger for TxLedger<'_, '_> {
    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError> {
        let mut c = self
            .0
            .try_borrow_mut()
            .map_err(|_| LedgerError("airlock_ledger: read while being written".into()))?;
        ledger_cells(&mut **c, snapshot).map_err(ledger_error)
    }

    /// Call inside a write transaction that took the snapshot's ledger lock before checking.
    fn record(&mut self, snapshot: &str, cells: Vec<ReleasedCell>) -> Result<(), LedgerError> {
        insert_cells(&mut **self.0.get_mut(), snapshot, &cells).map_err(ledger_error)
    }
}

/// The ledger read through the airlock's database, each call a consistent read of its own:
/// for checks outside a review (`Airlock::with_ledger`, the explorer's differencing).
pub(crate) struct DbLedger<'d>(pub(crate) &'d Db);

impl ReleaseLedger for DbLedger<'_> {
    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError> {
        self.0
            .read(|c| ledger_cells(c, snapshot))
            .map_err(ledger_error)
    }

    /// All cells or none, after the releases from `snapshot` that committed before.
    fn record(&mut self, snapshot: &str, cells: Vec<ReleasedCell>) -> Result<(), LedgerError> {
        self.0
            .write(|c| {
                store::lock_ledger(c, snapshot)?;
                insert_cells(c, snapshot, &cells)
            })
            .map_err(ledger_error)
    }
}

/// The persistent release ledger: every cell released from each snapshot, in `airlock_ledger`,
/// surviving restarts. Implements [`kura_sdc::ReleaseLedger`].
pub struct PersistentLedger {
    db: Db,
}

impl PersistentLedger {
    /// Opens the ledger in `<state_dir>/kura.sqlite`.
    pub fn open(state_dir: &Path) -> Result<PersistentLedger, AirlockError> {
        PersistentLedger::open_at(state_dir, &AirlockDatabase::StateDir)
    }

    /// Opens the ledger in a PostgreSQL database (`postgres://user@host:port/db`), the one
    /// the nodes' airlocks share.
    pub fn open_postgres(url: &str) -> Result<PersistentLedger, AirlockError> {
        PersistentLedger::open_at(Path::new("."), &AirlockDatabase::Postgres(url.to_string()))
    }

    /// Opens the ledger where the configuration says (`state_dir` is used for SQLite only).
    pub fn open_at(
        state_dir: &Path,
        database: &AirlockDatabase,
    ) -> Result<PersistentLedger, AirlockError> {
        Ok(PersistentLedger {
            db: Db::open(state_dir, database)?,
        })
    }
}

impl ReleaseLedger for PersistentLedger {
    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError> {
        DbLedger(&self.db).released(snapshot)
    }

    /// All cells or none (one transaction).
    fn record(&mut self, snapshot: &str, cells: Vec<ReleasedCell>) -> Result<(), LedgerError> {
        DbLedger(&self.db).record(snapshot, cells)
    }
}
