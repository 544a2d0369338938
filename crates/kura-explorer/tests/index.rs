//! The in-memory index computes the same rows as the views' SQL: over a varied registry (patients
//! who move, change severity within a year, see several institutions or none, forms without a
//! severity, several treatments per form) and hundreds of random requests, every view's rows
//! equal those of the reference model (`support::evaluate`, itself checked against DuckDB by
//! `duckdb_crosscheck.rs`), for both record hashes. The catalog and the builder's checks too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use kura_explorer::cellkey::{record_value, FINGERPRINT_MODULUS};
use kura_explorer::{
    Catalog, ExplorerError, ExplorerIndex, Feasibility, IndexBuilder, IndexRow, RecordHash, View,
};
use serde_json::{json, Value};
use support::{evaluate_all, random_request, Form, Rng};

const DISEASES: [u16; 5] = [6, 11, 12, 51, 341];
const TREATMENTS: [&str; 6] = [
    "prednisolone",
    "tacrolimus",
    "eculizumab",
    "thymectomy",
    "rituximab",
    "rare-drug",
];

/// `n` patients with 1-6 forms each over FY2018-2024 (see the module comment).
fn registry(rng: &mut Rng, n: usize) -> Vec<Form> {
    let insts: Vec<String> = (0..40).map(|_| rng.hex32()).collect();
    let prefs = ["01", "13", "13", "14", "23", "27", "40", "47"];
    let bands = ["00-04", "15-19", "40-44", "65-69", "100+"];
    let mut forms = Vec::new();
    for _ in 0..n {
        let id = rng.hex32();
        let sex = 1 + rng.below(2) as i64;
        let disease = *rng.pick(&DISEASES);
        let mut pref = *rng.pick(&prefs);
        for _ in 0..1 + rng.below(6) {
            if rng.below(5) == 0 {
                pref = *rng.pick(&prefs);
            }
            let year = 2018 + rng.below(7) as u16;
            // Some forms share a month (the form key decides), some have none.
            let written_ym = match rng.below(8) {
                0 => String::new(),
                k => format!("{year}-{:02}", 3 + k),
            };
            let treatments = (0..rng.below(4))
                .map(|_| {
                    // The last name is given rarely: it stays out of the catalog.
                    let pool = if rng.below(40) == 0 { 6 } else { 5 };
                    let k = rng.below(pool) as usize;
                    TREATMENTS[k].to_string()
                })
                .collect();
            forms.push(Form {
                research_id: id.clone(),
                form_key: rng.hex32(),
                disease_no: if rng.below(10) == 0 {
                    *rng.pick(&DISEASES)
                } else {
                    disease
                },
                form_year: year,
                written_ym,
                sex,
                age_band: rng.pick(&bands).to_string(),
                pref_code: pref.to_string(),
                diagnosis_category: rng.pick(&["definite", "probable"]).to_string(),
                severity: match rng.below(5) {
                    0 => None,
                    k => Some(["mild", "moderate", "severe", "severe"][k as usize - 1].into()),
                },
                ventilator: rng.below(2) as i64,
                institution_key: (rng.below(10) != 0).then(|| rng.pick(&insts).clone()),
                treatments,
            });
        }
    }
    forms
}

/// The index of `forms` as the export statement would hand it over: sorted by research_id and
/// latest-form key, patients and institutions as dense ranks.
fn index_of(forms: &[Form], hash: RecordHash) -> ExplorerIndex {
    let mut sorted: Vec<&Form> = forms.iter().collect();
    sorted.sort_by_key(|f| {
        (
            f.research_id.clone(),
            format!("{}{}", f.written_ym, f.form_key),
        )
    });
    let rank = |keys: BTreeSet<&str>| -> BTreeMap<String, i64> {
        keys.into_iter()
            .zip(1..)
            .map(|(k, r)| (k.to_string(), r))
            .collect()
    };
    let patients = rank(forms.iter().map(|f| f.research_id.as_str()).collect());
    let institutions = rank(
        forms
            .iter()
            .filter_map(|f| f.institution_key.as_deref())
            .collect(),
    );
    let mut b = IndexBuilder::new();
    for f in sorted {
        let row = IndexRow {
            patient: patients[&f.research_id] as u64,
            record_value: record_value(&f.research_id, hash).unwrap(),
            disease_no: Some(i64::from(f.disease_no)),
            form_year: Some(i64::from(f.form_year)),
            sex: Some(f.sex),
            age_band: Some(&f.age_band),
            pref_code: Some(&f.pref_code),
            diagnosis_category: Some(&f.diagnosis_category),
            severity: f.severity.as_deref(),
            ventilator: Some(f.ventilator),
            institution: f.institution_key.as_ref().map(|k| institutions[k]),
        };
        b.push(&row, f.treatments.iter().map(String::as_str))
            .unwrap();
    }
    b.finish()
}

