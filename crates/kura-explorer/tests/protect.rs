//! Protection of what the page shows: small counts as `<10` with their complement hidden too,
//! cells from too few institutions hidden, no published number below 10 or standing for fewer
//! than 10 patients, the differencing attack ("diseases {11}" vs "{11, 12}" with 3 patients of
//! disease 12) never recovering 3 with confidence, the release ledger hook, and the shape of the
//! output (JSON values, CSVs that kura-sdc parses).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use kura_explorer::{
    Explorer, ExplorerError, ExplorerResult, RawRow, RawView, RecordHash, Shown, View,
};
use kura_sdc::{CheckContext, InMemoryLedger, ReleaseLedger, ReleasedCell};
use serde_json::json;
use support::{cohort, evaluate, evaluate_all, filters, institutions, Form, Rng};

fn explorer(key: u64) -> Explorer {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&key.to_be_bytes());
    Explorer::new(&k, support::catalog()).unwrap()
}

fn run(e: &Explorer, forms: &[Form], q: serde_json::Value) -> ExplorerResult {
    let f = filters(q);
    e.protect(
        &f,
        &evaluate_all(forms, &f, RecordHash::Sha256),
        &CheckContext::default(),
    )
    .unwrap()
}

fn prefecture_cell<'a>(r: &'a ExplorerResult, code: &str) -> &'a Shown {
    let pos = r
        .by_prefecture
        .x
        .iter()
        .position(|l| l.key == code)
        .unwrap();
    &r.by_prefecture.series[0].values[pos]
}

#[test]
fn a_cell_of_five_shows_under_ten_and_its_complement_is_hidden_too() {
    let mut rng = Rng(1);
    let insts = institutions(&mut rng, 8);
    let mut forms = cohort(&mut rng, 11, "13", 5, &insts["13"]);
    forms.extend(cohort(&mut rng, 11, "27", 40, &insts["27"]));
    forms.extend(cohort(&mut rng, 11, "14", 30, &insts["14"]));
    let r = run(&explorer(1), &forms, json!({"diseases": [11]}));
    let tokyo = prefecture_cell(&r, "13");
    assert_eq!(
        tokyo,
        &Shown::Suppressed {
            suppressed: true,
            display: "<10".into()
        }
    );
    // The national total is public (and shown): a single hidden member would be total minus
    // the rest. The next smallest non-zero cell is hidden with it.
    assert!(matches!(
        r.by_prefecture.series[0].total,
        Some(Shown::Value { .. })
    ));
    let kanagawa = prefecture_cell(&r, "14");
    assert_eq!(
        kanagawa,
        &Shown::Suppressed {
            suppressed: true,
            display: "－".into()
        }
    );
    assert!(
        matches!(prefecture_cell(&r, "27"), Shown::Value { value } if (38..=42).contains(value))
    );
    // Empty prefectures stay 0 (the pack allows zeros).
    assert_eq!(prefecture_cell(&r, "01"), &Shown::Value { value: 0 });
    let hidden = r.by_prefecture.series[0]
        .values
        .iter()
        .filter(|s| s.is_suppressed())
        .count();
    assert_eq!(hidden, 2);
    assert!(
        r.by_prefecture.display_csv.contains("13,東京都,Tokyo,<10"),
        "{}",
        r.by_prefecture.display_csv
    );
}

#[test]
fn a_cell_from_two_institutions_is_hidden_whatever_its_size() {
    let mut rng = Rng(2);
    let insts = institutions(&mut rng, 8);
    let two = &insts["31"][..2];
    let mut forms = cohort(&mut rng, 11, "31", 25, two);
    forms.extend(cohort(&mut rng, 11, "27", 40, &insts["27"]));
    forms.extend(cohort(&mut rng, 11, "28", 35, &insts["28"]));
    let r = run(&explorer(2), &forms, json!({"diseases": [11]}));
    assert_eq!(
        prefecture_cell(&r, "31"),
        &Shown::Suppressed {
            suppressed: true,
            display: "－".into()
        }
    );
}

/// True counts of every cell of every view, from the reference model.
fn truth(forms: &[Form], q: &serde_json::Value) -> BTreeMap<(View, Vec<String>), u64> {
    let f = filters(q.clone());
    View::ALL
        .iter()
        .flat_map(|&v| {
            evaluate(forms, &f, v, RecordHash::Sha256)
                .rows
                .into_iter()
                .map(move |r| ((v, r.dims), r.patients))
        })
        .collect()
}

fn shown_cells(r: &ExplorerResult) -> Vec<(View, Vec<String>, Shown)> {
    let mut out = Vec::new();
    for view in View::ALL {
        let v = r.view(view);
        for s in &v.series {
            for (x, val) in v.x.iter().zip(&s.values) {
                let dims = match view {
                    View::BySeverity => vec![x.key.clone(), s.label.key.clone()],
                    _ => vec![x.key.clone()],
                };
                out.push((view, dims, val.clone()));
            }
            if let Some(t) = &s.total {
                out.push((view, vec!["TOTAL".into()], t.clone()));
            }
        }
    }
    out
}

