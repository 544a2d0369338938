//! Releases and the persistent release ledger, in the `airlock_releases` and `airlock_ledger`
//! tables: which outputs were released (file and manifest hashes), and every cell released from
//! each snapshot, so that differencing is checked against all of them across restarts and
//! across the nodes sharing one PostgreSQL database.
//!
//! A release's cells, its release row and its review's new state are written in one transaction
//! (`release.rs`), after the snapshot's ledger lock (`store::lock_ledger`): a cell is recorded
//! exactly when its release is, and two releases from one snapshot check one after the other.
//!
//! Checks read the ledger through [`LedgerCache`]: each process keeps every snapshot's cells
//! indexed ([`kura_sdc::Released`]) and reads from the database only the rows added since,
//! so a check does not cost more with every release.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use kura_sdc::{LedgerError, ReleaseLedger, Released, ReleasedCell};

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

fn ledger_cell(r: &kura_sql::Row) -> Result<ReleasedCell, AirlockError> {
    Ok(ReleasedCell {
        release: r.text(1)?,
        measure: r.text(2)?,
        definition: from_json("ledger definition", &r.text(3)?)?,
        value: r.real(4)?,
    })
}

/// Every snapshot's released cells, indexed, as this process last read them from
/// `airlock_ledger`, with the last `rowid` read.
///
/// Reading only `rowid > last` is complete because a snapshot's cells are inserted only under
/// its ledger lock (`store::lock_ledger`; SQLite's single writer), which is held until commit,
/// and the row ids are taken after the lock: the committed rows of one snapshot are always a
/// prefix of its row ids (rolled-back inserts leave gaps, never later rows before earlier
/// ones). No row is ever deleted. A transaction that inserted cells never refreshes the cache
/// ([`TxLedger`]), so it holds committed rows only.
/// Ledger rows read per statement when an index catches up.
const REFRESH_PAGE: i64 = 5_000;

#[derive(Default)]
pub(crate) struct LedgerCache {
    snapshots: Mutex<HashMap<String, Arc<Mutex<Cached>>>>,
}

#[derive(Default)]
struct Cached {
    last_rowid: i64,
    released: Released,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a check held the lock leaves the index as complete as before it: the
    // cells are added only once all of a refresh's rows have been read.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LedgerCache {
    /// Brings `snapshot`'s cells up to what `c` sees.
    fn refresh(&self, c: &mut dyn Sql, snapshot: &str) -> Result<Arc<Mutex<Cached>>, AirlockError> {
        let entry = locked(&self.snapshots)
            .entry(snapshot.to_string())
            .or_default()
            .clone();
        let mut cached = locked(&entry);
        // In pages: the first read of a long ledger would otherwise hold every row at once.
        loop {
            let rows = c.query(
                "SELECT rowid, release, measure, definition, value FROM airlock_ledger
                 WHERE snapshot = ?1 AND rowid > ?2 ORDER BY rowid LIMIT ?3",
                args![snapshot, cached.last_rowid, REFRESH_PAGE],
            )?;
            let Some(last) = rows.last() else { break };
            let last = last.int(0)?;
            let cells = rows
                .iter()
                .map(ledger_cell)
                .collect::<Result<Vec<_>, _>>()?;
            cached.released.extend(cells);
            cached.last_rowid = last;
            if (rows.len() as i64) < REFRESH_PAGE {
                break;
            }
        }
        drop(cached);
        Ok(entry)
    }
}

/// Calls `f` with the cells of a refreshed entry. Checks of one snapshot take turns on its
/// lock; a refresh waits for them rather than copy the index.
fn with_entry(entry: &Mutex<Cached>, f: &mut dyn FnMut(&Released)) {
    f(&locked(entry).released);
}

/// Every cell released from `snapshot`, read whole.
fn ledger_cells(c: &mut dyn Sql, snapshot: &str) -> Result<Vec<ReleasedCell>, AirlockError> {
    c.query(
        "SELECT rowid, release, measure, definition, value FROM airlock_ledger
         WHERE snapshot = ?1 ORDER BY rowid",
        args![snapshot],
    )?
    .iter()
    .map(ledger_cell)
    .collect()
}

/// Records a release's cells. Call in the release's write transaction, after the snapshot's
/// ledger lock and the check; the transaction must not read the ledger through the cache
/// afterwards (it would index rows that may still roll back).
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
pub(crate) struct TxLedger<'a, 'c> {
    c: RefCell<&'a mut (dyn Sql + 'c)>,
    cache: &'a LedgerCache,
    /// Cells recorded in this transaction: from then on reads bypass the cache, which must not
    /// hold rows that may still roll back.
    wrote: bool,
}

impl<'a, 'c> TxLedger<'a, 'c> {
    pub(crate) fn new(c: &'a mut (dyn Sql + 'c), cache: &'a LedgerCache) -> Self {
        TxLedger {
            c: RefCell::new(c),
            cache,
            wrote: false,
        }
    }
}

