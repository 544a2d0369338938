//! `kura bench sdc`: how fast Kura checks a large crosstab, against ACRO (AI-SDC/ACRO, PyPI
//! `acro`) on the same microdata with the same thresholds, and whether both flag the same cells.
//!
//! Kura's side is timed in two parts: aggregating the microdata into the staged table (a query
//! engine does this inside Kura) and [`check`](crate::check) with the `uk-acro` pack (threshold,
//! nk-dominance, p-ratio, then secondary suppression). ACRO's side is one `ACRO.crosstab(...,
//! aggfunc="mean", margins=True)` call, which both aggregates and checks. Primary masks (per rule,
//! before secondary suppression, which the two tools do differently) are compared cell by cell.
//! ACRO's suppression step issues one pandas query over the whole microdata per failing cell
//! (10,000 cells: over a minute), so at the full size ACRO runs its checks alone
//! (`suppress=False`: same masks, no redaction); suppression is timed on a grid of at most
//! [`Options::suppress_cells`] cells, where both tools run too.

pub mod acro_run;
pub mod data;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::check::{check, CheckContext};
use crate::error::SdcError;
use crate::pack::{Rule, RulePack};
use crate::report::RuleId;
use acro_run::AcroOutcome;
use data::{Microdata, Mismatch};

pub struct Options {
    /// Target number of grid cells; the grid is the largest square not above it.
    pub cells: u64,
    /// Largest grid on which ACRO's suppression is timed; a smaller run is added at this size
    /// when `cells` is larger.
    pub suppress_cells: u64,
    pub seed: u64,
    /// Kura's check is run this many times; the median is reported.
    pub repeat: usize,
    /// Per ACRO run.
    pub timeout: Duration,
    pub python: Option<PathBuf>,
    pub venv: PathBuf,
    pub install: bool,
    pub skip_acro: bool,
    /// Where the microdata and ACRO's outputs are written.
    pub work_dir: PathBuf,
}

/// Kura's figures at one grid size.
#[derive(Debug)]
pub struct KuraRun {
    pub rows: u32,
    pub cols: u32,
    pub microdata_rows: usize,
    /// Rows of the staged table: grid cells plus margins. Each has a count and a mean.
    pub table_cells: usize,
    pub aggregate_s: f64,
    pub check_s: f64,
    /// Cells flagged by threshold, nk-dominance, p-ratio (on the mean).
    pub rule_counts: [usize; 3],
    /// Count cells hidden by secondary suppression.
    pub secondary: usize,
    pub mask: Vec<u8>,
}

#[derive(Debug)]
pub struct AcroRun {
    /// Index into [`BenchReport::kura`]: the size it ran at.
    pub size: usize,
    pub suppress: bool,
    pub outcome: AcroOutcome,
    /// For a finished run: every cell and rule where the masks differ (or why they could not
    /// be compared).
    pub comparison: Option<Result<Vec<Mismatch>, String>>,
}

#[derive(Debug, Default)]
pub struct BenchReport {
    pub kura: Vec<KuraRun>,
    pub acro: Vec<AcroRun>,
    /// Why ACRO did not run at all.
    pub acro_unavailable: Option<String>,
}

/// The `uk-acro` pack without its row-level rule (a 1M-row crosstab is deliberately large).
pub fn bench_pack() -> Result<RulePack, SdcError> {
    let mut pack = RulePack::builtin("uk-acro")?;
    pack.rules.retain(|r| !matches!(r, Rule::RowLevel { .. }));
    Ok(pack)
}

fn side(cells: u64) -> u32 {
    let s = (cells as f64).sqrt().floor() as u32;
    s.max(2)
}

