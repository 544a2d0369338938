//! What the page receives: per view, the categories along the axis, the series with every value
//! already perturbed and suppressed (`{"value": 123}` or `{"suppressed": true, "display":
//! "<10"}`), and two CSV renderings: `protected_csv` in kura-sdc's `kind:name` convention (the
//! published cells only, ready to stage for the airlock) and `display_csv` (labels and markers,
//! as the page shows it). No raw count, institution count or cell key appears here.

use serde::Serialize;

use crate::query::View;
use crate::request::Filters;

/// A category or series name in both languages; `key` is the value the tables use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    pub key: String,
    pub ja: String,
    pub en: String,
}

impl Label {
    pub fn new(key: impl Into<String>, ja: impl Into<String>, en: impl Into<String>) -> Label {
        Label {
            key: key.into(),
            ja: ja.into(),
            en: en.into(),
        }
    }
}

/// One number on the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Shown {
    /// Perturbed, passed every rule.
    Value { value: u64 },
    /// Hidden: `display` is `<10` for a count under the threshold, the pack's marker (`－`)
    /// for a cell hidden for its institutions or by secondary suppression.
    Suppressed { suppressed: bool, display: String },
}

impl Shown {
    pub fn value(&self) -> Option<u64> {
        match self {
            Shown::Value { value } => Some(*value),
            Shown::Suppressed { .. } => None,
        }
    }

    pub fn is_suppressed(&self) -> bool {
        matches!(self, Shown::Suppressed { .. })
    }

    /// The text of a CSV cell.
    pub fn text(&self) -> String {
        match self {
            Shown::Value { value } => value.to_string(),
            Shown::Suppressed { display, .. } => display.clone(),
        }
    }
}

/// A line of a chart: one value per category of [`ViewResult::x`], and the line's total when the
/// view has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Series {
    pub label: Label,
    pub values: Vec<Shown>,
    pub total: Option<Shown>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewResult {
    pub view: View,
    /// Categories along the axis: prefectures, fiscal years, institution buckets.
    pub x: Vec<Label>,
    pub series: Vec<Series>,
    /// Cells hidden in this view (totals included).
    pub suppressed_cells: usize,
    /// kura-sdc header convention (`dim:...`, `count:patients`), published cells only, values
    /// as shown: what the server stages for the airlock.
    pub protected_csv: String,
    /// The table as shown: dimension values, names, and the value or its marker.
    pub display_csv: String,
}

impl ViewResult {
    /// Every shown number of the view (series values and totals).
    pub fn cells(&self) -> impl Iterator<Item = &Shown> {
        self.series
            .iter()
            .flat_map(|s| s.values.iter().chain(s.total.iter()))
    }
}

/// The whole page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplorerResult {
    /// The request as validated (canonical order; regions folded into prefectures).
    pub filters: Filters,
    pub rule_pack: String,
    pub rule_pack_version: String,
    /// What every number on the page has been through, for the page's footnote.
    pub method: &'static str,
    pub by_prefecture: ViewResult,
    pub by_severity: ViewResult,
    pub by_institutions: ViewResult,
}

impl ExplorerResult {
    pub fn view(&self, view: View) -> &ViewResult {
        match view {
            View::ByPrefecture => &self.by_prefecture,
            View::BySeverity => &self.by_severity,
            View::ByInstitutions => &self.by_institutions,
        }
    }
}

pub(crate) const METHOD: &str = "Patients (distinct research IDs) with at least one matching form. \
    Every count is perturbed by a small consistent noise (cell-key method: the same patients always \
    get the same noise) and then checked against the rule pack: counts under the threshold are \
    shown as <N, cells from too few institutions and cells that would let a hidden one be \
    computed from totals are hidden as well.";

/// CSV text from a header and rows; the csv crate quotes what needs quoting.
pub(crate) fn write_csv(header: &[String], rows: &[Vec<String>]) -> Option<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).ok()?;
    for r in rows {
        w.write_record(r).ok()?;
    }
    String::from_utf8(w.into_inner().ok()?).ok()
}