fn catalog() -> Catalog {
    Catalog::new(TREATMENTS.map(String::from), 2018..=2024).unwrap()
}

/// A random request, half of the time about the registry's own diseases.
fn request(rng: &mut Rng) -> Value {
    let mut r = random_request(rng, &catalog());
    if rng.below(2) == 0 {
        let n = 1 + rng.below(3);
        let d: Vec<Value> = (0..n).map(|_| json!(rng.pick(&DISEASES))).collect();
        r["diseases"] = Value::Array(d);
    }
    r
}

#[test]
fn the_index_gives_the_rows_of_the_sql_for_random_requests() {
    let mut rng = Rng(41);
    let forms = registry(&mut rng, 700);
    for hash in [RecordHash::Sha256, RecordHash::ResearchIdPrefix] {
        let index = index_of(&forms, hash);
        assert_eq!(
            index.patients(),
            forms
                .iter()
                .map(|f| &f.research_id)
                .collect::<BTreeSet<_>>()
                .len()
        );
        assert_eq!(index.forms(), forms.len());
        let mut nonempty = 0;
        let mut requests = vec![json!({})];
        requests.extend((0..300).map(|_| request(&mut rng)));
        for q in &requests {
            let f = serde_json::from_value::<Feasibility>(q.clone())
                .unwrap()
                .validate(&catalog())
                .unwrap();
            let got = index.raw_views(&f);
            let want = evaluate_all(&forms, &f, hash);
            assert_eq!(got, want, "{q}");
            if got[0].rows.iter().any(|r| r.patients > 0) {
                nonempty += 1;
            }
        }
        // The requests must also find patients, or equality proves little.
        assert!(nonempty > 100, "{nonempty} requests found patients");
    }
}

#[test]
fn the_catalog_lists_treatments_of_ten_patients_and_the_years() {
    let mut rng = Rng(5);
    let forms = registry(&mut rng, 400);
    let index = index_of(&forms, RecordHash::Sha256);
    let mut patients: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in &forms {
        for t in &f.treatments {
            patients.entry(t).or_default().insert(&f.research_id);
        }
    }
    let want: BTreeSet<String> = patients
        .iter()
        .filter(|(_, p)| p.len() >= 10)
        .map(|(t, _)| t.to_string())
        .collect();
    let rare = patients.get("rare-drug").map_or(0, BTreeSet::len);
    assert!(rare > 0 && rare < 10, "the rare name is on {rare} patients");
    let cat = index.catalog().unwrap();
    assert_eq!(cat.treatments(), &want);
    assert!(!cat.treatments().contains("rare-drug"));
    let years: BTreeSet<u16> = forms.iter().map(|f| f.form_year).collect();
    assert_eq!(cat.fiscal_years(), &years);
}