fn run_kura(side: u32, opts: &Options, pack: &RulePack) -> Result<(KuraRun, Microdata), SdcError> {
    let micro = Microdata::generate(side, side, opts.seed);
    let t = Instant::now();
    let table = data::aggregate(&micro);
    let aggregate_s = t.elapsed().as_secs_f64();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..opts.repeat.max(1) {
        let t = Instant::now();
        let report = check(&table, pack, &CheckContext::default())?;
        times.push(t.elapsed().as_secs_f64());
        last = Some(report);
    }
    times.sort_by(f64::total_cmp);
    let report = last.ok_or_else(|| SdcError::Table {
        origin: table.name.clone(),
        message: "no check ran".into(),
    })?;
    let mask = data::kura_mask(&report, 1, table.rows.len());
    let secondary = report
        .cells
        .iter()
        .filter(|c| c.measure == 0 && c.failures.iter().any(|f| f.rule == RuleId::Secondary))
        .count();
    Ok((
        KuraRun {
            rows: side,
            cols: side,
            microdata_rows: micro.len(),
            table_cells: table.rows.len(),
            aggregate_s,
            check_s: times[times.len() / 2],
            rule_counts: data::rule_counts(&mask),
            secondary,
            mask,
        },
        micro,
    ))
}

/// Runs the whole benchmark; `log` receives progress lines.
pub fn run(opts: &Options, log: &mut dyn FnMut(&str)) -> Result<BenchReport, SdcError> {
    let pack = bench_pack()?;
    let mut report = BenchReport::default();
    let python = if opts.skip_acro {
        report.acro_unavailable = Some("skipped (--no-acro)".into());
        None
    } else {
        match acro_run::find_python(opts.python.as_deref(), &opts.venv, opts.install, log) {
            Ok(p) => Some(p),
            Err(why) => {
                log(&format!("ACRO unavailable: {why}"));
                report.acro_unavailable = Some(why);
                None
            }
        }
    };
    let mut sizes = vec![side(opts.cells)];
    let small = side(opts.suppress_cells);
    if python.is_some() && small < sizes[0] {
        sizes.push(small);
    }
    let mut i = 0;
    while i < sizes.len() {
        let s = sizes[i];
        log(&format!("kura: {s} x {s} grid ..."));
        let (k, micro) = run_kura(s, opts, &pack)?;
        log(&format!(
            "kura: aggregate {:.2} s, check {:.2} s",
            k.aggregate_s, k.check_s
        ));
        report.kura.push(k);
        let size = report.kura.len() - 1;
        let Some(python) = &python else {
            i += 1;
            continue;
        };
        let dir = opts.work_dir.join(format!("grid_{s}"));
        micro.write_raw(&dir).map_err(|e| SdcError::Table {
            origin: dir.display().to_string(),
            message: format!("cannot write the bench microdata: {e}"),
        })?;
        drop(micro);
        let mut modes = vec![false];
        if u64::from(s) * u64::from(s) <= opts.suppress_cells {
            modes.push(true);
        }
        for suppress in modes {
            log(&format!(
                "acro: crosstab on {s} x {s}, suppress={suppress} (limit {} s) ...",
                opts.timeout.as_secs()
            ));
            let outcome = acro_run::run(python, &dir, suppress, opts.timeout);
            let comparison = match &outcome {
                AcroOutcome::Done(r) => Some(
                    acro_run::mask(r, s, s).map(|m| data::compare(&report.kura[size].mask, &m)),
                ),
                _ => None,
            };
            match &outcome {
                AcroOutcome::Done(r) => log(&format!("acro: {:.1} s", r.seconds)),
                AcroOutcome::TimedOut(d) => log(&format!("acro: stopped after {} s", d.as_secs())),
                AcroOutcome::Failed(e) => log(&format!("acro failed: {e}")),
            }
            let stop = !matches!(outcome, AcroOutcome::Done(_));
            report.acro.push(AcroRun {
                size,
                suppress,
                outcome,
                comparison,
            });
            if stop {
                // Suppression runs the checks first: it cannot finish where they did not.
                break;
            }
        }
        i += 1;
    }
    Ok(report)
}

fn rate(cells: usize, secs: f64) -> String {
    if secs > 0.0 {
        format!("{:.0}", cells as f64 / secs)
    } else {
        "-".into()
    }
}

