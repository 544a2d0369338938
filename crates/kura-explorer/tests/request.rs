//! Validation: every bad value is an error naming its field and the allowed values; hostile
//! strings in any field are refused before any SQL exists; equivalent requests canonicalise to
//! the same filters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use kura_explorer::{ExplorerError, Feasibility, Filters};
use serde_json::{json, Value};

fn validate(v: Value) -> Result<Filters, ExplorerError> {
    let req: Feasibility = serde_json::from_value(v).expect("deserialises");
    req.validate(&support::catalog())
}

fn field_error(v: Value) -> (String, String, String) {
    match validate(v.clone()) {
        Err(ExplorerError::Invalid {
            field,
            problem,
            allowed,
        }) => (field.to_string(), problem, allowed),
        other => panic!("{v}: expected a validation error, got {other:?}"),
    }
}

#[test]
fn each_bad_value_names_its_field_and_the_allowed_values() {
    let cases = [
        (json!({"diseases": [0]}), "diseases", "1..=341"),
        (json!({"diseases": [342]}), "diseases", "1..=341"),
        (json!({"diseases": ["11"]}), "diseases", "1..=341"),
        (json!({"diseases": [11.5]}), "diseases", "1..=341"),
        (
            json!({"severity": ["extreme"]}),
            "severity",
            "mild, moderate, severe",
        ),
        (json!({"age_bands": ["40-49"]}), "age_bands", "40-44"),
        (json!({"age_bands": ["40-44 "]}), "age_bands", "100+"),
        (json!({"sex": ["1"]}), "sex", "male, female"),
        (json!({"prefectures": ["48"]}), "prefectures", "01"),
        (json!({"prefectures": [13]}), "prefectures", "47"),
        (json!({"regions": ["okinawa"]}), "regions", "kyushu"),
        (
            json!({"diagnosis_category": ["possible"]}),
            "diagnosis_category",
            "definite, probable",
        ),
        (
            json!({"treatments": ["aspirin"]}),
            "treatments",
            "prednisolone",
        ),
        (
            json!({"treatments": ["Prednisolone"]}),
            "treatments",
            "tacrolimus",
        ),
        (json!({"ventilator": "yes"}), "ventilator", "true, false"),
        (json!({"ventilator": 1}), "ventilator", "true, false"),
        (json!({"fiscal_years": [2014]}), "fiscal_years", "2015"),
        (json!({"fiscal_years": [70000]}), "fiscal_years", "2025"),
        (json!({"severity": "mild"}), "severity", "list"),
        (json!({"diseases": {"in": [11]}}), "diseases", "list"),
    ];
    for (req, field, allowed_part) in cases {
        let (f, problem, allowed) = field_error(req.clone());
        assert_eq!(f, field, "{req}");
        assert!(
            allowed.contains(allowed_part),
            "{req}: allowed values `{allowed}` should mention {allowed_part}"
        );
        let message = validate(req.clone()).unwrap_err().to_string();
        assert!(
            message.contains(field) && message.contains(&allowed),
            "{message}"
        );
        assert!(!problem.is_empty());
    }
}

#[test]
fn unknown_fields_are_refused() {
    let e = serde_json::from_value::<Feasibility>(json!({"disease": [11]})).unwrap_err();
    assert!(e.to_string().contains("disease"), "{e}");
    let e = serde_json::from_value::<Feasibility>(json!({"sql": "SELECT 1"})).unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
}

const INJECTIONS: [&str; 10] = [
    "'; DROP TABLE nanbyo_forms; --",
    "mild' OR '1'='1",
    "13') OR (1=1",
    "x\" OR \"1\"=\"1",
    "1; SELECT * FROM institutions",
    "$$ ; COPY nanbyo_forms TO '/tmp/x' $$",
    "mild\u{0}",
    "prednisolone' UNION SELECT research_id FROM nanbyo_forms --",
    "/* */ SELECT",
    "E'\\x27'",
];

