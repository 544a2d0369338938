//! The HTTPS benchmarks: `kura bench server` here, `kura bench explorer` in [`explorer`],
//! `kura bench load` (a soak over several nodes on PostgreSQL) in [`soak`]; the
//! state directory and the in-process server they share are in `setup`, the signed-in clients
//! and the statistics in `load`.
//!
//! `kura bench server`: latency and requests/s of an authenticated small query over HTTPS, with
//! 1 and with N concurrent clients, against the same SQL on DuckDB directly, in the same run
//! (docs/benchmarks.md, "HTTPS server").
//!
//! The real server runs in this process (`Server::start` + `Server::run`, TLS with the
//! certificate it generates, the engine re-executing the running binary as the sandbox worker)
//! on a state directory holding a pseudonymised snapshot and researcher accounts, each the only
//! member of its own project.
//! Each client is a reqwest client with its own cookie jar and keep-alive connection that
//! trusts only the server's certificate; it signs in, then POSTs the query in a closed loop and
//! checks every answer against DuckDB's. A breakdown then times, on their own, the sandbox
//! engine and the durable writes one query makes, so the added latency can be attributed.

pub mod explorer;
mod load;
mod report;
mod setup;
pub mod soak;

use std::collections::BTreeMap;
use std::path::PathBuf;

use kura_query::EngineConfig;
use kura_store::Project;
use serde::Serialize;

use crate::error::ServeError;
use load::Baseline;
pub use report::markdown;
pub use setup::check_state_dir;
use setup::InProcess;

/// The small query, used unchanged on both sides.
pub const SQL: &str = "SELECT count(*) FROM nanbyo_forms WHERE disease_no = 11";
/// The goal: added p50 latency with one client, in ms.
pub const GOAL_ADDED_P50_MS: f64 = 3.0;
const SNAPSHOT: &str = "demo";

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("preparing the state directory: {0}")]
    Setup(String),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("HTTPS client: {0}")]
    Client(String),
    #[error("DuckDB baseline: {0}")]
    Baseline(String),
    #[error("breakdown: {0}")]
    Breakdown(String),
    /// An answer that is not what the request should give (status, shape, a check failed).
    #[error("answer check: {0}")]
    Check(String),
}

/// Where the snapshot `demo` of the state directory comes from.
#[derive(Debug, Clone)]
pub enum SnapshotSource {
    /// `<state>/snapshots/demo.duckdb` exists already.
    Installed,
    /// Copy this snapshot (and its manifest) in.
    File(PathBuf),
    /// Build it from a raw extract with a pseudonymisation policy and a new random key.
    Build { raw: PathBuf, policy: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    pub snapshot: SnapshotSource,
    pub warmup: usize,
    /// Timed requests with one client.
    pub requests_single: usize,
    pub clients: usize,
    /// Timed requests in total with `clients` concurrent clients.
    pub requests_concurrent: usize,
    /// All clients sign in as one account (else one account per client).
    pub one_account: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
    pub per_second: f64,
    /// CPU time per request of this process (server and client, or DuckDB) and of the sandbox
    /// workers (its child processes), from /proc.
    pub cpu_ms_process: Option<f64>,
    pub cpu_ms_workers: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub clients: usize,
    pub server: Stats,
    pub duckdb: Stats,
    pub added_p50_ms: f64,
    /// Where the server's time went, from the audit entries of the timed requests.
    pub spans: Vec<Span>,
}

/// The time between two points of a request (see [`SPANS`]), over the timed requests.
#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub name: &'static str,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// (span, what it holds): request sent, the three audit entries the server writes for a query
/// (each timestamped when the log's writer takes it, just before its commit), answer received.
pub const SPANS: [(&str, &str); 4] = [
    (
        "request sent -> query.submitted",
        "TLS, HTTP, session, grant and policy checks, query record insert (1 commit)",
    ),
    (
        "query.submitted -> query.completed",
        "commit of query.submitted, the sandboxed query (worker, gate, DuckDB, Arrow back)",
    ),
    (
        "query.completed -> result.viewed",
        "commit of query.completed, result file (write, fsync, rename, hash), query record \
         finish (1 commit), JSON rows",
    ),
    (
        "result.viewed -> answer received",
        "commit of result.viewed, JSON answer, TLS, client",
    ),
];

/// One step of a query timed on its own (1 caller, sequential).
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    /// How often one server query does it.
    pub per_query: u32,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub sql: &'static str,
    pub count: i64,
    pub snapshot_rows: BTreeMap<String, u64>,
    pub accounts: &'static str,
    pub rows: Vec<Row>,
    pub breakdown: Vec<Step>,
    pub goal_added_p50_ms: f64,
    pub goal_met: bool,
}

