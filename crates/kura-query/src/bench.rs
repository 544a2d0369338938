//! `kura bench query`: realistic analytical queries through the full sandbox (worker process,
//! confinement, gate, locked settings, views) against a plain DuckDB connection to the same
//! snapshot, in the same run. Prints a Markdown table.
//!
//! The sandbox side runs as the server does: one key (user, grant, limits) throughout, so a
//! worker serves queries in sequence (`EngineConfig::max_queries_per_worker`), and when one is
//! not kept, a spare is started after the query. Before every timed run the bench waits until
//! any spare is ready, so its setup never shares the CPU with what is being measured. One more
//! row times the smallest query with neither (a cold worker per query).

use std::path::Path;
use std::time::{Duration, Instant};

use kura_audit::{Appended, AuditError, AuditSink, Event};

use crate::engine::{EngineConfig, QueryEngine, QueryRequest};
use crate::error::QueryError;
use crate::protocol::Limits;
use crate::scope::ProjectScope;

/// The benchmark queries (name, SQL), smallest first, over the tables and columns of
/// docs/snapshot.md (which [`crate::fixture`] reproduces).
pub const QUERIES: &[(&str, &str)] = &[
    ("count forms", "SELECT count(*) FROM nanbyo_forms"),
    (
        "patients by disease x prefecture",
        "SELECT d.name_ja AS disease, p.name_ja AS prefecture, \
           count(DISTINCT f.research_id) AS patients \
         FROM nanbyo_forms f JOIN designated_diseases d ON d.no = f.disease_no \
         JOIN prefectures p ON p.code = f.pref_code \
         WHERE f.form_year = (SELECT max(form_year) FROM nanbyo_forms) \
         GROUP BY ALL ORDER BY patients DESC LIMIT 100",
    ),
    (
        "severity trajectories (window)",
        "WITH s AS (SELECT research_id, disease_no, form_year, \
           CASE severity WHEN 'mild' THEN 1 WHEN 'moderate' THEN 2 WHEN 'severe' THEN 3 END AS sev \
           FROM nanbyo_forms), \
         t AS (SELECT disease_no, \
           sev - lag(sev) OVER (PARTITION BY research_id ORDER BY form_year) AS delta FROM s) \
         SELECT disease_no, count(*) FILTER (WHERE delta > 0) AS worsened, \
           count(*) FILTER (WHERE delta < 0) AS improved, avg(delta) AS mean_change \
         FROM t WHERE delta IS NOT NULL GROUP BY disease_no ORDER BY disease_no",
    ),
    (
        "難病 x 小慢 join by research_id",
        "SELECT s.disease_group, n.severity, count(*) AS forms \
         FROM shoman_forms s JOIN nanbyo_forms n USING (research_id) \
         GROUP BY ALL ORDER BY ALL",
    ),
    (
        "treatments by severity",
        "SELECT t.name, count(DISTINCT f.research_id) AS patients, \
           avg(CASE f.severity WHEN 'mild' THEN 1 WHEN 'moderate' THEN 2 WHEN 'severe' THEN 3 END) \
             AS mean_severity \
         FROM nanbyo_treatments t JOIN nanbyo_forms f USING (form_key) \
         GROUP BY t.name ORDER BY patients DESC",
    ),
];

/// Audit sink that accepts everything: the benchmark measures the engine, not the log
/// (the audit log has its own benchmark).
struct NullAudit;

impl AuditSink for NullAudit {
    fn append(&self, _event: Event) -> Result<Appended, AuditError> {
        Ok(Appended {
            index: 0,
            leaf_hash: [0; 32],
        })
    }
}

/// Per-query medians.
pub struct BenchRow {
    pub name: &'static str,
    pub rows: u64,
    pub plain: Duration,
    pub sandbox: Duration,
}

/// How long to wait for a spare worker's setup before timing anything.
const SPARE_SETUP: Duration = Duration::from_secs(30);

