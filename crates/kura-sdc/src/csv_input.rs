//! CSV input: the header convention that tells Kura which columns are dimensions, counts,
//! statistics and contributor data (documented with an example in docs/sdc.md).
//!
//! Each header is `kind:name`:
//! - `dim:` a dimension; the value `TOTAL` marks a marginal or subtotal row;
//! - `count:` a count (whole number >= 0); `stat:` any other statistic;
//! - contributor data, kept inside Kura: `n:` (persons behind the row's statistics),
//!   `institutions:`, `population:` (municipality population), `top1:`, `top2:`, ... (largest
//!   contributions, for dominance and p-ratio), `total:` (sum of all contributions), `dof:`
//!   (residual degrees of freedom). Empty contributor values mean "not applicable".
//!
//! A header without a kind is kept as unclassified (the check refuses it, or blocks it as a
//! row-level identifier); an unknown kind is an error. Lines starting with `#` are comments.

use crate::error::SdcError;
use crate::table::{Contributors, Measure, MeasureKind, Row, RowMeta, StagedTable};

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Dim,
    Count,
    Stat,
    N,
    Institutions,
    Population,
    Top(usize),
    Total,
    Dof,
    Unclassified,
}

const KINDS: &str = "dim, count, stat, n, institutions, population, top1, top2, ..., total, dof";

