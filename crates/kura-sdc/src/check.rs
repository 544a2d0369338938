//! The engine: runs a rule pack over a staged table and produces the [`Report`].
//!
//! Order matters: table-level refusals first (row-level data, age bands), then the primary
//! per-cell rules, then differencing against the ledger (on the cells still to be published),
//! then secondary suppression of counts, then rounding of what remains.

use std::collections::{BTreeSet, HashSet};

use crate::error::SdcError;
use crate::ledger::{ReleaseLedger, Released};
use crate::pack::{BandMin, Rule, RulePack};
use crate::report::{format_value, protect, Action, CellReport, Failure, Report, RuleId};
use crate::secondary;
use crate::table::{MeasureKind, StagedTable, TOTAL};

/// Where the table comes from: the snapshot it was computed on, and what was released from it.
#[derive(Default)]
pub struct CheckContext<'a> {
    pub snapshot: &'a str,
    pub ledger: Option<&'a dyn ReleaseLedger>,
}

pub fn check(
    table: &StagedTable,
    pack: &RulePack,
    ctx: &CheckContext<'_>,
) -> Result<Report, SdcError> {
    table.validate()?;
    let nm = table.measures.len();
    let mut cells: Vec<CellReport> = Vec::with_capacity(table.rows.len() * nm);
    for (r, row) in table.rows.iter().enumerate() {
        for (m, measure) in table.measures.iter().enumerate() {
            cells.push(CellReport {
                row: r,
                measure: m,
                measure_name: measure.name.clone(),
                label: table.label(r),
                line: row.line,
                value: row.values.get(m).copied().unwrap_or(0.0),
                failures: Vec::new(),
                action: Action::Publish,
            });
        }
    }
    let mut report = Report {
        output: table.name.clone(),
        pack: pack.name.clone(),
        pack_version: pack.version.clone(),
        marker: pack.marker.clone(),
        refusals: table_refusals(table, pack),
        cells,
        protected: None,
    };
    if !report.refusals.is_empty() {
        for c in &mut report.cells {
            c.action = Action::Suppress;
        }
        return Ok(report);
    }
    if !table.unclassified_columns.is_empty() {
        return Err(SdcError::Table {
            origin: table.name.clone(),
            message: format!(
                "columns {} have no kind: name each `dim:`, `count:`, `stat:` or a contributor \
                 kind (see docs/sdc.md); unmarked columns cannot leave the airlock",
                table.unclassified_columns.join(", ")
            ),
        });
    }
    for rule in &pack.rules {
        primary(table, rule, &mut report.cells);
    }
    let differencing_rule = pack.rule(|r| match r {
        Rule::Differencing { min, zero_allowed } => Some((*min, *zero_allowed)),
        _ => None,
    });
    let secondary_rule = pack.rule(|r| match r {
        Rule::Secondary {
            assume_public_totals,
        } => Some(*assume_public_totals),
        _ => None,
    });
    let cells = &mut report.cells;
    let mut against = |released: &Released| {
        if let Some(rule) = differencing_rule {
            differencing(table, released, rule, cells);
        }
        if let Some(assume_public) = secondary_rule {
            secondary_suppression(table, assume_public, released, cells);
        }
    };
    match ctx.ledger {
        Some(ledger) => ledger.with_released(ctx.snapshot, &mut against)?,
        // Nothing released to compare with: differencing finds nothing.
        None => against(&Released::default()),
    }
    for c in &mut report.cells {
        if !c.failures.is_empty() {
            c.action = Action::Suppress;
        }
    }
    if let Some(base) = pack.rule(|r| match r {
        Rule::Rounding { base } => Some(*base),
        _ => None,
    }) {
        for c in &mut report.cells {
            if c.action == Action::Publish && table.measures[c.measure].kind == MeasureKind::Count {
                let v = c.value as u64;
                let to = ((v + base / 2) / base) * base;
                c.action = Action::Round { to: to as f64 };
            }
        }
    }
    report.protected = Some(protect(table, &report.cells, &pack.marker));
    Ok(report)
}

