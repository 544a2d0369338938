//! `kura bench explorer`: latency and requests/s of the trial-feasibility explorer
//! (`POST /api/v1/projects/{pid}/explorer`, docs/explorer.md) with N concurrent signed-in
//! users sending realistic forms, against the same requests' three SQL texts on DuckDB directly,
//! in the same run (docs/benchmarks.md, "Trial-feasibility explorer").
//!
//! The server is the real one in this process, on the state directory `kura bench server` uses
//! (same preparation, same accounts `bench-NN`); the users work in teams, each team a project
//! granting the explorer's columns (`kura_explorer::query::REQUIRED_COLUMNS`). Each client sends
//! its next form when the previous answer is in (after an optional think time) and checks every
//! answer: HTTP 200, the three views, no suppressed cell with a value, no published number under
//! the threshold, the published grand total within the noise of DuckDB's raw total, and the SQL
//! the server ran (from the audit log) identical to the baseline's.
//!
//! An answer with an error status (e.g. a query timeout under overload) is counted as failed with
//! its time, not fatal; any other failed check ends the run.
//!
//! Then, with the server idle, a profile of a few requests, one at a time and interleaved so
//! that background load hits every step alike: the request through the server (one client),
//! its three statements through the sandboxed engine alone, the protection step, and the
//! statements on DuckDB directly. After the server has stopped, the baseline: every client's
//! requests on its own read-only DuckDB database (the server's workers are one DuckDB each) with
//! the worker's threads and memory limit, from as many threads, same think times.

mod direct;
mod report;
mod whatif;
pub mod workload;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kura_audit::{AuditReader, EventKind, SearchFilter};
use kura_explorer::query::REQUIRED_COLUMNS;
use kura_explorer::{Filters, RecordHash, View, ViewQuery};
use kura_query::{EngineConfig, ProjectScope, QueryEngine, QueryRequest};
use kura_sdc::CheckContext;
use serde::Serialize;
use serde_json::Value;

use super::load::{self, callers, closed_loop, split, stats, Answer, Caller, Client, Cpu};
use super::report::NullAudit;
use super::setup::{self, InProcess};
use super::{BenchError, SnapshotSource, Stats, SNAPSHOT};
use direct::Direct;
pub use report::markdown;
use workload::{Class, Request, Workload};

/// The issue's goal: p99 latency of explorer requests with 20 concurrent users, in ms.
pub const GOAL_P99_MS: f64 = 300.0;
/// The users the goal is stated for.
pub const GOAL_CLIENTS: usize = 20;

#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    pub snapshot: SnapshotSource,
    /// Concurrent users, each with its own account and session.
    pub clients: usize,
    /// Timed requests in total.
    pub requests: usize,
    /// Untimed requests before the timed ones (at least one per client).
    pub warmup: usize,
    /// Mean pause before each request (uniform in 0.5..1.5 times it); 0: closed loop.
    pub think_ms: u64,
    /// Seed of the request generator.
    pub seed: u64,
    /// Share of requests without a disease filter.
    pub national_share: f64,
    /// Users per project (1: a project each; `clients`: one shared project).
    pub team_size: usize,
    /// Requests of each class timed one at a time in the profile.
    pub profile: usize,
    /// Also time the profile requests in variants of the SQL and the snapshot layout.
    pub what_if: bool,
}

/// Latency of one class of requests, through the server and on DuckDB directly.
#[derive(Debug, Clone, Serialize)]
pub struct ClassRow {
    /// `all`, or a [`Class`]'s label.
    pub class: &'static str,
    pub server: Stats,
    pub duckdb: Stats,
}

/// One view's statement under load, by class: in the server's sandboxed engine (its own
/// `duration_ms` in the audit log) and on DuckDB directly.
#[derive(Debug, Clone, Serialize)]
pub struct ViewRow {
    pub class: &'static str,
    pub view: &'static str,
    pub engine: Stats,
    pub duckdb: Stats,
}

/// A step timed one request at a time, per class (p50, p99 in ms; None: no such request).
#[derive(Debug, Clone, Serialize)]
pub struct ProfileRow {
    pub step: String,
    pub disease: Option<(f64, f64)>,
    pub national: Option<(f64, f64)>,
}

