//! The explorer's work without the server: the three SQL texts of a request
//! (`kura_explorer::Explorer::queries`, with the catalog read once) on DuckDB directly, the
//! baseline and the reference the index's rows are compared with.

use std::path::Path;
use std::time::{Duration, Instant};

use kura_explorer::{Catalog, Explorer, Feasibility, Filters, RawView, View, ViewQuery};
use kura_query::arrow::array::{Array, AsArray};
use kura_query::arrow::datatypes::{Int32Type, Int64Type};
use kura_query::arrow::record_batch::RecordBatch;
use kura_query::Limits;
use serde_json::Value;

use super::super::load::{duck_err, Baseline};
use super::super::BenchError;

/// The explorer as the baseline uses it: the snapshot's catalog read once on DuckDB directly,
/// a random key (the noise is not compared; only the raw rows and the protection's cost are).
pub(super) struct Direct {
    pub(super) explorer: Explorer,
}

fn baseline_err(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Baseline(format!("{what}: {e}"))
}

impl Direct {
    pub(super) fn new(baseline: &Baseline) -> Result<Direct, BenchError> {
        let conn = &baseline.conn;
        let mut stmt = conn.prepare(Catalog::TREATMENTS_SQL).map_err(duck_err)?;
        let treatments = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(duck_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(duck_err)?;
        let mut stmt = conn.prepare(Catalog::FISCAL_YEARS_SQL).map_err(duck_err)?;
        let years = stmt
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(duck_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(duck_err)?
            .into_iter()
            .map(|y| u16::try_from(y).map_err(|e| baseline_err("fiscal year", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let catalog = Catalog::new(treatments, years).map_err(|e| baseline_err("catalog", e))?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| baseline_err("random key", e))?;
        let explorer = Explorer::new(&key, catalog).map_err(|e| baseline_err("explorer", e))?;
        Ok(Direct { explorer })
    }

    pub(super) fn filters(&self, body: &Value) -> Result<Filters, BenchError> {
        let form: Feasibility =
            serde_json::from_value(body.clone()).map_err(|e| baseline_err("request", e))?;
        self.explorer
            .validate(&form)
            .map_err(|e| baseline_err("request", e))
    }

    pub(super) fn queries(&self, filters: &Filters) -> Vec<ViewQuery> {
        self.explorer.queries(filters)
    }
}

/// Patients per designated disease in the snapshot (distinct research ids on `nanbyo_forms`):
/// the weights the request generator draws diseases with.
pub(super) fn prevalence(baseline: &Baseline) -> Result<Vec<(u16, f64)>, BenchError> {
    let mut stmt = baseline
        .conn
        .prepare(
            "SELECT CAST(disease_no AS INTEGER), count(DISTINCT research_id) FROM nanbyo_forms \
             WHERE disease_no IS NOT NULL AND research_id IS NOT NULL GROUP BY 1 ORDER BY 1",
        )
        .map_err(duck_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i32>(0)?, r.get::<_, i64>(1)?)))
        .map_err(duck_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(duck_err)?;
    Ok(rows
        .into_iter()
        .filter_map(|(no, n)| Some((u16::try_from(no).ok()?, n as f64)))
        .collect())
}

/// Distinct patients on `nanbyo_forms`.
pub(super) fn patients(baseline: &Baseline) -> Result<u64, BenchError> {
    baseline
        .conn
        .query_row(
            "SELECT count(DISTINCT research_id) FROM nanbyo_forms",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n.max(0) as u64)
        .map_err(duck_err)
}

/// One view's statement as the worker runs it: prepare, execute, collect the Arrow batches.
pub(super) fn run_view(
    conn: &duckdb::Connection,
    sql: &str,
) -> Result<Vec<RecordBatch>, BenchError> {
    let mut stmt = conn.prepare(sql).map_err(duck_err)?;
    let batches: Vec<RecordBatch> = stmt.query_arrow([]).map_err(duck_err)?.collect();
    Ok(batches)
}

/// A request's three statements in [`View::ALL`] order, one after the other: each one's time
/// and the grand total of patients (from `by_prefecture`'s `TOTAL` row), which the server's
/// published total must be within the noise of.
pub(super) fn run_request(
    conn: &duckdb::Connection,
    queries: &[ViewQuery],
) -> Result<([Duration; 3], u64), BenchError> {
    let mut times = [Duration::ZERO; 3];
    let mut total = None;
    for (i, q) in queries.iter().enumerate().take(3) {
        let t = Instant::now();
        let batches = run_view(conn, &q.sql)?;
        times[i] = t.elapsed();
        if q.view == View::ByPrefecture {
            total = Some(grand_total(&batches)?);
        }
    }
    let total = total.ok_or_else(|| BenchError::Baseline("no by_prefecture query".into()))?;
    Ok((times, total))
}

/// `count:patients` of the row whose first column is `TOTAL`.
fn grand_total(batches: &[RecordBatch]) -> Result<u64, BenchError> {
    let bad = |why: &str| BenchError::Baseline(format!("by_prefecture rows: {why}"));
    for b in batches {
        let dims = b
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("the first column is not text"))?;
        let counts = b
            .column_by_name("count:patients")
            .ok_or_else(|| bad("no count:patients column"))?;
        for row in 0..b.num_rows() {
            if dims.is_valid(row) && dims.value(row) == kura_sdc::TOTAL {
                let n = counts
                    .as_primitive_opt::<Int64Type>()
                    .map(|a| a.value(row))
                    .or_else(|| {
                        counts
                            .as_primitive_opt::<Int32Type>()
                            .map(|a| i64::from(a.value(row)))
                    })
                    .ok_or_else(|| bad("count:patients is not an integer"))?;
                return Ok(n.max(0) as u64);
            }
        }
    }
    Err(bad("no TOTAL row"))
}

/// The rows of a view as the server hands them to the explorer: Arrow's CSV, parsed back.
pub(super) fn raw_view(view: View, batches: &[RecordBatch]) -> Result<RawView, BenchError> {
    let mut out = Vec::new();
    {
        let mut w = kura_query::export::csv_writer(&mut out);
        for b in batches {
            w.write(b).map_err(|e| baseline_err("CSV", e))?;
        }
    }
    let text = String::from_utf8(out).map_err(|e| baseline_err("CSV", e))?;
    RawView::from_csv(view, &text).map_err(|e| baseline_err("rows", e))
}

/// A DuckDB database on the snapshot per caller, each read-only with the worker's threads and
/// memory limit: the server's workers are one DuckDB each, so the baseline is too.
pub(super) fn open_callers(
    snapshot: &Path,
    limits: &Limits,
    n: usize,
) -> Result<Vec<Baseline>, BenchError> {
    (0..n).map(|_| Baseline::open(snapshot, limits)).collect()
}
