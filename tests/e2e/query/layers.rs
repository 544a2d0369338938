//! Each defence layer on its own (every other layer switched off), against the attacks that
//! layer is responsible for. Off means: no gate, default DuckDB settings (external access on,
//! extension autoload on, configuration unlocked), the snapshot's own tables visible with all
//! columns, and an unconfined worker.

use std::path::Path;

use kura_query::{Layers, QueryError, Rule};

use crate::{engine, first_cell, run_with};

const ONLY_GATE: Layers = Layers {
    gate: true,
    ..Layers::NONE
};
const ONLY_SETTINGS: Layers = Layers {
    settings: true,
    ..Layers::NONE
};
const ONLY_VIEWS: Layers = Layers {
    views: true,
    ..Layers::NONE
};
const ONLY_CONFINEMENT: Layers = Layers {
    confinement: true,
    ..Layers::NONE
};

fn execution_error(r: Result<kura_query::QueryResult, QueryError>) -> String {
    match r {
        Err(QueryError::Execution { message }) => message,
        Err(other) => panic!("expected DuckDB to fail the statement, got {other}"),
        Ok(res) => panic!("the attack ran and returned {} rows", res.outcome.rows),
    }
}

fn outside_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kura-layer-test-{}-{name}", std::process::id()))
}

#[test]
fn with_every_layer_off_the_attacks_would_work() {
    // The control: proves the attacks below are real, so each layer's test means something.
    let e = engine(Layers::NONE);
    let r = run_with(&e, "SELECT count(*) FROM read_text('/etc/passwd')", None).unwrap();
    assert_eq!(first_cell(&r), "1");
    assert!(run_with(&e, "SELECT count(*) FROM shoman_forms", None).is_ok());
    assert!(run_with(&e, "SELECT max(birth_ym) FROM nanbyo_forms", None).is_ok());
    let out = outside_path("control.csv");
    let sql = format!("COPY (SELECT 1) TO '{}'", out.display());
    assert!(run_with(&e, &sql, None).is_ok());
    assert!(
        out.exists(),
        "control COPY should have written {}",
        out.display()
    );
    let _ = std::fs::remove_file(out);
}

#[test]
fn gate_alone_refuses_file_settings_catalog_and_other_tables() {
    let e = engine(ONLY_GATE);
    for (sql, rule) in [
        (
            "SELECT * FROM read_text('/etc/passwd')",
            Rule::TableFunctionNotAllowed,
        ),
        ("SELECT * FROM '/etc/passwd'", Rule::TableNotGranted),
        (
            "COPY (SELECT 1) TO '/tmp/kura-gate-only.csv'",
            Rule::ReadOnly,
        ),
        ("ATTACH '/tmp/kura-gate-only.duckdb' AS x", Rule::ReadOnly),
        ("INSTALL httpfs", Rule::ReadOnly),
        ("SET enable_external_access = true", Rule::ReadOnly),
        ("SELECT getenv('HOME')", Rule::FunctionNotAllowed),
        (
            "SELECT * FROM duckdb_tables()",
            Rule::TableFunctionNotAllowed,
        ),
        // Reachable in this configuration (no views), still refused by name.
        ("SELECT * FROM shoman_forms", Rule::TableNotGranted),
        ("SELECT 1; SELECT 2", Rule::OneStatement),
    ] {
        match run_with(&e, sql, None) {
            Err(QueryError::Refused { rule: r, .. }) => assert_eq!(r, rule, "{sql}"),
            other => panic!(
                "{sql}: expected refusal {rule}, got {:?}",
                other.map(|r| r.outcome.rows)
            ),
        }
    }
}

