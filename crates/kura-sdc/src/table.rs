//! The staged output model: what a query produced, as the airlock sees it before release.
//!
//! A table is long-form: one row per combination of dimension values, with one or more measure
//! columns (counts or statistics). A dimension value of [`TOTAL`] marks a marginal or subtotal
//! row: the row's measures are the sums over every value of that dimension. Contributor data
//! ([`RowMeta`]) is kept inside Kura for the checks and never appears in the protected table.

use std::collections::{BTreeSet, HashMap};

use crate::error::SdcError;

/// The dimension value that marks a marginal (total or subtotal) row.
pub const TOTAL: &str = "TOTAL";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    /// A frequency: number of patients (or events) in the cell. Additive over dimensions.
    Count,
    /// Anything else (mean, sum, rate, coefficient). Not additive; checked through the row's
    /// count (`n`) and contributor data.
    Statistic,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Measure {
    pub name: String,
    pub kind: MeasureKind,
}

/// The largest contributions to a statistic cell, for dominance and p-ratio.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Contributors {
    /// Largest contributions, in descending order (at least the top two for the UK rules).
    pub top: Vec<f64>,
    /// Sum of all contributions. `None`: the value of the row's first statistic column.
    pub total: Option<f64>,
}

impl Contributors {
    /// From every contributor's value (as the query engine sees them).
    pub fn from_values(values: &[f64]) -> Self {
        let mut top = values.to_vec();
        top.sort_by(|a, b| b.total_cmp(a));
        let total = values.iter().sum();
        Contributors {
            top,
            total: Some(total),
        }
    }
}

/// Per-row data kept inside Kura: the checks read it, the protected table never shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowMeta {
    /// Number of persons behind the row's statistic cells; defaults to the first count column.
    pub n: Option<f64>,
    /// Number of distinct medical institutions the row's patients come from.
    pub institutions: Option<u64>,
    /// Population of the municipality the row describes (set only on municipality rows).
    pub population: Option<u64>,
    pub contributors: Option<Contributors>,
    /// Residual degrees of freedom of the model that produced the row's statistics.
    pub dof: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// One value per dimension, [`TOTAL`] for a marginal.
    pub dims: Vec<String>,
    /// One value per measure.
    pub values: Vec<f64>,
    pub meta: RowMeta,
    /// Line in the source file, for messages (1-based), if the row came from a file.
    pub line: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StagedTable {
    /// Output name (file name or query label).
    pub name: String,
    pub dimensions: Vec<String>,
    pub measures: Vec<Measure>,
    pub rows: Vec<Row>,
    /// Columns whose kind the author did not declare. A table with any is not released.
    pub unclassified_columns: Vec<String>,
    /// Definition of the population the table counts, as filters beyond its dimensions (e.g.
    /// `disease != 11`). Used to detect nested definitions when differencing.
    pub population_filters: Vec<String>,
}

impl StagedTable {
    /// Checks shape invariants: every row has one value per dimension and measure, values are
    /// finite, counts are non-negative whole numbers, and no two rows share dimension values.
    pub fn validate(&self) -> Result<(), SdcError> {
        let origin = self.name.clone();
        let at = |row: &Row, i: usize| match row.line {
            Some(l) => format!("line {l}"),
            None => format!("row {}", i + 1),
        };
        let mut seen: HashMap<&[String], usize> = HashMap::new();
        for (i, row) in self.rows.iter().enumerate() {
            if row.dims.len() != self.dimensions.len() || row.values.len() != self.measures.len() {
                return Err(SdcError::Table {
                    origin,
                    message: format!(
                        "{}: expected {} dimension values and {} measures, found {} and {}",
                        at(row, i),
                        self.dimensions.len(),
                        self.measures.len(),
                        row.dims.len(),
                        row.values.len()
                    ),
                });
            }
            for (m, v) in self.measures.iter().zip(&row.values) {
                let bad = !v.is_finite()
                    || (m.kind == MeasureKind::Count && (*v < 0.0 || v.fract() != 0.0));
                if bad {
                    return Err(SdcError::Table {
                        origin,
                        message: format!(
                            "{}: {} = {v} is not a {}",
                            at(row, i),
                            m.name,
                            if m.kind == MeasureKind::Count {
                                "count (a whole number >= 0)"
                            } else {
                                "finite number"
                            }
                        ),
                    });
                }
            }
            if let Some(first) = seen.insert(&row.dims, i) {
                return Err(SdcError::Table {
                    origin,
                    message: format!(
                        "{} repeats the dimension values of {} ({}): each combination may appear once",
                        at(row, i),
                        at(&self.rows[first], first),
                        row.dims.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// The predicates that define a row's population: `dim=value` for every non-total dimension
    /// plus `filter:...` for every population filter. A cell's population is the conjunction.
    pub fn definition(&self, row: usize) -> BTreeSet<String> {
        let mut set: BTreeSet<String> = self
            .population_filters
            .iter()
            .map(|f| format!("filter:{}", normalise(f)))
            .collect();
        if let Some(r) = self.rows.get(row) {
            for (d, v) in self.dimensions.iter().zip(&r.dims) {
                if v != TOTAL {
                    set.insert(format!("{}={}", d.to_lowercase(), v));
                }
            }
        }
        set
    }

    /// Human label of a row, e.g. `prefecture=Tokyo, age_band=40-44`.
    pub fn label(&self, row: usize) -> String {
        match self.rows.get(row) {
            Some(r) => self
                .dimensions
                .iter()
                .zip(&r.dims)
                .map(|(d, v)| format!("{d}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
            None => String::new(),
        }
    }
}

/// Filters compare as text; runs of whitespace are collapsed so that layout alone does not make two
/// identical definitions look different.
fn normalise(filter: &str) -> String {
    filter.split_whitespace().collect::<Vec<_>>().join(" ")
}
