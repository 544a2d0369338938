//! `kura sdc check` as a researcher runs it: exit codes (0 pass, 1 fail, 2 bad input), the
//! per-cell report, the JSON report and the ACRO-compatible results.json.
// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use kura_e2e::kura;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const FAILING: &str = "dim:prefecture,dim:age_band,count:patients,institutions:n_inst\n\
    Tokyo,40-44,5,2\nTokyo,45-49,30,6\nTokyo,TOTAL,35,7\n\
    Osaka,40-44,20,4\nOsaka,45-49,12,3\nOsaka,TOTAL,32,6\n\
    TOTAL,40-44,25,6\nTOTAL,45-49,42,8\nTOTAL,TOTAL,67,12\n";

#[test]
fn a_passing_table_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "ok.csv",
        "dim:prefecture,count:patients,institutions:n\nTokyo,40,5\nOsaka,30,4\nTOTAL,70,9\n",
    );
    let out = kura(&["sdc", "check", "--rules", "japan-rare-disease", &f]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS"));
}

#[test]
fn a_failing_table_exits_1_and_says_which_cell_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "mg.csv", FAILING);
    let out = kura(&["sdc", "check", "--rules", "japan-rare-disease", &f]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("line 2"), "{text}");
    assert!(text.contains("prefecture=Tokyo, age_band=40-44"), "{text}");
    assert!(
        text.contains("[threshold]") && text.contains("[institutions]"),
        "{text}"
    );
    assert!(text.contains("[secondary]"), "{text}");
    assert!(text.contains("－"), "{text}");
    assert!(
        !text.contains("n_inst"),
        "contributor data must stay inside: {text}"
    );
}

#[test]
fn json_report_and_acro_results_json() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "mg.csv", FAILING);
    let results = dir.path().join("results.json");
    let out = kura(&[
        "sdc",
        "check",
        "--rules",
        "uk-acro",
        &f,
        "--json",
        "--results-json",
        &results.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pack"], "uk-acro");
    let failing = report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["failures"].as_array().unwrap().is_empty())
        .count();
    assert!(failing >= 1);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    let rec = &doc["results"]["output_0"];
    assert_eq!(rec["status"], "fail");
    assert_eq!(rec["files"][0]["name"], "mg_protected.csv");
    assert!(dir.path().join("mg_protected.csv").is_file());
    assert_eq!(rec["files"][0]["sdc"]["summary"]["threshold"], 1);
}

#[test]
fn bad_input_exits_2_naming_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bad.csv", "dim:x,count:n\na,1\nb,seven\n");
    let out = kura(&["sdc", "check", &f]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("column 2"), "{err}");

    let missing = kura(&["sdc", "check", "/nonexistent/table.csv"]);
    assert_eq!(missing.status.code(), Some(2));
    let f = write(dir.path(), "ok.csv", "dim:x,count:n\na,50\n");
    let no_pack = kura(&["sdc", "check", "--rules", "no-such-pack", &f]);
    assert_eq!(no_pack.status.code(), Some(2));
}

#[test]
fn row_level_output_is_refused_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "rows.csv", "research_id,count:n\nabc123,50\n");
    let out = kura(&["sdc", "check", &f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("REFUSED"));
}

#[test]
fn differencing_against_a_ledger_file() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = write(
        dir.path(),
        "released.json",
        r#"[{"release": "out-1", "measure": "patients", "definition": ["age_band=40-44", "prefecture=Tokyo"], "value": 25}]"#,
    );
    let f = write(
        dir.path(),
        "new.csv",
        "dim:prefecture,dim:age_band,count:patients,institutions:k\nTokyo,40-44,21,5\n",
    );
    let out = kura(&[
        "sdc",
        "check",
        &f,
        "--ledger",
        &ledger,
        "--filter",
        "disease != X",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[differencing]") && text.contains("out-1"),
        "{text}"
    );
}

#[test]
fn bench_without_acro_prints_kura_figures() {
    let out = kura(&[
        "bench",
        "sdc",
        "--cells",
        "400",
        "--no-acro",
        "--repeat",
        "1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("| 20 x 20 | 441 |"), "{text}");
    assert!(text.contains("Kura check"), "{text}");
    assert!(text.contains("ACRO was not run"), "{text}");
}

#[test]
fn bench_says_clearly_when_acro_is_unavailable() {
    let out = kura(&[
        "bench",
        "sdc",
        "--cells",
        "100",
        "--python",
        "/nonexistent/python",
        "--repeat",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ACRO was not run") && text.contains("/nonexistent/python"),
        "{text}"
    );
    // Kura's own figures are still there.
    assert!(text.contains("| 10 x 10 | 121 |"), "{text}");
}
