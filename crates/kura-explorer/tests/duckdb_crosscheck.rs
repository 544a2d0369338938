//! The generated SQL, run by the real sandbox engine on a real snapshot, returns exactly what the
//! reference model (tests/support) computes from the same microdata: counts, institutions and
//! fingerprints (so the Rust mirror of the SQL's record values is exact), for fixed and random
//! requests, with both record hashes. It needs an existing `kura` binary and snapshot (this
//! crate must not build DuckDB), so it is ignored by default:
//!
//! ```text
//! KURA_BIN=path/to/kura KURA_EXPLORER_SNAPSHOT=snap.duckdb \
//!   cargo test -p kura-explorer --test duckdb_crosscheck -- --ignored
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use kura_explorer::{Catalog, Explorer, Feasibility, RawView, RecordHash, View};
use kura_sdc::CheckContext;
use serde_json::json;
use support::{evaluate, Form, Rng};

struct Kura {
    bin: PathBuf,
    snapshot: PathBuf,
    state: PathBuf,
}

impl Kura {
    fn csv(&self, sql: &str) -> String {
        let out = Command::new(&self.bin)
            .args(["query", "--state"])
            .arg(&self.state)
            .arg("--snapshot")
            .arg(&self.snapshot)
            .args([
                "--project",
                "explorer",
                "--user",
                "crosscheck",
                "--format",
                "csv",
            ])
            .args(["--max-rows", "10000000", "--timeout", "120", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "query refused or failed: {}\n{sql}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn records(&self, sql: &str) -> Vec<csv::StringRecord> {
        let text = self.csv(sql);
        csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(Result::unwrap)
            .collect()
    }
}

fn setup() -> Option<Kura> {
    let bin = PathBuf::from(std::env::var_os("KURA_BIN")?);
    let snapshot = PathBuf::from(std::env::var_os("KURA_EXPLORER_SNAPSHOT")?);
    let state =
        std::env::temp_dir().join(format!("kura-explorer-crosscheck-{}", std::process::id()));
    std::fs::create_dir_all(state.join("projects")).unwrap();
    let mut scope = String::from("name = \"explorer\"\n[tables]\n");
    for (table, cols) in kura_explorer::query::REQUIRED_COLUMNS {
        let cols: Vec<String> = cols.iter().map(|c| format!("\"{c}\"")).collect();
        scope.push_str(&format!("{table} = [{}]\n", cols.join(", ")));
    }
    std::fs::write(state.join("projects/explorer.toml"), scope).unwrap();
    Some(Kura {
        bin,
        snapshot,
        state,
    })
}

fn load_forms(k: &Kura) -> Vec<Form> {
    let mut treatments: std::collections::HashMap<String, Vec<String>> = Default::default();
    for r in k.records("SELECT form_key, name FROM nanbyo_treatments") {
        treatments
            .entry(r[0].to_string())
            .or_default()
            .push(r[1].to_string());
    }
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    k.records(
        "SELECT research_id, form_key, disease_no, form_year, written_ym, sex, age_band, \
         pref_code, diagnosis_category, severity, ventilator, institution_key FROM nanbyo_forms",
    )
    .into_iter()
    .map(|r| Form {
        research_id: r[0].to_string(),
        form_key: r[1].to_string(),
        disease_no: r[2].parse().unwrap(),
        form_year: r[3].parse().unwrap(),
        written_ym: r[4].to_string(),
        sex: r[5].parse().unwrap(),
        age_band: r[6].to_string(),
        pref_code: r[7].to_string(),
        diagnosis_category: r[8].to_string(),
        severity: opt(&r[9]),
        ventilator: r[10].parse().unwrap(),
        institution_key: opt(&r[11]),
        treatments: treatments.remove(&r[1]).unwrap_or_default(),
    })
    .collect()
}

fn sorted(mut v: RawView) -> RawView {
    v.rows.sort_by(|a, b| a.dims.cmp(&b.dims));
    v
}

#[test]
#[ignore = "needs KURA_BIN and KURA_EXPLORER_SNAPSHOT (an existing binary and snapshot)"]
fn sql_matches_the_reference_model_on_a_real_snapshot() {
    let Some(k) = setup() else {
        panic!("set KURA_BIN and KURA_EXPLORER_SNAPSHOT");
    };
    let forms = load_forms(&k);
    let names: Vec<String> = k
        .records(Catalog::TREATMENTS_SQL)
        .iter()
        .map(|r| r[0].to_string())
        .collect();
    let years: Vec<u16> = k
        .records(Catalog::FISCAL_YEARS_SQL)
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    let catalog = Catalog::new(names.clone(), years.clone()).unwrap();
    let mut requests = vec![
        json!({}),
        json!({"diseases": [11, 12]}),
        json!({"diseases": [6], "severity": ["severe"], "sex": ["male"], "regions": ["kanto", "kinki"]}),
        json!({"diseases": [11], "treatments": ["eculizumab", "thymectomy"], "fiscal_years": [2020, 2021]}),
        json!({"ventilator": true, "age_bands": ["60-64", "65-69", "70-74"]}),
        json!({"diseases": [341], "fiscal_years": [2015]}),
    ];
    let mut rng = Rng(7);
    for _ in 0..14 {
        let mut r = serde_json::Map::new();
        if rng.below(2) == 0 {
            let d: Vec<u64> = (0..1 + rng.below(4))
                .map(|_| *rng.pick(&[2, 6, 11, 13, 49, 96, 97]))
                .collect();
            r.insert("diseases".into(), json!(d));
        }
        if rng.below(3) == 0 {
            r.insert(
                "severity".into(),
                json!([rng.pick(&["mild", "moderate", "severe"])]),
            );
        }
        if rng.below(3) == 0 {
            r.insert(
                "regions".into(),
                json!([rng.pick(&["kanto", "tohoku", "kyushu"])]),
            );
        }
        if rng.below(3) == 0 {
            r.insert("treatments".into(), json!([rng.pick(&names)]));
        }
        if rng.below(3) == 0 {
            r.insert(
                "fiscal_years".into(),
                json!([rng.pick(&years), rng.pick(&years)]),
            );
        }
        if rng.below(4) == 0 {
            r.insert("diagnosis_category".into(), json!(["probable"]));
        }
        requests.push(serde_json::Value::Object(r));
    }
    let mut compared = 0;
    for hash in [RecordHash::Sha256, RecordHash::ResearchIdPrefix] {
        let explorer = Explorer::new(&[7u8; 32], catalog.clone())
            .unwrap()
            .with_record_hash(hash);
        for req in &requests {
            let filters = explorer
                .validate(&serde_json::from_value::<Feasibility>(req.clone()).unwrap())
                .unwrap();
            let mut got = Vec::new();
            for q in explorer.queries(&filters) {
                let raw = RawView::from_csv(q.view, &k.csv(&q.sql)).unwrap();
                let want = evaluate(&forms, &filters, q.view, hash);
                assert_eq!(sorted(raw.clone()), sorted(want), "{req} view {:?}", q.view);
                got.push(raw);
                compared += 1;
            }
            // The real rows fit the grid and add up: protection succeeds.
            explorer
                .protect(&filters, &got, &CheckContext::default())
                .unwrap_or_else(|e| panic!("{req}: {e}"));
        }
    }
    assert_eq!(compared, requests.len() * 2 * View::ALL.len());
    let _ = std::fs::remove_dir_all(Path::new(&k.state));
}