#[test]
fn no_published_number_is_small_or_stands_for_a_small_group() {
    let mut rng = Rng(3);
    let insts = institutions(&mut rng, 5);
    let mut forms = Vec::new();
    for (i, p) in kura_explorer::catalog::PREFECTURES.iter().enumerate() {
        for d in [11u16, 12, 6] {
            let n = rng.below(if i % 3 == 0 { 40 } else { 14 }) as usize;
            forms.extend(cohort(&mut rng, d, p.code, n, &insts[p.code]));
        }
    }
    let requests = [
        json!({}),
        json!({"diseases": [11]}),
        json!({"diseases": [12], "regions": ["kanto", "kinki"]}),
        json!({"diseases": [6, 11], "severity": ["severe"]}),
        json!({"sex": ["female"], "fiscal_years": [2021, 2022]}),
        json!({"age_bands": ["60-64", "65-69"]}),
    ];
    let mut published = 0;
    let mut hidden = 0;
    for (k, q) in requests.iter().enumerate() {
        let r = run(&explorer(k as u64), &forms, q.clone());
        let t = truth(&forms, q);
        for (view, dims, s) in shown_cells(&r) {
            let n = t.get(&(view, dims.clone())).copied().unwrap_or(0);
            match s {
                Shown::Value { value } => {
                    published += 1;
                    assert!(
                        n == 0 || n >= 10,
                        "{q} {view:?} {dims:?}: true {n} published"
                    );
                    assert!(value == 0 || value >= 10, "{q} {view:?} {dims:?}: {value}");
                    assert_eq!(value == 0, n == 0);
                    assert!(value.abs_diff(n) <= 2, "noise is within 2");
                }
                Shown::Suppressed { .. } => hidden += 1,
            }
        }
    }
    assert!(
        published > 100 && hidden > 20,
        "{published} published, {hidden} hidden"
    );
}

/// Base population: disease 11 across prefectures (Tokyo large); disease 12: `k` patients in
/// Tokyo.
fn differencing_data(k: usize) -> Vec<Form> {
    let mut rng = Rng(77);
    let insts = institutions(&mut rng, 6);
    let mut forms = cohort(&mut rng, 11, "13", 80, &insts["13"]);
    forms.extend(cohort(&mut rng, 11, "27", 50, &insts["27"]));
    forms.extend(cohort(&mut rng, 11, "23", 35, &insts["23"]));
    let mut rng12 = Rng(1000 + k as u64);
    forms.extend(cohort(&mut rng12, 12, "13", k, &insts["13"]));
    forms
}

#[test]
fn differencing_two_shifted_filters_does_not_recover_three_patients() {
    // Disease 12 alone: suppressed.
    let forms = differencing_data(3);
    let alone = run(&explorer(0), &forms, json!({"diseases": [12]}));
    assert!(alone.by_prefecture.series[0]
        .total
        .as_ref()
        .unwrap()
        .is_suppressed());

    // The attacker asks "diseases {11}" and "diseases {11, 12}" and subtracts, on the national
    // total and on Tokyo. Each deployment has its own secret key; simulate many deployments
    // and several true sizes k of disease 12 to see what the difference tells.
    let keys = 300u64;
    let mut estimates: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    let mut exact_for_three = 0;
    let mut suppressed_or_missing = 0;
    for k in 1..=6usize {
        let forms = differencing_data(k);
        let f_a = filters(json!({"diseases": [11]}));
        let f_b = filters(json!({"diseases": [11, 12]}));
        let raw_a = evaluate_all(&forms, &f_a, RecordHash::Sha256);
        let raw_b = evaluate_all(&forms, &f_b, RecordHash::Sha256);
        let ta = raw_a[0]
            .rows
            .iter()
            .find(|r| r.dims == ["TOTAL"])
            .unwrap()
            .patients;
        let tb = raw_b[0]
            .rows
            .iter()
            .find(|r| r.dims == ["TOTAL"])
            .unwrap()
            .patients;
        assert_eq!(
            tb - ta,
            k as u64,
            "fixture: disease 12 adds exactly k patients"
        );
        for key in 0..keys {
            let e = explorer(key);
            let a = e.protect(&f_a, &raw_a, &CheckContext::default()).unwrap();
            let b = e.protect(&f_b, &raw_b, &CheckContext::default()).unwrap();
            for (x, y) in [
                (
                    a.by_prefecture.series[0].total.clone().unwrap(),
                    b.by_prefecture.series[0].total.clone().unwrap(),
                ),
                (
                    prefecture_cell(&a, "13").clone(),
                    prefecture_cell(&b, "13").clone(),
                ),
            ] {
                match (x.value(), y.value()) {
                    (Some(va), Some(vb)) => {
                        let est = vb as i64 - va as i64;
                        if k == 3 && est == 3 {
                            exact_for_three += 1;
                        }
                        estimates.entry(k).or_default().push(est);
                    }
                    _ => suppressed_or_missing += 1,
                }
            }
        }
    }
    let attempts = estimates[&3].len();
    // The difference is 3 only by chance (two independent noises equal: 7/32), and the attacker
    // cannot tell when: every value seen for k = 3 is seen as often or more for other k.
    let share = exact_for_three as f64 / attempts as f64;
    assert!(share < 0.3, "difference equals 3 in {share:.2} of attempts");
    let seen3: BTreeSet<i64> = estimates[&3].iter().copied().collect();
    for est in &seen3 {
        let count = |k: usize| estimates[&k].iter().filter(|e| *e == est).count();
        let total: usize = (1..=6).map(count).sum();
        let posterior = count(3) as f64 / total as f64;
        assert!(
            posterior < 0.5,
            "observing a difference of {est} makes k = 3 {posterior:.2} likely"
        );
    }
    assert!(
        seen3.len() >= 5,
        "the estimate for k = 3 takes values {seen3:?}"
    );
    assert_eq!(
        suppressed_or_missing, 0,
        "the fixture's cells are all large enough to show"
    );
}