impl<'a, 'c> TxLedger<'a, 'c> {
    fn connection(&self) -> Result<std::cell::RefMut<'_, &'a mut (dyn Sql + 'c)>, LedgerError> {
        self.c
            .try_borrow_mut()
            .map_err(|_| LedgerError("airlock_ledger: read while being written".into()))
    }
}

impl ReleaseLedger for TxLedger<'_, '_> {
    fn with_released(
        &self,
        snapshot: &str,
        f: &mut dyn FnMut(&Released),
    ) -> Result<(), LedgerError> {
        let mut c = self.connection()?;
        if self.wrote {
            let cells = ledger_cells(&mut **c, snapshot).map_err(ledger_error)?;
            f(&Released::new(cells));
            return Ok(());
        }
        let entry = self
            .cache
            .refresh(&mut **c, snapshot)
            .map_err(ledger_error)?;
        with_entry(&entry, f);
        Ok(())
    }

    /// Call inside a write transaction that took the snapshot's ledger lock before checking.
    fn record(&mut self, snapshot: &str, cells: Vec<ReleasedCell>) -> Result<(), LedgerError> {
        self.wrote = true;
        insert_cells(&mut **self.c.get_mut(), snapshot, &cells).map_err(ledger_error)
    }

    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError> {
        ledger_cells(&mut **self.connection()?, snapshot).map_err(ledger_error)
    }
}

/// The ledger read through the airlock's database, each call a consistent read of its own:
/// for checks outside a review (`Airlock::with_ledger`, the explorer's differencing).
pub(crate) struct DbLedger<'d>(pub(crate) &'d Db);

impl ReleaseLedger for DbLedger<'_> {
    fn with_released(
        &self,
        snapshot: &str,
        f: &mut dyn FnMut(&Released),
    ) -> Result<(), LedgerError> {
        let db = self.0;
        // The check runs after the read transaction, holding no connection.
        let entry = db
            .read(|c| db.ledger_cache().refresh(c, snapshot))
            .map_err(ledger_error)?;
        with_entry(&entry, f);
        Ok(())
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

    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError> {
        self.0
            .read(|c| ledger_cells(c, snapshot))
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
    fn with_released(
        &self,
        snapshot: &str,
        f: &mut dyn FnMut(&Released),
    ) -> Result<(), LedgerError> {
        DbLedger(&self.db).with_released(snapshot, f)
    }

    /// All cells or none (one transaction).
    fn record(&mut self, snapshot: &str, cells: Vec<ReleasedCell>) -> Result<(), LedgerError> {
        DbLedger(&self.db).record(snapshot, cells)
    }

    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError> {
        DbLedger(&self.db).released(snapshot)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn cell(release: &str) -> ReleasedCell {
        ReleasedCell {
            release: release.to_string(),
            measure: "patients".to_string(),
            definition: BTreeSet::from(["pref=13".to_string()]),
            value: 40.0,
        }
    }

    /// The release ids of the cells the index compares with.
    fn indexed(ledger: &dyn ReleaseLedger) -> Vec<String> {
        let total = BTreeSet::new();
        let mut out = Vec::new();
        ledger
            .with_released("snap", &mut |r| {
                out = r
                    .nested("patients", &total)
                    .into_iter()
                    .map(|c| c.release.clone())
                    .collect();
            })
            .unwrap();
        out
    }

    /// A ledger longer than a page is read whole, page after page.
    #[test]
    fn an_index_reads_a_long_ledger_page_by_page() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), &store::AirlockDatabase::StateDir).unwrap();
        let n = 2 * REFRESH_PAGE as usize + 3;
        let cells: Vec<ReleasedCell> = (0..n)
            .map(|i| ReleasedCell {
                definition: BTreeSet::from([format!("pref={i}")]),
                ..cell(&format!("r{i}"))
            })
            .collect();
        DbLedger(&db).record("snap", cells).unwrap();
        let releases = indexed(&DbLedger(&db));
        assert_eq!(releases.len(), n);
        assert_eq!(
            releases.last().map(String::as_str),
            Some(format!("r{}", n - 1).as_str())
        );
    }

    /// A transaction that recorded cells sees them, but they never reach the index: after a
    /// rollback no check compares with them, and later cells are still read.
    #[test]
    fn cells_of_a_rolled_back_transaction_never_enter_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), &store::AirlockDatabase::StateDir).unwrap();
        let seen = db
            .write(|c| -> Result<Vec<String>, AirlockError> {
                let mut ledger = TxLedger::new(c, db.ledger_cache());
                ledger.record("snap", vec![cell("rolled-back")]).unwrap();
                let seen = indexed(&ledger);
                Err(AirlockError::Invalid(format!(
                    "rolled back after seeing {seen:?}"
                )))
            })
            .unwrap_err();
        assert!(seen.to_string().contains("[\"rolled-back\"]"), "{seen}");
        assert!(indexed(&DbLedger(&db)).is_empty());

        DbLedger(&db).record("snap", vec![cell("kept")]).unwrap();
        assert_eq!(indexed(&DbLedger(&db)), ["kept"]);
    }
}