#[test]
fn settings_alone_block_files_extensions_attach_and_changing_settings_after_lock() {
    let e = engine(ONLY_SETTINGS);
    let m = execution_error(run_with(&e, "SELECT * FROM read_text('/etc/passwd')", None));
    assert!(m.contains("disabled") || m.contains("Permission"), "{m}");
    execution_error(run_with(&e, "SELECT * FROM '/etc/passwd'", None));
    let out = outside_path("settings.csv");
    execution_error(run_with(
        &e,
        &format!("COPY (SELECT 1) TO '{}'", out.display()),
        None,
    ));
    assert!(!out.exists());
    let db = outside_path("settings.duckdb");
    execution_error(run_with(
        &e,
        &format!("ATTACH '{}' AS x", db.display()),
        None,
    ));
    assert!(!db.exists());
    execution_error(run_with(&e, "INSTALL httpfs", None));
    execution_error(run_with(&e, "LOAD httpfs", None));
    let m = execution_error(run_with(&e, "SET enable_external_access = true", None));
    assert!(
        m.to_lowercase().contains("lock") || m.contains("cannot"),
        "{m}"
    );
    let m = execution_error(run_with(&e, "SET lock_configuration = false", None));
    assert!(m.to_lowercase().contains("lock"), "{m}");
    execution_error(run_with(&e, "RESET lock_configuration", None));
    execution_error(run_with(&e, "SET memory_limit = '100GB'", None));
    // The snapshot is attached read-only.
    execution_error(run_with(&e, "CREATE TABLE stolen AS SELECT 1", None));
    execution_error(run_with(&e, "DELETE FROM nanbyo_forms", None));
}

#[test]
fn views_alone_hide_other_tables_and_columns() {
    let e = engine(ONLY_VIEWS);
    let m = execution_error(run_with(&e, "SELECT * FROM shoman_forms", None));
    assert!(m.contains("shoman_forms"), "{m}");
    execution_error(run_with(&e, "SELECT birth_ym FROM nanbyo_forms", None));
    execution_error(run_with(&e, "SELECT * FROM institutions", None));
    let r = run_with(&e, "SELECT * FROM nanbyo_forms LIMIT 1", None).unwrap();
    let cols = crate::column_names(&r);
    assert_eq!(
        cols,
        [
            "research_id",
            "form_year",
            "disease_no",
            "pref_code",
            "severity"
        ],
        "the view exposes exactly the granted columns"
    );
}

#[test]
fn confinement_alone_stops_file_access_outside_the_snapshot() {
    let e = engine(ONLY_CONFINEMENT);
    let m = execution_error(run_with(&e, "SELECT * FROM read_text('/etc/passwd')", None));
    assert!(m.contains("ermission") || m.contains("denied"), "{m}");
    execution_error(run_with(
        &e,
        "SELECT * FROM read_text('/proc/self/environ')",
        None,
    ));
    let out = outside_path("confined.csv");
    execution_error(run_with(
        &e,
        &format!("COPY (SELECT 1) TO '{}'", out.display()),
        None,
    ));
    assert!(!out.exists(), "the confined worker wrote {}", out.display());
    let db = outside_path("confined.duckdb");
    execution_error(run_with(
        &e,
        &format!("ATTACH '{}' AS x", db.display()),
        None,
    ));
    assert!(!db.exists());
    // Extension install needs the network (and a home directory): both denied.
    execution_error(run_with(&e, "INSTALL httpfs", None));
}

#[test]
fn confined_worker_cannot_escape_by_syscalls() {
    let e = engine(Layers::ALL);
    let (report, probes) = e.self_test(crate::snapshot()).unwrap();
    assert!(
        report.landlock && report.seccomp && report.rlimits && report.no_new_privs,
        "{report:?}"
    );
    let outcome = |name: &str| {
        probes
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("probe {name} missing: {probes:?}"))
            .clone()
    };
    for allowed in ["read_snapshot", "write_temp_dir", "spawn_thread"] {
        let p = outcome(allowed);
        assert!(
            p.succeeded,
            "the worker must still be able to {allowed}: {}",
            p.detail
        );
    }
    for denied in [
        "read_etc_passwd",
        "read_proc_self_environ",
        "list_snapshot_dir",
        "write_outside_temp_dir",
        "tcp_connect",
        "udp_bind",
        "unix_socket",
        "spawn_process",
    ] {
        let p = outcome(denied);
        assert!(
            !p.succeeded,
            "confined worker managed to {denied}: {}",
            p.detail
        );
    }
    assert!(!Path::new(&std::env::temp_dir().join("kura-escape")).exists());
}
