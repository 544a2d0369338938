//! From the engine's raw rows to the page: fill the view's full grid (empty cells are 0),
//! check that every line adds up, perturb each count by its cell key, then run the rule pack
//! (kura-sdc, with its secondary suppression and optional ledger) and render what passed.
//!
//! A cell is checked at `min(true count, perturbed count)`: a cell is hidden when either is
//! under the threshold, so no published number stands for fewer than 10 patients and no
//! published number is below 10. Institutions are checked on the true distinct count. What is
//! published is the perturbed count.

use std::collections::HashMap;

use kura_sdc::{
    check, Action, CheckContext, Measure, MeasureKind, Row, RowMeta, Rule, RuleId, RulePack,
    StagedTable, TOTAL,
};

use crate::catalog::{
    prefecture, Catalog, INSTITUTION_BUCKETS, PREFECTURES, SEVERITIES, SEVERITY_UNKNOWN,
};
use crate::cellkey::CellKeySecret;
use crate::error::ExplorerError;
use crate::query::{conditions, View, MEASURE};
use crate::request::Filters;
use crate::result::{write_csv, Label, Series, Shown, ViewResult};
use crate::rows::{RawRow, RawView};

/// One cell on its way to the page (stays inside the server).
struct Cell {
    dims: Vec<String>,
    perturbed: u64,
}

/// The rows of a view's full grid, in display order: members of each line, then its total.
fn grid(
    view: View,
    filters: &Filters,
    catalog: &Catalog,
    raw: &RawView,
) -> Result<Vec<Vec<String>>, ExplorerError> {
    let one = |v: &str| vec![v.to_string()];
    Ok(match view {
        View::ByPrefecture => {
            let codes: Vec<&str> = if filters.prefectures.is_empty() {
                PREFECTURES.iter().map(|p| p.code).collect()
            } else {
                filters.prefectures.clone()
            };
            codes.into_iter().chain([TOTAL]).map(one).collect()
        }
        View::ByInstitutions => INSTITUTION_BUCKETS
            .iter()
            .map(|b| b.0)
            .chain([TOTAL])
            .map(one)
            .collect(),
        View::BySeverity => {
            let years: Vec<String> = if filters.fiscal_years.is_empty() {
                catalog.fiscal_years().iter().map(u16::to_string).collect()
            } else {
                filters.fiscal_years.iter().map(u16::to_string).collect()
            };
            let mut severities: Vec<&str> = if filters.severity.is_empty() {
                SEVERITIES.iter().map(|s| s.0).collect()
            } else {
                filters.severity.clone()
            };
            // Forms without a severity only match when severity is not filtered.
            if filters.severity.is_empty()
                && raw
                    .rows
                    .iter()
                    .any(|r| r.dims.get(1).map(String::as_str) == Some(SEVERITY_UNKNOWN.0))
            {
                severities.push(SEVERITY_UNKNOWN.0);
            }
            let mut rows = Vec::new();
            for y in &years {
                for s in severities.iter().copied().chain([TOTAL]) {
                    rows.push(vec![y.clone(), s.to_string()]);
                }
            }
            rows
        }
    })
}

/// Places the raw rows on the grid (absent cells are empty) and checks them.
fn place(view: View, grid: &[Vec<String>], raw: &RawView) -> Result<Vec<RawRow>, ExplorerError> {
    let name = view.name();
    if raw.view != view {
        return Err(ExplorerError::rows(
            name,
            format!("rows of view {} were handed in", raw.view.name()),
        ));
    }
    let index: HashMap<&[String], usize> = grid
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_slice(), i))
        .collect();
    let mut placed: Vec<Option<&RawRow>> = vec![None; grid.len()];
    for r in &raw.rows {
        let Some(&i) = index.get(r.dims.as_slice()) else {
            return Err(ExplorerError::rows(
                name,
                format!(
                    "unexpected row ({}): not a category of this request",
                    r.dims.join(", ")
                ),
            ));
        };
        if placed[i].replace(r).is_some() {
            return Err(ExplorerError::rows(
                name,
                format!("row ({}) appears twice", r.dims.join(", ")),
            ));
        }
        let consistent = if r.patients == 0 {
            r.institutions == 0 && r.fingerprint.unwrap_or(0) == 0
        } else {
            r.fingerprint.is_some()
        };
        if !consistent {
            return Err(ExplorerError::rows(
                name,
                format!(
                    "row ({}): {} patients with fingerprint {:?} and {} institutions",
                    r.dims.join(", "),
                    r.patients,
                    r.fingerprint,
                    r.institutions
                ),
            ));
        }
    }
    let cells: Vec<RawRow> = grid
        .iter()
        .zip(placed)
        .map(|(dims, r)| {
            r.cloned().unwrap_or(RawRow {
                dims: dims.clone(),
                patients: 0,
                institutions: 0,
                fingerprint: None,
            })
        })
        .collect();
    // Every line is a partition of its total's patients (one cell per patient).
    let mut sums: HashMap<Vec<String>, u64> = HashMap::new();
    let last = view.dimensions().len() - 1;
    for c in cells.iter().filter(|c| c.dims[last] != TOTAL) {
        let mut key = c.dims.clone();
        key[last] = TOTAL.to_string();
        *sums.entry(key).or_default() += c.patients;
    }
    for c in cells.iter().filter(|c| c.dims[last] == TOTAL) {
        let members = sums.get(&c.dims).copied().unwrap_or(0);
        if members != c.patients {
            return Err(ExplorerError::rows(
                name,
                format!(
                    "the cells of ({}) add up to {members}, its total says {}",
                    c.dims.join(", "),
                    c.patients
                ),
            ));
        }
    }
    Ok(cells)
}

