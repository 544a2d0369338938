//! `kura bench load`: a soak at a steady request rate over N `kura serve` nodes (processes of the
//! running binary) sharing one PostgreSQL and one state directory, for each node count asked
//! (e.g. 1, 2, 3). The requests are a fixed mix of what users do: sign-ins, queries, the data
//! catalog, query history, and the airlock (staging a result, describing and submitting it, two
//! checkers' approvals that release it, the checkers' queue). Request `j` goes to node
//! `j mod N`; a user's session (cookie) works on every node.
//!
//! The load is open: requests are started on a fixed schedule (`rate` per second) whether or not
//! earlier ones have finished, so a slow server shows as latency, not as a lower offered rate.
//! Every answer is checked (status and shape); anything else, a transport error included, is an
//! error (the goal is none). Each node's resident memory (VmRSS of the `kura serve` process) is
//! sampled every second; the report gives first, at a tenth of the run, last and max per node,
//! and requests/s, p50 and p99 overall and per kind. At the end the shared audit log is verified.
//!
//! The database: a schema of the run's own (`kura_bench_load_<pid>`) in `database_url`, created
//! at the start and dropped at the end; the node counts run one after the other on it, so the
//! later runs start with the log of the earlier ones (as a growing deployment would).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use kura_store::{NewAccount, StoreLocation};
use serde::Serialize;
use serde_json::{json, Value};

use super::load::{client_err, stats};
use super::setup::prepare_state_at;
use super::{BenchError, SnapshotSource, Stats};

/// The query every researcher runs: a table the airlock can release (a count per prefecture).
pub const SQL: &str =
    "SELECT pref_code AS \"dim:prefecture\", count(DISTINCT research_id) AS \"count:patients\" \
     FROM nanbyo_forms GROUP BY pref_code ORDER BY pref_code";
const PROJECT: &str = "load";
const CHECKERS: [&str; 2] = ["load-checker-1", "load-checker-2"];
/// Requests started but not answered at most; beyond it the schedule counts an error.
const MAX_IN_FLIGHT: usize = 1024;

/// The mix, per 20 requests.
const MIX: [Kind; 20] = {
    use Kind::*;
    [
        Query, Catalog, Airlock, History, Query, SignIn, Airlock, Catalog, Query, Airlock, Query,
        History, Catalog, Airlock, Query, SignIn, Airlock, Catalog, Query, Airlock,
    ]
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    SignIn,
    Query,
    Catalog,
    History,
    /// The next step of an output's review, else staging a result, else the checkers' queue.
    Airlock,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::SignIn => "sign-in",
            Kind::Query => "query",
            Kind::Catalog => "catalog",
            Kind::History => "history",
            Kind::Airlock => "airlock",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    pub snapshot: SnapshotSource,
    /// The PostgreSQL the nodes share; the run works in a schema of its own there.
    pub database_url: String,
    /// Node counts, run one after the other.
    pub nodes: Vec<usize>,
    /// Of each node count's run.
    pub duration: Duration,
    /// Requests started per second, over all nodes.
    pub rate: f64,
    /// Researcher accounts (each with its own session).
    pub users: usize,
    /// The `kura` binary the nodes run.
    pub kura: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `postgres://user@host:port/db` (no password) and the run's schema.
    pub database: String,
    pub rate: f64,
    pub duration_s: f64,
    pub users: usize,
    pub runs: Vec<Run>,
    /// The shared audit log after the last run: entries, and whether it verifies.
    pub audit_entries: u64,
    pub audit_intact: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub nodes: usize,
    /// Requests scheduled (rate x duration) and answered as expected.
    pub scheduled: usize,
    pub errors: usize,
    /// The first few errors, as said.
    pub first_errors: Vec<String>,
    /// Answered requests / wall time from the first request to the last answer.
    pub overall: Stats,
    pub kinds: BTreeMap<Kind, Stats>,
    pub per_node: Vec<NodeRun>,
    /// Outputs released in the run.
    pub released: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeRun {
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// VmRSS of the `kura serve` process in MiB (not its sandbox workers, which are processes
    /// of their own): first sample (as the load starts), at a tenth of the run (warmed up:
    /// worker pools and caches filled), last, and the largest.
    pub rss_first_mib: f64,
    pub rss_warm_mib: f64,
    pub rss_last_mib: f64,
    pub rss_max_mib: f64,
    pub rss_samples: usize,
}

fn setup_err(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(format!("{what}: {e}"))
}

/// `url` with `search_path` set to `schema` (libpq `options`).
fn url_in_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// Runs one statement on the database (creating or dropping the run's schema).
fn admin(url: &str, sql: &str) -> Result<(), BenchError> {
    let options = kura_sql::PgOptions {
        application_name: "kura-bench-load",
        max_connections: 1,
        lock_timeout: Duration::from_secs(30),
        idle_in_transaction: Duration::from_secs(60),
        database: "the benchmark's database",
        connection: "the benchmark's PostgreSQL connection",
        tables: "the benchmark's schema",
    };
    let sql = sql.to_string();
    kura_sql::Pg::open(url, options, move |c| c.batch_execute(&sql))
        .map(drop)
        .map_err(|e| setup_err("PostgreSQL", e))
}

/// The run's schema, dropped when this goes out of scope.
struct Schema {
    base: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Err(e) = admin(
            &self.base,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        ) {
            tracing::warn!("dropping the benchmark schema {}: {e}", self.name);
        }
    }
}

