//! The measured load: HTTPS clients that sign in and send requests in a closed loop, the same
//! work on DuckDB directly from as many threads, and the statistics (percentiles, rate, CPU
//! time per request) of both. The clients and the closed loops are shared by every HTTPS
//! benchmark; the query and its check here are `kura bench server`'s.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kura_query::arrow::array::AsArray;
use kura_query::arrow::datatypes::Int64Type;
use kura_query::arrow::record_batch::RecordBatch;
use kura_query::Limits;
use serde_json::{json, Value};

use super::{BenchError, Stats, SQL};

/// The running server as the clients see it.
pub(super) struct Target {
    pub(super) origin: String,
    pub(super) pem: Vec<u8>,
    /// Every bench account's password.
    pub(super) password: String,
}

/// One timed request: the query id the client chose, wall-clock send and receive times (µs
/// since the epoch, to line up with the audit entries' timestamps) and the latency.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub(super) id: String,
    pub(super) sent_us: i64,
    pub(super) done_us: i64,
    pub(super) took: Duration,
}

pub(super) fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A random lower-case UUID (version 4), the form the query route accepts as a client's id.
fn uuid() -> Result<String, BenchError> {
    crate::routes::queries::new_uuid().map_err(client_err)
}

/// A signed-in browser: its own cookie jar and connection, and the session's CSRF token.
#[derive(Clone)]
pub(super) struct Client {
    http: reqwest::Client,
    origin: String,
    /// The account signed in.
    pub(super) user: String,
    csrf: String,
}

pub(super) fn client_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Client(e.to_string())
}

impl Target {
    pub(super) async fn sign_in(&self, user: &str) -> Result<Client, BenchError> {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.pem).map_err(client_err)?)
            .tls_built_in_root_certs(false)
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(client_err)?;
        let r = http
            .post(format!("{}/api/v1/session", self.origin))
            .header("origin", &self.origin)
            .header("x-kura-csrf", "login")
            .json(&json!({"username": user, "password": self.password}))
            .send()
            .await
            .map_err(client_err)?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        match body["csrf_token"].as_str() {
            Some(csrf) if status.is_success() => Ok(Client {
                http,
                origin: self.origin.clone(),
                user: user.to_string(),
                csrf: csrf.to_string(),
            }),
            _ => Err(BenchError::Client(format!(
                "sign-in of {user} answered {status}: {body}"
            ))),
        }
    }

    /// Signs in every account of `users`, in order.
    pub(super) async fn sign_in_all(&self, users: &[String]) -> Result<Vec<Client>, BenchError> {
        let mut clients = Vec::with_capacity(users.len());
        for user in users {
            clients.push(self.sign_in(user).await?);
        }
        Ok(clients)
    }
}

/// An answer: its status and body.
pub(super) struct Answer {
    pub(super) status: reqwest::StatusCode,
    pub(super) body: Vec<u8>,
}

impl Answer {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text, cut short, for error messages.
    pub(super) fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        if s.chars().count() > 2000 {
            format!("{}...", s.chars().take(2000).collect::<String>())
        } else {
            s.into_owned()
        }
    }
}

impl Client {
    /// `GET <origin><path>`.
    pub(super) async fn get(&self, path: &str) -> Result<Answer, BenchError> {
        let r = self
            .http
            .get(format!("{}{path}", self.origin))
            .send()
            .await
            .map_err(client_err)?;
        let status = r.status();
        let body = r.bytes().await.map_err(client_err)?.to_vec();
        Ok(Answer { status, body })
    }

    /// `POST <origin><path>` with a JSON body, the session's CSRF token and the Origin header,
    /// as the web UI sends it; the answer is read to its last byte.
    pub(super) async fn post(&self, path: &str, body: &Value) -> Result<Answer, BenchError> {
        let r = self
            .http
            .post(format!("{}{path}", self.origin))
            .header("origin", &self.origin)
            .header("x-kura-csrf", &self.csrf)
            .json(body)
            .send()
            .await
            .map_err(client_err)?;
        let status = r.status();
        let body = r.bytes().await.map_err(client_err)?.to_vec();
        Ok(Answer { status, body })
    }

