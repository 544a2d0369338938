//! The engine the server and `kura query` call: audits the query, hands it to one confined
//! worker process (a fresh one, or the idle one kept for the same snapshot, project, user, grant
//! and limits: a spare that has not served yet, or the last query's worker, reused),
//! enforces the wall-clock timeout, result caps and cancellation from outside the worker (a
//! runaway query is killed, never waited on), and checks the streamed result.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;
use kura_audit::{AuditSink, Event, EventKind};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::QueryError;
use crate::process::{self, canonical_snapshot, Worker};
use crate::protocol::{
    Layers, Limits, WorkerDone, WorkerFailure, WorkerQuery, WorkerSetup, TAG_BATCH, TAG_DONE,
    TAG_FAILURE, TAG_PROBES, TAG_SCHEMA,
};
use crate::sandbox::{ConfinementReport, Mechanism};
use crate::scope::ProjectScope;
use crate::worker::Probe;

/// How the engine starts workers and which limits apply by default.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The `kura` binary (default: the running executable).
    pub worker_exe: PathBuf,
    /// Arguments selecting the worker subcommand.
    pub worker_args: Vec<OsString>,
    /// Where each query's private temp directory is created (and removed after).
    pub temp_root: PathBuf,
    /// Defence layers; all on except in tests and benchmarks.
    pub layers: Layers,
    pub limits: Limits,
    /// Confinement mechanisms the operator explicitly allows to be missing on this kernel.
    pub allow_missing: Vec<Mechanism>,
    /// After each query, start the next worker for the same snapshot, grant and limits and let
    /// it confine itself, open DuckDB and build the views while nobody waits; the next query
    /// with that key only pays for itself. Off for one-shot callers such as the CLI.
    pub spare_worker: bool,
    /// How many queries one worker process may serve, in sequence and all for the same key
    /// (snapshot, project, user, grant, limits). A worker is kept only after a query that
    /// succeeded, left its temp directory empty and used at most one query's CPU budget;
    /// 1 = a fresh process per query. Reuse needs the gate and settings layers on (they
    /// are what keeps a query from leaving state behind).
    pub max_queries_per_worker: u64,
    /// An idle worker older than this is not handed a query (it is killed and replaced).
    pub worker_idle: Duration,
    /// How many idle workers the engine keeps, at most one per key; beyond it the longest idle
    /// is killed. A server with many concurrent users needs one per active (user, project,
    /// grant); 1 suits one-shot callers.
    pub max_idle_workers: usize,
}

impl EngineConfig {
    pub fn new(worker_exe: PathBuf) -> EngineConfig {
        EngineConfig {
            worker_exe,
            worker_args: vec!["sandbox-worker".into()],
            temp_root: std::env::temp_dir(),
            layers: Layers::ALL,
            limits: Limits::default(),
            allow_missing: Vec::new(),
            spare_worker: true,
            max_queries_per_worker: 64,
            worker_idle: Duration::from_secs(300),
            max_idle_workers: 1,
        }
    }

    /// Workers are the running binary re-executed with `sandbox-worker`.
    pub fn from_current_exe() -> Result<EngineConfig, QueryError> {
        let exe = std::env::current_exe().map_err(|source| QueryError::Spawn {
            exe: PathBuf::from("<current executable>"),
            source,
        })?;
        Ok(EngineConfig::new(exe))
    }
}

/// One query to run.
#[derive(Debug, Clone, Copy)]
pub struct QueryRequest<'a> {
    pub sql: &'a str,
    pub project: &'a ProjectScope,
    pub user: &'a str,
    /// The sign-in session, recorded in the audit events.
    pub session: Option<&'a str>,
    pub snapshot: &'a Path,
    /// The snapshot's verified SHA-256, recorded in the audit entries when the caller has it.
    pub snapshot_sha256: Option<&'a str>,
    /// The query id to use (the server lets a client choose one so it can cancel the query
    /// while it runs); a random one when None.
    pub id: Option<&'a str>,
    /// Overrides the engine's default limits for this query.
    pub limits: Option<Limits>,
}

/// Cancels a running query from another thread: its worker is killed within ~20 ms.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a successful query produced, besides its batches.
#[derive(Debug, Clone)]
pub struct QueryOutcome {
    pub query_id: String,
    pub schema: SchemaRef,
    pub rows: u64,
    /// Size of the Arrow IPC result as streamed.
    pub bytes: u64,
    /// SHA-256 (hex) over the Arrow IPC frames (schema, then each batch) as streamed.
    pub sha256: String,
    pub duration: Duration,
    pub confinement: ConfinementReport,
    /// The worker process that ran the query, and how many queries it had received by then
    /// (1 = a fresh worker).
    pub worker_pid: u32,
    pub worker_query: u64,
}