#[test]
fn hostile_strings_in_every_field_are_rejected() {
    let fields = [
        "diseases",
        "severity",
        "age_bands",
        "sex",
        "prefectures",
        "regions",
        "diagnosis_category",
        "treatments",
        "fiscal_years",
    ];
    for field in fields {
        for s in INJECTIONS {
            let (f, _, _) = field_error(json!({ field: [s] }));
            assert_eq!(f, field, "{s}");
            // Hidden after a valid value too.
            let valid = match field {
                "diseases" => json!(11),
                "fiscal_years" => json!(2020),
                "severity" => json!("mild"),
                "age_bands" => json!("40-44"),
                "sex" => json!("male"),
                "prefectures" => json!("13"),
                "regions" => json!("kanto"),
                "diagnosis_category" => json!("definite"),
                _ => json!("prednisolone"),
            };
            let (f, _, _) = field_error(json!({ field: [valid, s] }));
            assert_eq!(f, field);
        }
    }
    for s in INJECTIONS {
        let (f, _, _) = field_error(json!({ "ventilator": s }));
        assert_eq!(f, "ventilator");
    }
}

#[test]
fn an_echoed_value_is_cut_short() {
    let long = "x".repeat(10_000);
    let message = validate(json!({ "severity": [long] }))
        .unwrap_err()
        .to_string();
    assert!(message.len() < 400, "{} bytes", message.len());
}

#[test]
fn equivalent_requests_give_the_same_filters() {
    let a = validate(json!({
        "diseases": [12, 11, 11],
        "severity": ["severe", "mild"],
        "prefectures": ["14", "13", "08", "09", "10", "11", "12"],
        "fiscal_years": [2021, 2020],
    }))
    .unwrap();
    let b = validate(json!({
        "diseases": [11, 12],
        "severity": ["mild", "severe", "mild"],
        "regions": ["kanto"],
        "fiscal_years": [2020, 2021, 2020],
        "treatments": null,
        "ventilator": null,
    }))
    .unwrap();
    assert_eq!(a.diseases, vec![11, 12]);
    assert_eq!(a.severity, vec!["mild", "severe"]);
    assert_eq!(a.prefectures, b.prefectures);
    assert_eq!(
        kura_explorer::query::conditions(&a),
        kura_explorer::query::conditions(&b)
    );
}

#[test]
fn regions_are_the_eight_standard_regions() {
    let all: Vec<&str> = kura_explorer::Region::ALL
        .iter()
        .flat_map(|r| r.prefectures().map(|p| p.code))
        .collect();
    let mut sorted = all.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 47, "each prefecture in exactly one region");
    assert_eq!(all.len(), 47);
    let f = validate(json!({"regions": ["kinki"]})).unwrap();
    assert_eq!(
        f.prefectures,
        vec!["24", "25", "26", "27", "28", "29", "30"]
    );
    let f = validate(json!({"regions": ["kyushu"], "prefectures": ["01"]})).unwrap();
    assert_eq!(f.prefectures.first(), Some(&"01"));
    assert!(
        f.prefectures.contains(&"47"),
        "Okinawa is in the Kyushu region"
    );
}

#[test]
fn prefecture_names_match_the_reference_list() {
    let tsv = include_str!("../../kura-registry/data/prefectures_2020.tsv");
    let rows: Vec<(&str, &str)> = tsv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split('\t');
            (it.next().unwrap(), it.next().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 47);
    for ((code, ja), p) in rows.iter().zip(kura_explorer::catalog::PREFECTURES.iter()) {
        assert_eq!((*code, *ja), (p.code, p.ja));
        assert!(!p.en.is_empty() && p.en.is_ascii());
    }
}

#[test]
fn catalog_refuses_odd_treatment_names() {
    for bad in ["", "  ", "a\u{0}b", "line\nbreak", &"x".repeat(201)] {
        assert!(
            kura_explorer::Catalog::new([bad.to_string()], [2020]).is_err(),
            "{bad:?}"
        );
    }
    assert!(kura_explorer::Catalog::new([], [1066]).is_err());
}
