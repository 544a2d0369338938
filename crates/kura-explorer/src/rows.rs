//! The rows the server hands back for a view, after running its SQL through the sandbox engine:
//! typed ([`RawRow`]) or as the CSV that `kura_query::export::csv_writer` writes (header row,
//! NULL as an empty field). Nothing here is shown to anyone: these are unprotected counts.

use crate::error::ExplorerError;
use crate::query::View;

/// One result row of a view's SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    /// One value per [`View::dimensions`]; `TOTAL` on a total row.
    pub dims: Vec<String>,
    /// `count:patients`.
    pub patients: u64,
    /// `institutions:n_institutions`.
    pub institutions: u64,
    /// `cellkey:patients`; NULL (`None`) only when the cell has no patients.
    pub fingerprint: Option<u64>,
}

/// All rows of one view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawView {
    pub view: View,
    pub rows: Vec<RawRow>,
}

impl RawView {
    pub fn new(view: View, rows: Vec<RawRow>) -> RawView {
        RawView { view, rows }
    }

    /// Parses the CSV rendering of the view's result. The header must be exactly
    /// [`View::columns`] (the SQL's aliases), else the rows belong to some other query. An empty
    /// text is a result without rows.
    pub fn from_csv(view: View, text: &str) -> Result<RawView, ExplorerError> {
        let name = view.name();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // Arrow's CSV writer writes no header at all for a result without rows.
        if text.trim().is_empty() {
            return Ok(RawView::new(view, Vec::new()));
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| ExplorerError::rows(name, format!("cannot read the header: {e}")))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let expected = view.columns();
        if header != expected {
            return Err(ExplorerError::rows(
                name,
                format!(
                    "header is {}, expected {}",
                    header.join(","),
                    expected.join(",")
                ),
            ));
        }
        let nd = view.dimensions().len();
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = record
                .map_err(|e| ExplorerError::rows(name, format!("line {line}: not CSV: {e}")))?;
            if record.len() != expected.len() {
                return Err(ExplorerError::rows(
                    name,
                    format!(
                        "line {line}: {} fields, expected {}",
                        record.len(),
                        expected.len()
                    ),
                ));
            }
            let number = |j: usize| -> Result<Option<u64>, ExplorerError> {
                let v = record.get(j).unwrap_or("").trim();
                if v.is_empty() {
                    return Ok(None);
                }
                v.parse::<u64>().map(Some).map_err(|_| {
                    ExplorerError::rows(
                        name,
                        format!(
                            "line {line}, column {}: {v:?} is not a whole number >= 0",
                            j + 1
                        ),
                    )
                })
            };
            let required = |j: usize| -> Result<u64, ExplorerError> {
                number(j)?.ok_or_else(|| {
                    ExplorerError::rows(name, format!("line {line}, column {}: empty", expected[j]))
                })
            };
            rows.push(RawRow {
                dims: (0..nd)
                    .map(|j| record.get(j).unwrap_or("").trim().to_string())
                    .collect(),
                patients: required(nd)?,
                institutions: required(nd + 1)?,
                fingerprint: number(nd + 2)?,
            });
        }
        Ok(RawView { view, rows })
    }
}
