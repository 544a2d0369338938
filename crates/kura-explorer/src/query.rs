//! Filters to SQL: one plain SELECT per view over the snapshot tables, for the server to run
//! through the audited sandbox engine (the statement gate must accept it, so it uses only
//! allowlisted functions of `policies/sql-functions.toml`: `arg_max`, `coalesce`, `count`,
//! `sum`, `sha256`, `substr`, `grouping`, `||`, `%`).
//!
//! No request text reaches the SQL: every literal is rendered here by [`int_literal`] or
//! [`str_literal`] from a validated [`Filters`], whose strings are the closed lists' own values
//! or the catalog's copy of a treatment name.
//!
//! Every view counts *patients* (distinct `research_id`) and assigns each patient of the
//! filtered forms to exactly one cell per line, so that a line adds up to its total and
//! secondary suppression is sound:
//! - `by_prefecture`: the prefecture of the patient's latest matching form;
//! - `by_severity`: per fiscal year, the severity of the patient's latest matching form that
//!   year (`unknown` if empty); totals per year;
//! - `by_institutions`: the number of distinct institutions on the patient's matching forms,
//!   bucketed 1, 2, 3-4, 5+.
//!
//! For each cell the SQL also returns what the checks need: the distinct institutions on the
//! matching forms of the cell's patients (`institutions:n_institutions`), and the contributor
//! fingerprint (`cellkey:patients`, see [`crate::cellkey`]).

use serde::Serialize;

use crate::catalog::SEXES;
use crate::cellkey::{RecordHash, FINGERPRINT_MODULUS};
use crate::request::Filters;

/// One of the page's three charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    ByPrefecture,
    BySeverity,
    ByInstitutions,
}

/// Measure name of every view (`count:patients`).
pub const MEASURE: &str = "patients";
/// Column holding the distinct institutions behind a cell.
pub const INSTITUTIONS_COLUMN: &str = "institutions:n_institutions";
/// Column holding the contributor fingerprint (explorer-only kind, removed before kura-sdc).
pub const FINGERPRINT_COLUMN: &str = "cellkey:patients";

impl View {
    pub const ALL: [View; 3] = [View::ByPrefecture, View::BySeverity, View::ByInstitutions];

    pub fn name(self) -> &'static str {
        match self {
            View::ByPrefecture => "by_prefecture",
            View::BySeverity => "by_severity",
            View::ByInstitutions => "by_institutions",
        }
    }

    /// kura-sdc dimension names, in column order.
    pub fn dimensions(self) -> &'static [&'static str] {
        match self {
            View::ByPrefecture => &["prefecture"],
            View::BySeverity => &["fiscal_year", "severity"],
            View::ByInstitutions => &["treating_institutions"],
        }
    }

    /// The exact header of the view's result, in kura-sdc's `kind:name` convention.
    pub fn columns(self) -> Vec<String> {
        let mut cols: Vec<String> = self
            .dimensions()
            .iter()
            .map(|d| format!("dim:{d}"))
            .collect();
        cols.push(format!("count:{MEASURE}"));
        cols.push(INSTITUTIONS_COLUMN.to_string());
        cols.push(FINGERPRINT_COLUMN.to_string());
        cols
    }
}

/// A view's SQL, ready for the sandbox engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewQuery {
    pub view: View,
    pub sql: String,
}

/// The three queries of a request, in [`View::ALL`] order.
pub fn queries(filters: &Filters, hash: RecordHash) -> Vec<ViewQuery> {
    View::ALL
        .iter()
        .map(|&view| ViewQuery {
            view,
            sql: view_sql(view, filters, hash),
        })
        .collect()
}

/// Columns the explorer's grant must include: (table, columns).
pub const REQUIRED_COLUMNS: [(&str, &[&str]); 2] = [
    (
        "nanbyo_forms",
        &[
            "research_id",
            "form_key",
            "disease_no",
            "form_year",
            "written_ym",
            "sex",
            "age_band",
            "pref_code",
            "diagnosis_category",
            "severity",
            "ventilator",
            "institution_key",
        ],
    ),
    ("nanbyo_treatments", &["form_key", "name"]),
];

/// An integer literal.
pub fn int_literal(n: i64) -> String {
    n.to_string()
}

/// A string literal for a closed-list value: single quotes doubled (DuckDB strings have no
/// other escape outside `E'...'`). Callers pass only closed-list or catalog values; the catalog
/// refuses control characters.
pub fn str_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn in_list(column: &str, literals: Vec<String>) -> String {
    format!("{column} IN ({})", literals.join(", "))
}

/// The WHERE conditions of a request on `nanbyo_forms`, one per filtered field, in a fixed
/// order. They are also the output's population filters (kura-sdc definitions).
pub fn conditions(f: &Filters) -> Vec<String> {
    let ints = |v: &[u16]| v.iter().map(|&n| int_literal(i64::from(n))).collect();
    let strs = |v: &[&str]| v.iter().map(|s| str_literal(s)).collect();
    let mut out = Vec::new();
    if !f.diseases.is_empty() {
        out.push(in_list("disease_no", ints(&f.diseases)));
    }
    if !f.severity.is_empty() {
        out.push(in_list("severity", strs(&f.severity)));
    }
    if !f.age_bands.is_empty() {
        out.push(in_list("age_band", strs(&f.age_bands)));
    }
    if !f.sex.is_empty() {
        let codes = f
            .sex
            .iter()
            .filter_map(|s| SEXES.iter().find(|(k, _)| k == s))
            .map(|(_, code)| int_literal(*code))
            .collect();
        out.push(in_list("sex", codes));
    }
    if !f.prefectures.is_empty() {
        out.push(in_list("pref_code", strs(&f.prefectures)));
    }
    if !f.diagnosis_category.is_empty() {
        out.push(in_list("diagnosis_category", strs(&f.diagnosis_category)));
    }
    if let Some(v) = f.ventilator {
        out.push(format!("ventilator = {}", int_literal(i64::from(v))));
    }
    if !f.fiscal_years.is_empty() {
        out.push(in_list("form_year", ints(&f.fiscal_years)));
    }
    if !f.treatments.is_empty() {
        let names: Vec<&str> = f.treatments.iter().map(String::as_str).collect();
        out.push(format!(
            "form_key IN (SELECT form_key FROM nanbyo_treatments WHERE {})",
            in_list("name", strs(&names))
        ));
    }
    out
}