pub fn run(options: &Options) -> Result<Report, BenchError> {
    if options.nodes.is_empty() || options.nodes.contains(&0) {
        return Err(BenchError::Setup("give node counts of at least 1".into()));
    }
    if options.rate.is_nan() || options.rate <= 0.0 {
        return Err(BenchError::Setup("the rate must be positive".into()));
    }
    crate::config::check_database_url(&options.database_url)
        .map_err(|e| setup_err("--database-url", e))?;
    let schema = Schema {
        base: options.database_url.clone(),
        name: format!("kura_bench_load_{}", std::process::id()),
    };
    admin(
        &schema.base,
        &format!("CREATE SCHEMA IF NOT EXISTS {}", schema.name),
    )?;
    let url = url_in_schema(&schema.base, &schema.name);
    let users: Vec<String> = (0..options.users.max(1))
        .map(|i| format!("load-{i:03}"))
        .collect();
    let password = seed(options, &url, &users)?;
    let config = options.state_dir.join("bench-load.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\nlisten = \"127.0.0.1:0\"\ndatabase_url = {:?}\n",
            options.state_dir.display().to_string(),
            url
        ),
    )
    .map_err(|e| setup_err(&config.display().to_string(), e))?;
    let pem_path = options.state_dir.join("tls/cert.pem");
    let mut runs = Vec::new();
    for &n in &options.nodes {
        let mut nodes = Nodes::start(&options.kura, &config, n)?;
        let pem =
            std::fs::read(&pem_path).map_err(|e| setup_err(&pem_path.display().to_string(), e))?;
        let measured = soak(options, &nodes, &pem, &password, &users);
        let stopped = nodes.stop();
        let run = measured?;
        stopped?;
        runs.push(run);
    }
    let location = kura_audit::AuditLocation::postgres(
        url.as_str(),
        options.state_dir.join(kura_audit::KEY_FILE),
    );
    let audit = kura_audit::verify::verify_at(&location, None, None)
        .map_err(|e| setup_err("verifying the audit log", e))?;
    Ok(Report {
        database: format!("{} schema {}", kura_sql::label_of_url(&url), schema.name),
        rate: options.rate,
        duration_s: options.duration.as_secs_f64(),
        users: users.len(),
        runs,
        audit_entries: audit.entries,
        audit_intact: audit.intact(),
    })
}

/// The snapshot, the researchers (members of one project granting every table) and two
/// checkers, in the run's schema; returns the accounts' password.
fn seed(options: &Options, url: &str, users: &[String]) -> Result<String, BenchError> {
    let state = prepare_state_at(
        &options.state_dir,
        &options.snapshot,
        &StoreLocation::Postgres(url.to_string()),
    )?;
    state.ensure_accounts(users)?;
    let hash = kura_identity::password::hash_password(&state.password)
        .map_err(|e| setup_err("password hash", e))?;
    let roles = vec!["checker".to_string()];
    for id in CHECKERS {
        let exists = state
            .store
            .account(id)
            .map_err(|e| setup_err("store", e))?
            .is_some();
        if !exists {
            let new = NewAccount {
                id,
                name: "Benchmark checker",
                roles: &roles,
                password_hash: &hash,
            };
            state
                .store
                .create_account(&new, Utc::now())
                .map_err(|e| setup_err("account", e))?;
        }
    }
    let tables = state
        .rows
        .keys()
        .map(|t| (t.clone(), vec!["*".to_string()]))
        .collect();
    state.ensure_project(PROJECT, "kura bench load", &tables, users)?;
    Ok(state.password)
}