/// Prepares the state directory, serves it, measures, stops the server, then times the
/// breakdown. `engine` starts the workers (`EngineConfig::from_current_exe` in `kura`).
pub fn run(opts: &Options, engine: EngineConfig) -> Result<Report, BenchError> {
    let setup = prepare(opts)?;
    let server = InProcess::new(&opts.state_dir, engine)?;
    let engine = server.engine.clone();
    let baseline = Baseline::open(&setup.snapshot, &engine.limits)?;
    let count = baseline.count()?;
    let measured = server.serve(&setup.password, |target, client_rt| {
        let d1 = baseline.load(1, opts.warmup, opts.requests_single)?;
        let s1 = client_rt.block_on(async {
            let one = [target.sign_in(&setup.accounts[0]).await?];
            load::query_load(&one, count, opts.warmup, opts.requests_single).await
        })?;
        let dn = baseline.load(opts.clients, opts.warmup, opts.requests_concurrent)?;
        let sn = client_rt.block_on(async {
            let mut many = Vec::with_capacity(opts.clients);
            for i in 0..opts.clients {
                let user = &setup.accounts[if opts.one_account { 0 } else { i }];
                many.push(target.sign_in(user).await?);
            }
            load::query_load(&many, count, opts.warmup, opts.requests_concurrent).await
        })?;
        Ok([(1, s1, d1), (opts.clients, sn, dn)])
    })?;

    let rows = measured
        .into_iter()
        .map(|(clients, (server, samples), duckdb)| {
            Ok(Row {
                clients,
                added_p50_ms: server.p50_ms - duckdb.p50_ms,
                spans: report::spans(&opts.state_dir, &samples)?,
                server,
                duckdb,
            })
        })
        .collect::<Result<Vec<_>, BenchError>>()?;
    let breakdown = report::breakdown(opts, &setup, &engine, &baseline)?;
    let goal_met = rows
        .first()
        .is_some_and(|r| r.added_p50_ms < GOAL_ADDED_P50_MS);
    Ok(Report {
        sql: SQL,
        count,
        snapshot_rows: setup.rows,
        accounts: if opts.one_account {
            "one account and project for all clients, one session each"
        } else {
            "one account, project and session per client"
        },
        rows,
        breakdown,
        goal_added_p50_ms: GOAL_ADDED_P50_MS,
        goal_met,
    })
}

struct Setup {
    snapshot: PathBuf,
    rows: BTreeMap<String, u64>,
    /// Account ids; each is also the id of the account's project.
    accounts: Vec<String>,
    password: String,
    projects: Vec<Project>,
}

/// Snapshot `demo`, the bench accounts (researchers, one per client) and, per account, a project
/// of the same id granting a few columns of `nanbyo_forms`; whatever exists already is reused.
fn prepare(opts: &Options) -> Result<Setup, BenchError> {
    let state = setup::prepare_state(&opts.state_dir, &opts.snapshot)?;
    let n = if opts.one_account {
        1
    } else {
        opts.clients.max(1)
    };
    let accounts = account_ids(n);
    state.ensure_accounts(&accounts)?;
    // Each account works in its own project (it is the only member): Cedar's decisions cost
    // more per member of a project, and this keeps that out of the measurement.
    let cols = ["research_id", "disease_no", "sex", "severity", "pref_code"];
    let tables = BTreeMap::from([(
        "nanbyo_forms".to_string(),
        cols.iter().map(|c| c.to_string()).collect(),
    )]);
    let projects = accounts
        .iter()
        .map(|user| {
            state.ensure_project(
                user,
                "kura bench server",
                &tables,
                std::slice::from_ref(user),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Setup {
        snapshot: state.snapshot,
        rows: state.rows,
        accounts,
        password: state.password,
        projects,
    })
}

/// The bench accounts `bench-01`, `bench-02`, ... (shared by every HTTPS benchmark).
fn account_ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("bench-{i:02}")).collect()
}