    /// One query of `kura bench server`, timed from sending the request to the last byte of
    /// the answer. The account's project has the account's id.
    async fn query(&self, expect: i64) -> Result<Sample, BenchError> {
        let id = uuid()?;
        let body = json!({ "sql": SQL, "id": id });
        let path = format!("/api/v1/projects/{}/queries", self.user);
        let sent_us = wall_us();
        let t = Instant::now();
        let answer = self.post(&path, &body).await?;
        let took = t.elapsed();
        let done_us = wall_us();
        let v = answer.json();
        if !answer.status.is_success() || v["rows"][0][0].as_i64() != Some(expect) {
            return Err(BenchError::Client(format!(
                "the query answered {} (expected the count {expect}): {}",
                answer.status,
                answer.text()
            )));
        }
        Ok(Sample {
            id,
            sent_us,
            done_us,
            took,
        })
    }
}

/// Each client works through its own list of jobs (`work[i]` for `clients[i]`), one at a time:
/// `f` is called for the next job when the previous one has returned. Results per client, in
/// job order.
pub(super) async fn closed_loop<J, R, F, Fut>(
    clients: &[Client],
    work: Vec<Vec<J>>,
    f: F,
) -> Result<Vec<Vec<R>>, BenchError>
where
    J: Send + 'static,
    R: Send + 'static,
    F: Fn(Client, J) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<R, BenchError>> + Send,
{
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (client, jobs)) in clients.iter().cloned().zip(work).enumerate() {
        let f = f.clone();
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(f(client.clone(), job).await?);
            }
            Ok::<_, BenchError>((i, out))
        });
    }
    let mut all: Vec<Vec<R>> = (0..clients.len()).map(|_| Vec::new()).collect();
    while let Some(r) = tasks.join_next().await {
        let (i, out) = r.map_err(client_err)??;
        all[i] = out;
    }
    Ok(all)
}

/// `kura bench server`'s load: warm-up (at least one request per client), then `total`
/// queries spread over the clients in a closed loop, each answer checked against `expect`.
pub(super) async fn query_load(
    clients: &[Client],
    expect: i64,
    warmup: usize,
    total: usize,
) -> Result<(Stats, Vec<Sample>), BenchError> {
    let n = clients.len().max(1);
    let jobs =
        |counts: Vec<usize>| -> Vec<Vec<()>> { counts.into_iter().map(|k| vec![(); k]).collect() };
    let send = move |client: Client, ()| async move { client.query(expect).await };
    closed_loop(clients, jobs(vec![warmup.div_ceil(n).max(1); n]), send).await?;
    let cpu = Cpu::now();
    let t = Instant::now();
    let samples: Vec<Sample> = closed_loop(clients, jobs(split(total, n)), send)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let times = samples.iter().map(|s| s.took).collect();
    Ok((stats(times, t.elapsed(), cpu.since()), samples))
}

/// `total` requests over `n` callers as evenly as possible.
pub(super) fn split(total: usize, n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| total / n + usize::from(i < total % n))
        .collect()
}

/// Plain DuckDB on the same snapshot file: read-only, the server's threads and memory limit,
/// one database with one connection per caller.
pub(super) struct Baseline {
    pub(super) conn: duckdb::Connection,
}

pub(super) fn duck_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Baseline(e.to_string())
}

impl Baseline {
    pub(super) fn open(snapshot: &Path, limits: &Limits) -> Result<Baseline, BenchError> {
        let config = duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .and_then(|c| c.threads(i64::from(limits.threads)))
            .and_then(|c| c.max_memory(&format!("{}MiB", limits.memory_limit_mib)))
            .map_err(duck_err)?;
        let conn = duckdb::Connection::open_with_flags(snapshot, config).map_err(duck_err)?;
        Ok(Baseline { conn })
    }

    pub(super) fn count(&self) -> Result<i64, BenchError> {
        self.conn
            .query_row(SQL, [], |r| r.get::<_, i64>(0))
            .map_err(duck_err)
    }

    /// One query as the worker runs it: prepare, execute, collect the Arrow batches.
    pub(super) fn once(conn: &duckdb::Connection, expect: i64) -> Result<(), BenchError> {
        let mut stmt = conn.prepare(SQL).map_err(duck_err)?;
        let batches: Vec<RecordBatch> = stmt.query_arrow([]).map_err(duck_err)?.collect();
        let got = batches
            .first()
            .filter(|b| b.num_columns() > 0 && b.num_rows() > 0)
            .and_then(|b| {
                b.column(0)
                    .as_primitive_opt::<Int64Type>()
                    .map(|a| a.value(0))
            });
        if got != Some(expect) {
            return Err(BenchError::Baseline(format!(
                "answered {got:?}, expected {expect}"
            )));
        }
        Ok(())
    }

