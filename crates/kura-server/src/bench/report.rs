//! The breakdown (each step of a server query timed on its own) and the report's Markdown.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use kura_audit::{
    Appended, AuditError, AuditLog, AuditOptions, AuditReader, AuditSink, Event, EventKind,
    SearchFilter,
};
use kura_query::{EngineConfig, ProjectScope, QueryEngine, QueryRequest};
use kura_store::{QueryRecord, QueryStatus, Store};
use serde_json::json;

use super::load::{stats, Baseline, Sample};
use super::{BenchError, Options, Report, Setup, Span, Step, SNAPSHOT, SPANS, SQL};
use crate::results;

/// Splits each timed request at the audit entries the server wrote for it (matched by the
/// query id the client chose) and gives each span's percentiles.
pub(super) fn spans(state: &Path, samples: &[Sample]) -> Result<Vec<Span>, BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Breakdown(format!("audit log: {e}"));
    let kinds = [
        EventKind::QuerySubmitted,
        EventKind::QueryCompleted,
        EventKind::ResultViewed,
    ]
    .map(|k| k.as_str());
    let mut at: HashMap<String, [Option<i64>; 3]> = samples
        .iter()
        .map(|s| (format!("query:{}", s.id), [None; 3]))
        .collect();
    let filter = SearchFilter {
        since_micros: samples.iter().map(|s| s.sent_us).min(),
        ..SearchFilter::default()
    };
    let mut reader = AuditReader::open(state).map_err(|e| err(&e))?;
    reader
        .search(&filter, &mut |hit| {
            if let Some(k) = kinds.iter().position(|k| *k == hit.leaf.kind) {
                for o in &hit.leaf.objects {
                    if let Some(t) = at.get_mut(o) {
                        t[k].get_or_insert(hit.leaf.timestamp_micros);
                    }
                }
            }
            Ok(())
        })
        .map_err(|e| err(&e))?;
    let mut cols: [Vec<Duration>; 4] = Default::default();
    for s in samples {
        let key = format!("query:{}", s.id);
        let Some([Some(a), Some(b), Some(c)]) = at.get(&key).copied() else {
            return Err(err(&format!("no complete trail for {key}")));
        };
        let points = [s.sent_us, a, b, c, s.done_us];
        for (col, w) in cols.iter_mut().zip(points.windows(2)) {
            col.push(Duration::from_micros(
                w[1].saturating_sub(w[0]).max(0) as u64
            ));
        }
    }
    Ok(SPANS
        .iter()
        .zip(cols)
        .map(|((name, _), v)| {
            let s = stats(v, Duration::ZERO, None);
            Span {
                name,
                p50_ms: s.p50_ms,
                p99_ms: s.p99_ms,
            }
        })
        .collect())
}

/// Audit sink that accepts everything, to time the engine without the log.
pub(super) struct NullAudit;

impl AuditSink for NullAudit {
    fn append(&self, _event: Event) -> Result<Appended, AuditError> {
        Ok(Appended {
            index: 0,
            leaf_hash: [0; 32],
        })
    }
}

/// Times, one caller at a time, what one server query consists of: DuckDB alone, the
/// sandboxed engine alone (same grant, limits and worker reuse as the server, no audit), and
/// the durable writes (audit append, control-plane commits, the result file), each in a
/// scratch directory on the same file system.
pub(super) fn breakdown(
    opts: &Options,
    setup: &Setup,
    engine: &EngineConfig,
    baseline: &Baseline,
) -> Result<Vec<Step>, BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Breakdown(e.to_string());
    let n = opts.requests_single.max(1);
    let warm = opts.warmup;
    let scratch = opts.state_dir.join("bench-scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("results")).map_err(|e| err(&e))?;
    let expect = baseline.count()?;
    let mut steps = Vec::new();
    let mut step = |name, per_query, f: &mut dyn FnMut(usize) -> Result<(), BenchError>| {
        steps.push(time_step(name, per_query, warm, n, f)?);
        Ok::<_, BenchError>(())
    };
    step("DuckDB directly", 1, &mut |_| {
        Baseline::once(&baseline.conn, expect)
    })?;

    let project = setup
        .projects
        .first()
        .ok_or_else(|| BenchError::Breakdown("no project".into()))?;
    let qe = QueryEngine::new(engine.clone()).map_err(|e| err(&e))?;
    let scope = ProjectScope {
        name: project.id.clone(),
        snapshot: Some(SNAPSHOT.into()),
        tables: project.tables.clone(),
        expires: Some(project.expires),
    };
    let mut last = None;
    step(
        "sandboxed engine alone (worker reuse, no audit)",
        1,
        &mut |_| {
            let request = QueryRequest {
                sql: SQL,
                project: &scope,
                user: &setup.accounts[0],
                session: None,
                snapshot: &setup.snapshot,
                snapshot_sha256: None,
                id: None,
                limits: Some(engine.limits),
            };
            last = Some(qe.run(&request, &NullAudit).map_err(|e| err(&e))?);
            Ok(())
        },
    )?;
    drop(qe);

    let log =
        AuditLog::open(&scratch.join("audit"), AuditOptions::default()).map_err(|e| err(&e))?;
    step(
        "audit append, durable (query.submitted / completed, result.viewed)",
        3,
        &mut |i| {
            let event = Event::new(EventKind::QueryCompleted, setup.accounts[0].as_str())
                .project(project.id.as_str())
                .object(format!("query:{i}"))
                .payload(
                    json!({"query_id": i, "status": "ok", "rows": 1, "bytes": 600,
                    "sha256": "0".repeat(64), "duration_ms": 1}),
                );
            log.append(event).map(|_| ()).map_err(|e| err(&e))
        },
    )?;
    log.close().map_err(|e| err(&e))?;

    let store = Store::open(&scratch).map_err(|e| err(&e))?;
    step(
        "control-plane store: insert + finish the query record (2 commits)",
        1,
        &mut |i| {
            let id = format!("q{i}");
            let record = QueryRecord {
                id: id.clone(),
                project: project.id.clone(),
                user: setup.accounts[0].clone(),
                sql: SQL.into(),
                status: QueryStatus::Running,
                row_count: None,
                duration_ms: None,
                result_sha256: None,
                snapshot_sha256: "0".repeat(64),
                error: None,
                started_at: Utc::now(),
            };
            store.insert_query(&record).map_err(|e| err(&e))?;
            store
                .finish_query(&id, QueryStatus::Completed, Some(1), 1, Some("0"), None)
                .map_err(|e| err(&e))
        },
    )?;
    drop(store);

    let result = last.ok_or_else(|| BenchError::Breakdown("no engine result".into()))?;
    let schema = result.outcome.schema.clone();
    step("result file: write, fsync, rename, hash", 1, &mut |i| {
        let path = results::result_path(&scratch, &format!("r{i}"));
        results::write(&path, &schema, &result.batches)
            .map(|_| ())
            .map_err(|e| err(&e))
    })?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(steps)
}