/// What every answer was checked for, and how often.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checks {
    pub answers: usize,
    /// Timed requests answered with an error status, and the first such answer.
    pub failed: usize,
    pub first_failure: Option<String>,
    pub cells: usize,
    pub suppressed_cells: usize,
    /// Published grand totals compared with DuckDB's raw total (within the noise, +-2).
    pub totals_compared: usize,
    pub totals_suppressed: usize,
    /// View statements whose SQL in the audit log equals the baseline's.
    pub sql_identical: usize,
    pub record_hash: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub snapshot_rows: BTreeMap<String, u64>,
    pub patients: u64,
    pub clients: usize,
    pub team_size: usize,
    pub think_ms: u64,
    pub seed: u64,
    pub national_share: f64,
    pub warmup: usize,
    /// The first `GET .../explorer` of the run (reads the catalog through the sandbox unless the
    /// server has it already).
    pub catalog_ms: f64,
    pub treatments: usize,
    pub fiscal_years: Vec<u16>,
    /// all, with disease filter, national.
    pub classes: Vec<ClassRow>,
    /// The server's own `duration_ms` of each timed request.
    pub server_reported: Stats,
    pub views: Vec<ViewRow>,
    pub profile: Vec<ProfileRow>,
    pub profile_requests: (usize, usize),
    /// `--what-if`: the profile requests on DuckDB directly in variants.
    pub what_if: Vec<whatif::WhatIfRow>,
    pub checks: Checks,
    pub limits: kura_query::Limits,
    pub goal_p99_ms: f64,
    pub goal_met: bool,
}

/// One explorer request a client sends.
#[derive(Debug, Clone)]
struct Job {
    path: String,
    request: Request,
}

/// What the answer to one request showed.
#[derive(Debug, Clone, Default)]
struct Checked {
    duration_ms: Option<f64>,
    /// The query id of each view, in [`View::ALL`] order, when the answer names them.
    query_ids: Option<[String; 3]>,
    /// `by_prefecture`'s published grand total (None: suppressed).
    total: Option<u64>,
    cells: usize,
    suppressed: usize,
}

#[derive(Debug, Clone)]
struct ServerSample {
    took: Duration,
    checked: Checked,
    /// The status and message of an answer with an error status.
    failed: Option<String>,
}

/// What the server phase returns.
struct Served {
    catalog_ms: f64,
    meta: Meta,
    clients: Vec<Client>,
    threshold: u64,
    jobs: Vec<Caller<Job>>,
    timed: Vec<Vec<ServerSample>>,
    wall: Duration,
    cpu: Option<(f64, f64)>,
}

/// What `GET .../explorer` lists.
struct Meta {
    treatments: Vec<String>,
    fiscal_years: Vec<u16>,
    /// The rule pack's count threshold, when the answer names it.
    threshold: Option<u64>,
}

/// The explorer's grant.
fn grant() -> BTreeMap<String, Vec<String>> {
    REQUIRED_COLUMNS
        .iter()
        .map(|(t, cols)| (t.to_string(), cols.iter().map(|c| c.to_string()).collect()))
        .collect()
}

fn explorer_path(project: &str) -> String {
    format!("/api/v1/projects/{project}/explorer")
}