#[test]
fn missing_values_are_cells_of_their_own_as_in_sql() {
    // One patient, two forms in FY2020: the latest has no severity and no prefecture.
    let mut b = IndexBuilder::new();
    let base = IndexRow {
        patient: 1,
        record_value: 7,
        disease_no: Some(11),
        form_year: Some(2020),
        sex: Some(2),
        age_band: Some("40-44"),
        pref_code: Some("13"),
        diagnosis_category: Some("definite"),
        severity: Some("mild"),
        ventilator: Some(0),
        institution: None,
    };
    b.push(&base, []).unwrap();
    let latest = IndexRow {
        pref_code: None,
        severity: None,
        ..base
    };
    b.push(&latest, []).unwrap();
    // Another patient whose severity is literally `unknown` shares the NULL's cell.
    let other = IndexRow {
        patient: 2,
        record_value: 9,
        severity: Some("unknown"),
        ..base
    };
    b.push(&other, []).unwrap();
    let index = b.finish();
    let views = index.raw_views(&Default::default());
    let dims = |v: View| -> Vec<(Vec<String>, u64)> {
        views
            .iter()
            .find(|r| r.view == v)
            .unwrap()
            .rows
            .iter()
            .map(|r| (r.dims.clone(), r.patients))
            .collect()
    };
    let s = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        dims(View::ByPrefecture),
        vec![(s(&[""]), 1), (s(&["13"]), 1), (s(&["TOTAL"]), 2)]
    );
    assert_eq!(
        dims(View::BySeverity),
        vec![(s(&["2020", "TOTAL"]), 2), (s(&["2020", "unknown"]), 2)]
    );
    // No institution on any form: bucket 1, and the cell's institutions are none.
    let inst = &views[2].rows;
    assert_eq!(inst[0].dims, s(&["1"]));
    assert_eq!((inst[0].patients, inst[0].institutions), (2, 0));
    assert_eq!(inst[0].fingerprint, Some(16));
    // A severity filter never matches a missing severity (SQL's IN and NULL).
    let mild = serde_json::from_value::<Feasibility>(json!({"severity": ["mild"]}))
        .unwrap()
        .validate(&Catalog::new([], [2020]).unwrap())
        .unwrap();
    let views = index.raw_views(&mild);
    assert_eq!(views[1].rows.len(), 2);
    assert_eq!(views[1].rows[1].dims, s(&["2020", "mild"]));
    assert_eq!(views[1].rows[1].patients, 1);
}

#[test]
fn an_empty_population_has_zero_totals() {
    let mut rng = Rng(9);
    let forms = registry(&mut rng, 50);
    let index = index_of(&forms, RecordHash::Sha256);
    let f = serde_json::from_value::<Feasibility>(json!({"diseases": [2]}))
        .unwrap()
        .validate(&catalog())
        .unwrap();
    let views = index.raw_views(&f);
    assert_eq!(views, evaluate_all(&forms, &f, RecordHash::Sha256));
    assert_eq!(views[0].rows.len(), 1);
    assert_eq!(views[0].rows[0].fingerprint, None);
    assert!(views[1].rows.is_empty());
}

#[test]
fn rows_out_of_the_export_order_are_refused() {
    let row = |patient, record_value| IndexRow {
        patient,
        record_value,
        ..Default::default()
    };
    let mut b = IndexBuilder::new();
    b.push(&row(2, 5), []).unwrap();
    let e = b.push(&row(1, 5), []).unwrap_err();
    assert!(
        matches!(&e, ExplorerError::Index(m) if m.contains("not in the export's order")),
        "{e}"
    );
    let e = b.push(&row(2, 6), []).unwrap_err();
    assert!(e.to_string().contains("two record values"), "{e}");
    let e = b.push(&row(3, FINGERPRINT_MODULUS), []).unwrap_err();
    assert!(e.to_string().contains("2^60"), "{e}");
    // After the refusals the index still holds the one good row.
    let index = b.finish();
    assert_eq!((index.forms(), index.patients()), (1, 1));
}

#[test]
fn a_column_with_too_many_values_is_refused() {
    let mut b = IndexBuilder::new();
    let bands: Vec<String> = (0..300).map(|i| format!("band-{i}")).collect();
    let mut refused = None;
    for (i, band) in bands.iter().enumerate() {
        let row = IndexRow {
            patient: i as u64,
            record_value: 1,
            age_band: Some(band),
            ..Default::default()
        };
        if let Err(e) = b.push(&row, []) {
            refused = Some((i, e));
            break;
        }
    }
    let (i, e) = refused.expect("refused");
    assert_eq!(i, 255, "codes 1..=255 fit, NULL is 0");
    assert!(e.to_string().contains("age_band"), "{e}");
}
