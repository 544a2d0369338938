//! Shared fixtures: hand-written tiny raw extracts (one row per file unless a test adds more),
//! key files, the repository's policy, and builds that report their error as text.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kura_registry::{
    INSTITUTIONS_HEADER, NANBYO_FORMS_HEADER, NANBYO_TREATMENTS_HEADER, SHOMAN_FORMS_HEADER,
};
use kura_snapshot::{BuildOptions, BuildSummary};

pub fn policy_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/pseudonymise.toml")
}

pub fn write_key(dir: &Path, name: &str, fill: u8, len: usize) -> PathBuf {
    let p = dir.join(name);
    let key: Vec<u8> = (0..len)
        .map(|i| fill.wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    std::fs::write(&p, key).unwrap();
    p
}

pub type Row = BTreeMap<&'static str, String>;

pub fn nanbyo_row(form: &str, kana: &str, dob: &str) -> Row {
    let mut r = Row::new();
    for (k, v) in [
        ("form_id", form),
        ("recipient_number", "13004567"),
        ("disease_no", "97"),
        ("form_year", "2021"),
        ("written_date", "2021-06-14"),
        ("name_kanji", "山田 花子"),
        ("name_kana", kana),
        ("sex", "2"),
        ("birth_date", dob),
        ("postcode", "160-0023"),
        ("address", "東京都新宿区西新宿2-8-1"),
        ("pref_code", "13"),
        ("municipality_code", "13104"),
        ("phone", "03-5321-1111"),
        ("insured_number", "12345678"),
        ("family_history", "none"),
        ("family_history_relation", ""),
        ("onset_ym", "2009-03"),
        ("care_level", "none"),
        ("mobility", "2"),
        ("self_care", "1"),
        ("usual_activities", "1"),
        ("pain_discomfort", "2"),
        ("anxiety_depression", "1"),
        ("diagnosis_category", "definite"),
        ("severity", "moderate"),
        ("severity_scale", "Mayo"),
        ("severity_score", "6"),
        ("lab_crp", "0.42"),
        ("lab_albumin", "3.9"),
        ("lab_hb", "12.8"),
        ("lab_egfr", "71.5"),
        ("genetic_test", "not_done"),
        ("ventilator", "0"),
        ("ventilator_start", ""),
        ("ventilator_type", ""),
        ("ventilator_pattern", ""),
        ("institution_code", "1312345678"),
        ("institution_name", "新宿第一病院"),
        ("institution_phone", "03-1234-5678"),
        ("doctor_number", "D13-004512"),
        ("doctor_name", "佐藤 一郎"),
        ("certified", "1"),
        ("consent", "1"),
    ] {
        r.insert(k, v.to_string());
    }
    r
}

pub fn shoman_row(form: &str, kana: &str, dob: &str) -> Row {
    let n = nanbyo_row(form, kana, dob);
    let mut r = Row::new();
    for col in SHOMAN_FORMS_HEADER {
        let v = match *col {
            "disease_group" => "11",
            "disease_code" => "11-042",
            "birth_weight_g" => "2840",
            "gestational_weeks" => "38",
            "height_sd" => "-1.2",
            "weight_sd" => "-0.8",
            "mother_birth_date" => "1984-02-03",
            "school_status" => "elementary",
            "written_date" => "2012-06-14",
            "form_year" => "2012",
            c => n.get(c).map_or("", String::as_str),
        };
        r.insert(col, v.to_string());
    }
    r
}

/// A raw extract: rows per file, written with the generator's headers.
pub struct Extract {
    pub nanbyo: Vec<Row>,
    pub treatments: Vec<Row>,
    pub shoman: Vec<Row>,
    pub institutions: Vec<Row>,
}

impl Extract {
    pub fn tiny() -> Extract {
        let mut t = Row::new();
        for (k, v) in [
            ("form_id", "N1-2021"),
            ("kind", "drug"),
            ("name", "mesalazine"),
            ("start_ym", "2019-11"),
        ] {
            t.insert(k, v.to_string());
        }
        let mut i = Row::new();
        for (k, v) in [
            ("institution_code", "1312345678"),
            ("name", "新宿第一病院"),
            ("pref_code", "13"),
            ("municipality_code", "13104"),
            ("kind", "general"),
            ("phone", "03-1234-5678"),
        ] {
            i.insert(k, v.to_string());
        }
        Extract {
            nanbyo: vec![nanbyo_row("N1-2021", "ヤマダ ハナコ", "1958-04-12")],
            treatments: vec![t],
            shoman: vec![shoman_row("C1-2012", "スズキ タロウ", "2005-01-02")],
            institutions: vec![i],
        }
    }

    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for (file, header, rows) in [
            ("nanbyo_forms.csv", NANBYO_FORMS_HEADER, &self.nanbyo),
            (
                "nanbyo_treatments.csv",
                NANBYO_TREATMENTS_HEADER,
                &self.treatments,
            ),
            ("shoman_forms.csv", SHOMAN_FORMS_HEADER, &self.shoman),
            ("institutions.csv", INSTITUTIONS_HEADER, &self.institutions),
        ] {
            let mut w = csv::Writer::from_path(dir.join(file)).unwrap();
            w.write_record(header.iter()).unwrap();
            for r in rows {
                w.write_record(header.iter().map(|c| r.get(c).map_or("", String::as_str)))
                    .unwrap();
            }
            w.flush().unwrap();
        }
    }
}

pub fn opts(raw: &Path, key: &Path, out: &Path) -> BuildOptions {
    BuildOptions {
        raw_dir: raw.to_path_buf(),
        policy: policy_path(),
        key_file: key.to_path_buf(),
        out: out.to_path_buf(),
        release_id: Some("test-release".into()),
    }
}

pub fn build(o: &BuildOptions) -> Result<BuildSummary, String> {
    kura_snapshot::build(o, &mut |_| {}).map_err(|e| e.to_string())
}

/// Every cell of every table, as text (NULLs skipped), with its table and column.
pub fn all_cells(db: &Path) -> Vec<(String, String, String)> {
    let conn = duckdb::Connection::open(db).unwrap();
    let mut cols = conn
        .prepare("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main'")
        .unwrap();
    let cols: Vec<(String, String)> = cols
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for (t, c) in cols {
        let mut s = conn
            .prepare(&format!(
                "SELECT CAST(\"{c}\" AS VARCHAR) FROM \"{t}\" WHERE \"{c}\" IS NOT NULL"
            ))
            .unwrap();
        for v in s.query_map([], |r| r.get::<_, String>(0)).unwrap() {
            out.push((t.clone(), c.clone(), v.unwrap()));
        }
    }
    out
}

pub fn query_strings(db: &Path, sql: &str) -> Vec<String> {
    let conn = duckdb::Connection::open(db).unwrap();
    let mut s = conn.prepare(sql).unwrap();
    s.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Names of the entries of a directory.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