/// Rules that refuse the whole output.
fn table_refusals(table: &StagedTable, pack: &RulePack) -> Vec<Failure> {
    let mut out = Vec::new();
    for rule in &pack.rules {
        match rule {
            Rule::RowLevel {
                identifier_columns,
                max_rows,
            } => {
                let ids: HashSet<String> = identifier_columns
                    .iter()
                    .map(|c| c.to_lowercase())
                    .collect();
                let all = table
                    .dimensions
                    .iter()
                    .chain(table.measures.iter().map(|m| &m.name))
                    .chain(&table.unclassified_columns);
                for col in all {
                    if ids.contains(&col.to_lowercase()) {
                        out.push(Failure {
                            rule: RuleId::RowLevel,
                            reason: format!(
                                "column `{col}` is a row-level identifier: outputs must be \
                                 aggregates; drop the column and aggregate"
                            ),
                        });
                    }
                }
                if table.rows.len() > *max_rows {
                    out.push(Failure {
                        rule: RuleId::RowLevel,
                        reason: format!(
                            "{} rows exceed the limit of {max_rows} for one output: a table this \
                             long is likely row-level data; aggregate further",
                            table.rows.len()
                        ),
                    });
                }
            }
            Rule::AgeBands {
                dimensions,
                width,
                pooled_from,
            } => {
                let names: HashSet<String> = dimensions.iter().map(|d| d.to_lowercase()).collect();
                for (j, dim) in table.dimensions.iter().enumerate() {
                    if !names.contains(&dim.to_lowercase()) {
                        continue;
                    }
                    let bad: BTreeSet<&str> = table
                        .rows
                        .iter()
                        .filter_map(|r| r.dims.get(j))
                        .filter(|v| *v != TOTAL && !is_age_band(v, *width, *pooled_from))
                        .map(String::as_str)
                        .collect();
                    if !bad.is_empty() {
                        let shown: Vec<&str> = bad.iter().take(5).copied().collect();
                        out.push(Failure {
                            rule: RuleId::AgeBands,
                            reason: format!(
                                "age dimension `{dim}` has values {} that are not {width}-year \
                                 bands (`0-{}`, `{width}-{}`, ..., `{pooled_from}+`)",
                                shown.join(", "),
                                width - 1,
                                2 * width - 1
                            ),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `a-b` with `a` a multiple of `width` below `pooled_from` and `b = a + width - 1`, or
/// `{pooled_from}+`.
fn is_age_band(v: &str, width: u32, pooled_from: u32) -> bool {
    let v = v.trim();
    if v == format!("{pooled_from}+") {
        return true;
    }
    let Some((a, b)) = v.split_once('-') else {
        return false;
    };
    match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
        (Ok(a), Ok(b)) => a % width == 0 && a < pooled_from && b == a + width - 1,
        _ => false,
    }
}

/// The count that stands behind a cell: the cell itself for counts; `n` or the row's first
/// count for statistics.
fn count_behind(table: &StagedTable, row: usize, measure: usize) -> Option<f64> {
    let r = table.rows.get(row)?;
    if table.measures.get(measure)?.kind == MeasureKind::Count {
        return r.values.get(measure).copied();
    }
    r.meta.n.or_else(|| {
        table
            .measures
            .iter()
            .position(|m| m.kind == MeasureKind::Count)
            .and_then(|i| r.values.get(i).copied())
    })
}

fn primary(table: &StagedTable, rule: &Rule, cells: &mut [CellReport]) {
    for c in cells.iter_mut() {
        let Some(row) = table.rows.get(c.row) else {
            continue;
        };
        let is_stat = table.measures[c.measure].kind == MeasureKind::Statistic;
        let n = count_behind(table, c.row, c.measure);
        let fail = |rule, reason: String| Some(Failure { rule, reason });
        let failure = match rule {
            Rule::Threshold { min, zero_allowed } => match n {
                None => fail(
                    RuleId::Threshold,
                    "statistic with no count behind it: add an `n:` column or a `count:` column"
                        .into(),
                ),
                Some(v) if v < *min as f64 && !(v == 0.0 && *zero_allowed) => fail(
                    RuleId::Threshold,
                    format!(
                        "{} {} is below the minimum {min}{}",
                        if is_stat {
                            "based on a count of"
                        } else {
                            "count"
                        },
                        format_value(v),
                        if *zero_allowed {
                            " (0 is allowed)"
                        } else {
                            " (0 is disclosive too)"
                        }
                    ),
                ),
                _ => None,
            },
            Rule::Institutions { min } => match row.meta.institutions {
                Some(k) if k > 0 && k < *min => fail(
                    RuleId::Institutions,
                    format!("built from {k} institution(s); at least {min} are required"),
                ),
                _ => None,
            },
            Rule::Municipality { bands } => match (row.meta.population, n) {
                (Some(pop), Some(v)) => {
                    bands
                        .iter()
                        .find(|b| pop < b.below)
                        .and_then(|b| match b.min {
                            BandMin::Word(_) => fail(
                                RuleId::Municipality,
                                format!(
                                "municipality population {pop} is under {}: no count may be shown",
                                b.below
                            ),
                            ),
                            BandMin::Count(m) if v < m as f64 && v != 0.0 => fail(
                                RuleId::Municipality,
                                format!(
                                "{} {} is below {m}, the minimum for a municipality of population \
                                 {pop} (under {})",
                                if is_stat { "based on a count of" } else { "count" },
                                format_value(v),
                                b.below
                            ),
                            ),
                            BandMin::Count(_) => None,
                        })
                }
                _ => None,
            },
            Rule::Dominance { n: top_n, k } if is_stat => {
                contributors(table, c.row).and_then(|(top, total)| {
                    // ACRO's test (`top_n_sum / sum >= k`): reaching k already fails.
                    let share: f64 = top.iter().take(*top_n).sum::<f64>() / total;
                    (total > 0.0 && share >= *k).then(|| Failure {
                        rule: RuleId::Dominance,
                        reason: format!(
                            "the top {top_n} contributor(s) hold {:.1}% of the cell's total, at \
                             least {:.0}%",
                            share * 100.0,
                            k * 100.0
                        ),
                    })
                })
            }
            Rule::PRatio { p } if is_stat => contributors(table, c.row).and_then(|(top, total)| {
                let first = top.first().copied().unwrap_or(0.0);
                let second = top.get(1).copied().unwrap_or(0.0);
                // Same arithmetic as ACRO (`(sum - top_2_sum) / max < p`), so that boundary
                // cells (rest exactly p x top1) get the same verdict despite float rounding.
                let rest = total - (first + second);
                (first > 0.0 && rest / first < *p).then(|| Failure {
                    rule: RuleId::PRatio,
                    reason: format!(
                        "the rest of the total ({}) is under {:.0}% of the largest contribution \
                         ({}): the second largest contributor could estimate the largest",
                        format_value(rest),
                        p * 100.0,
                        format_value(first)
                    ),
                })
            }),
            Rule::Dof { min } if is_stat => match row.meta.dof {
                Some(d) if d < *min => fail(
                    RuleId::Dof,
                    format!(
                        "model has {} residual degrees of freedom; at least {} are required",
                        format_value(d),
                        format_value(*min)
                    ),
                ),
                _ => None,
            },
            _ => None,
        };
        if let Some(f) = failure {
            c.failures.push(f);
        }
    }
}

/// (top contributions, total) for a row's statistic cells, when the row carries them.
fn contributors(table: &StagedTable, row: usize) -> Option<(Vec<f64>, f64)> {
    let r = table.rows.get(row)?;
    let c = r.meta.contributors.as_ref()?;
    let total = c.total.or_else(|| {
        table
            .measures
            .iter()
            .position(|m| m.kind == MeasureKind::Statistic)
            .and_then(|i| r.values.get(i).copied())
    })?;
    Some((c.top.clone(), total))
}

fn differencing(
    table: &StagedTable,
    released: &Released,
    (min, zero_allowed): (u64, bool),
    cells: &mut [CellReport],
) {
    if released.is_empty() {
        return;
    }
    for c in cells.iter_mut() {
        if !c.failures.is_empty() || table.measures[c.measure].kind != MeasureKind::Count {
            continue;
        }
        let def = table.definition(c.row);
        for other in released.nested(&c.measure_name, &def) {
            let d = (other.value - c.value).abs();
            if d < min as f64 && !(d == 0.0 && zero_allowed) {
                let (outer, inner) = if other.definition.len() < def.len() {
                    (
                        other.describe(),
                        format!("this cell ({} = {})", c.label, format_value(c.value)),
                    )
                } else {
                    (
                        format!("this cell ({} = {})", c.label, format_value(c.value)),
                        other.describe(),
                    )
                };
                let extra: Vec<&String> = def.symmetric_difference(&other.definition).collect();
                c.failures.push(Failure {
                    rule: RuleId::Differencing,
                    reason: format!(
                        "{outer} minus {inner} = {}: the group that differs only by [{}] has \
                         fewer than {min}",
                        format_value(d),
                        extra
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(" & ")
                    ),
                });
            }
        }
    }
}

fn secondary_suppression(
    table: &StagedTable,
    assume_public: bool,
    released: &Released,
    cells: &mut [CellReport],
) {
    let nm = table.measures.len();
    for (m, measure) in table.measures.iter().enumerate() {
        if measure.kind != MeasureKind::Count {
            continue;
        }
        let external = |dim: usize, row: usize| {
            if assume_public {
                return true;
            }
            let mut def = table.definition(row);
            if let (Some(d), Some(r)) = (table.dimensions.get(dim), table.rows.get(row)) {
                def.remove(&format!("{}={}", d.to_lowercase(), r.dims[dim]));
            }
            released.contains(&measure.name, &def)
        };
        let groups = secondary::groups(table, &external);
        let values: Vec<f64> = table.rows.iter().map(|r| r.values[m]).collect();
        let primary: Vec<bool> = (0..table.rows.len())
            .map(|r| !cells[r * nm + m].failures.is_empty())
            .collect();
        let outcome = secondary::protect(&values, &groups, &primary);
        let describe = |g: usize| {
            let group = &groups.groups[g];
            let dim = &table.dimensions[group.dim];
            let through = group.cells().next().unwrap_or(0);
            let fixed: Vec<String> = table
                .dimensions
                .iter()
                .zip(&table.rows[through].dims)
                .enumerate()
                .filter(|(j, _)| *j != group.dim)
                .map(|(_, (d, v))| format!("{d}={v}"))
                .collect();
            format!(
                "the {dim} line{}{}",
                if fixed.is_empty() { "" } else { " at " },
                fixed.join(", ")
            )
        };
        for (row, cause) in &outcome.secondary {
            let reason = match cause {
                secondary::Cause::SingleInGroup { group, hidden } => format!(
                    "secondary suppression: next smallest cell of {}, where {} is suppressed and \
                     would otherwise follow from the total",
                    describe(*group),
                    table.label(*hidden)
                ),
                secondary::Cause::Determined { group, determined } => format!(
                    "secondary suppression: in {}; without it the suppressed {} could be \
                     computed by combining published totals",
                    describe(*group),
                    table.label(*determined)
                ),
            };
            cells[row * nm + m].failures.push(Failure {
                rule: RuleId::Secondary,
                reason,
            });
        }
        for row in &outcome.unprotectable {
            cells[row * nm + m].failures.push(Failure {
                rule: RuleId::Secondary,
                reason:
                    "cannot be protected by suppression: it follows from a total known outside \
                         this table; remove or merge the category"
                        .into(),
            });
        }
    }
}