    /// `kura bench server`'s baseline: warm-up, then `total` queries from `callers` threads.
    pub(super) fn load(
        &self,
        callers: usize,
        warmup: usize,
        total: usize,
    ) -> Result<Stats, BenchError> {
        let expect = self.count()?;
        let n = callers.max(1);
        let work: Vec<Caller<()>> = split(total, n)
            .into_iter()
            .map(|k| Caller {
                warmup: vec![(); warmup.div_ceil(n).max(1)],
                timed: vec![(); k],
            })
            .collect();
        let conns = (0..n)
            .map(|_| self.conn.try_clone().map_err(duck_err))
            .collect::<Result<Vec<_>, _>>()?;
        let run = self::callers(
            conns,
            &work,
            |_| Duration::ZERO,
            |conn, ()| Baseline::once(conn, expect),
        )?;
        let times = run.results.iter().flatten().map(|(t, ())| *t).collect();
        Ok(stats(times, run.wall, run.cpu))
    }
}

/// Runs `work[i]` on `conns[i]`, one thread per caller: every caller does its warm-up jobs,
/// then all start their timed jobs together, one after the other, each after its `pause` (not
/// timed); `f` is timed per job.
pub(super) fn callers<J: Sync, R: Send>(
    conns: Vec<duckdb::Connection>,
    work: &[Caller<J>],
    pause: impl Fn(&J) -> Duration + Sync,
    f: impl Fn(&duckdb::Connection, &J) -> Result<R, BenchError> + Sync,
) -> Result<CallerRun<R>, BenchError> {
    let n = work.len().min(conns.len());
    let warm = std::sync::Barrier::new(n + 1);
    let go = std::sync::Barrier::new(n + 1);
    let (f, pause) = (&f, &pause);
    std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .into_iter()
            .zip(work)
            .map(|(conn, caller)| {
                let (warm, go) = (&warm, &go);
                s.spawn(move || {
                    let warmed = caller.warmup.iter().try_for_each(|j| f(&conn, j).map(drop));
                    warm.wait();
                    go.wait();
                    warmed?;
                    let mut out = Vec::with_capacity(caller.timed.len());
                    for j in &caller.timed {
                        std::thread::sleep(pause(j));
                        let t = Instant::now();
                        let r = f(&conn, j)?;
                        out.push((t.elapsed(), r));
                    }
                    Ok::<_, BenchError>(out)
                })
            })
            .collect();
        warm.wait();
        let cpu = Cpu::now();
        let t = Instant::now();
        go.wait();
        let mut results = Vec::with_capacity(n);
        for h in handles {
            results.push(
                h.join()
                    .map_err(|_| BenchError::Baseline("a caller thread panicked".into()))??,
            );
        }
        Ok(CallerRun {
            wall: t.elapsed(),
            cpu: cpu.since(),
            results,
        })
    })
}

/// One caller's jobs for [`callers`].
pub(super) struct Caller<J> {
    pub(super) warmup: Vec<J>,
    pub(super) timed: Vec<J>,
}

/// What [`callers`] measured: per caller, each timed job's time and result; the
/// wall-clock time and CPU (process, children) of the timed part.
pub(super) struct CallerRun<R> {
    pub(super) results: Vec<Vec<(Duration, R)>>,
    pub(super) wall: Duration,
    pub(super) cpu: Option<(f64, f64)>,
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentiles, mean and rate (`wall` zero: no rate).
pub(super) fn stats(mut v: Vec<Duration>, wall: Duration, cpu: Option<(f64, f64)>) -> Stats {
    v.sort();
    let n = v.len();
    let pct = |p: f64| {
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n.max(1));
        v.get(rank - 1).copied().map(ms).unwrap_or(0.0)
    };
    let per_request = |x: f64| x / n.max(1) as f64;
    Stats {
        requests: n,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        mean_ms: per_request(v.iter().map(|d| ms(*d)).sum()),
        max_ms: v.last().copied().map(ms).unwrap_or(0.0),
        per_second: if wall.is_zero() {
            0.0
        } else {
            n as f64 / wall.as_secs_f64()
        },
        cpu_ms_process: cpu.map(|c| per_request(c.0)),
        cpu_ms_workers: cpu.map(|c| per_request(c.1)),
    }
}

/// CPU time of this process and of its children (the sandbox workers), in USER_HZ ticks
/// (100 per second on Linux): the children's is what reaped children used (`cutime + cstime`
/// of /proc/self/stat) plus what the live ones used so far (their own stat), so a phase's
/// delta counts idle workers kept across it as well as those that exited during it.
pub(super) struct Cpu(Option<(u64, u64)>);