#[test]
fn a_nested_release_in_the_ledger_is_checked_for_differencing() {
    let mut rng = Rng(4);
    let insts = institutions(&mut rng, 8);
    let mut forms = cohort(&mut rng, 11, "13", 60, &insts["13"]);
    forms.extend(cohort(&mut rng, 11, "27", 50, &insts["27"]));
    // Four patients seen only in FY2024: the FY2020-2022 population lacks exactly them.
    for _ in 0..4 {
        forms.extend(support::patient(
            &mut rng,
            &support::PatientSpec {
                disease_no: 11,
                pref_code: "27",
                first: 2024,
                years: 1,
                institutions: &insts["27"],
            },
        ));
    }
    let e = explorer(5);
    let all = filters(json!({"diseases": [11]}));
    let sub = filters(json!({"diseases": [11], "fiscal_years": [2020, 2021, 2022]}));
    let total = |f: &kura_explorer::Filters| {
        evaluate(&forms, f, View::ByPrefecture, RecordHash::Sha256)
            .rows
            .into_iter()
            .find(|r| r.dims == ["TOTAL"])
            .unwrap()
            .patients
    };
    assert_eq!(total(&all) - total(&sub), 4);
    // An earlier release of the disease-11 total, defined by the explorer's own condition.
    let mut ledger = InMemoryLedger::default();
    ledger
        .record(
            "snap",
            vec![ReleasedCell {
                release: "out-1".into(),
                measure: "patients".into(),
                definition: kura_explorer::query::conditions(&all)
                    .iter()
                    .map(|c| format!("filter:{c}"))
                    .collect(),
                value: total(&all) as f64,
            }],
        )
        .unwrap();
    let raw_sub = evaluate_all(&forms, &sub, RecordHash::Sha256);
    let ctx = CheckContext {
        snapshot: "snap",
        ledger: Some(&ledger),
    };
    let with = e.protect(&sub, &raw_sub, &ctx).unwrap();
    let without = e.protect(&sub, &raw_sub, &CheckContext::default()).unwrap();
    // Alone the sub-population's total is fine; against the release it would reveal the four.
    assert!(!without.by_prefecture.series[0]
        .total
        .as_ref()
        .unwrap()
        .is_suppressed());
    assert!(with.by_prefecture.series[0]
        .total
        .as_ref()
        .unwrap()
        .is_suppressed());
}

#[test]
fn an_empty_population_is_all_zeros() {
    let mut rng = Rng(6);
    let insts = institutions(&mut rng, 4);
    let forms = cohort(&mut rng, 11, "13", 30, &insts["13"]);
    let r = run(&explorer(6), &forms, json!({"diseases": [200]}));
    for view in View::ALL {
        assert!(
            r.view(view)
                .cells()
                .all(|s| s == &Shown::Value { value: 0 }),
            "{view:?}"
        );
    }
}

#[test]
fn shown_values_serialise_as_the_page_expects() {
    let v = serde_json::to_value(Shown::Value { value: 123 }).unwrap();
    assert_eq!(v, json!({"value": 123}));
    let s = serde_json::to_value(Shown::Suppressed {
        suppressed: true,
        display: "<10".into(),
    })
    .unwrap();
    assert_eq!(s, json!({"suppressed": true, "display": "<10"}));
}