/// The running nodes.
struct Nodes {
    children: Vec<Child>,
    origins: Vec<String>,
}

impl Nodes {
    /// Starts the first node alone (it creates the shared keys), then the others together.
    fn start(kura: &Path, config: &Path, n: usize) -> Result<Nodes, BenchError> {
        let mut nodes = Nodes {
            children: Vec::new(),
            origins: Vec::new(),
        };
        let (child, origin) = spawn(kura, config)?;
        nodes.children.push(child);
        nodes.origins.push(origin);
        let pending: Vec<_> = (1..n)
            .map(|_| spawn_only(kura, config))
            .collect::<Result<_, _>>()?;
        for (child, ready) in pending {
            nodes.children.push(child);
            let origin = ready
                .recv_timeout(Duration::from_secs(120))
                .map_err(|_| setup_err("a node", "did not start within 120 s"))?;
            nodes.origins.push(origin);
        }
        Ok(nodes)
    }

    /// SIGTERM to each, then waits: each drains and closes its audit log.
    fn stop(&mut self) -> Result<(), BenchError> {
        for c in &self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        let mut failed = Vec::new();
        for c in &mut self.children {
            match c.wait() {
                Ok(s) if s.success() => {}
                Ok(s) => failed.push(format!("node {} stopped with {s}", c.id())),
                Err(e) => failed.push(format!("node {}: {e}", c.id())),
            }
        }
        self.children.clear();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(BenchError::Check(failed.join("; ")))
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `kura serve` and returns it with a channel that gets its origin when it is ready.
fn spawn_only(
    kura: &Path,
    config: &Path,
) -> Result<(Child, std::sync::mpsc::Receiver<String>), BenchError> {
    let mut child = Command::new(kura)
        .args(["serve", "--config"])
        .arg(config)
        .env("KURA_LOG", "warn")
        .env_remove("KURA_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| setup_err(&kura.display().to_string(), e))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| setup_err("a node", "no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(origin) = line.strip_prefix("kura: serving ") {
                let _ = tx.send(origin.to_string());
            }
        }
    });
    Ok((child, rx))
}

fn spawn(kura: &Path, config: &Path) -> Result<(Child, String), BenchError> {
    let (mut child, rx) = spawn_only(kura, config)?;
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(origin) => Ok((child, origin)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(setup_err("a node", "did not start within 120 s"))
        }
    }
}

/// Resident memory of a process in MiB, from /proc.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// A user's session: one cookie jar (valid on every node) and its CSRF token.
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    csrf: String,
}

fn http_client(pem: &[u8]) -> Result<reqwest::Client, BenchError> {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem).map_err(client_err)?)
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(client_err)
}

