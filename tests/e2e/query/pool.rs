//! Worker reuse: a worker that answered may serve the next query, but only for exactly the same
//! snapshot, project, user, grant and limits, only after a success, and only up to its count.

use std::time::Duration;

use kura_query::{EngineConfig, Layers, QueryEngine, QueryError, QueryRequest};

use crate::{first_cell, run_with, scope, snapshot, test_limits, MemoryAudit};

fn pooled(max_queries: u64) -> QueryEngine {
    let mut config = EngineConfig::new(kura_e2e::kura_bin());
    config.limits = test_limits();
    config.max_queries_per_worker = max_queries;
    QueryEngine::new(config).unwrap()
}

fn ok(e: &QueryEngine, sql: &str) -> kura_query::QueryResult {
    run_with(e, sql, None).unwrap()
}

#[test]
fn the_same_key_reuses_the_worker_and_each_query_gets_only_its_own_rows() {
    let e = pooled(64);
    let a = ok(&e, "SELECT 'first' AS v FROM range(3)");
    let b = ok(&e, "SELECT count(*) AS n FROM nanbyo_forms");
    let c = ok(&e, "SELECT 'third' AS v");
    assert_eq!(a.outcome.worker_query, 1);
    assert_eq!(
        (b.outcome.worker_pid, b.outcome.worker_query),
        (a.outcome.worker_pid, 2)
    );
    assert_eq!(
        (c.outcome.worker_pid, c.outcome.worker_query),
        (a.outcome.worker_pid, 3)
    );
    // Nothing of an earlier query's result shows up in a later one.
    assert_eq!(b.outcome.rows, 1);
    assert_eq!(b.outcome.schema.field(0).name(), "n");
    assert_ne!(first_cell(&b), "first");
    assert_eq!((c.outcome.rows, first_cell(&c)), (1, "third".to_string()));
    assert_ne!(a.outcome.sha256, c.outcome.sha256);
}

#[test]
fn a_worker_is_never_handed_to_another_user_project_or_grant() {
    let e = pooled(64);
    let audit = MemoryAudit::default();
    let base = scope();
    let mut other_project = scope();
    other_project.name = "p-other".into();
    let mut wider = scope();
    wider
        .tables
        .insert("nanbyo_forms".into(), vec!["*".to_string()]);
    let run = |project, user| {
        e.run(
            &QueryRequest {
                sql: "SELECT count(*) FROM nanbyo_forms",
                project,
                user,
                session: None,
                snapshot: snapshot(),
                snapshot_sha256: None,
                id: None,
                limits: None,
            },
            &audit,
        )
        .unwrap()
        .outcome
    };
    let alice = run(&base, "alice");
    let bob = run(&base, "bob");
    assert_ne!(bob.worker_pid, alice.worker_pid);
    assert_eq!(bob.worker_query, 1, "bob got a worker that served before");
    let project = run(&other_project, "bob");
    assert_ne!(project.worker_pid, bob.worker_pid);
    assert_eq!(project.worker_query, 1);
    let grant = run(&wider, "bob");
    assert_ne!(grant.worker_pid, project.worker_pid);
    assert_eq!(grant.worker_query, 1);
    // Same key again: now it is reused.
    let again = run(&wider, "bob");
    assert_eq!(
        (again.worker_pid, again.worker_query),
        (grant.worker_pid, 2)
    );
    // Different limits are a different key too.
    let mut limits = test_limits();
    limits.max_rows = 10;
    let limited = e
        .run(
            &QueryRequest {
                sql: "SELECT 1",
                project: &wider,
                user: "bob",
                session: None,
                snapshot: snapshot(),
                snapshot_sha256: None,
                id: None,
                limits: Some(limits),
            },
            &audit,
        )
        .unwrap()
        .outcome;
    assert_ne!(limited.worker_pid, again.worker_pid);
    assert_eq!(limited.worker_query, 1);
}

#[test]
fn a_worker_that_timed_out_failed_or_refused_is_not_reused() {
    let e = pooled(64);
    let first = ok(&e, "SELECT 1").outcome;
    let mut limits = test_limits();
    limits.timeout_ms = 1_000;
    // Same limits for every query here so that only the failure decides.
    let slow = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b";
    let warm = run_with(&e, "SELECT 1", Some(limits)).unwrap().outcome;
    assert_ne!(
        warm.worker_pid, first.worker_pid,
        "limits are part of the key"
    );
    let err = run_with(&e, slow, Some(limits)).unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
    let after_timeout = run_with(&e, "SELECT 1", Some(limits)).unwrap().outcome;
    assert_ne!(after_timeout.worker_pid, warm.worker_pid);
    assert_eq!(after_timeout.worker_query, 1);

    let err = run_with(&e, "SELECT 1 / 0 + 'x'::INTEGER", Some(limits)).unwrap_err();
    assert!(matches!(err, QueryError::Execution { .. }), "{err}");
    let after_error = run_with(&e, "SELECT 1", Some(limits)).unwrap().outcome;
    assert_ne!(after_error.worker_pid, after_timeout.worker_pid);
    assert_eq!(after_error.worker_query, 1);

    let err = run_with(&e, "SELECT getenv('HOME')", Some(limits)).unwrap_err();
    assert!(matches!(err, QueryError::Refused { .. }), "{err}");
    let after_refusal = run_with(&e, "SELECT 1", Some(limits)).unwrap().outcome;
    assert_ne!(after_refusal.worker_pid, after_error.worker_pid);
    assert_eq!(after_refusal.worker_query, 1);
}

