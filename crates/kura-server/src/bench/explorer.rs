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
//! the threshold, the published grand total within the noise of DuckDB's raw total, and the run's
//! `explorer.run` entry in the audit log (filters and view query ids) equal to the request.
//!
//! An answer with an error status (e.g. a query timeout under overload) is counted as failed with
//! its time, not fatal; any other failed check ends the run.
//!
//! Then, with the server idle, a profile of a few requests, one at a time and interleaved so
//! that background load hits every step alike: the request through the server (one client), the
//! three views' rows from an index read here the server's way (through the sandbox), the
//! protection step, and the views' SQL on DuckDB directly, whose rows must equal the index's.
//! After the server has stopped, the baseline: every client's requests as the views' SQL on its
//! own read-only DuckDB database (a worker is one DuckDB) with the worker's threads and memory
//! limit, from as many threads, same think times: what serving the explorer by SQL would cost.

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

/// One view's statement in the baseline, by class (DuckDB directly, under the same load).
#[derive(Debug, Clone, Serialize)]
pub struct ViewRow {
    pub class: &'static str,
    pub view: &'static str,
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
    /// Answers whose `explorer.run` entry names the request's filters and the answer's queries.
    pub runs_audited: usize,
    /// Profile views whose rows from the index equal DuckDB's rows of the view's SQL.
    pub rows_identical: usize,
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
    /// The first `GET .../explorer` of the run (reads the snapshot's index through the sandbox
    /// unless the server has it already).
    pub first_get_ms: f64,
    /// The profile's own index: export through the sandbox and build, forms, patients, memory.
    pub index_build_ms: f64,
    pub index_forms: usize,
    pub index_patients: usize,
    pub index_heap_mib: f64,
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
    /// The run id the answer names.
    run_id: Option<String>,
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
    first_get_ms: f64,
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
    let (served, profiled) = server.serve(&state.password, |target, rt| {
        let served = rt.block_on(serve_phase(
            opts,
            target,
            &accounts,
            &paths,
            &prevalence,
            pack_threshold,
        ))?;
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
        Ok((served, profiled))
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

    // Every run's audit entry.
    let audit = audit_runs(&opts.state_dir, since_us)?;
    let mut checks = Checks {
        rows_identical: profiled.rows_identical,
        ..Checks::default()
    };

    // The baseline: the same jobs, their SQL rendered once.
    struct DirectJob {
        filters: Filters,
        queries: Vec<ViewQuery>,
        think_ms: u64,
    }
    let to_direct = |j: &Job| -> Result<DirectJob, BenchError> {
        let filters = direct.filters(&j.request.body)?;
        Ok(DirectJob {
            queries: direct.queries(&filters),
            filters,
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

    // Every run is audited with the request's filters and the answer's queries.
    for (c, samples) in served.timed.iter().enumerate() {
        for (k, s) in samples.iter().enumerate() {
            checks.runs_audited += same_run(&s.checked, &work[c].timed[k].filters, &audit)?;
        }
    }
    for (s, f) in profiled.server.iter().zip(&profiled.filters) {
        checks.runs_audited += same_run(&s.checked, f, &audit)?;
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
                duckdb: stats(duck, Duration::ZERO, None),
            });
        }
    }

    let profile = profiled.rows();
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
        first_get_ms: served.first_get_ms,
        index_build_ms: profiled.index_build_ms,
        index_forms: profiled.index_forms,
        index_patients: profiled.index_patients,
        index_heap_mib: profiled.index_heap_mib,
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
    let first_get_ms = load::ms(t.elapsed());
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
        first_get_ms,
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
        run_id: v["id"].as_str().map(String::from),
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

/// An explorer run as the audit log has it: its filters and view query ids.
#[derive(Debug, Clone, Default)]
struct Audited {
    filters: Value,
    queries: Value,
}

/// The `explorer.run` entries since `since_us`, by run id.
fn audit_runs(
    state: &std::path::Path,
    since_us: i64,
) -> Result<HashMap<String, Audited>, BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Breakdown(format!("audit log: {e}"));
    let kind = EventKind::ExplorerRun.as_str();
    let mut out: HashMap<String, Audited> = HashMap::new();
    let filter = SearchFilter {
        since_micros: Some(since_us),
        ..SearchFilter::default()
    };
    let mut reader = AuditReader::open(state).map_err(|e| err(&e))?;
    reader
        .search(&filter, &mut |hit| {
            if hit.leaf.kind.as_str() != kind {
                return Ok(());
            }
            let Some(p) = &hit.payload else {
                return Ok(());
            };
            if let Some(id) = p["run_id"].as_str() {
                out.insert(
                    id.to_string(),
                    Audited {
                        filters: p["filters"].clone(),
                        queries: p["queries"].clone(),
                    },
                );
            }
            Ok(())
        })
        .map_err(|e| err(&e))?;
    Ok(out)
}

/// 1 when the answer's run is in the audit log with `filters` and the answer's view queries
/// (0 when the answer names no run); an error if it is missing or differs.
fn same_run(
    checked: &Checked,
    filters: &Filters,
    audit: &HashMap<String, Audited>,
) -> Result<usize, BenchError> {
    let (Some(run), Some(ids)) = (&checked.run_id, &checked.query_ids) else {
        return Ok(0);
    };
    let logged = audit
        .get(run)
        .ok_or_else(|| BenchError::Check(format!("explorer run {run} is not in the audit log")))?;
    let want = serde_json::to_value(filters).map_err(|e| BenchError::Check(e.to_string()))?;
    if logged.filters != want {
        return Err(BenchError::Check(format!(
            "explorer run {run}: the audit log has filters {}, the request meant {want}",
            logged.filters
        )));
    }
    for (id, view) in ids.iter().zip(View::ALL) {
        if logged.queries[view.name()].as_str() != Some(id.as_str()) {
            return Err(BenchError::Check(format!(
                "explorer run {run}: the audit log names query {} for {}, the answer {id}",
                logged.queries[view.name()],
                view.name()
            )));
        }
    }
    Ok(1)
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

/// The profile's measurements: per request its class, filters and the server's answer; per
/// step (in the order steps first occur), each request's class and time; the index's facts.
struct Profiled {
    classes: Vec<Class>,
    filters: Vec<Filters>,
    server: Vec<ServerSample>,
    steps: Vec<(String, Vec<(Class, Duration)>)>,
    index_build_ms: f64,
    index_forms: usize,
    index_patients: usize,
    index_heap_mib: f64,
    rows_identical: usize,
}

impl Profiled {
    fn add(&mut self, name: &str, class: Class, d: Duration) {
        let found = self.steps.iter().position(|(n, _)| n == name);
        match found {
            Some(i) => self.steps[i].1.push((class, d)),
            None => self.steps.push((name.to_string(), vec![(class, d)])),
        }
    }

    fn rows(&self) -> Vec<ProfileRow> {
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
        self.steps
            .iter()
            .map(|(step, v)| ProfileRow {
                disease: by_class(v, Class::Disease),
                national: by_class(v, Class::National),
                step: step.clone(),
            })
            .collect()
    }
}

/// Reads the explorer's index of the snapshot the server's way: the export statement through
/// the sandboxed engine (the first project's grant, the server's index limits, no audit).
fn read_index(
    qe: &QueryEngine,
    scope: &ProjectScope,
    user: &str,
    snapshot: &std::path::Path,
    limits: kura_query::Limits,
) -> Result<kura_explorer::ExplorerIndex, BenchError> {
    let sql = kura_explorer::index::export_sql(RecordHash::default());
    let request = QueryRequest {
        sql: &sql,
        project: scope,
        user,
        session: None,
        snapshot,
        snapshot_sha256: None,
        id: None,
        limits: Some(crate::explorer::index_limits(limits)),
    };
    crate::explorer::read_index(qe, &request, &NullAudit)
        .map_err(|e| BenchError::Breakdown(format!("explorer index: {e}")))
}

/// Times the profile requests one at a time, each through every path in turn: the server with
/// the first client (the others idle), the three views' rows from an index read here the
/// server's way, the protection step on those rows (with the airlock's ledger, as the server
/// does), and the views' SQL on DuckDB directly, whose rows must equal the index's.
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
    let t = Instant::now();
    let index = read_index(&qe, &scope, p.user, p.snapshot, p.engine.limits)?;
    let index_build_ms = load::ms(t.elapsed());
    let client = p
        .served
        .clients
        .first()
        .ok_or_else(|| BenchError::Breakdown("no client".into()))?;
    let mut out = Profiled {
        classes: Vec::new(),
        filters: Vec::new(),
        server: Vec::new(),
        steps: Vec::new(),
        index_build_ms,
        index_forms: index.forms(),
        index_patients: index.patients(),
        index_heap_mib: index.heap_bytes() as f64 / f64::from(1 << 20),
        rows_identical: 0,
    };
    for job in p.jobs {
        let class = job.request.class;
        let filters = p.direct.filters(&job.request.body)?;
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
        out.add("server, 1 client: whole request", class, sample.took);

        let t = Instant::now();
        let views = index.raw_views(&filters);
        out.add("index alone: the 3 views' rows", class, t.elapsed());

        let t = Instant::now();
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
            "protection: perturb, rule pack with the airlock's ledger",
            class,
            t.elapsed(),
        );

        let mut sum = Duration::ZERO;
        for (q, from_index) in p.direct.queries(&filters).iter().zip(&views) {
            let t = Instant::now();
            let batches = direct::run_view(p.conn, &q.sql)?;
            let d = t.elapsed();
            sum += d;
            out.add(&format!("DuckDB directly: {}", q.view.name()), class, d);
            let mut from_sql = direct::raw_view(q.view, &batches)?;
            from_sql.rows.sort_by(|a, b| a.dims.cmp(&b.dims));
            if &from_sql != from_index {
                return Err(BenchError::Check(format!(
                    "{} of {}: the index's rows differ from DuckDB's",
                    q.view.name(),
                    job.request.body
                )));
            }
            out.rows_identical += 1;
        }
        out.add("DuckDB directly: the 3 views", class, sum);

        out.classes.push(class);
        out.filters.push(filters);
        out.server.push(sample);
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