/// (ppid, utime + stime, cutime + cstime) from a /proc/<pid>/stat text.
fn parse_stat(text: &str) -> Option<(u32, u64, u64)> {
    // Fields after the command name, which ends at the last ')': state is field 3.
    let f: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    let ppid = f.get(1)?.parse().ok()?;
    Some((ppid, num(11)? + num(12)?, num(13)? + num(14)?))
}

/// CPU time of this process alone (all its threads), in ms at the kernel's tick resolution
/// (10 ms): cheap enough to read around each call, unbiased when summed over many.
pub(super) fn own_cpu_ms() -> Option<f64> {
    let (_, own, _) = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    Some(own as f64 * 10.0)
}

impl Cpu {
    pub(super) fn now() -> Cpu {
        let read = || -> Option<(u64, u64)> {
            let (_, own, reaped) = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
            let me = std::process::id();
            let live: u64 = std::fs::read_dir("/proc")
                .ok()?
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter_map(|t| parse_stat(&t))
                .filter(|(ppid, _, _)| *ppid == me)
                .map(|(_, used, _)| used)
                .sum();
            Some((own, reaped + live))
        };
        Cpu(read())
    }

    /// (process, children) CPU milliseconds since `now`.
    pub(super) fn since(&self) -> Option<(f64, f64)> {
        let (a, b) = (self.0?, Cpu::now().0?);
        let tick_ms = 10.0;
        Some((
            b.0.saturating_sub(a.0) as f64 * tick_ms,
            b.1.saturating_sub(a.1) as f64 * tick_ms,
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn requests_are_split_evenly_and_completely() {
        for (total, n) in [(2000, 50), (7, 3), (2, 5), (0, 1)] {
            let parts = split(total, n);
            assert_eq!(parts.len(), n);
            assert_eq!(parts.iter().sum::<usize>(), total);
            let (lo, hi) = (parts.iter().min().unwrap(), parts.iter().max().unwrap());
            assert!(hi - lo <= 1, "{parts:?}");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank_whatever_the_order() {
        // 1..=100 ms in a scrambled order.
        let times: Vec<Duration> = (0..100u64)
            .map(|i| Duration::from_millis((i * 37) % 100 + 1))
            .collect();
        let s = stats(times, Duration::from_secs(2), Some((300.0, 100.0)));
        assert_eq!(s.requests, 100);
        assert!((s.p50_ms - 50.0).abs() < 1e-9, "{}", s.p50_ms);
        assert!((s.p99_ms - 99.0).abs() < 1e-9, "{}", s.p99_ms);
        assert!((s.mean_ms - 50.5).abs() < 1e-9, "{}", s.mean_ms);
        assert!((s.max_ms - 100.0).abs() < 1e-9, "{}", s.max_ms);
        assert!((s.per_second - 50.0).abs() < 1e-9);
        assert_eq!(s.cpu_ms_process, Some(3.0));
        assert_eq!(s.cpu_ms_workers, Some(1.0));
        let one = stats(vec![Duration::from_millis(7)], Duration::ZERO, None);
        assert_eq!((one.p50_ms, one.p99_ms, one.per_second), (7.0, 7.0, 0.0));
    }

    #[test]
    fn query_ids_are_lower_case_version_4_uuids() {
        for _ in 0..100 {
            let id = uuid().unwrap();
            assert_eq!(id.len(), 36);
            for (i, c) in id.char_indices() {
                match i {
                    8 | 13 | 18 | 23 => assert_eq!(c, '-'),
                    _ => assert!(c.is_ascii_digit() || ('a'..='f').contains(&c), "{id}"),
                }
            }
            assert_eq!(&id[14..15], "4");
            assert!("89ab".contains(&id[19..20]), "{id}");
        }
    }

    #[test]
    fn a_live_childs_cpu_time_is_counted() {
        let before = Cpu::now();
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let (_, children) = before.since().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(children >= 50.0, "a busy live child counted {children} ms");
    }

    #[test]
    fn own_cpu_time_is_read_and_grows() {
        let before = Cpu::now();
        assert!(before.0.is_some(), "/proc/self/stat could not be parsed");
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let (process, _children) = before.since().unwrap();
        assert!(parse_stat("1 (a) b) R 7 1 1 0 -1 0 0 0 0 0 3 4 5 6 20")
            .is_some_and(|p| p == (7, 7, 11)));
        assert!(
            process >= 10.0,
            "{process} ms after 60 ms of spinning ({x})"
        );
    }
}