pub fn parse_csv(text: &str, origin: &str) -> Result<StagedTable, SdcError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| SdcError::Line {
            origin: origin.to_string(),
            line: 1,
            message: format!("cannot read the header: {e}"),
        })?
        .clone();
    let header_line = reader.position().line().max(1);
    let mut kinds = Vec::with_capacity(headers.len());
    let mut table = StagedTable {
        name: origin.to_string(),
        ..StagedTable::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (i, h) in headers.iter().enumerate() {
        let h = h.trim();
        let cell_err = |message: String| SdcError::Cell {
            origin: origin.to_string(),
            line: header_line,
            column: i + 1,
            header: h.to_string(),
            message,
        };
        let (kind, name) = match h.split_once(':') {
            None => (Kind::Unclassified, h),
            Some((k, name)) => {
                let k = k.trim().to_lowercase();
                let kind = match k.as_str() {
                    "dim" => Kind::Dim,
                    "count" => Kind::Count,
                    "stat" => Kind::Stat,
                    "n" => Kind::N,
                    "institutions" => Kind::Institutions,
                    "population" => Kind::Population,
                    "total" => Kind::Total,
                    "dof" => Kind::Dof,
                    t if t.starts_with("top") && t[3..].parse::<usize>().is_ok_and(|n| n >= 1) => {
                        Kind::Top(t[3..].parse::<usize>().unwrap_or(1))
                    }
                    _ => {
                        return Err(cell_err(format!(
                            "unknown column kind `{k}`: use one of {KINDS}"
                        )))
                    }
                };
                (kind, name.trim())
            }
        };
        if name.is_empty() {
            return Err(cell_err("the column has no name after its kind".into()));
        }
        if !seen.insert(name.to_lowercase()) {
            return Err(cell_err(format!("column name `{name}` appears twice")));
        }
        let single = !matches!(
            kind,
            Kind::Dim | Kind::Count | Kind::Stat | Kind::Top(_) | Kind::Unclassified
        );
        if single && kinds.contains(&kind) {
            return Err(cell_err("only one column of this kind is allowed".into()));
        }
        match kind {
            Kind::Dim => table.dimensions.push(name.to_string()),
            Kind::Count | Kind::Stat => table.measures.push(Measure {
                name: name.to_string(),
                kind: if kind == Kind::Count {
                    MeasureKind::Count
                } else {
                    MeasureKind::Statistic
                },
            }),
            Kind::Unclassified => table.unclassified_columns.push(name.to_string()),
            _ => {}
        }
        kinds.push(kind);
    }
    if table.measures.is_empty() {
        return Err(SdcError::Line {
            origin: origin.to_string(),
            line: header_line,
            message: "no `count:` or `stat:` column: there is nothing to check".into(),
        });
    }
    for record in reader.records() {
        let record = record.map_err(|e| SdcError::Line {
            origin: origin.to_string(),
            line: e.position().map(|p| p.line()).unwrap_or(0),
            message: format!("not valid CSV: {e}"),
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() != kinds.len() {
            return Err(SdcError::Line {
                origin: origin.to_string(),
                line,
                message: format!(
                    "{} fields, but the header has {} columns",
                    record.len(),
                    kinds.len()
                ),
            });
        }
        let mut row = Row {
            dims: Vec::new(),
            values: Vec::new(),
            meta: RowMeta::default(),
            line: Some(line),
        };
        let mut top: Vec<(usize, f64)> = Vec::new();
        let mut contrib_total = None;
        for (i, (value, kind)) in record.iter().zip(&kinds).enumerate() {
            let value = value.trim();
            let err = |message: String| SdcError::Cell {
                origin: origin.to_string(),
                line,
                column: i + 1,
                header: headers.get(i).unwrap_or("").trim().to_string(),
                message,
            };
            let number = || -> Result<Option<f64>, SdcError> {
                if value.is_empty() {
                    return Ok(None);
                }
                match value.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(Some(v)),
                    _ => Err(err(format!("`{value}` is not a number"))),
                }
            };
            let whole = || -> Result<Option<u64>, SdcError> {
                if value.is_empty() {
                    return Ok(None);
                }
                value
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| err(format!("`{value}` is not a whole number >= 0")))
            };
            match kind {
                Kind::Dim => {
                    if value.is_empty() {
                        return Err(err(
                            "empty dimension value: write the category, or TOTAL for a marginal"
                                .into(),
                        ));
                    }
                    row.dims.push(value.to_string());
                }
                Kind::Count => match whole()? {
                    Some(v) => row.values.push(v as f64),
                    None => return Err(err("empty count: write 0 or remove the row".into())),
                },
                Kind::Stat => match number()? {
                    Some(v) => row.values.push(v),
                    None => {
                        return Err(err(
                            "empty statistic: remove the row or compute the value".into()
                        ))
                    }
                },
                Kind::N => row.meta.n = whole()?.map(|v| v as f64),
                Kind::Institutions => row.meta.institutions = whole()?,
                Kind::Population => row.meta.population = whole()?,
                Kind::Top(k) => {
                    if let Some(v) = number()? {
                        top.push((*k, v));
                    }
                }
                Kind::Total => contrib_total = number()?,
                Kind::Dof => row.meta.dof = number()?,
                Kind::Unclassified => {}
            }
        }
        if !top.is_empty() {
            top.sort_by_key(|(k, _)| *k);
            let mut values: Vec<f64> = top.into_iter().map(|(_, v)| v).collect();
            values.sort_by(|a, b| b.total_cmp(a));
            row.meta.contributors = Some(Contributors {
                top: values,
                total: contrib_total,
            });
        }
        table.rows.push(row);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TOTAL;

    #[test]
    fn header_convention_is_parsed() {
        let t = parse_csv(
            "# a comment\ndim:prefecture,dim:age_band,count:patients,institutions:n_inst,population:pop\n\
             Tokyo,40-44,25,4,\nTokyo,TOTAL,30,5,\n",
            "t.csv",
        )
        .unwrap();
        assert_eq!(t.dimensions, vec!["prefecture", "age_band"]);
        assert_eq!(t.measures[0].kind, MeasureKind::Count);
        assert_eq!(t.rows[1].dims[1], TOTAL);
        assert_eq!(t.rows[0].meta.institutions, Some(4));
        assert_eq!(t.rows[0].meta.population, None);
        assert_eq!(t.rows[0].line, Some(3));
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse_csv("dim:a,count:n\nx,1\ny,seven\n", "f.csv").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("line 3") && s.contains("column 2") && s.contains("seven"),
            "{s}"
        );
        let e = parse_csv("dim:a,count:n\nx,1,2\n", "f.csv").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse_csv("dim:a,cnt:n\nx,1\n", "f.csv").unwrap_err();
        assert!(
            e.to_string().contains("column 2") && e.to_string().contains("cnt"),
            "{e}"
        );
        let e = parse_csv("dim:a,count:n\nx,-1\n", "f.csv").unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
    }
}