/// Warm-up calls, then `n` timed calls of `f` (given a running index).
fn time_step(
    name: &'static str,
    per_query: u32,
    warm: usize,
    n: usize,
    f: &mut dyn FnMut(usize) -> Result<(), BenchError>,
) -> Result<Step, BenchError> {
    for i in 0..warm {
        f(i)?;
    }
    let mut times = Vec::with_capacity(n);
    for i in warm..warm + n {
        let t = Instant::now();
        f(i)?;
        times.push(t.elapsed());
    }
    let s = stats(times, Duration::ZERO, None);
    Ok(Step {
        name,
        per_query,
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
    })
}

/// The Markdown tables for docs/benchmarks.md.
pub fn markdown(r: &Report) -> String {
    let cpu = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
    let forms = r.snapshot_rows.get("nanbyo_forms").copied().unwrap_or(0);
    let mut s = format!(
        "`{}` (answer {}) on a snapshot with {forms} nanbyo_forms rows, {}.\n\n\
         | clients | requests | server p50 (ms) | server p99 (ms) | server mean (ms) | server req/s \
         | DuckDB p50 (ms) | DuckDB p99 (ms) | DuckDB mean (ms) | DuckDB req/s | added p50 (ms) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        r.sql,
        r.count,
        r.accounts,
    );
    for row in &r.rows {
        let (a, b) = (&row.server, &row.duckdb);
        s.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} |\n",
            row.clients,
            a.requests,
            a.p50_ms,
            a.p99_ms,
            a.mean_ms,
            a.per_second,
            b.p50_ms,
            b.p99_ms,
            b.mean_ms,
            b.per_second,
            row.added_p50_ms
        ));
    }
    s.push_str(
        "\n| clients | CPU ms/request, server + clients (this process) | CPU ms/request, sandbox \
         workers | CPU ms/request, DuckDB directly |\n|---:|---:|---:|---:|\n",
    );
    for row in &r.rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            row.clients,
            cpu(row.server.cpu_ms_process),
            cpu(row.server.cpu_ms_workers),
            cpu(row.duckdb.cpu_ms_process)
        ));
    }
    if let [one, many, ..] = r.rows.as_slice() {
        s.push_str(&format!(
            "\n| span of a request (server) | holds | p50, 1 client (ms) | p99, 1 client (ms) \
             | p50, {n} clients (ms) | p99, {n} clients (ms) |\n|---|---|---:|---:|---:|---:|\n",
            n = many.clients
        ));
        for (((name, holds), a), b) in SPANS.iter().zip(&one.spans).zip(&many.spans) {
            s.push_str(&format!(
                "| {name} | {holds} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                a.p50_ms, a.p99_ms, b.p50_ms, b.p99_ms
            ));
        }
    }
    s.push_str(
        "\n| step, timed alone (1 caller, sequential) | per query | p50 (ms) | p99 (ms) |\n\
         |---|---:|---:|---:|\n",
    );
    for st in &r.breakdown {
        s.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} |\n",
            st.name, st.per_query, st.p50_ms, st.p99_ms
        ));
    }
    if let Some(one) = r.rows.first() {
        s.push_str(&format!(
            "\nGoal: added p50 with 1 client under {:.0} ms: {} ({:.2} ms).\n",
            r.goal_added_p50_ms,
            if r.goal_met { "met" } else { "not met" },
            one.added_p50_ms
        ));
    }
    s
}
