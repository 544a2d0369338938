//! The generated SQL holds only literals from the closed lists, and no value can change its
//! structure: over many random requests, every string and number literal of every view's SQL is
//! a closed-list value (or one of the SQL's own constants), the request's values appear as
//! exactly the literals of its conditions, and the SQL with its literals blanked out depends only
//! on which fields are filtered. Catalog names with quotes (even hostile ones) stay one literal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use kura_explorer::catalog::{AGE_BANDS, DIAGNOSIS_CATEGORIES, PREFECTURES, SEVERITIES};
use kura_explorer::cellkey::FINGERPRINT_MODULUS;
use kura_explorer::query::{conditions, queries, view_sql};
use kura_explorer::{Catalog, Feasibility, Filters, RecordHash, View};
use serde_json::json;
use support::{literals, random_request, Literal, Rng};

const HOSTILE_NAME: &str = "x'); DROP TABLE nanbyo_forms; SELECT ('";

fn catalog() -> Catalog {
    Catalog::new(
        [
            "prednisolone",
            "levodopa/carbidopa",
            "it's",
            "a, b (c)",
            "エクリズマブ",
            HOSTILE_NAME,
        ]
        .map(String::from),
        2015..=2025,
    )
    .unwrap()
}

/// The SQL's own string constants (not from any request).
const STRUCTURAL: [&str; 8] = ["TOTAL", "unknown", "", "0x", "1", "2", "3-4", "5+"];

/// The SQL with every literal (string or number) replaced by `?`, lists collapsed to one `?`.
fn skeleton(sql: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' && chars.get(i + 1) == Some(&'\'') {
                    i += 2;
                } else if chars[i] == '\'' {
                    i += 1;
                    break;
                } else {
                    i += 1;
                }
            }
            out.push('?');
        } else if c.is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push('?');
        } else {
            out.push(c);
            i += 1;
        }
    }
    let mut s = out;
    loop {
        let t = s.replace("?, ?", "?");
        if t == s {
            return s;
        }
        s = t;
    }
}

fn active_fields(f: &Filters) -> Vec<bool> {
    vec![
        !f.diseases.is_empty(),
        !f.severity.is_empty(),
        !f.age_bands.is_empty(),
        !f.sex.is_empty(),
        !f.prefectures.is_empty(),
        !f.diagnosis_category.is_empty(),
        f.ventilator.is_some(),
        !f.fiscal_years.is_empty(),
        !f.treatments.is_empty(),
    ]
}

#[test]
fn random_requests_give_sql_with_closed_literals_only() {
    let cat = catalog();
    let closed: BTreeSet<String> = SEVERITIES
        .iter()
        .map(|s| s.0.to_string())
        .chain(AGE_BANDS.iter().map(|s| s.to_string()))
        .chain(PREFECTURES.iter().map(|p| p.code.to_string()))
        .chain(DIAGNOSIS_CATEGORIES.iter().map(|s| s.to_string()))
        .chain(cat.treatments().iter().cloned())
        .chain(STRUCTURAL.iter().map(|s| s.to_string()))
        .collect();
    let mut rng = Rng(2026);
    let mut skeletons: std::collections::HashMap<(Vec<bool>, View, RecordHash), String> =
        Default::default();
    for _ in 0..400 {
        let req = random_request(&mut rng, &cat);
        let filters = serde_json::from_value::<Feasibility>(req.clone())
            .unwrap()
            .validate(&cat)
            .unwrap();
        // The values of the request, as the conditions must render them.
        let cond_literals: BTreeSet<Literal> = conditions(&filters)
            .iter()
            .flat_map(|c| literals(c))
            .collect();
        let mut expected: BTreeSet<Literal> = BTreeSet::new();
        expected.extend(filters.diseases.iter().map(|d| Literal::Num(d.to_string())));
        expected.extend(
            filters
                .fiscal_years
                .iter()
                .map(|y| Literal::Num(y.to_string())),
        );
        for s in filters
            .severity
            .iter()
            .chain(&filters.age_bands)
            .chain(&filters.prefectures)
            .chain(&filters.diagnosis_category)
        {
            expected.insert(Literal::Str(s.to_string()));
        }
        expected.extend(filters.treatments.iter().map(|t| Literal::Str(t.clone())));
        for s in &filters.sex {
            expected.insert(Literal::Num(if *s == "male" { "1" } else { "2" }.into()));
        }
        if let Some(v) = filters.ventilator {
            expected.insert(Literal::Num(if v { "1" } else { "0" }.into()));
        }
        assert_eq!(cond_literals, expected, "{req}");
        for hash in [RecordHash::Sha256, RecordHash::ResearchIdPrefix] {
            for q in queries(&filters, hash) {
                assert!(q.sql.starts_with("WITH forms AS (SELECT "), "{}", q.sql);
                for lit in literals(&q.sql) {
                    match lit {
                        Literal::Str(s) => assert!(closed.contains(&s), "{s:?} in {}", q.sql),
                        Literal::Num(n) => {
                            let v: u64 = n.parse().unwrap();
                            assert!(
                                v <= 341
                                    || cat.fiscal_years().contains(&(v as u16))
                                    || v == FINGERPRINT_MODULUS,
                                "{n} in {}",
                                q.sql
                            );
                        }
                    }
                }
                let sk = skeleton(&q.sql);
                assert!(!sk.contains(';'), "{}", q.sql);
                let key = (active_fields(&filters), q.view, hash);
                if let Some(prev) = skeletons.get(&key) {
                    assert_eq!(prev, &sk, "structure changed with the values: {req}");
                } else {
                    skeletons.insert(key, sk);
                }
            }
        }
    }
    assert!(
        skeletons.len() > 50,
        "the random requests cover many field combinations"
    );
}

#[test]
fn a_hostile_catalog_name_stays_one_escaped_literal() {
    let cat = catalog();
    let filters =
        serde_json::from_value::<Feasibility>(json!({"treatments": [HOSTILE_NAME, "it's"]}))
            .unwrap()
            .validate(&cat)
            .unwrap();
    let sql = view_sql(View::ByPrefecture, &filters, RecordHash::Sha256);
    let strings: Vec<String> = literals(&sql)
        .into_iter()
        .filter_map(|l| match l {
            Literal::Str(s) => Some(s),
            Literal::Num(_) => None,
        })
        .collect();
    assert!(strings.contains(&HOSTILE_NAME.to_string()), "{sql}");
    assert!(strings.contains(&"it's".to_string()), "{sql}");
    let benign = serde_json::from_value::<Feasibility>(json!({"treatments": ["prednisolone"]}))
        .unwrap()
        .validate(&cat)
        .unwrap();
    let plain = view_sql(View::ByPrefecture, &benign, RecordHash::Sha256);
    assert_eq!(skeleton(&sql), skeleton(&plain), "only the literal changed");
    assert!(!skeleton(&sql).contains("DROP"));
}

#[test]
fn every_view_names_its_columns_in_the_header_convention() {
    let f = Filters::default();
    for view in View::ALL {
        let sql = view_sql(view, &f, RecordHash::Sha256);
        for col in view.columns() {
            assert!(sql.contains(&format!("AS \"{col}\"")), "{col} in {sql}");
        }
        assert!(view.columns().iter().all(|c| c.contains(':')));
    }
}
