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

mod load;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Utc;
use kura_query::EngineConfig;
use kura_store::{Member, NewAccount, Project, Store};
use serde::Serialize;

use crate::config::ServerConfig;
use crate::error::ServeError;
use crate::serve::Server;
use load::{Baseline, Target};
pub use report::markdown;

/// The small query, used unchanged on both sides.
pub const SQL: &str = "SELECT count(*) FROM nanbyo_forms WHERE disease_no = 11";
/// The goal: added p50 latency with one client, in ms.
pub const GOAL_ADDED_P50_MS: f64 = 3.0;
const SNAPSHOT: &str = "demo";
/// Holds the bench accounts' random password; its presence marks a state dir made by the bench.
const PASSWORD_FILE: &str = "bench-password";

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
    let config = ServerConfig {
        state_dir: opts.state_dir.clone(),
        listen: ([127, 0, 0, 1], 0).into(),
        ..ServerConfig::default()
    };
    config
        .check()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let engine = crate::serve::engine_config(&config, engine);
    let limits = engine.limits;
    let runtime = |name: &str, threads: Option<usize>| {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = threads {
            b.worker_threads(n);
        }
        b.enable_all()
            .thread_name(name)
            .build()
            .map_err(|e| BenchError::Setup(format!("async runtime: {e}")))
    };
    // The server gets its own runtime, as under `kura serve`; the clients share a second one.
    let server_rt = runtime("kura-server", None)?;
    let client_rt = runtime("bench-client", Some(2))?;

    let baseline = Baseline::open(&setup.snapshot, &limits)?;
    let count = baseline.count()?;
    let server = server_rt.block_on(Server::start(config, engine.clone()))?;
    let origin = server.ready().origin.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server_rt.spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let measured = (|| {
        let pem = std::fs::read(opts.state_dir.join("tls/cert.pem"))
            .map_err(|e| BenchError::Client(format!("reading the server certificate: {e}")))?;
        let target = Target {
            origin: origin.clone(),
            pem,
            password: setup.password.clone(),
            count,
        };
        let d1 = baseline.load(1, opts.warmup, opts.requests_single)?;
        let s1 = client_rt.block_on(async {
            let one = [target.sign_in(&setup.accounts[0]).await?];
            target.load(&one, opts.warmup, opts.requests_single).await
        })?;
        let dn = baseline.load(opts.clients, opts.warmup, opts.requests_concurrent)?;
        let sn = client_rt.block_on(async {
            let mut many = Vec::with_capacity(opts.clients);
            for i in 0..opts.clients {
                let user = &setup.accounts[if opts.one_account { 0 } else { i }];
                many.push(target.sign_in(user).await?);
            }
            target
                .load(&many, opts.warmup, opts.requests_concurrent)
                .await
        })?;
        Ok::<_, BenchError>([(1, s1, d1), (opts.clients, sn, dn)])
    })();
    let _ = stop.send(());
    let served = server_rt.block_on(serving);
    drop(server_rt);
    let measured = measured?;
    served.map_err(|e| BenchError::Client(format!("server task: {e}")))??;

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