/// Prepares the state directory, serves it, measures the users, profiles a few requests with
/// the server idle, stops the server, reads the audit log, then runs the baseline. `engine`
/// starts the workers.
pub fn run(opts: &Options, engine: EngineConfig) -> Result<Report, BenchError> {
    let n = opts.clients.max(1);
    let team_size = opts.team_size.clamp(1, n);
    let state = setup::prepare_state(&opts.state_dir, &opts.snapshot)?;
    let accounts = super::account_ids(n);
    state.ensure_accounts(&accounts)?;
    let tables = grant();
    // Project ids name the team size, so a state directory reused with another size does not
    // mix members of two layouts in one project.
    let projects = accounts
        .chunks(team_size)
        .enumerate()
        .map(|(t, members)| {
            let id = format!("explorer-{team_size}-{:02}", t + 1);
            state.ensure_project(&id, "kura bench explorer", &tables, members)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let project_of = |client: usize| &projects[client / team_size];

    let server = InProcess::new(&opts.state_dir, engine)?;
    let limits = server.engine.limits;
    let baselines = direct::open_callers(&state.snapshot, &limits, n)?;
    let first = &baselines[0];
    let direct = Direct::new(first)?;
    let prevalence = direct::prevalence(first)?;
    let patients = direct::patients(first)?;
    // The default pack's threshold, for a server whose GET does not name it.
    let pack_threshold = direct
        .explorer
        .pack()
        .rule(|r| match r {
            kura_sdc::Rule::Threshold { min, .. } => Some(*min),
            _ => None,
        })
        .unwrap_or(0);

    let paths: Vec<String> = (0..n).map(|i| explorer_path(&project_of(i).id)).collect();
    let since_us = load::wall_us();
    let (served, direct, record_hash, profiled) = server.serve(&state.password, |target, rt| {
        let served = rt.block_on(serve_phase(
            opts,
            target,
            &accounts,
            &paths,
            &prevalence,
            pack_threshold,
        ))?;
        // The log is readable beside the server: which record hash its SQL uses.
        let audit = audit_queries(&opts.state_dir, since_us)?;
        let (direct, hash) = pick_record_hash(direct, &served, &audit)?;
        let profile_jobs = profile_jobs(&served.jobs, opts.profile, &paths[0]);
        let profiled = profile_phase(&Profiling {
            rt,
            served: &served,
            jobs: &profile_jobs,
            direct: &direct,
            conn: &first.conn,
            engine: &server.engine,
            project: project_of(0),
            user: &accounts[0],
            snapshot: &state.snapshot,
            state_dir: &opts.state_dir,
        })?;
        Ok((served, direct, hash, profiled))
    })?;

    // The direct explorer's catalog must be the server's, else the requests differ.
    let cat = direct.explorer.catalog();
    let direct_treatments: Vec<&String> = cat.treatments().iter().collect();
    let served_treatments: Vec<&String> = served.meta.treatments.iter().collect();
    if direct_treatments != served_treatments
        || cat.fiscal_years().iter().copied().collect::<Vec<_>>() != served.meta.fiscal_years
    {
        return Err(BenchError::Check(
            "the server's catalog (GET .../explorer) differs from the one read on DuckDB".into(),
        ));
    }

    // The SQL and engine time of every view statement, from the audit log.
    let audit = audit_queries(&opts.state_dir, since_us)?;
    let mut checks = Checks {
        record_hash: match record_hash {
            RecordHash::Sha256 => "sha256",
            RecordHash::ResearchIdPrefix => "research_id_prefix",
        },
        ..Checks::default()
    };

    // The baseline: the same jobs, their SQL rendered once.
    struct DirectJob {
        queries: Vec<ViewQuery>,
        think_ms: u64,
    }
    let to_direct = |j: &Job| -> Result<DirectJob, BenchError> {
        let filters = direct.filters(&j.request.body)?;
        Ok(DirectJob {
            queries: direct.queries(&filters),
            think_ms: j.request.think_ms,
        })
    };
    let work = served
        .jobs
        .iter()
        .map(|c| -> Result<Caller<DirectJob>, BenchError> {
            Ok(Caller {
                warmup: c.warmup.iter().map(to_direct).collect::<Result<_, _>>()?,
                timed: c.timed.iter().map(to_direct).collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<Vec<_>, BenchError>>()?;

    // Every view statement the server ran is the baseline's.
    for (c, samples) in served.timed.iter().enumerate() {
        for (k, s) in samples.iter().enumerate() {
            checks.sql_identical += same_sql(&s.checked, &work[c].timed[k].queries, &audit)?;
        }
    }
    for (s, q) in profiled.server.iter().zip(&profiled.queries) {
        checks.sql_identical += same_sql(&s.checked, q, &audit)?;
    }

    let conns: Vec<duckdb::Connection> = baselines
        .iter()
        .map(|b| b.conn.try_clone().map_err(load::duck_err))
        .collect::<Result<_, _>>()?;
    let base = callers(
        conns,
        &work,
        |j: &DirectJob| Duration::from_millis(j.think_ms),
        |conn, j: &DirectJob| direct::run_request(conn, &j.queries),
    )?;

    // Published totals within the noise of the raw ones.
    for (c, samples) in served.timed.iter().enumerate() {
        for (k, s) in samples.iter().enumerate() {
            checks.answers += 1;
            if let Some(f) = &s.failed {
                checks.failed += 1;
                checks.first_failure.get_or_insert_with(|| f.clone());
                continue;
            }
            checks.cells += s.checked.cells;
            checks.suppressed_cells += s.checked.suppressed;
            let raw = base.results[c][k].1 .1;
            match s.checked.total {
                None => checks.totals_suppressed += 1,
                Some(shown) if shown.abs_diff(raw) <= 2 => checks.totals_compared += 1,
                Some(shown) => {
                    return Err(BenchError::Check(format!(
                        "published grand total {shown} for {} is not within 2 of DuckDB's {raw}",
                        served.jobs[c].timed[k].request.body
                    )))
                }
            }
        }
    }

    // Latency by class (failed requests with their time to the error answer).
    let class_of = |c: usize, k: usize| served.jobs[c].timed[k].request.class;
    let mut classes = Vec::new();
    for class in [None, Some(Class::Disease), Some(Class::National)] {
        let keep = |c: usize, k: usize| class.is_none_or(|x| class_of(c, k) == x);
        let pick_server: Vec<Duration> = indexed(&served.timed)
            .filter(|(c, k, _)| keep(*c, *k))
            .map(|(_, _, s)| s.took)
            .collect();
        let pick_duck: Vec<Duration> = indexed(&base.results)
            .filter(|(c, k, _)| keep(*c, *k))
            .map(|(_, _, r)| r.0)
            .collect();
        if pick_server.is_empty() {
            continue;
        }
        let (cpu_s, cpu_d) = if class.is_none() {
            (served.cpu, base.cpu)
        } else {
            (None, None)
        };
        classes.push(ClassRow {
            class: class.map_or("all", Class::label),
            server: stats(pick_server, served.wall, cpu_s),
            duckdb: stats(pick_duck, base.wall, cpu_d),
        });
    }
    let server_reported = stats(
        indexed(&served.timed)
            .filter_map(|(_, _, s)| s.checked.duration_ms)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .collect(),
        Duration::ZERO,
        None,
    );

    // Per view under load.
    let mut views = Vec::new();
    for class in Class::ALL {
        for (v, view) in View::ALL.iter().enumerate() {
            let engine: Vec<Duration> = indexed(&served.timed)
                .filter(|(c, k, _)| class_of(*c, *k) == class)
                .filter_map(|(_, _, s)| {
                    let id = &s.checked.query_ids.as_ref()?[v];
                    audit.get(id)?.duration_ms
                })
                .map(|ms| Duration::from_secs_f64(ms / 1000.0))
                .collect();
            let duck: Vec<Duration> = indexed(&base.results)
                .filter(|(c, k, _)| class_of(*c, *k) == class)
                .map(|(_, _, r)| r.1 .0[v])
                .collect();
            if duck.is_empty() {
                continue;
            }
            views.push(ViewRow {
                class: class.label(),
                view: view.name(),
                engine: stats(engine, Duration::ZERO, None),
                duckdb: stats(duck, Duration::ZERO, None),
            });
        }
    }

    let profile = profiled.rows(&audit);
    let what_if = if opts.what_if {
        let requests: Vec<(Class, Filters)> = profiled
            .classes
            .iter()
            .copied()
            .zip(profiled.filters.iter().cloned())
            .collect();
        whatif::what_if(
            &direct.explorer,
            &first.conn,
            &requests,
            &opts.state_dir.join("bench-scratch"),
            &state.snapshot,
            &limits,
        )?
    } else {
        Vec::new()
    };
    let profile_requests = (
        profiled
            .classes
            .iter()
            .filter(|c| **c == Class::Disease)
            .count(),
        profiled
            .classes
            .iter()
            .filter(|c| **c == Class::National)
            .count(),
    );
    let goal_met = checks.failed == 0
        && classes
            .first()
            .is_some_and(|r| r.server.p99_ms < GOAL_P99_MS);
    Ok(Report {
        snapshot_rows: state.rows.clone(),
        patients,
        clients: n,
        team_size,
        think_ms: opts.think_ms,
        seed: opts.seed,
        national_share: opts.national_share,
        warmup: opts.warmup,
        catalog_ms: served.catalog_ms,
        treatments: served.meta.treatments.len(),
        fiscal_years: served.meta.fiscal_years.clone(),
        classes,
        server_reported,
        views,
        profile,
        profile_requests,
        what_if,
        checks,
        limits,
        goal_p99_ms: GOAL_P99_MS,
        goal_met,
    })
}

/// (client, index, item) over per-client lists.
fn indexed<T>(lists: &[Vec<T>]) -> impl Iterator<Item = (usize, usize, &T)> {
    lists
        .iter()
        .enumerate()
        .flat_map(|(c, l)| l.iter().enumerate().map(move |(k, t)| (c, k, t)))
}

/// Signs the users in, reads the explorer's fields, generates the requests, then: warm-up,
/// the timed requests (all clients), the profile requests (the first client alone).
async fn serve_phase(
    opts: &Options,
    target: &load::Target,
    accounts: &[String],
    paths: &[String],
    prevalence: &[(u16, f64)],
    pack_threshold: u64,
) -> Result<Served, BenchError> {
    let clients = target.sign_in_all(accounts).await?;
    let n = clients.len();
    let t = Instant::now();
    let answer = clients[0].get(&paths[0]).await?;
    let catalog_ms = load::ms(t.elapsed());
    let meta = read_meta(&answer)?;
    // Every project's fields (the catalog is per snapshot, so these are quick).
    for (i, c) in clients.iter().enumerate().skip(1) {
        if paths[i] != paths[i - 1] {
            let a = c.get(&paths[i]).await?;
            if !a.status.is_success() {
                return Err(BenchError::Check(format!(
                    "GET {} answered {}: {}",
                    paths[i],
                    a.status,
                    a.text()
                )));
            }
        }
    }
    let workload = Workload::new(
        prevalence,
        meta.treatments.clone(),
        meta.fiscal_years.clone(),
        opts.national_share,
        opts.think_ms,
    )
    .map_err(BenchError::Setup)?;
    let warm_each = opts.warmup.div_ceil(n).max(1);
    let jobs: Vec<Caller<Job>> = split(opts.requests.max(1), n)
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let mut stream = workload.stream(opts.seed, i).map(|request| Job {
                path: paths[i].clone(),
                request,
            });
            Caller {
                warmup: stream.by_ref().take(warm_each).collect(),
                timed: stream.take(k).collect(),
            }
        })
        .collect();
    let threshold = meta.threshold.unwrap_or(pack_threshold);
    let send = move |client: Client, job: Job| send_request(client, job, threshold);
    let warm = jobs.iter().map(|c| c.warmup.clone()).collect();
    closed_loop(&clients, warm, send).await?;
    let cpu = Cpu::now();
    let t = Instant::now();
    let timed = closed_loop(
        &clients,
        jobs.iter().map(|c| c.timed.clone()).collect(),
        send,
    )
    .await?;
    let wall = t.elapsed();
    let cpu = cpu.since();
    Ok(Served {
        catalog_ms,
        meta,
        clients,
        threshold,
        jobs,
        timed,
        wall,
        cpu,
    })
}

/// One request of a user: the think pause (not timed), then the POST, timed to the last byte
/// of the answer, and the answer's checks. An error status is a failed sample, not an error.
async fn send_request(
    client: Client,
    job: Job,
    threshold: u64,
) -> Result<ServerSample, BenchError> {
    if job.request.think_ms > 0 {
        tokio::time::sleep(Duration::from_millis(job.request.think_ms)).await;
    }
    let t = Instant::now();
    let answer = client.post(&job.path, &job.request.body).await?;
    let took = t.elapsed();
    if !answer.status.is_success() {
        return Ok(ServerSample {
            took,
            checked: Checked::default(),
            failed: Some(format!("{}: {}", answer.status, answer.text())),
        });
    }
    let checked = check_answer(&answer, threshold).map_err(|e| {
        BenchError::Check(format!(
            "{} POST {} {}: {e}",
            client.user, job.path, job.request.body
        ))
    })?;
    Ok(ServerSample {
        took,
        checked,
        failed: None,
    })
}

/// Up to `per_class` requests of each class from the timed ones (taken in turn from the
/// clients), for the first client's project, without think time.
fn profile_jobs(jobs: &[Caller<Job>], per_class: usize, path: &str) -> Vec<Job> {
    let longest = jobs.iter().map(|c| c.timed.len()).max().unwrap_or(0);
    let in_turn = (0..longest).flat_map(|k| jobs.iter().filter_map(move |c| c.timed.get(k)));
    let mut picked = Vec::new();
    let mut count: HashMap<Class, usize> = HashMap::new();
    for j in in_turn {
        let c = count.entry(j.request.class).or_default();
        if *c < per_class {
            *c += 1;
            let mut request = j.request.clone();
            request.think_ms = 0;
            picked.push(Job {
                path: path.to_string(),
                request,
            });
        }
    }
    picked
}

fn read_meta(answer: &Answer) -> Result<Meta, BenchError> {
    let bad = |why: &str| {
        BenchError::Check(format!(
            "GET .../explorer {}: {why}: {}",
            answer.status,
            answer.text()
        ))
    };
    if !answer.status.is_success() {
        return Err(bad("not 200"));
    }
    let v = answer.json();
    let keys = |field: &str| -> Result<Vec<Value>, BenchError> {
        v["fields"][field]
            .as_array()
            .map(|a| a.iter().map(|e| e["key"].clone()).collect())
            .ok_or_else(|| bad(&format!("no fields.{field} list")))
    };
    let treatments = keys("treatments")?
        .iter()
        .map(|k| k.as_str().map(String::from))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("a treatment key is not text"))?;
    let fiscal_years = keys("fiscal_years")?
        .iter()
        .map(|k| k.as_u64().and_then(|y| u16::try_from(y).ok()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("a fiscal year key is not a year"))?;
    let threshold = v["threshold"].as_u64();
    Ok(Meta {
        treatments,
        fiscal_years,
        threshold,
    })
}

/// Checks one answer: 200, the three views with one value per category in each series, every
/// cell either a published number (0, or at least the threshold) or suppressed with a marker and
/// no value.
fn check_answer(answer: &Answer, threshold: u64) -> Result<Checked, String> {
    if !answer.status.is_success() {
        return Err(format!("answered {}: {}", answer.status, answer.text()));
    }
    let v = answer.json();
    let result = &v["result"];
    let mut cells = 0;
    let mut suppressed = 0;
    let mut ids = Vec::with_capacity(3);
    for view in View::ALL {
        let name = view.name();
        let r = &result[name];
        if !r.is_object() {
            return Err(format!("no view {name}"));
        }
        let x = r["x"]
            .as_array()
            .ok_or_else(|| format!("{name}: no x"))?
            .len();
        let series = r["series"]
            .as_array()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{name}: no series"))?;
        for s in series {
            let values = s["values"]
                .as_array()
                .ok_or_else(|| format!("{name}: a series without values"))?;
            if values.len() != x {
                return Err(format!(
                    "{name}: {} values for {x} categories",
                    values.len()
                ));
            }
            let total = Some(&s["total"]).filter(|t| !t.is_null());
            for cell in values.iter().chain(total) {
                cells += 1;
                if check_cell(cell, threshold).map_err(|e| format!("{name}: {e}"))? {
                    suppressed += 1;
                }
            }
        }
        ids.push(r["query_id"].as_str().map(String::from));
    }
    let query_ids = match ids.as_slice() {
        [Some(a), Some(b), Some(c)] => Some([a.clone(), b.clone(), c.clone()]),
        _ => None,
    };
    let total = result["by_prefecture"]["series"][0]["total"]["value"].as_u64();
    Ok(Checked {
        duration_ms: v["duration_ms"].as_f64(),
        query_ids,
        total,
        cells,
        suppressed,
    })
}

/// Whether the cell is suppressed; an error if it is neither a clean value nor a clean marker.
fn check_cell(cell: &Value, threshold: u64) -> Result<bool, String> {
    let o = cell
        .as_object()
        .ok_or_else(|| format!("cell {cell} is not an object"))?;
    if o.get("suppressed") == Some(&Value::Bool(true)) {
        let display = o.get("display").and_then(Value::as_str).unwrap_or("");
        if o.contains_key("value") || display.is_empty() || display.trim().parse::<f64>().is_ok() {
            return Err(format!("suppressed cell {cell} carries a value"));
        }
        return Ok(true);
    }
    match o.get("value").and_then(Value::as_u64) {
        Some(n) if o.len() == 1 && (n == 0 || n >= threshold) => Ok(false),
        Some(n) if o.len() == 1 => Err(format!("published {n} is under the threshold {threshold}")),
        _ => Err(format!("cell {cell} is neither a value nor suppressed")),
    }
}

/// A view statement as the audit log has it.
#[derive(Debug, Clone, Default)]
struct Audited {
    sql: Option<String>,
    duration_ms: Option<f64>,
}

/// `query.submitted` (SQL) and `query.completed` (engine time) since `since_us`, by query id.
fn audit_queries(
    state: &std::path::Path,
    since_us: i64,
) -> Result<HashMap<String, Audited>, BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Breakdown(format!("audit log: {e}"));
    let (submitted, completed) = (
        EventKind::QuerySubmitted.as_str(),
        EventKind::QueryCompleted.as_str(),
    );
    let mut out: HashMap<String, Audited> = HashMap::new();
    let filter = SearchFilter {
        since_micros: Some(since_us),
        ..SearchFilter::default()
    };
    let mut reader = AuditReader::open(state).map_err(|e| err(&e))?;
    reader
        .search(&filter, &mut |hit| {
            let kind = hit.leaf.kind.as_str();
            if kind != submitted && kind != completed {
                return Ok(());
            }
            let Some(p) = &hit.payload else {
                return Ok(());
            };
            let Some(id) = p["query_id"].as_str() else {
                return Ok(());
            };
            let e = out.entry(id.to_string()).or_default();
            if kind == submitted {
                e.sql = p["sql"].as_str().map(String::from);
            } else {
                e.duration_ms = p["duration_ms"].as_f64();
            }
            Ok(())
        })
        .map_err(|e| err(&e))?;
    Ok(out)
}

/// The record hash whose SQL the server ran (judged on the first answer naming its queries).
fn pick_record_hash(
    direct: Direct,
    served: &Served,
    audit: &HashMap<String, Audited>,
) -> Result<(Direct, RecordHash), BenchError> {
    let first = indexed(&served.timed)
        .map(|(c, k, s)| (&served.jobs[c].timed[k], s))
        .find_map(|(j, s)| Some((j, s.checked.query_ids.as_ref()?[0].clone())));
    let Some((job, id)) = first else {
        return Ok((direct, RecordHash::default()));
    };
    let server_sql = audit.get(&id).and_then(|a| a.sql.clone());
    let filters = direct.filters(&job.request.body)?;
    if direct.queries(&filters).first().map(|q| &q.sql) == server_sql.as_ref() {
        return Ok((direct, RecordHash::Sha256));
    }
    let other = direct.with_record_hash(RecordHash::ResearchIdPrefix);
    Ok((other, RecordHash::ResearchIdPrefix))
}

/// How many of the answer's view statements were checked against the baseline's SQL (0 when the
/// answer names no query ids); an error if one differs.
fn same_sql(
    checked: &Checked,
    queries: &[ViewQuery],
    audit: &HashMap<String, Audited>,
) -> Result<usize, BenchError> {
    let Some(ids) = &checked.query_ids else {
        return Ok(0);
    };
    for (id, q) in ids.iter().zip(queries) {
        match audit.get(id).and_then(|a| a.sql.as_deref()) {
            Some(sql) if sql == q.sql => {}
            Some(_) => {
                return Err(BenchError::Check(format!(
                    "the server ran other SQL than the baseline for {} (query {id})",
                    q.view.name()
                )))
            }
            None => {
                return Err(BenchError::Check(format!(
                    "query {id} ({}) is not in the audit log",
                    q.view.name()
                )))
            }
        }
    }
    Ok(ids.len())
}

/// What the profile needs: the server's runtime for the client, the requests, and what runs
/// them without the server.
struct Profiling<'a> {
    rt: &'a tokio::runtime::Runtime,
    served: &'a Served,
    jobs: &'a [Job],
    direct: &'a Direct,
    conn: &'a duckdb::Connection,
    engine: &'a EngineConfig,
    project: &'a kura_store::Project,
    user: &'a str,
    snapshot: &'a std::path::Path,
    state_dir: &'a std::path::Path,
}

/// The profile's measurements: per request its class, the server's answer and the SQL; per step
/// (in the order steps first occur), each request's class and time.
struct Profiled {
    classes: Vec<Class>,
    filters: Vec<Filters>,
    server: Vec<ServerSample>,
    queries: Vec<Vec<ViewQuery>>,
    steps: Vec<(String, Vec<(Class, Duration)>)>,
}

impl Profiled {
    fn add(&mut self, name: String, class: Class, d: Duration) {
        let found = self.steps.iter().position(|(n, _)| *n == name);
        match found {
            Some(i) => self.steps[i].1.push((class, d)),
            None => self.steps.push((name, vec![(class, d)])),
        }
    }

    /// The rows of the report, with the server's per-view engine times from the audit log.
    fn rows(&self, audit: &HashMap<String, Audited>) -> Vec<ProfileRow> {
        let mut all = Profiled {
            classes: Vec::new(),
            filters: Vec::new(),
            server: Vec::new(),
            queries: Vec::new(),
            steps: Vec::new(),
        };
        for (s, &class) in self.server.iter().zip(&self.classes) {
            all.add("server, 1 client: whole request".into(), class, s.took);
            let Some(ids) = &s.checked.query_ids else {
                continue;
            };
            let mut sum = 0.0;
            for (id, view) in ids.iter().zip(View::ALL) {
                let ms = audit.get(id).and_then(|a| a.duration_ms).unwrap_or(0.0);
                sum += ms;
                all.add(
                    format!("server, 1 client: {} in the engine", view.name()),
                    class,
                    Duration::from_secs_f64(ms / 1000.0),
                );
            }
            all.add(
                "server, 1 client: the 3 views in the engine (audit duration_ms)".into(),
                class,
                Duration::from_secs_f64(sum / 1000.0),
            );
        }
        all.steps.extend(self.steps.iter().cloned());
        let by_class = |v: &[(Class, Duration)], class: Class| -> Option<(f64, f64)> {
            let picked: Vec<Duration> = v
                .iter()
                .filter(|(c, _)| *c == class)
                .map(|(_, d)| *d)
                .collect();
            if picked.is_empty() {
                return None;
            }
            let s = stats(picked, Duration::ZERO, None);
            Some((s.p50_ms, s.p99_ms))
        };
        all.steps
            .into_iter()
            .map(|(step, v)| ProfileRow {
                disease: by_class(&v, Class::Disease),
                national: by_class(&v, Class::National),
                step,
            })
            .collect()
    }
}

/// Times the profile requests one at a time, each through every path in turn: the server with
/// the first client (the others idle), its three statements through the sandboxed engine alone
/// (the first project's grant and the server's limits, worker reuse, no audit), the protection
/// step on the engine's rows (with the airlock's ledger, as the server does), and the
/// statements on DuckDB directly.
fn profile_phase(p: &Profiling<'_>) -> Result<Profiled, BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Breakdown(e.to_string());
    let qe = QueryEngine::new(p.engine.clone()).map_err(|e| err(&e))?;
    // The airlock of the state directory (the server has its own connection to the same
    // ledger), for the differencing checks.
    let airlock = kura_airlock::Airlock::open(kura_airlock::AirlockConfig::new(p.state_dir))
        .map_err(|e| err(&e))?;
    let scope = ProjectScope {
        name: p.project.id.clone(),
        snapshot: Some(SNAPSHOT.into()),
        tables: p.project.tables.clone(),
        expires: Some(p.project.expires),
    };
    let run = |sql: &str| {
        let request = QueryRequest {
            sql,
            project: &scope,
            user: p.user,
            session: None,
            snapshot: p.snapshot,
            snapshot_sha256: None,
            id: None,
            limits: Some(p.engine.limits),
        };
        qe.run(&request, &NullAudit).map_err(|e| err(&e))
    };
    let client = p
        .served
        .clients
        .first()
        .ok_or_else(|| BenchError::Breakdown("no client".into()))?;
    let mut out = Profiled {
        classes: Vec::new(),
        filters: Vec::new(),
        server: Vec::new(),
        queries: Vec::new(),
        steps: Vec::new(),
    };
    let mut warm = true;
    for job in p.jobs {
        let class = job.request.class;
        let filters = p.direct.filters(&job.request.body)?;
        let queries = p.direct.queries(&filters);
        if warm {
            // The engine's first query starts its worker; later ones reuse it, as in the server.
            run(&queries[0].sql)?;
            warm = false;
        }
        let sample = p.rt.block_on(send_request(
            client.clone(),
            job.clone(),
            p.served.threshold,
        ))?;
        if let Some(f) = &sample.failed {
            return Err(BenchError::Check(format!(
                "profile request {}: {f}",
                job.request.body
            )));
        }

        let mut sum = Duration::ZERO;
        let mut raws = Vec::with_capacity(3);
        for q in &queries {
            let t = Instant::now();
            let result = run(&q.sql)?;
            let d = t.elapsed();
            sum += d;
            out.add(
                format!("sandboxed engine alone: {}", q.view.name()),
                class,
                d,
            );
            raws.push((q.view, result.batches));
        }
        out.add("sandboxed engine alone: the 3 views".into(), class, sum);

        let t = Instant::now();
        let views = raws
            .iter()
            .map(|(v, b)| direct::raw_view(*v, b))
            .collect::<Result<Vec<_>, _>>()?;
        airlock
            .with_ledger(|ledger| {
                let ctx = CheckContext {
                    snapshot: SNAPSHOT,
                    ledger: Some(ledger),
                };
                p.direct.explorer.protect(&filters, &views, &ctx)
            })
            .map_err(|e| err(&e))?;
        out.add(
            "protection: CSV of the rows, parse, perturb, rule pack with the airlock's ledger"
                .into(),
            class,
            t.elapsed(),
        );

        let mut sum = Duration::ZERO;
        for q in &queries {
            let t = Instant::now();
            direct::run_view(p.conn, &q.sql)?;
            let d = t.elapsed();
            sum += d;
            out.add(format!("DuckDB directly: {}", q.view.name()), class, d);
        }
        out.add("DuckDB directly: the 3 views".into(), class, sum);

        out.classes.push(class);
        out.filters.push(filters);
        out.server.push(sample);
        out.queries.push(queries);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn answer(status: u16, body: Value) -> Answer {
        Answer {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    fn view(values: Value, total: Value) -> Value {
        json!({"query_id": "q", "x": [{"key": "a"}, {"key": "b"}],
               "series": [{"label": {"key": "patients"}, "values": values, "total": total}]})
    }

    fn page(by_prefecture: Value) -> Value {
        let other = view(json!([{"value": 0}, {"value": 12}]), Value::Null);
        json!({"id": "r", "duration_ms": 42, "result": {
            "by_prefecture": by_prefecture, "by_severity": other, "by_institutions": other}})
    }

    #[test]
    fn clean_answers_pass_and_count_their_cells() {
        let ok = page(view(
            json!([{"value": 25}, {"suppressed": true, "display": "<10"}]),
            json!({"value": 31}),
        ));
        let c = check_answer(&answer(200, ok), 10).unwrap();
        assert_eq!((c.cells, c.suppressed, c.total), (7, 1, Some(31)));
        assert_eq!(c.duration_ms, Some(42.0));
        assert!(c.query_ids.is_some());
    }

    #[test]
    fn leaks_and_broken_answers_are_refused() {
        let bad_cells = [
            json!({"suppressed": true, "display": "<10", "value": 4}),
            json!({"suppressed": true, "display": "7"}),
            json!({"suppressed": true, "display": ""}),
            json!({"value": 4}),
            json!({"value": 25, "raw": 24}),
            json!({"display": "<10"}),
            json!(12),
        ];
        for cell in bad_cells {
            let body = page(view(json!([{"value": 25}, cell.clone()]), Value::Null));
            assert!(check_answer(&answer(200, body), 10).is_err(), "{cell}");
            // A leaking total is caught too.
            let body = page(view(json!([{"value": 25}, {"value": 0}]), cell.clone()));
            assert!(
                check_answer(&answer(200, body), 10).is_err(),
                "total {cell}"
            );
        }
        let short = page(view(json!([{"value": 25}]), Value::Null));
        assert!(check_answer(&answer(200, short), 10).is_err());
        let mut missing = page(view(json!([{"value": 25}, {"value": 0}]), Value::Null));
        missing["result"]
            .as_object_mut()
            .unwrap()
            .remove("by_institutions");
        assert!(check_answer(&answer(200, missing), 10).is_err());
        let ok = page(view(json!([{"value": 25}, {"value": 0}]), Value::Null));
        assert!(check_answer(&answer(422, ok), 10).is_err());
    }

    #[test]
    fn the_profile_takes_requests_of_each_class_in_turn() {
        let req = |class, n: u64| Request {
            class,
            body: json!({"n": n}),
            think_ms: 500,
        };
        let job = |r| Job {
            path: "/other".into(),
            request: r,
        };
        let jobs = vec![
            Caller {
                warmup: vec![],
                timed: vec![job(req(Class::Disease, 1)), job(req(Class::National, 2))],
            },
            Caller {
                warmup: vec![],
                timed: vec![job(req(Class::Disease, 3)), job(req(Class::Disease, 4))],
            },
        ];
        let picked = profile_jobs(&jobs, 2, "/p");
        let ns: Vec<u64> = picked
            .iter()
            .map(|j| j.request.body["n"].as_u64().unwrap())
            .collect();
        assert_eq!(ns, [1, 3, 2]);
        assert!(picked
            .iter()
            .all(|j| j.path == "/p" && j.request.think_ms == 0));
    }
}
