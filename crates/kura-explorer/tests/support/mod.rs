//! Test support: microdata (forms as the snapshot holds them), an independent reference model of
//! what each view's SQL returns (written from docs/explorer.md, checked against DuckDB by
//! `tests/duckdb_crosscheck.rs`), a synthetic registry, and a SQL literal scanner.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use kura_explorer::catalog::{AGE_BANDS, DIAGNOSIS_CATEGORIES, PREFECTURES, SEVERITIES, SEXES};
use kura_explorer::cellkey::{combine, record_value};
use kura_explorer::{Catalog, Filters, RawRow, RawView, RecordHash, Region, View};
use serde_json::{json, Map, Value};

/// One row of `nanbyo_forms` with the treatment names of `nanbyo_treatments`.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub research_id: String,
    pub form_key: String,
    pub disease_no: u16,
    pub form_year: u16,
    pub written_ym: String,
    pub sex: i64,
    pub age_band: String,
    pub pref_code: String,
    pub diagnosis_category: String,
    pub severity: Option<String>,
    pub ventilator: i64,
    pub institution_key: Option<String>,
    pub treatments: Vec<String>,
}

fn any<T: PartialEq>(list: &[T], v: &T) -> bool {
    list.is_empty() || list.contains(v)
}

/// Whether a form matches every filter (absent lists match everything; SQL's IN never matches
/// a NULL).
pub fn matches(f: &Form, q: &Filters) -> bool {
    let sex_codes: Vec<i64> = q
        .sex
        .iter()
        .map(|s| SEXES.iter().find(|(k, _)| k == s).unwrap().1)
        .collect();
    any(&q.diseases, &f.disease_no)
        && (q.severity.is_empty()
            || f.severity
                .as_deref()
                .is_some_and(|s| q.severity.contains(&s)))
        && any(&q.age_bands, &f.age_band.as_str())
        && any(&sex_codes, &f.sex)
        && any(&q.prefectures, &f.pref_code.as_str())
        && any(&q.diagnosis_category, &f.diagnosis_category.as_str())
        && q.ventilator.is_none_or(|v| f.ventilator == i64::from(v))
        && any(&q.fiscal_years, &f.form_year)
        && (q.treatments.is_empty() || f.treatments.iter().any(|t| q.treatments.contains(t)))
}

/// Accumulates one cell: distinct patients and distinct institutions.
#[derive(Default)]
struct Acc {
    patients: BTreeSet<String>,
    institutions: BTreeSet<String>,
}

/// What the view's SQL returns for `forms` (rows of non-empty cells plus the grouping-set
/// totals), computed directly from the documented semantics.
pub fn evaluate(forms: &[Form], q: &Filters, view: View, hash: RecordHash) -> RawView {
    let kept: Vec<&Form> = forms.iter().filter(|f| matches(f, q)).collect();
    let mut by_patient: BTreeMap<&str, Vec<&Form>> = BTreeMap::new();
    for f in &kept {
        by_patient.entry(&f.research_id).or_default().push(f);
    }
    let latest = |fs: &[&Form]| -> Form {
        (*fs.iter()
            .max_by_key(|f| format!("{}{}", f.written_ym, f.form_key))
            .unwrap())
        .clone()
    };
    let insts = |id: &str| -> BTreeSet<String> {
        by_patient[id]
            .iter()
            .filter_map(|f| f.institution_key.clone())
            .collect()
    };
    // (dims of the cell, patient) pairs.
    let mut assigned: Vec<(Vec<String>, String)> = Vec::new();
    for (id, fs) in &by_patient {
        match view {
            View::ByPrefecture => assigned.push((vec![latest(fs).pref_code], id.to_string())),
            View::ByInstitutions => {
                let n = insts(id).len();
                let bucket = match n {
                    0 | 1 => "1",
                    2 => "2",
                    3 | 4 => "3-4",
                    _ => "5+",
                };
                assigned.push((vec![bucket.to_string()], id.to_string()));
            }
            View::BySeverity => {
                let years: BTreeSet<u16> = fs.iter().map(|f| f.form_year).collect();
                for y in years {
                    let in_year: Vec<&Form> =
                        fs.iter().copied().filter(|f| f.form_year == y).collect();
                    let sev = latest(&in_year)
                        .severity
                        .unwrap_or_else(|| "unknown".to_string());
                    assigned.push((vec![y.to_string(), sev], id.to_string()));
                }
            }
        }
    }
    let mut cells: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
    let mut add = |dims: Vec<String>, id: &str| {
        let acc = cells.entry(dims).or_default();
        acc.patients.insert(id.to_string());
        acc.institutions.extend(insts(id));
    };
    for (dims, id) in &assigned {
        add(dims.clone(), id);
        let mut total = dims.clone();
        *total.last_mut().unwrap() = "TOTAL".to_string();
        add(total, id);
    }
    let mut rows: Vec<RawRow> = cells
        .into_iter()
        .map(|(dims, acc)| RawRow {
            dims,
            patients: acc.patients.len() as u64,
            institutions: acc.institutions.len() as u64,
            fingerprint: Some(combine(
                acc.patients
                    .iter()
                    .map(|id| record_value(id, hash).unwrap()),
            )),
        })
        .collect();
    // The empty grand total of a grouping set `()`.
    if view != View::BySeverity && rows.is_empty() {
        rows.push(RawRow {
            dims: vec!["TOTAL".into()],
            patients: 0,
            institutions: 0,
            fingerprint: None,
        });
    }
    RawView::new(view, rows)
}

