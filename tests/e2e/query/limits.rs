//! Limits and failure handling: timeout, cancellation, caps, crashed workers, and the audit
//! trail around every query.

use std::time::{Duration, Instant};

use kura_audit::EventKind;
use kura_query::{CancelHandle, EngineConfig, Layers, QueryEngine, QueryError, QueryRequest};

use crate::{engine, run_with, scope, snapshot, test_limits, MemoryAudit};

#[test]
fn timeout_kills_a_runaway_query_promptly() {
    let e = engine(Layers::ALL);
    let mut limits = test_limits();
    limits.timeout_ms = 1_000;
    let t = Instant::now();
    let err = run_with(
        &e,
        "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b",
        Some(limits),
    )
    .unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn cancel_from_another_thread_stops_the_query() {
    let e = engine(Layers::ALL);
    let cancel = CancelHandle::default();
    let c2 = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel();
    });
    let scope = scope();
    let t = Instant::now();
    let err = e
        .run_streaming(
            &QueryRequest {
                sql: "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b",
                project: &scope,
                user: "alice",
                session: None,
                snapshot: snapshot(),
                snapshot_sha256: None,
                id: None,
                limits: None,
            },
            &MemoryAudit::default(),
            &cancel,
            &mut |_| {},
        )
        .unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, QueryError::Cancelled), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn row_and_byte_caps_stop_large_results() {
    let e = engine(Layers::ALL);
    let mut limits = test_limits();
    limits.max_rows = 1_000;
    let err = run_with(&e, "SELECT * FROM range(5000)", Some(limits)).unwrap_err();
    assert!(matches!(err, QueryError::RowCap { cap: 1_000 }), "{err}");
    let mut limits = test_limits();
    limits.max_bytes = 64 * 1024;
    let err = run_with(
        &e,
        "SELECT repeat('x', 1000) FROM range(1000)",
        Some(limits),
    )
    .unwrap_err();
    assert!(matches!(err, QueryError::ByteCap { .. }), "{err}");
    // Under the caps the same shape of query is fine.
    assert_eq!(
        run_with(&e, "SELECT * FROM range(500)", None)
            .unwrap()
            .outcome
            .rows,
        500
    );
}

fn engine_with_worker(exe: &str, args: &[&str]) -> QueryEngine {
    let mut config = EngineConfig::new(exe.into());
    config.worker_args = args.iter().map(|a| std::ffi::OsString::from(*a)).collect();
    config.limits = test_limits();
    config.limits.timeout_ms = 2_000;
    QueryEngine::new(config).unwrap()
}

#[test]
fn a_crashing_worker_is_an_error_not_a_hang() {
    let t = Instant::now();
    let e = engine_with_worker("/bin/sh", &["-c", "kill -SEGV $$"]);
    match run_with(&e, "SELECT 1", None).unwrap_err() {
        QueryError::WorkerCrashed { status, .. } => {
            assert!(status.contains("signal 11"), "{status}")
        }
        other => panic!("expected a crash, got {other}"),
    }
    let e = engine_with_worker("/bin/false", &[]);
    assert!(matches!(
        run_with(&e, "SELECT 1", None),
        Err(QueryError::WorkerCrashed { .. })
    ));
    // A worker that hangs without output is killed at the deadline.
    let e = engine_with_worker("/bin/sleep", &["600"]);
    assert!(matches!(
        run_with(&e, "SELECT 1", None),
        Err(QueryError::Timeout(_))
    ));
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn query_is_audited_before_it_runs_and_its_outcome_after() {
    let e = engine(Layers::ALL);
    let audit = MemoryAudit::default();
    let scope = scope();
    let req = QueryRequest {
        sql: "SELECT severity, count(*) FROM nanbyo_forms GROUP BY 1 ORDER BY 1",
        project: &scope,
        user: "alice",
        session: Some("s1"),
        snapshot: snapshot(),
        snapshot_sha256: None,
        id: None,
        limits: None,
    };
    let r = e.run(&req, &audit).unwrap();
    let again = e.run(&req, &audit).unwrap();
    assert_eq!(
        r.outcome.sha256, again.outcome.sha256,
        "same query, same result hash"
    );
    e.run(
        &QueryRequest {
            sql: "SELECT getenv('HOME')",
            ..req
        },
        &audit,
    )
    .unwrap_err();
    let events = audit.events.lock().unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::QuerySubmitted,
            EventKind::QueryCompleted,
            EventKind::QuerySubmitted,
            EventKind::QueryCompleted,
            EventKind::QuerySubmitted,
            EventKind::QueryRefused,
        ]
    );
    assert_eq!(events[0].payload["sql"], req.sql);
    assert_eq!(events[0].actor, "alice");
    assert_eq!(events[0].project.as_deref(), Some("p-test"));
    assert_eq!(events[1].payload["rows"], r.outcome.rows);
    assert_eq!(events[1].payload["sha256"], r.outcome.sha256.as_str());
    assert_eq!(events[5].payload["rule"], "function-not-allowed");
}

