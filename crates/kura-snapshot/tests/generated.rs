//! A snapshot of a generated extract: no direct identifier in any cell of any table, only
//! consenting forms, a manifest that describes the file, and `verify` catching a changed byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::*;
use kura_snapshot::{manifest_path, verify};
use unicode_normalization::UnicodeNormalization;

const DIRECT_IDENTIFIERS: &[(&str, &[&str])] = &[
    (
        "nanbyo_forms.csv",
        &[
            "form_id",
            "recipient_number",
            "name_kanji",
            "name_kana",
            "postcode",
            "address",
            "phone",
            "insured_number",
            "institution_name",
            "institution_phone",
            "doctor_number",
            "doctor_name",
            "birth_date",
        ],
    ),
    (
        "shoman_forms.csv",
        &[
            "form_id",
            "recipient_number",
            "name_kanji",
            "name_kana",
            "postcode",
            "address",
            "phone",
            "insured_number",
            "institution_name",
            "institution_phone",
            "doctor_number",
            "doctor_name",
            "birth_date",
            "mother_birth_date",
        ],
    ),
    ("nanbyo_treatments.csv", &["form_id"]),
    ("institutions.csv", &["institution_code", "name", "phone"]),
];

fn strip(s: &str) -> String {
    s.nfkc().filter(|c| !c.is_whitespace()).collect()
}

struct Built {
    _dir: tempfile::TempDir,
    raw: std::path::PathBuf,
    out: std::path::PathBuf,
    summary: kura_snapshot::BuildSummary,
}

fn built() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    kura_registry::generate(
        &kura_registry::GenerateOptions {
            patients: 1500,
            seed: 7,
            out: raw.clone(),
        },
        &mut |_| {},
    )
    .unwrap();
    let key = write_key(dir.path(), "key", 5, 32);
    let out = dir.path().join("snap.duckdb");
    let summary = build(&opts(&raw, &key, &out)).unwrap();
    Built {
        _dir: dir,
        raw,
        out,
        summary,
    }
}

#[test]
fn no_direct_identifier_reaches_any_column() {
    let b = built();
    let mut ids: HashSet<String> = HashSet::new();
    let mut names: Vec<String> = Vec::new();
    for (file, cols) in DIRECT_IDENTIFIERS {
        let mut r = csv::Reader::from_path(b.raw.join(file)).unwrap();
        let header = r.headers().unwrap().clone();
        let idx: Vec<usize> = cols
            .iter()
            .map(|c| {
                header
                    .iter()
                    .position(|h| h == *c)
                    .unwrap_or_else(|| panic!("{file}: {c}"))
            })
            .collect();
        for rec in r.records() {
            let rec = rec.unwrap();
            for (&i, c) in idx.iter().zip(cols.iter()) {
                let v = &rec[i];
                if v.is_empty() {
                    continue;
                }
                ids.insert(v.to_string());
                ids.insert(strip(v));
                if c.starts_with("name") || c.ends_with("_name") || *c == "address" {
                    names.push(strip(v));
                }
            }
        }
    }
    assert!(ids.len() > 1000, "the extract should hold many identifiers");
    let cells = all_cells(&b.out);
    assert!(cells.len() > 10_000);
    for (t, c, v) in &cells {
        assert!(
            !ids.contains(v) && !ids.contains(&strip(v)),
            "{t}.{c} holds identifier {v:?}"
        );
    }
    // Substring search for names and addresses in every text cell (a sample keeps it fast).
    names.sort();
    names.dedup();
    let sample: Vec<&String> = names.iter().step_by((names.len() / 300).max(1)).collect();
    for (t, c, v) in cells.iter().filter(|(_, _, v)| !v.is_ascii()) {
        for n in &sample {
            assert!(
                !v.contains(n.as_str()),
                "{t}.{c} contains name/address {n:?}: {v:?}"
            );
        }
    }
}