#[test]
fn the_query_after_the_last_allowed_one_gets_a_fresh_worker() {
    let e = pooled(3);
    let runs: Vec<_> = (0..4).map(|_| ok(&e, "SELECT 1").outcome).collect();
    assert_eq!(
        runs.iter().map(|o| o.worker_query).collect::<Vec<_>>(),
        [1, 2, 3, 1]
    );
    assert!(runs[..3].iter().all(|o| o.worker_pid == runs[0].worker_pid));
    assert_ne!(runs[3].worker_pid, runs[0].worker_pid);
}

#[test]
fn no_reuse_without_the_gate_or_after_idling_too_long() {
    // Without the gate a query could leave state behind (CREATE, SET VARIABLE): no reuse.
    let mut config = EngineConfig::new(kura_e2e::kura_bin());
    config.limits = test_limits();
    config.layers = Layers {
        gate: false,
        ..Layers::ALL
    };
    let e = QueryEngine::new(config).unwrap();
    let a = ok(&e, "SELECT 1").outcome;
    let b = ok(&e, "SELECT 1").outcome;
    assert_ne!(a.worker_pid, b.worker_pid);
    assert_eq!(b.worker_query, 1);

    let mut config = EngineConfig::new(kura_e2e::kura_bin());
    config.limits = test_limits();
    config.worker_idle = Duration::from_millis(200);
    let e = QueryEngine::new(config).unwrap();
    let a = ok(&e, "SELECT 1").outcome;
    std::thread::sleep(Duration::from_millis(400));
    let b = ok(&e, "SELECT 1").outcome;
    assert_ne!(a.worker_pid, b.worker_pid);
    assert_eq!(b.worker_query, 1);
}

#[test]
fn a_spilling_query_leaves_no_temp_files_for_the_next() {
    // A sort far larger than the memory limit spills to the worker's temp dir; the worker is
    // reused only if DuckDB removed those files.
    let e = pooled(64);
    let mut limits = test_limits();
    limits.memory_limit_mib = 64;
    let big = "SELECT count(*) FROM (SELECT range AS r, md5(range::VARCHAR) AS h \
               FROM range(2000000) ORDER BY h)";
    let spilled = run_with(&e, big, Some(limits));
    let next = run_with(&e, "SELECT 42", Some(limits)).unwrap();
    assert_eq!(first_cell(&next), "42");
    let spilled = spilled.unwrap();
    assert_eq!(first_cell(&spilled), "2000000");
    // DuckDB deleted its spill files (only its empty owner marker stays), so the worker
    // was kept; had it not, the next query would have had a fresh one.
    assert_eq!(
        (next.outcome.worker_pid, next.outcome.worker_query),
        (spilled.outcome.worker_pid, spilled.outcome.worker_query + 1)
    );
}

#[test]
fn users_taking_turns_each_keep_their_own_idle_worker_up_to_the_pool_size() {
    let run = |e: &QueryEngine, user: &str| {
        let project = scope();
        e.run(
            &QueryRequest {
                sql: "SELECT count(*) FROM nanbyo_forms",
                project: &project,
                user,
                session: None,
                snapshot: snapshot(),
                snapshot_sha256: None,
                id: None,
                limits: None,
            },
            &MemoryAudit::default(),
        )
        .unwrap()
        .outcome
    };
    let mut config = EngineConfig::new(kura_e2e::kura_bin());
    config.limits = test_limits();
    config.max_idle_workers = 2;
    let e = QueryEngine::new(config.clone()).unwrap();
    let (a1, b1) = (run(&e, "alice"), run(&e, "bob"));
    let (a2, b2) = (run(&e, "alice"), run(&e, "bob"));
    assert_eq!(
        (a2.worker_pid, a2.worker_query),
        (a1.worker_pid, 2),
        "alice's worker waited for her"
    );
    assert_eq!(
        (b2.worker_pid, b2.worker_query),
        (b1.worker_pid, 2),
        "bob's worker waited for him"
    );
    assert_ne!(a1.worker_pid, b1.worker_pid);

    // With room for one idle worker, taking turns evicts the other user's.
    config.max_idle_workers = 1;
    let e = QueryEngine::new(config).unwrap();
    let (a1, _) = (run(&e, "alice"), run(&e, "bob"));
    let a2 = run(&e, "alice");
    assert_ne!(a2.worker_pid, a1.worker_pid);
}