/// All three views.
pub fn evaluate_all(forms: &[Form], q: &Filters, hash: RecordHash) -> Vec<RawView> {
    View::ALL
        .iter()
        .map(|&v| evaluate(forms, q, v, hash))
        .collect()
}

/// splitmix64: a small deterministic generator for fixtures and random requests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn hex32(&mut self) -> String {
        format!("{:016x}{:016x}", self.next(), self.next())
    }
}

/// A patient's forms: `years` consecutive fiscal years from `first`, all in one prefecture at
/// institutions drawn from `institutions`.
pub struct PatientSpec<'a> {
    pub disease_no: u16,
    pub pref_code: &'a str,
    pub first: u16,
    pub years: u16,
    pub institutions: &'a [String],
}

pub fn patient(rng: &mut Rng, spec: &PatientSpec<'_>) -> Vec<Form> {
    let id = rng.hex32();
    let sex = if rng.below(100) < 60 { 2 } else { 1 };
    let band = *rng.pick(&[
        "40-44", "45-49", "50-54", "55-59", "60-64", "65-69", "70-74",
    ]);
    (0..spec.years)
        .map(|k| {
            let year = spec.first + k;
            Form {
                research_id: id.clone(),
                form_key: rng.hex32(),
                disease_no: spec.disease_no,
                form_year: year,
                written_ym: format!("{year}-{:02}", 4 + rng.below(9)),
                sex,
                age_band: band.to_string(),
                pref_code: spec.pref_code.to_string(),
                diagnosis_category: "definite".into(),
                severity: Some(rng.pick(&["mild", "moderate", "severe"]).to_string()),
                ventilator: 0,
                institution_key: Some(rng.pick(spec.institutions).clone()),
                treatments: vec!["prednisolone".into()],
            }
        })
        .collect()
}

/// Institutions per prefecture, `n` each.
pub fn institutions(rng: &mut Rng, n: usize) -> BTreeMap<String, Vec<String>> {
    kura_explorer::catalog::PREFECTURES
        .iter()
        .map(|p| (p.code.to_string(), (0..n).map(|_| rng.hex32()).collect()))
        .collect()
}

pub fn catalog() -> Catalog {
    Catalog::new(
        ["prednisolone", "tacrolimus", "eculizumab", "thymectomy"].map(String::from),
        2015..=2025,
    )
    .unwrap()
}

/// A string or number literal found in SQL text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Literal {
    Str(String),
    Num(String),
}

/// Every literal of a SQL text: `'...'` strings (with `''` escapes) and numbers that are not part
/// of an identifier. Double-quoted identifiers are skipped.
pub fn literals(sql: &str) -> Vec<Literal> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                assert!(i < chars.len(), "unterminated string literal in {sql}");
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        s.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            out.push(Literal::Str(s));
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Literal::Num(chars[start..i].iter().collect()));
        } else if c.is_alphanumeric() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Patients of `disease` living in `pref`, `n` of them, each with `years` yearly forms from
/// FY2020 at institutions drawn from `insts`.
pub fn cohort(rng: &mut Rng, disease: u16, pref: &str, n: usize, insts: &[String]) -> Vec<Form> {
    (0..n)
        .flat_map(|_| {
            let years = 1 + rng.below(3) as u16;
            patient(
                rng,
                &PatientSpec {
                    disease_no: disease,
                    pref_code: pref,
                    first: 2020,
                    years,
                    institutions: insts,
                },
            )
        })
        .collect()
}

/// Validated filters from JSON.
pub fn filters(v: serde_json::Value) -> Filters {
    serde_json::from_value::<kura_explorer::Feasibility>(v)
        .unwrap()
        .validate(&catalog())
        .unwrap()
}

/// A random request: each field filtered with probability 1/2, with 1-4 values of its list.
pub fn random_request(rng: &mut Rng, cat: &Catalog) -> Value {
    let mut r = Map::new();
    let mut some = |rng: &mut Rng, key: &str, pool: Vec<Value>| {
        if rng.below(2) == 0 {
            let n = 1 + rng.below(4);
            let v: Vec<Value> = (0..n).map(|_| rng.pick(&pool).clone()).collect();
            r.insert(key.to_string(), Value::Array(v));
        }
    };
    some(rng, "diseases", (1..=341).map(|n| json!(n)).collect());
    some(
        rng,
        "severity",
        SEVERITIES.iter().map(|s| json!(s.0)).collect(),
    );
    some(
        rng,
        "age_bands",
        AGE_BANDS.iter().map(|s| json!(s)).collect(),
    );
    some(rng, "sex", vec![json!("male"), json!("female")]);
    some(
        rng,
        "prefectures",
        PREFECTURES.iter().map(|p| json!(p.code)).collect(),
    );
    some(
        rng,
        "regions",
        Region::ALL.iter().map(|r| json!(r.key())).collect(),
    );
    some(
        rng,
        "diagnosis_category",
        DIAGNOSIS_CATEGORIES.iter().map(|s| json!(s)).collect(),
    );
    some(
        rng,
        "treatments",
        cat.treatments().iter().map(|s| json!(s)).collect(),
    );
    some(
        rng,
        "fiscal_years",
        cat.fiscal_years().iter().map(|y| json!(y)).collect(),
    );
    if rng.below(3) == 0 {
        r.insert("ventilator".into(), json!(rng.below(2) == 0));
    }
    Value::Object(r)
}