/// Sends one request; (status, JSON body or Null).
async fn send(
    http: &reqwest::Client,
    origin: &str,
    csrf: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut rb = http
        .request(method, format!("{origin}{path}"))
        .header("origin", origin)
        .header("x-kura-csrf", csrf);
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let r = rb.send().await.map_err(|e| format!("{path}: {e}"))?;
    let status = r.status().as_u16();
    let bytes = r.bytes().await.map_err(|e| format!("{path}: {e}"))?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

async fn sign_in(pem: &[u8], origin: &str, user: &str, password: &str) -> Result<Session, String> {
    let http = http_client(pem).map_err(|e| e.to_string())?;
    let body = json!({"username": user, "password": password});
    let (status, v) = send(
        &http,
        origin,
        "login",
        reqwest::Method::POST,
        "/api/v1/session",
        Some(&body),
    )
    .await?;
    match v["csrf_token"].as_str() {
        Some(csrf) if status == 200 => Ok(Session {
            http,
            csrf: csrf.to_string(),
        }),
        _ => Err(format!("sign-in of {user}: {status} {v}")),
    }
}

/// An output on its way through the airlock: who staged it and the step it is at.
#[derive(Debug, Clone)]
struct InReview {
    output: String,
    author: usize,
    /// 0 describe, 1 submit, 2 first vote, 3 second vote (releases).
    step: u8,
}

/// What the requests share during a run.
struct Shared {
    origins: Vec<String>,
    pem: Vec<u8>,
    password: String,
    users: Vec<String>,
    sessions: Vec<Session>,
    checkers: Vec<Session>,
    /// Per user: completed queries not staged yet.
    results: Vec<Mutex<VecDeque<String>>>,
    /// Outputs whose next step may be taken (taken out while a step is in flight).
    reviews: Mutex<VecDeque<InReview>>,
    released: Mutex<usize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The outcome of one request: (kind, node, time, error).
type Outcome = (Kind, usize, Duration, Option<String>);

async fn request(shared: Arc<Shared>, j: usize, node: usize) -> Outcome {
    let kind = MIX[j % MIX.len()];
    let user = (j / MIX.len() + j) % shared.users.len();
    let t = Instant::now();
    let result = match kind {
        Kind::SignIn => sign_in(
            &shared.pem,
            &shared.origins[node],
            &shared.users[user],
            &shared.password,
        )
        .await
        .map(drop),
        Kind::Query => query(&shared, node, user).await,
        Kind::Catalog => get(&shared, node, user, "/api/v1/catalog").await,
        Kind::History => {
            get(
                &shared,
                node,
                user,
                &format!("/api/v1/projects/{PROJECT}/queries"),
            )
            .await
        }
        Kind::Airlock => airlock(&shared, node, user).await,
    };
    (kind, node, t.elapsed(), result.err())
}

async fn get(shared: &Shared, node: usize, user: usize, path: &str) -> Result<(), String> {
    let s = &shared.sessions[user];
    let (status, v) = send(
        &s.http,
        &shared.origins[node],
        &s.csrf,
        reqwest::Method::GET,
        path,
        None,
    )
    .await?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("GET {path}: {status} {v}"))
    }
}

async fn query(shared: &Shared, node: usize, user: usize) -> Result<(), String> {
    let s = &shared.sessions[user];
    let path = format!("/api/v1/projects/{PROJECT}/queries");
    let (status, v) = send(
        &s.http,
        &shared.origins[node],
        &s.csrf,
        reqwest::Method::POST,
        &path,
        Some(&json!({ "sql": SQL })),
    )
    .await?;
    match v["id"].as_str() {
        Some(id) if status == 200 && v["row_count"].as_u64().is_some_and(|n| n > 0) => {
            let mut results = lock(&shared.results[user]);
            // Keep a few to stage; older ones are only history.
            if results.len() < 4 {
                results.push_back(id.to_string());
            }
            Ok(())
        }
        _ => Err(format!("query: {status} {v}")),
    }
}

/// The next step of an output in review if one is waiting, else staging this user's last
/// result, else the checkers' queue.
async fn airlock(shared: &Shared, node: usize, user: usize) -> Result<(), String> {
    let origin = &shared.origins[node];
    let next = lock(&shared.reviews).pop_front();
    if let Some(mut r) = next {
        let base = format!("/api/v1/projects/{PROJECT}/outputs/{}", r.output);
        let author = &shared.sessions[r.author];
        let (session, method, path, body, want, state) = match r.step {
            0 => (
                author,
                reqwest::Method::PUT,
                format!("{base}/context"),
                json!({"description": "Patients with any designated disease by prefecture",
                       "denominators": "All patients with a consenting form in the snapshot",
                       "method": "count(DISTINCT research_id) grouped by pref_code"}),
                200,
                None,
            ),
            1 => (
                author,
                reqwest::Method::POST,
                format!("{base}/submit"),
                json!({}),
                200,
                Some("submitted"),
            ),
            k => (
                &shared.checkers[usize::from(k - 2)],
                reqwest::Method::POST,
                format!("{base}/votes"),
                json!({"decision": "approve"}),
                200,
                Some(if k == 2 { "submitted" } else { "released" }),
            ),
        };
        let (status, v) = send(
            &session.http,
            origin,
            &session.csrf,
            method,
            &path,
            Some(&body),
        )
        .await?;
        if status != want || state.is_some_and(|s| v["state"] != s) {
            return Err(format!("{path}: {status} {v}"));
        }
        if r.step == 3 {
            *lock(&shared.released) += 1;
        } else {
            r.step += 1;
            lock(&shared.reviews).push_back(r);
        }
        return Ok(());
    }
    let staged = lock(&shared.results[user]).pop_front();
    if let Some(qid) = staged {
        let s = &shared.sessions[user];
        let path = format!("/api/v1/projects/{PROJECT}/outputs");
        let (status, v) = send(
            &s.http,
            origin,
            &s.csrf,
            reqwest::Method::POST,
            &path,
            Some(&json!({"query_id": qid, "title": "Patients by prefecture"})),
        )
        .await?;
        return match v["id"].as_str() {
            Some(id) if status == 201 => {
                lock(&shared.reviews).push_back(InReview {
                    output: id.to_string(),
                    author: user,
                    step: 0,
                });
                Ok(())
            }
            _ => Err(format!("staging: {status} {v}")),
        };
    }
    let c = &shared.checkers[user % shared.checkers.len()];
    let (status, v) = send(
        &c.http,
        origin,
        &c.csrf,
        reqwest::Method::GET,
        "/api/v1/reviews",
        None,
    )
    .await?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("GET /api/v1/reviews: {status} {v}"))
    }
}