impl BenchReport {
    /// The Markdown table (and notes) printed by `kura bench sdc`.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from(
            "| grid | table cells | microdata rows | run | seconds | cells/s | ACRO time / Kura check (/ aggregate + check) | primary masks vs Kura |\n\
             |---|---:|---:|---|---:|---:|---:|---|\n",
        );
        for (idx, k) in self.kura.iter().enumerate() {
            let grid = format!("{} x {}", k.rows, k.cols);
            let [t, nk, p] = k.rule_counts;
            s.push_str(&format!(
                "| {grid} | {} | {} | Kura aggregate (count, mean, top-2, margins) | {:.3} | {} | | |\n",
                k.table_cells,
                k.microdata_rows,
                k.aggregate_s,
                rate(k.table_cells, k.aggregate_s)
            ));
            s.push_str(&format!(
                "| {grid} | {} | {} | Kura check: primary ({t} threshold, {nk} nk, {p} p-ratio) + secondary ({} count cells) | {:.3} | {} | | |\n",
                k.table_cells,
                k.microdata_rows,
                k.secondary,
                k.check_s,
                rate(k.table_cells, k.check_s)
            ));
            for a in self.acro.iter().filter(|a| a.size == idx) {
                let mode = if a.suppress {
                    "ACRO crosstab, suppress=True"
                } else {
                    "ACRO crosstab, checks only (suppress=False)"
                };
                let (secs, cells_s, speed, masks) = match &a.outcome {
                    AcroOutcome::Done(r) => (
                        format!("{:.2}", r.seconds),
                        rate(k.table_cells, r.seconds),
                        format!(
                            "{:.0}x ({:.0}x)",
                            r.seconds / k.check_s,
                            r.seconds / (k.check_s + k.aggregate_s)
                        ),
                        match &a.comparison {
                            Some(Ok(m)) if m.is_empty() => "identical".to_string(),
                            Some(Ok(m)) => format!("**{} mismatches**", m.len()),
                            Some(Err(e)) => format!("not comparable: {e}"),
                            None => "-".into(),
                        },
                    ),
                    AcroOutcome::TimedOut(d) => (
                        format!("> {} (stopped)", d.as_secs()),
                        format!("< {}", rate(k.table_cells, d.as_secs_f64())),
                        format!("> {:.0}x", d.as_secs_f64() / k.check_s),
                        "-".into(),
                    ),
                    AcroOutcome::Failed(e) => {
                        (format!("failed: {e}"), "-".into(), "-".into(), "-".into())
                    }
                };
                s.push_str(&format!(
                    "| {grid} | {} | {} | {mode} | {secs} | {cells_s} | {speed} | {masks} |\n",
                    k.table_cells, k.microdata_rows
                ));
            }
        }
        if let Some(why) = &self.acro_unavailable {
            s.push_str(&format!("\nACRO was not run: {why}\n"));
        }
        if let Some(AcroOutcome::Done(r)) = self.acro.iter().map(|a| &a.outcome).next() {
            s.push_str(&format!(
                "\nACRO {} (pandas {}), default thresholds; Kura pack `uk-acro` without `row_level`.\n",
                r.acro_version, r.pandas_version
            ));
        }
        for a in &self.acro {
            if let Some(Ok(m)) = &a.comparison {
                let k = &self.kura[a.size];
                for x in m.iter().take(20) {
                    let (i, j) = (x.row / (k.cols as usize + 1), x.row % (k.cols as usize + 1));
                    s.push_str(&format!(
                        "\n- mismatch at r={i}, c={j} (index {} = All): {} Kura {} ACRO {}",
                        k.rows, x.rule, x.kura, x.acro
                    ));
                }
            }
        }
        s
    }

    /// Every ACRO run that finished agreed with Kura on every cell.
    pub fn masks_identical(&self) -> bool {
        self.acro.iter().all(|a| {
            !matches!(&a.comparison, Some(Ok(m)) if !m.is_empty())
                && !matches!(&a.comparison, Some(Err(_)))
        })
    }
}
