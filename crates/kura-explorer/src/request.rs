//! The explorer's form as it arrives ([`Feasibility`], JSON) and as it leaves validation
//! ([`Filters`]): every value checked against a closed list, deduplicated and put in list order,
//! so two requests meaning the same population give the same filters and the same SQL.
//!
//! Fields are taken as raw JSON values and typed here, so that every error, also a wrong JSON
//! type, names the field and the values it accepts (serde's own type errors name neither).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{
    Catalog, Region, AGE_BANDS, DIAGNOSIS_CATEGORIES, MAX_DISEASE, PREFECTURES, SEVERITIES, SEXES,
};
use crate::error::ExplorerError;

/// The explorer form. Every field is optional; an absent, `null` or empty list means "no filter".
/// Within a field, values are alternatives (OR); fields combine with AND, on one form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feasibility {
    /// Designated disease numbers, integers 1..=341.
    #[serde(default)]
    pub diseases: Value,
    /// `mild`, `moderate`, `severe`.
    #[serde(default)]
    pub severity: Value,
    /// 5-year bands as the snapshot stores them: `00-04`, `05-09`, ..., `95-99`, `100+`.
    #[serde(default)]
    pub age_bands: Value,
    /// `male`, `female`.
    #[serde(default)]
    pub sex: Value,
    /// JIS codes `01`..`47`; combined (union) with `regions`.
    #[serde(default)]
    pub prefectures: Value,
    /// `hokkaido`, `tohoku`, `kanto`, `chubu`, `kinki`, `chugoku`, `shikoku`, `kyushu`.
    #[serde(default)]
    pub regions: Value,
    /// `definite`, `probable`.
    #[serde(default)]
    pub diagnosis_category: Value,
    /// Exact drug or procedure names from the catalog (a form listing any of them).
    #[serde(default)]
    pub treatments: Value,
    /// `true` or `false`.
    #[serde(default)]
    pub ventilator: Value,
    /// Fiscal years present in the snapshot (catalog).
    #[serde(default)]
    pub fiscal_years: Value,
}

/// A validated request. Lists are sorted in their closed list's order, without duplicates;
/// strings are the closed lists' own `'static` values (or the catalog's copy of a treatment
/// name), never the request's text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Filters {
    pub diseases: Vec<u16>,
    pub severity: Vec<&'static str>,
    pub age_bands: Vec<&'static str>,
    pub sex: Vec<&'static str>,
    /// The prefectures named directly and through regions (the SQL filter).
    pub prefectures: Vec<&'static str>,
    /// The regions as asked (for display; already folded into `prefectures`).
    pub regions: Vec<&'static str>,
    pub diagnosis_category: Vec<&'static str>,
    pub treatments: Vec<String>,
    pub ventilator: Option<bool>,
    pub fiscal_years: Vec<u16>,
}

impl Feasibility {
    pub fn validate(&self, catalog: &Catalog) -> Result<Filters, ExplorerError> {
        let diseases = ordered(
            items("diseases", &self.diseases)?
                .iter()
                .map(|v| match v.as_u64() {
                    Some(n) if (1..=u64::from(MAX_DISEASE)).contains(&n) => Ok(n as u16),
                    _ => Err(bad(
                        "diseases",
                        v,
                        format!("designated disease numbers, integers 1..={MAX_DISEASE}"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        );
        let severity = closed("severity", &self.severity, &SEVERITIES.map(|s| s.0))?;
        let age_bands = closed("age_bands", &self.age_bands, &AGE_BANDS)?;
        let sex = closed("sex", &self.sex, &SEXES.map(|s| s.0))?;
        let codes = PREFECTURES.map(|p| p.code);
        let mut prefectures = closed("prefectures", &self.prefectures, &codes)?;
        let region_keys = Region::ALL.map(Region::key);
        let regions = closed("regions", &self.regions, &region_keys)?;
        for r in regions.iter().filter_map(|k| Region::parse(k)) {
            prefectures.extend(r.prefectures().map(|p| p.code));
        }
        let prefectures = in_list_order(prefectures, &codes);
        let diagnosis_category = closed(
            "diagnosis_category",
            &self.diagnosis_category,
            &DIAGNOSIS_CATEGORIES,
        )?;
        let treatments = ordered(
            items("treatments", &self.treatments)?
                .iter()
                .map(|v| {
                    v.as_str()
                        .and_then(|s| catalog.treatments().get(s))
                        .cloned()
                        .ok_or_else(|| bad("treatments", v, allowed_list(catalog.treatments())))
                })
                .collect::<Result<Vec<_>, _>>()?,
        );
        let ventilator = match &self.ventilator {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            other => return Err(bad("ventilator", other, "true, false (or null: any)")),
        };
        let years = catalog.fiscal_years();
        let fiscal_years = ordered(
            items("fiscal_years", &self.fiscal_years)?
                .iter()
                .map(|v| match v.as_u64() {
                    Some(y) if u16::try_from(y).is_ok_and(|y| years.contains(&y)) => Ok(y as u16),
                    _ => Err(bad(
                        "fiscal_years",
                        v,
                        if years.is_empty() {
                            "none: the snapshot has no fiscal years".to_string()
                        } else {
                            allowed_list(years)
                        },
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        );
        Ok(Filters {
            diseases,
            severity,
            age_bands,
            sex,
            prefectures,
            regions,
            diagnosis_category,
            treatments,
            ventilator,
            fiscal_years,
        })
    }
}

/// The elements of a list field: `null` is an empty list; anything but an array is an error.
fn items<'v>(field: &'static str, v: &'v Value) -> Result<&'v [Value], ExplorerError> {
    match v {
        Value::Null => Ok(&[]),
        Value::Array(a) => Ok(a),
        other => Err(ExplorerError::invalid(
            field,
            format!("expected a list, got {}", shown(other)),
            "a JSON list of values, or null",
        )),
    }
}

/// Strings of a field, each one of `allowed`, returned as the list's own values in its order.
fn closed(
    field: &'static str,
    v: &Value,
    allowed: &[&'static str],
) -> Result<Vec<&'static str>, ExplorerError> {
    let picked = items(field, v)?
        .iter()
        .map(|item| {
            item.as_str()
                .and_then(|s| allowed.iter().copied().find(|a| *a == s))
                .ok_or_else(|| bad(field, item, allowed.join(", ")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(in_list_order(picked, allowed))
}

fn in_list_order(picked: Vec<&'static str>, list: &[&'static str]) -> Vec<&'static str> {
    let set: BTreeSet<&str> = picked.into_iter().collect();
    list.iter().copied().filter(|a| set.contains(a)).collect()
}

fn ordered<T: Ord>(v: Vec<T>) -> Vec<T> {
    v.into_iter().collect::<BTreeSet<T>>().into_iter().collect()
}

fn bad(field: &'static str, v: &Value, allowed: impl Into<String>) -> ExplorerError {
    ExplorerError::invalid(field, format!("{} is not allowed", shown(v)), allowed)
}

fn allowed_list<T: std::fmt::Display>(set: &BTreeSet<T>) -> String {
    if set.is_empty() {
        return "none (the catalog lists no values)".into();
    }
    set.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A request value for an error message, cut short: it is echoed to the user and logged.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}