#[test]
fn only_consenting_forms_and_their_treatments_are_kept() {
    let b = built();
    let count = |file: &str, col: &str| -> (u64, HashSet<String>) {
        let mut r = csv::Reader::from_path(b.raw.join(file)).unwrap();
        let h = r.headers().unwrap().clone();
        let (ci, fi) = (
            h.iter().position(|x| x == col).unwrap(),
            h.iter().position(|x| x == "form_id").unwrap(),
        );
        let mut kept = HashSet::new();
        let mut n = 0;
        for rec in r.records() {
            let rec = rec.unwrap();
            n += 1;
            if &rec[ci] == "1" {
                kept.insert(rec[fi].to_string());
            }
        }
        (n, kept)
    };
    let (n_all, consenting) = count("nanbyo_forms.csv", "consent");
    assert!(
        consenting.len() < n_all as usize,
        "the generator writes non-consenting forms"
    );
    let mut r = csv::Reader::from_path(b.raw.join("nanbyo_treatments.csv")).unwrap();
    let treatments_kept = r
        .records()
        .filter(|rec| consenting.contains(&rec.as_ref().unwrap()[0]))
        .count() as u64;
    let (_, shoman_consenting) = count("shoman_forms.csv", "consent");
    let rows = |t: &str| {
        b.summary
            .manifest
            .tables
            .iter()
            .find(|x| x.name == t)
            .unwrap()
            .rows
    };
    assert_eq!(rows("nanbyo_forms"), consenting.len() as u64);
    assert_eq!(rows("nanbyo_treatments"), treatments_kept);
    assert_eq!(rows("shoman_forms"), shoman_consenting.len() as u64);
    // Every treatment row joins a kept form.
    let orphans = query_strings(
        &b.out,
        "SELECT CAST(count(*) AS VARCHAR) FROM nanbyo_treatments t \
         WHERE NOT EXISTS (SELECT 1 FROM nanbyo_forms f WHERE f.form_key = t.form_key)",
    );
    assert_eq!(orphans, ["0"]);
}

#[test]
fn manifest_describes_the_file_and_verify_catches_a_changed_byte() {
    let b = built();
    let m = &b.summary.manifest;
    assert_eq!(m.release_id, "test-release");
    assert_eq!(m.sources.len(), 4);
    assert!(m.sources.iter().all(|s| s.sha256.len() == 64 && s.rows > 0));
    let k = m
        .k_anonymity
        .iter()
        .find(|k| k.table == "nanbyo_forms")
        .unwrap();
    assert_eq!(
        k.rows,
        m.tables
            .iter()
            .find(|t| t.name == "nanbyo_forms")
            .unwrap()
            .rows
    );
    assert!(k.smallest_class_sizes.windows(2).all(|w| w[0] <= w[1]));
    assert!(k.rows_in_classes_below_k <= k.rows);
    // Descriptions travel inside the file too.
    let comments = query_strings(
        &b.out,
        "SELECT comment FROM duckdb_columns() WHERE table_name = 'nanbyo_forms' \
         AND column_name = 'research_id'",
    );
    assert!(
        comments[0].contains("Research ID") && comments[0].contains("研究用ID"),
        "{comments:?}"
    );

    let report = verify(&b.out).unwrap();
    assert!(report.ok(), "{:?}", report.problems);

    let mut bytes = std::fs::read(&b.out).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&b.out, &bytes).unwrap();
    let report = verify(&b.out).unwrap();
    assert!(!report.ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("SHA-256 differs")),
        "{:?}",
        report.problems
    );

    // Restore the file, then tamper with the manifest's row count instead.
    bytes[at] ^= 0x01;
    std::fs::write(&b.out, &bytes).unwrap();
    assert!(verify(&b.out).unwrap().ok());
    let mpath = manifest_path(&b.out);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    json["tables"][0]["rows"] = serde_json::json!(1);
    std::fs::write(&mpath, serde_json::to_vec(&json).unwrap()).unwrap();
    let report = verify(&b.out).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("rows")),
        "{:?}",
        report.problems
    );
}