#[test]
fn the_protected_csv_is_a_kura_sdc_table_of_the_published_cells() {
    let mut rng = Rng(8);
    let insts = institutions(&mut rng, 8);
    let mut forms = cohort(&mut rng, 11, "13", 5, &insts["13"]);
    forms.extend(cohort(&mut rng, 11, "27", 40, &insts["27"]));
    forms.extend(cohort(&mut rng, 11, "14", 30, &insts["14"]));
    let r = run(&explorer(8), &forms, json!({"diseases": [11]}));
    for view in View::ALL {
        let v = r.view(view);
        let table = kura_sdc::csv_input::parse_csv(&v.protected_csv, "staged").unwrap();
        let published = v.cells().filter(|s| !s.is_suppressed()).count();
        assert_eq!(table.rows.len(), published, "{view:?}");
        assert!(!v.protected_csv.contains("－") && !v.protected_csv.contains("<10"));
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("cellkey") && !json.contains("n_institutions"));
    }
    let table = kura_sdc::csv_input::parse_csv(&r.by_prefecture.protected_csv, "s").unwrap();
    assert!(table
        .rows
        .iter()
        .all(|row| row.dims[0] != "13" && row.dims[0] != "14"));
}

#[test]
fn rows_that_do_not_fit_the_request_are_refused() {
    let e = explorer(9);
    let f = filters(json!({"prefectures": ["13"]}));
    let row = |dims: &[&str], n: u64| RawRow {
        dims: dims.iter().map(|d| d.to_string()).collect(),
        patients: n,
        institutions: 4,
        fingerprint: Some(12345),
    };
    let good = |v: View| match v {
        View::ByPrefecture => RawView::new(v, vec![row(&["13"], 12), row(&["TOTAL"], 12)]),
        View::BySeverity => RawView::new(v, vec![]),
        View::ByInstitutions => RawView::new(v, vec![row(&["1"], 12), row(&["TOTAL"], 12)]),
    };
    let views: Vec<RawView> = View::ALL.iter().map(|&v| good(v)).collect();
    assert!(e.protect(&f, &views, &CheckContext::default()).is_ok());
    let cases: Vec<(RawView, &str)> = vec![
        (
            RawView::new(
                View::ByPrefecture,
                vec![row(&["27"], 12), row(&["TOTAL"], 12)],
            ),
            "unexpected row",
        ),
        (
            RawView::new(
                View::ByPrefecture,
                vec![row(&["13"], 12), row(&["TOTAL"], 15)],
            ),
            "add up",
        ),
        (
            RawView::new(View::ByPrefecture, vec![row(&["13"], 12), row(&["13"], 12)]),
            "twice",
        ),
        (
            RawView::new(
                View::ByPrefecture,
                vec![
                    RawRow {
                        fingerprint: None,
                        ..row(&["13"], 12)
                    },
                    row(&["TOTAL"], 12),
                ],
            ),
            "fingerprint",
        ),
    ];
    for (bad, why) in cases {
        let mut vs = views.clone();
        vs[0] = bad;
        let err = e.protect(&f, &vs, &CheckContext::default()).unwrap_err();
        assert!(
            matches!(err, ExplorerError::Rows { .. }) && err.to_string().contains(why),
            "{err}"
        );
    }
    let err = e
        .protect(&f, &views[1..], &CheckContext::default())
        .unwrap_err();
    assert!(err.to_string().contains("no rows"), "{err}");
    let err =
        RawView::from_csv(View::ByPrefecture, "dim:prefecture,count:patients\n13,5\n").unwrap_err();
    assert!(err.to_string().contains("header"), "{err}");
    let ok = RawView::from_csv(
        View::ByPrefecture,
        "dim:prefecture,count:patients,institutions:n_institutions,cellkey:patients\n13,12,4,99\nTOTAL,0,0,\n",
    )
    .unwrap();
    assert_eq!(ok.rows[1].fingerprint, None);
    assert_eq!(
        RawView::from_csv(View::BySeverity, "").unwrap().rows.len(),
        0
    );
}

#[test]
fn another_pack_rounds_the_perturbed_counts() {
    let mut rng = Rng(10);
    let insts = institutions(&mut rng, 8);
    let mut forms = cohort(&mut rng, 11, "13", 44, &insts["13"]);
    forms.extend(cohort(&mut rng, 11, "27", 3, &insts["27"]));
    let e = explorer(10).with_pack(kura_sdc::RulePack::builtin("opensafely").unwrap());
    let r = run(&e, &forms, json!({"diseases": [11]}));
    let tokyo = prefecture_cell(&r, "13").value().unwrap();
    assert_eq!(tokyo % 5, 0);
    assert!(tokyo.abs_diff(44) <= 5, "{tokyo}");
    assert!(prefecture_cell(&r, "27").is_suppressed());
    assert_eq!(r.rule_pack, "opensafely");
}