/// Snapshot `demo`, the bench accounts (researchers, one per client) and project `bench`
/// granting a few columns of `nanbyo_forms`; whatever exists already is reused.
fn prepare(opts: &Options) -> Result<Setup, BenchError> {
    let err = |what: &str, e: &dyn std::fmt::Display| BenchError::Setup(format!("{what}: {e}"));
    let state = &opts.state_dir;
    std::fs::create_dir_all(state).map_err(|e| err(&state.display().to_string(), &e))?;
    check_state_dir(state)?;
    let password_file = state.join(PASSWORD_FILE);
    let password = match std::fs::read_to_string(&password_file) {
        Ok(p) => p.trim().to_string(),
        Err(_) => {
            let p =
                kura_identity::password::generate_password().map_err(|e| err("password", &e))?;
            crate::tls::write_private(&password_file, p.as_bytes())
                .map_err(|e| err("password file", &e))?;
            p
        }
    };
    let snapshot = state.join("snapshots").join(format!("{SNAPSHOT}.duckdb"));
    install_snapshot(opts, state, &snapshot)?;
    let manifest = kura_snapshot::Manifest::read(&kura_snapshot::manifest_path(&snapshot))
        .map_err(|e| err("snapshot manifest", &e))?;
    let rows = manifest
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.rows))
        .collect();

    let store = Store::open(state).map_err(|e| err("store", &e))?;
    let now = Utc::now();
    let n = if opts.one_account {
        1
    } else {
        opts.clients.max(1)
    };
    let accounts: Vec<String> = (1..=n).map(|i| format!("bench-{i:02}")).collect();
    let mut hash = None;
    let roles = vec!["researcher".to_string()];
    for id in &accounts {
        if store.account(id).map_err(|e| err("store", &e))?.is_some() {
            continue;
        }
        if hash.is_none() {
            hash = Some(
                kura_identity::password::hash_password(&password)
                    .map_err(|e| err("password hash", &e))?,
            );
        }
        let new = NewAccount {
            id,
            name: &format!("Benchmark {id}"),
            roles: &roles,
            password_hash: hash.as_deref().unwrap_or_default(),
        };
        store
            .create_account(&new, now)
            .map_err(|e| err("account", &e))?;
    }
    // Each account works in its own project (it is the only member): Cedar's decisions cost
    // more per member of a project, and this keeps that out of the measurement.
    let mut projects = Vec::with_capacity(accounts.len());
    for user in &accounts {
        let project = match store.project(user).map_err(|e| err("store", &e))? {
            Some(p) => p,
            None => {
                let cols = ["research_id", "disease_no", "sex", "severity", "pref_code"];
                let p = Project {
                    id: user.clone(),
                    title: format!("Benchmark {user}"),
                    description: "kura bench server".into(),
                    snapshot: SNAPSHOT.into(),
                    tables: BTreeMap::from([(
                        "nanbyo_forms".to_string(),
                        cols.iter().map(|c| c.to_string()).collect(),
                    )]),
                    starts: now - chrono::Duration::days(1),
                    expires: now + chrono::Duration::days(365),
                    created_by: "kura-bench".into(),
                    created_at: now,
                };
                store.create_project(&p).map_err(|e| err("project", &e))?;
                p
            }
        };
        let member = Member {
            user: user.clone(),
            role: "researcher".into(),
            expires: project.expires,
        };
        store
            .set_member(&project.id, &member)
            .map_err(|e| err("member", &e))?;
        projects.push(project);
    }
    Ok(Setup {
        snapshot,
        rows,
        accounts,
        password,
        projects,
    })
}

/// Refuses a state directory holding a Kura state the benchmark did not create: it adds
/// accounts whose password it keeps in the clear there.
pub fn check_state_dir(state: &Path) -> Result<(), BenchError> {
    if state.join(kura_store::DB_FILE).exists() && !state.join(PASSWORD_FILE).exists() {
        return Err(BenchError::Setup(format!(
            "{} holds a Kura state the benchmark did not create; the benchmark adds accounts \
             with a password stored in the clear, so give it a new directory",
            state.display()
        )));
    }
    Ok(())
}

fn install_snapshot(opts: &Options, state: &Path, target: &Path) -> Result<(), BenchError> {
    let err = |what: &str, e: &dyn std::fmt::Display| BenchError::Setup(format!("{what}: {e}"));
    let dir = state.join("snapshots");
    std::fs::create_dir_all(&dir).map_err(|e| err(&dir.display().to_string(), &e))?;
    match &opts.snapshot {
        SnapshotSource::Installed if target.is_file() => Ok(()),
        SnapshotSource::Installed => Err(BenchError::Setup(format!(
            "{} does not exist: give --snapshot FILE or let the benchmark build one",
            target.display()
        ))),
        SnapshotSource::File(file) => {
            for (from, to) in [
                (file.clone(), target.to_path_buf()),
                (
                    kura_snapshot::manifest_path(file),
                    kura_snapshot::manifest_path(target),
                ),
            ] {
                std::fs::copy(&from, &to).map_err(|e| err(&from.display().to_string(), &e))?;
            }
            Ok(())
        }
        SnapshotSource::Build { .. } if target.is_file() => Ok(()),
        SnapshotSource::Build { raw, policy } => {
            let key_file = state.join("keys").join("pseudonym.key");
            if !key_file.exists() {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| err("random key", &e))?;
                if let Some(d) = key_file.parent() {
                    std::fs::create_dir_all(d).map_err(|e| err("keys", &e))?;
                }
                crate::tls::write_private(&key_file, &key).map_err(|e| err("key file", &e))?;
            }
            let options = kura_snapshot::BuildOptions {
                raw_dir: raw.clone(),
                policy: policy.clone(),
                key_file,
                out: target.to_path_buf(),
                release_id: Some("bench".into()),
            };
            kura_snapshot::build(&options, &mut |_| {}).map_err(|e| err("snapshot build", &e))?;
            Ok(())
        }
    }
}