#[test]
fn when_the_audit_log_refuses_the_query_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("worker-ran");
    let script = format!("touch '{}'", marker.display());
    let e = engine_with_worker("/bin/sh", &["-c", &script]);
    let failing = MemoryAudit {
        fail: true,
        ..Default::default()
    };
    let scope = scope();
    let err = e
        .run(
            &QueryRequest {
                sql: "SELECT 1",
                project: &scope,
                user: "alice",
                session: None,
                snapshot: snapshot(),
                snapshot_sha256: None,
                id: None,
                limits: None,
            },
            &failing,
        )
        .unwrap_err();
    assert!(matches!(err, QueryError::Audit(_)), "{err}");
    assert!(
        !marker.exists(),
        "a worker was started although the audit append failed"
    );
}

#[test]
fn expired_or_wrong_snapshot_grants_are_refused() {
    let e = engine(Layers::ALL);
    let mut expired = scope();
    expired.expires = Some("2020-01-01T00:00:00Z".parse().unwrap());
    let audit = MemoryAudit::default();
    let req = QueryRequest {
        sql: "SELECT 1",
        project: &expired,
        user: "alice",
        session: None,
        snapshot: snapshot(),
        snapshot_sha256: None,
        id: None,
        limits: None,
    };
    assert!(matches!(e.run(&req, &audit), Err(QueryError::Scope(_))));
    let mut other = scope();
    other.snapshot = Some("snap-other".into());
    assert!(matches!(
        e.run(
            &QueryRequest {
                project: &other,
                ..req
            },
            &audit
        ),
        Err(QueryError::Scope(_))
    ));
    assert_eq!(
        audit.events.lock().unwrap()[1].kind,
        EventKind::QueryRefused
    );
}

#[test]
fn a_spare_worker_serves_only_the_grant_it_was_set_up_for() {
    // The engine keeps a spare worker set up (views built) for the last query's grant. A query
    // under a narrower grant must not be handed that spare.
    let e = engine(Layers::ALL);
    let mut wide = scope();
    wide.tables
        .insert("nanbyo_forms".into(), vec!["*".to_string()]);
    let narrow = scope();
    let audit = MemoryAudit::default();
    let req = |project, sql| QueryRequest {
        sql,
        project,
        user: "alice",
        session: None,
        snapshot: snapshot(),
        snapshot_sha256: None,
        id: None,
        limits: None,
    };
    let sql = "SELECT count(birth_ym) FROM nanbyo_forms";
    e.run(&req(&wide, sql), &audit).unwrap();
    assert!(
        e.wait_for_spare(Duration::from_secs(10)),
        "a spare was started"
    );
    match e.run(&req(&narrow, sql), &audit).unwrap_err() {
        QueryError::Execution { message } => assert!(message.contains("birth_ym"), "{message}"),
        other => panic!("expected the narrow view to lack birth_ym, got {other}"),
    }
    // And the spare for the narrow grant, once ready, still answers only within it.
    assert!(e.wait_for_spare(Duration::from_secs(10)));
    assert!(e.run(&req(&narrow, sql), &audit).is_err());
    assert!(e
        .run(
            &req(&narrow, "SELECT count(severity) FROM nanbyo_forms"),
            &audit
        )
        .is_ok());
}