/// A successful query with its batches collected.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub outcome: QueryOutcome,
    pub batches: Vec<RecordBatch>,
}

pub struct QueryEngine {
    config: EngineConfig,
    /// Idle workers, at most one per key and `max_idle_workers` in all.
    spare: Mutex<Vec<Spare>>,
}

/// What a worker was set up for; a spare serves only a query with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SpareKey {
    snapshot: PathBuf,
    project: String,
    user: String,
    tables: BTreeMap<String, Vec<String>>,
    limits: Limits,
}

/// Why a worker is started: for a query that waits on it, as a spare set up while nobody
/// waits, or to run the escape probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Now,
    Spare,
    SelfTest,
}

struct Spare {
    key: SpareKey,
    worker: Worker,
    idle_since: Instant,
}

impl QueryEngine {
    pub fn new(config: EngineConfig) -> Result<QueryEngine, QueryError> {
        if !config.worker_exe.is_file() {
            return Err(QueryError::Spawn {
                exe: config.worker_exe.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        crate::policy::FunctionPolicy::builtin().map_err(|e| QueryError::Setup(e.to_string()))?;
        Ok(QueryEngine {
            config,
            spare: Mutex::new(Vec::new()),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Runs a query and collects its batches (bounded by the row and byte caps).
    pub fn run(
        &self,
        req: &QueryRequest<'_>,
        audit: &dyn AuditSink,
    ) -> Result<QueryResult, QueryError> {
        let mut batches = Vec::new();
        let outcome = self.run_streaming(
            req,
            audit,
            &CancelHandle::default(),
            &mut |b: &RecordBatch| batches.push(b.clone()),
        )?;
        Ok(QueryResult { outcome, batches })
    }

    /// Runs a query, handing each batch to `on_batch` as it arrives. `query.submitted` is
    /// appended before the worker starts (if that fails nothing runs); `query.completed` or
    /// `query.refused` after (if that fails the outcome is an error: no unaudited result).
    pub fn run_streaming(
        &self,
        req: &QueryRequest<'_>,
        audit: &dyn AuditSink,
        cancel: &CancelHandle,
        on_batch: &mut dyn FnMut(&RecordBatch),
    ) -> Result<QueryOutcome, QueryError> {
        let query_id = match req.id {
            Some(id) => id.to_string(),
            None => random_id()?,
        };
        let event = |kind| {
            let mut e = Event::new(kind, req.user)
                .project(&req.project.name)
                .object(format!("query:{query_id}"));
            if let Some(s) = req.session {
                e = e.session(s);
            }
            e
        };
        audit.append(event(EventKind::QuerySubmitted).payload(json!({
            "query_id": query_id,
            "sql": req.sql,
            "snapshot": req.snapshot.display().to_string(),
            "snapshot_sha256": req.snapshot_sha256,
        })))?;
        let started = Instant::now();
        let result = self.execute(req, &query_id, cancel, on_batch, started);
        let ms = started.elapsed().as_millis() as u64;
        let closing = match &result {
            Ok(o) => event(EventKind::QueryCompleted).payload(json!({
                "query_id": query_id, "status": "ok", "rows": o.rows, "bytes": o.bytes,
                "sha256": o.sha256, "duration_ms": ms,
            })),
            Err(e) => match e.refusal_rule() {
                Some(rule) => event(EventKind::QueryRefused).payload(json!({
                    "query_id": query_id, "rule": rule, "reason": e.to_string(),
                })),
                None => event(EventKind::QueryCompleted).payload(json!({
                    "query_id": query_id, "status": e.status(), "error": e.to_string(),
                    "duration_ms": ms,
                })),
            },
        };
        audit.append(closing)?;
        result
    }

    fn execute(
        &self,
        req: &QueryRequest<'_>,
        query_id: &str,
        cancel: &CancelHandle,
        on_batch: &mut dyn FnMut(&RecordBatch),
        started: Instant,
    ) -> Result<QueryOutcome, QueryError> {
        req.project.check(req.snapshot, chrono::Utc::now())?;
        let limits = req.limits.unwrap_or(self.config.limits);
        let key = SpareKey {
            snapshot: canonical_snapshot(req.snapshot)?,
            project: req.project.name.clone(),
            user: req.user.to_string(),
            tables: req.project.tables.clone(),
            limits,
        };
        let mut worker = match self.take_spare(&key) {
            Some(w) => w,
            None => self.spawn(&key, Start::Now)?,
        };
        worker.send(&WorkerQuery {
            sql: req.sql.to_string(),
        })?;
        let result = self.collect(&mut worker, &limits, query_id, cancel, on_batch, started);
        match &result {
            Ok((_, done)) if self.may_serve_again(&mut worker, done, &limits) => {
                self.keep_idle(Spare {
                    key,
                    worker,
                    idle_since: Instant::now(),
                });
            }
            _ => {
                worker.finish();
                // The next worker for this key would compete with the query on two cores, so
                // it is started after the answer.
                if self.config.spare_worker && reusable(&result) {
                    self.start_spare(key);
                }
            }
        }
        result.map(|(outcome, _)| outcome)
    }

    /// Whether the worker that just answered may take the next query for the same key: it
    /// is under its query count, it still has a full query's CPU budget below its RLIMIT_CPU,
    /// DuckDB removed every spill file, nothing more came down its pipe, and the layers that
    /// forbid leaving state behind are on.
    fn may_serve_again(&self, worker: &mut Worker, done: &WorkerDone, limits: &Limits) -> bool {
        self.config.spare_worker
            && self.config.layers.gate
            && self.config.layers.settings
            && done.served < self.config.max_queries_per_worker
            && done.cpu_ms <= limits.cpu_budget_seconds().saturating_mul(1000)
            && worker.temp_dir_is_empty()
            && worker.nothing_pending()
            && worker.is_running()
    }

    fn collect(
        &self,
        worker: &mut Worker,
        limits: &Limits,
        query_id: &str,
        cancel: &CancelHandle,
        on_batch: &mut dyn FnMut(&RecordBatch),
        started: Instant,
    ) -> Result<(QueryOutcome, WorkerDone), QueryError> {
        let timeout = Duration::from_millis(limits.timeout_ms);
        let deadline = started + timeout;
        let mut hasher = Sha256::new();
        let (mut rows, mut bytes) = (0u64, 0u64);
        let mut schema: Option<SchemaRef> = None;
        loop {
            let (tag, payload) = worker.next(deadline, cancel, timeout)?;
            match tag {
                TAG_SCHEMA => {
                    hasher.update(&payload);
                    schema = decode(&payload)?.0;
                }
                TAG_BATCH => {
                    hasher.update(&payload);
                    bytes += payload.len() as u64;
                    if bytes > limits.max_bytes {
                        worker.kill();
                        return Err(QueryError::ByteCap {
                            cap: limits.max_bytes,
                        });
                    }
                    for batch in decode(&payload)?.1 {
                        rows += batch.num_rows() as u64;
                        if rows > limits.max_rows {
                            worker.kill();
                            return Err(QueryError::RowCap {
                                cap: limits.max_rows,
                            });
                        }
                        on_batch(&batch);
                    }
                }
                TAG_DONE => {
                    let done: WorkerDone = parse(&payload)?;
                    let schema = schema
                        .ok_or_else(|| QueryError::Protocol("no schema before done".into()))?;
                    if done.rows != rows {
                        return Err(QueryError::Protocol(format!(
                            "worker counted {} rows, engine received {rows}",
                            done.rows
                        )));
                    }
                    tracing::debug!(query_id, rows, bytes, "query completed");
                    let outcome = QueryOutcome {
                        query_id: query_id.to_string(),
                        schema,
                        rows,
                        bytes,
                        sha256: hex(&hasher.finalize()),
                        duration: started.elapsed(),
                        confinement: done.confinement.clone(),
                        worker_pid: worker.pid(),
                        worker_query: done.served,
                    };
                    return Ok((outcome, done));
                }
                TAG_FAILURE => {
                    let failure: WorkerFailure = parse(&payload)?;
                    return Err(failure_error(failure));
                }
                other => {
                    worker.kill();
                    return Err(QueryError::Protocol(format!("unknown frame tag {other}")));
                }
            }
        }
    }

    /// Starts a worker confined for `snapshot` and runs its escape probes instead of a query.
    pub fn self_test(
        &self,
        snapshot: &Path,
    ) -> Result<(ConfinementReport, Vec<Probe>), QueryError> {
        let key = SpareKey {
            snapshot: canonical_snapshot(snapshot)?,
            project: String::new(),
            user: String::new(),
            tables: BTreeMap::new(),
            limits: self.config.limits,
        };
        let mut worker = self.spawn(&key, Start::SelfTest)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let cancel = CancelHandle::default();
        let mut probes = Vec::new();
        loop {
            let (tag, payload) = worker.next(deadline, &cancel, Duration::from_secs(30))?;
            match tag {
                TAG_PROBES => probes = parse(&payload)?,
                TAG_DONE => {
                    worker.finish();
                    return Ok((parse::<WorkerDone>(&payload)?.confinement, probes));
                }
                TAG_FAILURE => {
                    worker.finish();
                    return Err(failure_error(parse(&payload)?));
                }
                other => return Err(QueryError::Protocol(format!("unexpected tag {other}"))),
            }
        }
    }

    fn spawn(&self, key: &SpareKey, start: Start) -> Result<Worker, QueryError> {
        let setup = WorkerSetup {
            snapshot: key.snapshot.clone(),
            temp_dir: PathBuf::new(),
            tables: key.tables.clone(),
            layers: self.config.layers,
            limits: key.limits,
            allow_missing: self.config.allow_missing.clone(),
            warm_up: start == Start::Spare,
        };
        let mut args = self.config.worker_args.clone();
        if start == Start::SelfTest {
            args.push("--self-test".into());
        }
        process::spawn(
            &self.config.worker_exe,
            &args,
            &self.config.temp_root,
            setup,
        )
    }

    fn spare_slot(&self) -> MutexGuard<'_, Vec<Spare>> {
        // A panic elsewhere while holding the pool leaves at worst a stale spare, which
        // `take_spare` checks anyway.
        self.spare.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The idle worker set up for `key`, if it still runs and has not idled too long. Workers
    /// idle for too long are killed (dropped) on the way.
    fn take_spare(&self, key: &SpareKey) -> Option<Worker> {
        let spare = {
            let mut pool = self.spare_slot();
            let idle = self.config.worker_idle;
            pool.retain(|s| s.idle_since.elapsed() <= idle);
            let i = pool.iter().position(|s| s.key == *key)?;
            pool.swap_remove(i)
        };
        let mut worker = spare.worker;
        (worker.is_running() && worker.nothing_pending()).then_some(worker)
    }

    /// Keeps a worker idle for its key, replacing an older one of the same key and killing the
    /// longest idle beyond `max_idle_workers`.
    fn keep_idle(&self, spare: Spare) {
        let mut pool = self.spare_slot();
        pool.retain(|s| s.key != spare.key);
        pool.push(spare);
        while pool.len() > self.config.max_idle_workers.max(1) {
            let oldest = pool
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.idle_since)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => drop(pool.remove(i)),
                None => break,
            }
        }
    }

    fn start_spare(&self, key: SpareKey) {
        match self.spawn(&key, Start::Spare) {
            Ok(worker) => self.keep_idle(Spare {
                key,
                worker,
                idle_since: Instant::now(),
            }),
            Err(e) => tracing::warn!(error = %e, "could not start a spare query worker"),
        }
    }

    /// Waits until the most recently kept idle worker has finished its setup, so that whatever
    /// the caller measures next does not share the CPU with it (`kura bench query`). Returns
    /// whether it is ready; one that failed is discarded.
    pub fn wait_for_spare(&self, within: Duration) -> bool {
        let mut pool = self.spare_slot();
        let newest = pool
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.idle_since)
            .map(|(i, _)| i);
        let Some(i) = newest else {
            return false;
        };
        let ready = pool[i].worker.wait_ready(within);
        if !ready {
            drop(pool.remove(i));
        }
        ready
    }
}

/// Whether the next query with the same key may expect a working new spare: not after failures of
/// the worker or its setup, which would only repeat.
fn reusable<T>(result: &Result<T, QueryError>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => matches!(
            e,
            QueryError::Syntax { .. }
                | QueryError::Refused { .. }
                | QueryError::Execution { .. }
                | QueryError::Timeout(_)
                | QueryError::Cancelled
                | QueryError::RowCap { .. }
                | QueryError::ByteCap { .. }
        ),
    }
}

fn failure_error(f: WorkerFailure) -> QueryError {
    use crate::gate::GateError;
    match f {
        WorkerFailure::Gate {
            error: GateError::Syntax { message, position },
        } => QueryError::Syntax { message, position },
        WorkerFailure::Gate {
            error: GateError::Refused { rule, detail },
        } => QueryError::Refused { rule, detail },
        WorkerFailure::Gate {
            error: GateError::Internal(m),
        } => QueryError::Setup(m),
        WorkerFailure::Execution { message } => QueryError::Execution { message },
        WorkerFailure::RowCap { cap } => QueryError::RowCap { cap },
        WorkerFailure::ByteCap { cap } => QueryError::ByteCap { cap },
        WorkerFailure::Setup { message } => QueryError::Setup(message),
        WorkerFailure::Sandbox { message } => QueryError::Sandbox(message),
    }
}

type Decoded = (Option<SchemaRef>, Vec<RecordBatch>);

fn decode(payload: &[u8]) -> Result<Decoded, QueryError> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(payload), None)
        .map_err(|e| QueryError::Protocol(format!("bad Arrow IPC from worker: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| QueryError::Protocol(format!("bad Arrow IPC from worker: {e}")))?;
    Ok((Some(schema), batches))
}

fn parse<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, QueryError> {
    serde_json::from_slice(payload).map_err(|e| QueryError::Protocol(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_id() -> Result<String, QueryError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| QueryError::Setup(format!("no randomness: {e}")))?;
    Ok(hex(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn engine_with_its_spare_slot_is_shareable_between_server_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::QueryEngine>();
    }
}