/// The per-patient record value as a SQL expression (mirrored by
/// [`crate::cellkey::record_value`]): the first 15 hex digits (60 bits) of the hash.
pub(crate) fn record_value_sql(hash: RecordHash) -> &'static str {
    match hash {
        RecordHash::Sha256 => "CAST('0x' || substr(sha256(research_id), 1, 15) AS BIGINT)",
        RecordHash::ResearchIdPrefix => "CAST('0x' || substr(research_id, 1, 15) AS BIGINT)",
    }
}

/// The SQL of one view: the filtered forms, one row per (patient, cell) in `cells`, then two
/// aggregates over the same grouping sets (patients and fingerprint from one row per patient and
/// cell; distinct institutions through the patients' institutions), joined on the cell.
pub fn view_sql(view: View, filters: &Filters, hash: RecordHash) -> String {
    let mut conds = vec!["research_id IS NOT NULL".to_string()];
    conds.extend(conditions(filters));
    let latest = "coalesce(written_ym, '') || form_key";
    let cells = match view {
        View::ByPrefecture => format!(
            "SELECT research_id, arg_max(pref_code, {latest}) AS prefecture \
             FROM forms GROUP BY research_id"
        ),
        View::BySeverity => format!(
            "SELECT research_id, CAST(form_year AS VARCHAR) AS fiscal_year, \
             arg_max(coalesce(severity, 'unknown'), {latest}) AS severity \
             FROM forms GROUP BY research_id, form_year"
        ),
        View::ByInstitutions => "SELECT research_id, CASE \
             WHEN count(DISTINCT institution_key) <= 1 THEN '1' \
             WHEN count(DISTINCT institution_key) = 2 THEN '2' \
             WHEN count(DISTINCT institution_key) <= 4 THEN '3-4' \
             ELSE '5+' END AS treating_institutions \
             FROM forms GROUP BY research_id"
            .to_string(),
    };
    // Every dimension is grouped in the first set; the last one is rolled up in the second,
    // where it reads `TOTAL`.
    let dims = view.dimensions();
    let qualified: Vec<String> = dims.iter().map(|d| format!("cells.{d}")).collect();
    let last = dims.len() - 1;
    let keys: Vec<String> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if i == last {
                format!(
                    "CASE WHEN grouping(cells.{d}) = 1 THEN {} ELSE cells.{d} END AS {d}",
                    str_literal(kura_sdc::TOTAL)
                )
            } else {
                format!("cells.{d} AS {d}")
            }
        })
        .collect();
    let sets = format!(
        "({}), ({})",
        qualified.join(", "),
        qualified[..last].join(", ")
    );
    let select: Vec<String> = dims
        .iter()
        .map(|d| format!("cell_counts.{d} AS \"dim:{d}\""))
        .collect();
    let on: Vec<String> = dims
        .iter()
        .map(|d| format!("cell_institutions.{d} = cell_counts.{d}"))
        .collect();
    let order: Vec<String> = (1..=dims.len()).map(|i| i.to_string()).collect();
    format!(
        "WITH forms AS (\
         SELECT research_id, form_key, form_year, written_ym, pref_code, severity, institution_key \
         FROM nanbyo_forms WHERE {where_}), \
         patient_keys AS (SELECT research_id, {rv} AS record_value \
         FROM (SELECT DISTINCT research_id FROM forms) AS patients), \
         patient_institutions AS (SELECT DISTINCT research_id, institution_key FROM forms), \
         cells AS ({cells}), \
         cell_counts AS (SELECT {keys}, count(*) AS patients, \
         CAST(sum(patient_keys.record_value) % {modulus} AS BIGINT) AS fingerprint \
         FROM cells JOIN patient_keys ON patient_keys.research_id = cells.research_id \
         GROUP BY GROUPING SETS ({sets})), \
         cell_institutions AS (SELECT {keys}, \
         count(DISTINCT patient_institutions.institution_key) AS n_institutions \
         FROM cells JOIN patient_institutions ON patient_institutions.research_id = cells.research_id \
         GROUP BY GROUPING SETS ({sets})) \
         SELECT {select}, cell_counts.patients AS \"count:{MEASURE}\", \
         coalesce(cell_institutions.n_institutions, 0) AS \"{INSTITUTIONS_COLUMN}\", \
         cell_counts.fingerprint AS \"{FINGERPRINT_COLUMN}\" \
         FROM cell_counts LEFT JOIN cell_institutions ON {on} \
         ORDER BY {order}",
        where_ = conds.join(" AND "),
        rv = record_value_sql(hash),
        keys = keys.join(", "),
        select = select.join(", "),
        on = on.join(" AND "),
        modulus = FINGERPRINT_MODULUS,
        order = order.join(", "),
    )
}