/// One node count's run.
fn soak(
    options: &Options,
    nodes: &Nodes,
    pem: &[u8],
    password: &str,
    users: &[String],
) -> Result<Run, BenchError> {
    let n = nodes.origins.len();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("bench-load")
        .build()
        .map_err(|e| setup_err("async runtime", e))?;
    rt.block_on(async {
        // Every user signs in once (spread over the nodes); the sessions are shared.
        let mut sessions = Vec::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            sessions.push(
                sign_in(pem, &nodes.origins[i % n], u, password)
                    .await
                    .map_err(BenchError::Client)?,
            );
        }
        let mut checkers = Vec::new();
        for (i, c) in CHECKERS.iter().enumerate() {
            checkers.push(
                sign_in(pem, &nodes.origins[i % n], c, password)
                    .await
                    .map_err(BenchError::Client)?,
            );
        }
        let shared = Arc::new(Shared {
            origins: nodes.origins.clone(),
            pem: pem.to_vec(),
            password: password.to_string(),
            users: users.to_vec(),
            sessions,
            checkers,
            results: users.iter().map(|_| Mutex::new(VecDeque::new())).collect(),
            reviews: Mutex::new(VecDeque::new()),
            released: Mutex::new(0),
        });

        // Memory, every second, until the requests are done.
        let pids: Vec<u32> = nodes.children.iter().map(Child::id).collect();
        let (stop_sampling, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let sampler = tokio::spawn(async move {
            let mut samples: Vec<Vec<f64>> = pids.iter().map(|_| Vec::new()).collect();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        for (i, pid) in pids.iter().enumerate() {
                            if let Some(m) = rss_mib(*pid) {
                                samples[i].push(m);
                            }
                        }
                    }
                    _ = &mut stopped => break,
                }
            }
            samples
        });

        let total = (options.rate * options.duration.as_secs_f64()).round() as usize;
        let period = Duration::from_secs_f64(1.0 / options.rate);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(total);
        for j in 0..total {
            tokio::time::sleep_until((started + period.mul_f64(j as f64)).into()).await;
            while let Some(done) = tasks.try_join_next() {
                outcomes.push(done.map_err(client_err)?);
            }
            if tasks.len() >= MAX_IN_FLIGHT {
                outcomes.push((
                    MIX[j % MIX.len()],
                    j % n,
                    Duration::ZERO,
                    Some(format!("{MAX_IN_FLIGHT} requests in flight: not started")),
                ));
                continue;
            }
            tasks.spawn(request(shared.clone(), j, j % n));
        }
        while let Some(done) = tasks.join_next().await {
            outcomes.push(done.map_err(client_err)?);
        }
        let wall = started.elapsed();
        let _ = stop_sampling.send(());
        let rss = sampler.await.map_err(client_err)?;
        let released = *lock(&shared.released);
        Ok(summarise(n, total, wall, &outcomes, &rss, released))
    })
}

