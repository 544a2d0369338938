//! The automatic report checkers see: the kura-sdc report (every cell, the rules it failed and
//! why, the suggested protected table) run against everything already released from the
//! snapshot, the SQL and hashes, and the overlaps with the project's earlier releases. It is
//! serialisable to JSON for the UI.

use kura_sdc::{MeasureKind, Released, Report, StagedTable};
use serde::Serialize;

use crate::airlock::{load, Airlock};
use crate::error::AirlockError;
use crate::ledger::{self, ProjectCell};
use crate::reviews::Load;
use crate::staged::sha256_hex;
use crate::store;
use crate::workflow::{Context, State};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckerReport {
    pub output_id: String,
    pub project: String,
    pub title: String,
    pub author: String,
    pub state: State,
    pub sql: String,
    pub query_sha256: String,
    pub snapshot_sha256: String,
    pub output_sha256: String,
    /// The context of the latest round (or the draft's).
    pub context: Option<Context>,
    pub passed: bool,
    pub failing_cells: usize,
    /// Whether the protected table is still the one the latest round was submitted with
    /// (`None` before the first submission). `false` means releases since then changed it.
    pub matches_submitted: Option<bool>,
    /// The kura-sdc report: `refusals`, `cells` (with `failures` and `action`), `protected`.
    pub sdc: Report,
    /// Cells of this output whose population equals or nests with a cell the project already
    /// released, smallest difference (most revealing) first, at most [`MAX_OVERLAPS`].
    pub overlaps: Vec<Overlap>,
    /// Overlaps left out beyond [`MAX_OVERLAPS`].
    pub overlaps_omitted: usize,
}

/// Overlaps listed in a report (a grand total nests with every earlier cell).
pub const MAX_OVERLAPS: usize = 500;

/// How a new cell's population relates to a released one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The same definition: the same cell released again.
    Same,
    /// The new cell is a sub-population of the released one.
    InsideReleased,
    /// The new cell contains the released one.
    ContainsReleased,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overlap {
    pub row: usize,
    pub label: String,
    pub measure: String,
    pub value: f64,
    pub relation: Relation,
    /// |value - released_value|: the size of the group between the two populations.
    pub difference: f64,
    pub release: String,
    pub released_at: String,
    pub released_definition: Vec<String>,
    pub released_value: f64,
    /// Released from the same snapshot (otherwise the counts come from different data).
    pub same_snapshot: bool,
}

impl Airlock {
    /// The report for checkers (and the author) on `output_id`.
    pub fn report(&self, output_id: &str) -> Result<CheckerReport, AirlockError> {
        // One snapshot: the review, the ledger it is checked against and the released cells.
        let (review, context, table, report, released) = self.db().read(|c| {
            let (review, _) = load(c, output_id, Load::Read)?;
            let last = review.rounds.last();
            let context = last.map(|r| r.context.clone()).or(review.context.clone());
            let (table, report) = self.check_output(c, &review, context.as_ref())?;
            let released = ledger::project_cells(c, &review.output.project)?;
            Ok((review, context, table, report, released))
        })?;
        let last = review.rounds.last();
        let matches_submitted = last.map(|r| {
            self.stamp(output_id, &report)
                .map(|s| s.protected_sha256 == r.check.protected_sha256)
                .unwrap_or(false)
        });
        let o = &review.output;
        let mut overlaps = overlaps(&table, &released, &o.snapshot_sha256, &o.id);
        overlaps.sort_by(|a, b| {
            b.same_snapshot
                .cmp(&a.same_snapshot)
                .then(a.difference.total_cmp(&b.difference))
                .then(a.row.cmp(&b.row))
        });
        let overlaps_omitted = overlaps.len().saturating_sub(MAX_OVERLAPS);
        overlaps.truncate(MAX_OVERLAPS);
        Ok(CheckerReport {
            output_id: o.id.clone(),
            project: o.project.clone(),
            title: o.title.clone(),
            author: o.author.clone(),
            state: review.state,
            sql: o.sql.clone(),
            query_sha256: sha256_hex(o.sql.as_bytes()),
            snapshot_sha256: o.snapshot_sha256.clone(),
            output_sha256: o.sha256.clone(),
            context,
            passed: report.passed(),
            failing_cells: report.failing_cells().count(),
            matches_submitted,
            sdc: report,
            overlaps,
            overlaps_omitted,
        })
    }
}

/// Every (new count cell, released cell) pair of the same measure whose definitions are equal or
/// nested, using kura-sdc's own nesting index.
fn overlaps(
    table: &StagedTable,
    released: &[ProjectCell],
    snapshot: &str,
    this_release: &str,
) -> Vec<Overlap> {
    let released: Vec<&ProjectCell> = released
        .iter()
        .filter(|p| p.cell.release != this_release)
        .collect();
    let index = Released::new(released.iter().map(|p| p.cell.clone()));
    let mut out = Vec::new();
    for (m, measure) in table.measures.iter().enumerate() {
        if measure.kind != MeasureKind::Count {
            continue;
        }
        for (r, row) in table.rows.iter().enumerate() {
            let def = table.definition(r);
            let value = row.values.get(m).copied().unwrap_or(0.0);
            for i in index.related(&measure.name, &def) {
                let p = released[i];
                let c = &p.cell;
                let relation = if c.definition == def {
                    Relation::Same
                } else if c.definition.is_subset(&def) {
                    Relation::InsideReleased
                } else {
                    Relation::ContainsReleased
                };
                out.push(Overlap {
                    row: r,
                    label: table.label(r),
                    measure: measure.name.clone(),
                    value,
                    relation,
                    difference: (value - c.value).abs(),
                    release: c.release.clone(),
                    released_at: store::ts(p.released_at),
                    released_definition: c.definition.iter().cloned().collect(),
                    released_value: c.value,
                    same_snapshot: p.snapshot == snapshot,
                });
            }
        }
    }
    out
}
