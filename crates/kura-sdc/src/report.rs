//! The check's result: per-cell failures with reasons, table-level refusals, and the suggested
//! protected table (suppressed cells shown as the pack's marker, counts rounded where the pack
//! rounds).

use serde::Serialize;

use crate::table::{MeasureKind, StagedTable};

/// Which rule a failure comes from. Stable names: they appear in JSON reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleId {
    RowLevel,
    AgeBands,
    Unclassified,
    Threshold,
    Institutions,
    Municipality,
    Dominance,
    PRatio,
    Dof,
    Differencing,
    Secondary,
}

impl RuleId {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::RowLevel => "row_level",
            RuleId::AgeBands => "age_bands",
            RuleId::Unclassified => "unclassified",
            RuleId::Threshold => "threshold",
            RuleId::Institutions => "institutions",
            RuleId::Municipality => "municipality",
            RuleId::Dominance => "dominance",
            RuleId::PRatio => "p_ratio",
            RuleId::Dof => "dof",
            RuleId::Differencing => "differencing",
            RuleId::Secondary => "secondary",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub rule: RuleId,
    pub reason: String,
}

/// What the protected table does with a cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Publish,
    Suppress,
    Round { to: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellReport {
    /// Index into the table's rows and measures.
    pub row: usize,
    pub measure: usize,
    pub measure_name: String,
    /// `dim=value, ...`.
    pub label: String,
    /// Source line, when the table came from a file.
    pub line: Option<u64>,
    pub value: f64,
    pub failures: Vec<Failure>,
    #[serde(flatten)]
    pub action: Action,
}

impl CellReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub output: String,
    pub pack: String,
    pub pack_version: String,
    pub marker: String,
    /// Reasons the whole output is refused (row-level data, bad age bands). When non-empty no
    /// protected table is offered.
    pub refusals: Vec<Failure>,
    pub cells: Vec<CellReport>,
    /// Header and rows of the suggested protected table; `None` when the output is refused.
    pub protected: Option<ProtectedTable>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProtectedTable {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.refusals.is_empty() && self.cells.iter().all(CellReport::passed)
    }

    pub fn failing_cells(&self) -> impl Iterator<Item = &CellReport> {
        self.cells.iter().filter(|c| !c.passed())
    }

    /// The cell report for (row, measure).
    pub fn cell(&self, row: usize, measure: usize) -> Option<&CellReport> {
        self.cells
            .iter()
            .find(|c| c.row == row && c.measure == measure)
    }

    /// Count of cells that failed `rule`.
    pub fn count(&self, rule: RuleId) -> usize {
        self.cells
            .iter()
            .filter(|c| c.failures.iter().any(|f| f.rule == rule))
            .count()
    }

    /// The protected table as CSV text (plain column names: the kind prefixes and contributor
    /// columns are internal).
    pub fn protected_csv(&self) -> Option<String> {
        let p = self.protected.as_ref()?;
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut ok = w.write_record(&p.header).is_ok();
        for r in &p.rows {
            ok &= w.write_record(r).is_ok();
        }
        let bytes = w.into_inner().ok()?;
        if !ok {
            return None;
        }
        String::from_utf8(bytes).ok()
    }

    /// A plain-text report for a terminal: summary, then every failing cell with its reasons.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let failing = self.failing_cells().count();
        out.push_str(&format!(
            "output {}: rule pack {} {}: {}\n",
            self.output,
            self.pack,
            self.pack_version,
            if self.passed() {
                "PASS (every cell passes)".to_string()
            } else if !self.refusals.is_empty() {
                "REFUSED (the whole output)".to_string()
            } else {
                format!("FAIL ({failing} of {} cells)", self.cells.len())
            }
        ));
        for f in &self.refusals {
            out.push_str(&format!("  refused [{}]: {}\n", f.rule.as_str(), f.reason));
        }
        for c in self.failing_cells() {
            let at = c.line.map(|l| format!("line {l}: ")).unwrap_or_default();
            out.push_str(&format!(
                "  {at}{} {} = {}\n",
                c.label, c.measure_name, c.value
            ));
            for f in &c.failures {
                out.push_str(&format!("    [{}] {}\n", f.rule.as_str(), f.reason));
            }
        }
        if let Some(csv) = self.protected_csv() {
            out.push_str("\nsuggested protected table:\n");
            out.push_str(&csv);
        }
        out
    }
}

/// Renders a number as a researcher wrote it: whole numbers without a decimal point.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Builds the protected table from the cells' actions.
pub(crate) fn protect(table: &StagedTable, cells: &[CellReport], marker: &str) -> ProtectedTable {
    let mut header: Vec<String> = table.dimensions.clone();
    header.extend(table.measures.iter().map(|m| m.name.clone()));
    let nm = table.measures.len();
    let rows = table
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut out = row.dims.clone();
            for (m, measure) in table.measures.iter().enumerate() {
                let v = row.values.get(m).copied().unwrap_or(0.0);
                let action = cells.get(i * nm + m).map(|c| c.action);
                out.push(match action {
                    Some(Action::Suppress) => marker.to_string(),
                    Some(Action::Round { to }) if measure.kind == MeasureKind::Count => {
                        format_value(to)
                    }
                    _ => format_value(v),
                });
            }
            out
        })
        .collect();
    ProtectedTable { header, rows }
}