fn summarise(
    n: usize,
    scheduled: usize,
    wall: Duration,
    outcomes: &[Outcome],
    rss: &[Vec<f64>],
    released: usize,
) -> Run {
    let ok = |o: &&Outcome| o.3.is_none();
    let times = |f: &dyn Fn(&Outcome) -> bool| -> Vec<Duration> {
        outcomes
            .iter()
            .filter(ok)
            .filter(|o| f(o))
            .map(|o| o.2)
            .collect()
    };
    let errors: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.3.as_ref()
                .map(|e| format!("{} on node {}: {e}", o.0.name(), o.1))
        })
        .collect();
    let mut kinds = BTreeMap::new();
    for kind in [
        Kind::SignIn,
        Kind::Query,
        Kind::Catalog,
        Kind::History,
        Kind::Airlock,
    ] {
        kinds.insert(kind, stats(times(&|o| o.0 == kind), wall, None));
    }
    let per_node = (0..n)
        .map(|i| {
            let s = stats(times(&|o| o.1 == i), wall, None);
            let r = rss.get(i).map(Vec::as_slice).unwrap_or_default();
            NodeRun {
                requests: s.requests,
                p50_ms: s.p50_ms,
                p99_ms: s.p99_ms,
                rss_first_mib: r.first().copied().unwrap_or(0.0),
                rss_warm_mib: r.get(r.len() / 10).copied().unwrap_or(0.0),
                rss_last_mib: r.last().copied().unwrap_or(0.0),
                rss_max_mib: r.iter().copied().fold(0.0, f64::max),
                rss_samples: r.len(),
            }
        })
        .collect();
    Run {
        nodes: n,
        scheduled,
        errors: errors.len(),
        first_errors: errors.into_iter().take(10).collect(),
        overall: stats(times(&|_| true), wall, None),
        kinds,
        per_node,
        released,
    }
}

/// The report as Markdown tables for docs/benchmarks.md.
pub fn markdown(r: &Report) -> String {
    let mut out = format!(
        "Soak: {} requests/s offered for {:.0} s per node count, {} researchers + 2 checkers, \
         PostgreSQL {}.\n\n\
         | nodes | answered | requests/s | p50 ms | p99 ms | errors | released | RSS MiB per node (first / at 10% / last / max) |\n\
         |---|---|---|---|---|---|---|---|\n",
        r.rate, r.duration_s, r.users, r.database
    );
    for run in &r.runs {
        let rss: Vec<String> = run
            .per_node
            .iter()
            .map(|n| {
                format!(
                    "{:.0} / {:.0} / {:.0} / {:.0}",
                    n.rss_first_mib, n.rss_warm_mib, n.rss_last_mib, n.rss_max_mib
                )
            })
            .collect();
        out.push_str(&format!(
            "| {} | {} of {} | {:.1} | {:.1} | {:.1} | {} | {} | {} |\n",
            run.nodes,
            run.overall.requests,
            run.scheduled,
            run.overall.per_second,
            run.overall.p50_ms,
            run.overall.p99_ms,
            run.errors,
            run.released,
            rss.join("; ")
        ));
    }
    out.push_str(
        "\n| nodes | kind | answered | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n",
    );
    for run in &r.runs {
        for (kind, s) in &run.kinds {
            out.push_str(&format!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
                run.nodes,
                kind.name(),
                s.requests,
                s.p50_ms,
                s.p99_ms,
                s.max_ms
            ));
        }
    }
    out.push_str(&format!(
        "\nAudit log after the runs: {} entries, {}.\n",
        r.audit_entries,
        if r.audit_intact {
            "verifies"
        } else {
            "DOES NOT VERIFY"
        }
    ));
    for run in &r.runs {
        for e in &run.first_errors {
            out.push_str(&format!("\n- {} nodes: {e}", run.nodes));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_every_kind_and_the_schema_is_set_by_the_url() {
        for kind in [
            Kind::SignIn,
            Kind::Query,
            Kind::Catalog,
            Kind::History,
            Kind::Airlock,
        ] {
            assert!(MIX.contains(&kind), "{kind:?}");
        }
        assert_eq!(
            url_in_schema("postgres://u@h/d", "s"),
            "postgres://u@h/d?options=-c%20search_path%3Ds"
        );
        assert_eq!(
            url_in_schema("postgres://u@h/d?x=1", "s"),
            "postgres://u@h/d?x=1&options=-c%20search_path%3Ds"
        );
    }
}