/// Runs every query `repeat` times each way and returns median times: the sandbox with worker
/// reuse and a spare (as the server runs), then the first query once more with a cold worker
/// per run.
/// `threads` and the memory limit of `config.limits` apply to both sides.
pub fn run(
    config: &EngineConfig,
    snapshot: &Path,
    repeat: usize,
    threads: u32,
) -> Result<Vec<BenchRow>, QueryError> {
    let scope = ProjectScope {
        name: "bench".into(),
        snapshot: None,
        tables: [
            "nanbyo_forms",
            "nanbyo_treatments",
            "shoman_forms",
            "designated_diseases",
            "prefectures",
        ]
        .iter()
        .map(|t| (t.to_string(), vec!["*".to_string()]))
        .collect(),
        expires: None,
    };
    let plain_err = |e: duckdb::Error| QueryError::Execution {
        message: format!("plain DuckDB: {e}"),
    };
    let limits = Limits {
        threads,
        ..config.limits
    };
    let plain_config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .and_then(|c| c.threads(i64::from(threads)))
        .and_then(|c| c.max_memory(&format!("{}MiB", limits.memory_limit_mib)))
        .map_err(plain_err)?;
    let plain = duckdb::Connection::open_with_flags(snapshot, plain_config).map_err(plain_err)?;
    let warm = QueryEngine::new(EngineConfig {
        spare_worker: true,
        ..config.clone()
    })?;
    let cold = QueryEngine::new(EngineConfig {
        spare_worker: false,
        ..config.clone()
    })?;
    let sandboxed = |engine: &QueryEngine, sql: &str| {
        engine.wait_for_spare(SPARE_SETUP);
        let t = Instant::now();
        let result = engine.run(
            &QueryRequest {
                sql,
                project: &scope,
                user: "bench",
                session: None,
                snapshot,
                snapshot_sha256: None,
                id: None,
                limits: Some(limits),
            },
            &NullAudit,
        )?;
        Ok::<_, QueryError>((t.elapsed(), result.outcome.rows))
    };
    let mut runs: Vec<(&'static str, &str, &QueryEngine)> = QUERIES
        .iter()
        .map(|&(name, sql)| (name, sql, &warm))
        .collect();
    if let Some(&(_, sql)) = QUERIES.first() {
        runs.push(("count forms, cold worker (no reuse, no spare)", sql, &cold));
    }
    let mut out = Vec::new();
    for (name, sql, engine) in runs {
        let mut plain_times = Vec::new();
        let mut sandbox_times = Vec::new();
        let mut rows = 0;
        // Interleave so neither side benefits from running second.
        for _ in 0..repeat.max(1) {
            warm.wait_for_spare(SPARE_SETUP);
            let t = Instant::now();
            let batches = plain_query(&plain, sql).map_err(plain_err)?;
            plain_times.push(t.elapsed());
            let plain_rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();

            let (took, got) = sandboxed(engine, sql)?;
            sandbox_times.push(took);
            rows = got;
            if rows != plain_rows {
                return Err(QueryError::Protocol(format!(
                    "{name}: sandbox returned {rows} rows, plain DuckDB {plain_rows}"
                )));
            }
        }
        out.push(BenchRow {
            name,
            rows,
            plain: median(&mut plain_times),
            sandbox: median(&mut sandbox_times),
        });
    }
    Ok(out)
}

fn plain_query(
    conn: &duckdb::Connection,
    sql: &str,
) -> Result<Vec<duckdb::arrow::record_batch::RecordBatch>, duckdb::Error> {
    let mut stmt = conn.prepare(sql)?;
    let batches = stmt.query_arrow([])?.collect();
    Ok(batches)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The Markdown table for docs/benchmarks.md: the query set, its total, then the extra rows.
pub fn markdown(rows: &[BenchRow]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let line = |name: &str, rows: String, p: f64, q: f64| {
        format!(
            "| {name} | {rows} | {p:.1} | {q:.1} | {:.1} | {:.2}x |\n",
            q - p,
            q / p.max(0.001)
        )
    };
    let mut s = String::from(
        "| query | rows | plain DuckDB (ms) | sandbox (ms) | added (ms) | ratio |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    let (set, extra) = rows.split_at(rows.len().min(QUERIES.len()));
    for r in set {
        s.push_str(&line(
            r.name,
            r.rows.to_string(),
            ms(r.plain),
            ms(r.sandbox),
        ));
    }
    let tp: f64 = set.iter().map(|r| ms(r.plain)).sum();
    let ts: f64 = set.iter().map(|r| ms(r.sandbox)).sum();
    s.push_str(&line("**total**", String::new(), tp, ts));
    for r in extra {
        s.push_str(&line(
            r.name,
            r.rows.to_string(),
            ms(r.plain),
            ms(r.sandbox),
        ));
    }
    s
}
