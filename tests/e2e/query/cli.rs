//! `kura query` as an operator runs it: scope file, formats, exit codes, audit log on disk.

use crate::snapshot;

fn write_scope(state: &std::path::Path) {
    std::fs::create_dir_all(state.join("projects")).unwrap();
    std::fs::write(
        state.join("projects/p-cli.toml"),
        "name = \"p-cli\"\nsnapshot = \"snap-test\"\n[tables]\n\
         nanbyo_forms = [\"research_id\", \"severity\"]\n",
    )
    .unwrap();
}

fn query(state: &std::path::Path, sql: &str, format: &str) -> std::process::Output {
    let snap = snapshot().display().to_string();
    let state_s = state.display().to_string();
    kura_e2e::kura(&[
        "query",
        "--state",
        &state_s,
        "--snapshot",
        &snap,
        "--project",
        "p-cli",
        "--user",
        "alice",
        "--format",
        format,
        sql,
    ])
}

#[test]
fn kura_query_prints_csv_and_json_and_refuses_with_exit_1() {
    let state = tempfile::tempdir().unwrap();
    write_scope(state.path());
    let out = query(
        state.path(),
        "SELECT severity FROM nanbyo_forms ORDER BY 1 LIMIT 2",
        "csv",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().next(), Some("severity"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");

    let out = query(
        state.path(),
        "SELECT count(*) AS n FROM nanbyo_forms",
        "json",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["n"], 900, "300 patients x 3 years: {v}");

    let out = query(
        state.path(),
        "SELECT severity FROM nanbyo_forms LIMIT 1",
        "table",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("| severity |"));

    let out = query(state.path(), "SELECT disease_no FROM nanbyo_forms", "csv");
    assert_eq!(out.status.code(), Some(1), "non-granted column must fail");
    let out = query(state.path(), "COPY (SELECT 1) TO '/tmp/x.csv'", "csv");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
    assert!(out.stdout.is_empty());
    // The audit log was written in the state directory.
    assert!(std::fs::read_dir(state.path()).unwrap().count() > 1);
}

#[test]
fn kura_query_without_a_scope_file_is_a_usage_error() {
    let state = tempfile::tempdir().unwrap();
    let out = query(state.path(), "SELECT 1", "csv");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("p-cli.toml"));
}