/// Perturbs, checks and renders one view.
pub(crate) fn protect_view(
    view: View,
    filters: &Filters,
    catalog: &Catalog,
    secret: &CellKeySecret,
    pack: &RulePack,
    ctx: &CheckContext<'_>,
    raw: &RawView,
) -> Result<ViewResult, ExplorerError> {
    let name = view.name();
    let grid = grid(view, filters, catalog, raw)?;
    let raw_cells = place(view, &grid, raw)?;
    let mut cells = Vec::with_capacity(raw_cells.len());
    let mut rows = Vec::with_capacity(raw_cells.len());
    for r in raw_cells {
        let perturbed = match r.fingerprint {
            Some(fp) if r.patients > 0 => crate::cellkey::perturb(secret.cell_key(fp), r.patients),
            _ => r.patients,
        };
        rows.push(Row {
            dims: r.dims.clone(),
            values: vec![r.patients.min(perturbed) as f64],
            meta: RowMeta {
                institutions: Some(r.institutions),
                ..RowMeta::default()
            },
            line: None,
        });
        cells.push(Cell {
            dims: r.dims,
            perturbed,
        });
    }
    let table = StagedTable {
        name: format!("explorer/{name}"),
        dimensions: view.dimensions().iter().map(|d| d.to_string()).collect(),
        measures: vec![Measure {
            name: MEASURE.to_string(),
            kind: MeasureKind::Count,
        }],
        rows,
        unclassified_columns: Vec::new(),
        population_filters: conditions(filters),
    };
    let report =
        check(&table, pack, ctx).map_err(|source| ExplorerError::Sdc { view: name, source })?;
    if !report.refusals.is_empty() {
        return Err(ExplorerError::Refused {
            view: name,
            pack: pack.name.clone(),
            reasons: report
                .refusals
                .iter()
                .map(|f| f.reason.clone())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    let threshold = pack.rule(|r| match r {
        Rule::Threshold { min, .. } => Some(*min),
        _ => None,
    });
    let rounding = pack.rule(|r| match r {
        Rule::Rounding { base } => Some(*base),
        _ => None,
    });
    let shown: Vec<Shown> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| match report.cell(i, 0) {
            Some(cr) if cr.action == Action::Suppress => Shown::Suppressed {
                suppressed: true,
                display: match threshold {
                    Some(min) if cr.failures.iter().any(|f| f.rule == RuleId::Threshold) => {
                        format!("<{min}")
                    }
                    _ => pack.marker.clone(),
                },
            },
            Some(cr) => Shown::Value {
                value: match (cr.action, rounding) {
                    (Action::Round { .. }, Some(base)) if base > 0 => {
                        (c.perturbed + base / 2) / base * base
                    }
                    _ => c.perturbed,
                },
            },
            // A cell the report does not cover is not shown.
            None => Shown::Suppressed {
                suppressed: true,
                display: pack.marker.clone(),
            },
        })
        .collect();
    render(view, &cells, shown)
}

fn label(view: View, dim: usize, value: &str) -> Label {
    match (view, dim, value) {
        (View::ByPrefecture, _, TOTAL) => Label::new(TOTAL, "合計", "Total"),
        (View::ByPrefecture, _, code) => match prefecture(code) {
            Some(p) => Label::new(p.code, p.ja, p.en),
            None => Label::new(code, code, code),
        },
        (View::BySeverity, 0, year) => Label::new(year, format!("{year}年度"), format!("FY{year}")),
        (View::BySeverity, _, TOTAL) => Label::new(TOTAL, "全重症度", "All severities"),
        (View::BySeverity, _, s) => SEVERITIES
            .iter()
            .chain([&SEVERITY_UNKNOWN])
            .find(|x| x.0 == s)
            .map(|x| Label::new(x.0, x.1, x.2))
            .unwrap_or_else(|| Label::new(s, s, s)),
        (View::ByInstitutions, _, TOTAL) => Label::new(TOTAL, "合計", "Total"),
        (View::ByInstitutions, _, b) => INSTITUTION_BUCKETS
            .iter()
            .find(|x| x.0 == b)
            .map(|x| Label::new(x.0, x.1, x.2))
            .unwrap_or_else(|| Label::new(b, b, b)),
    }
}

fn render(view: View, cells: &[Cell], shown: Vec<Shown>) -> Result<ViewResult, ExplorerError> {
    let name = view.name();
    let patients = Label::new(MEASURE, "患者数", "Patients");
    let is_total = |c: &Cell| c.dims.last().map(String::as_str) == Some(TOTAL);
    let (x, series) = match view {
        View::ByPrefecture | View::ByInstitutions => {
            let x = cells
                .iter()
                .filter(|c| !is_total(c))
                .map(|c| label(view, 0, &c.dims[0]))
                .collect();
            let values = cells
                .iter()
                .zip(&shown)
                .filter(|(c, _)| !is_total(c))
                .map(|(_, s)| s.clone())
                .collect();
            let total = cells
                .iter()
                .zip(&shown)
                .find(|(c, _)| is_total(c))
                .map(|(_, s)| s.clone());
            (
                x,
                vec![Series {
                    label: patients,
                    values,
                    total,
                }],
            )
        }
        View::BySeverity => {
            let mut years: Vec<&str> = Vec::new();
            let mut severities: Vec<&str> = Vec::new();
            for c in cells {
                if !years.contains(&c.dims[0].as_str()) {
                    years.push(&c.dims[0]);
                }
                if !severities.contains(&c.dims[1].as_str()) {
                    severities.push(&c.dims[1]);
                }
            }
            let at: HashMap<(&str, &str), &Shown> = cells
                .iter()
                .zip(&shown)
                .map(|(c, s)| ((c.dims[0].as_str(), c.dims[1].as_str()), s))
                .collect();
            let series = severities
                .iter()
                .map(|&s| Series {
                    label: label(view, 1, s),
                    values: years
                        .iter()
                        .filter_map(|&y| at.get(&(y, s)).map(|v| (*v).clone()))
                        .collect(),
                    total: None,
                })
                .collect();
            (years.iter().map(|y| label(view, 0, y)).collect(), series)
        }
    };
    let dims: Vec<String> = view.dimensions().iter().map(|d| d.to_string()).collect();
    let mut staged_header: Vec<String> = dims.iter().map(|d| format!("dim:{d}")).collect();
    staged_header.push(format!("count:{MEASURE}"));
    let staged_rows: Vec<Vec<String>> = cells
        .iter()
        .zip(&shown)
        .filter_map(|(c, s)| {
            s.value().map(|v| {
                let mut r = c.dims.clone();
                r.push(v.to_string());
                r
            })
        })
        .collect();
    let mut display_header = dims.clone();
    if view == View::ByPrefecture {
        display_header.extend(["prefecture_ja".to_string(), "prefecture_en".to_string()]);
    }
    display_header.push(MEASURE.to_string());
    let display_rows: Vec<Vec<String>> = cells
        .iter()
        .zip(&shown)
        .map(|(c, s)| {
            let mut r = c.dims.clone();
            if view == View::ByPrefecture {
                let l = label(view, 0, &c.dims[0]);
                r.extend([l.ja, l.en]);
            }
            r.push(s.text());
            r
        })
        .collect();
    let csv_error = || ExplorerError::rows(name, "cannot render the CSV");
    Ok(ViewResult {
        view,
        x,
        series,
        suppressed_cells: shown.iter().filter(|s| s.is_suppressed()).count(),
        protected_csv: write_csv(&staged_header, &staged_rows).ok_or_else(csv_error)?,
        display_csv: write_csv(&display_header, &display_rows).ok_or_else(csv_error)?,
    })
}
