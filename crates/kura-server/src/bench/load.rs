//! The measured load: HTTPS clients that sign in and query the server in a closed loop, the
//! same SQL on DuckDB directly from as many threads, and the statistics (percentiles, rate,
//! CPU time per request) of both.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    pub(super) password: String,
    /// DuckDB's answer, which every server answer must match.
    pub(super) count: i64,
    pub(super) busy: bool,
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

fn wall_us() -> i64 {
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
    /// The queries URL of the account's project (its id is the account's).
    url: String,
    csrf: String,
}

fn client_err(e: impl std::fmt::Display) -> BenchError {
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
                url: format!("{}/api/v1/projects/{user}/queries", self.origin),
                csrf: csrf.to_string(),
            }),
            _ => Err(BenchError::Client(format!(
                "sign-in of {user} answered {status}: {body}"
            ))),
        }
    }

    /// Warm-up (at least one request per client), then `total` requests spread over the
    /// clients, each client sending its next request when the previous answer is in.
    pub(super) async fn load(
        &self,
        clients: &[Client],
        warmup: usize,
        total: usize,
    ) -> Result<(Stats, Vec<Sample>), BenchError> {
        let n = clients.len().max(1);
        self.closed_loop(clients, vec![warmup.div_ceil(n).max(1); n])
            .await?;
        let _spin = Spinners::start(self.busy);
        let cpu = Cpu::now();
        let t = Instant::now();
        let samples = self.closed_loop(clients, split(total, n)).await?;
        let times = samples.iter().map(|s| s.took).collect();
        Ok((stats(times, t.elapsed(), cpu.since()), samples))
    }

    async fn closed_loop(
        &self,
        clients: &[Client],
        counts: Vec<usize>,
    ) -> Result<Vec<Sample>, BenchError> {
        let mut tasks = tokio::task::JoinSet::new();
        for (client, k) in clients.iter().cloned().zip(counts) {
            let (origin, count) = (self.origin.clone(), self.count);
            tasks.spawn(async move {
                let mut times = Vec::with_capacity(k);
                for _ in 0..k {
                    times.push(client.query(&origin, count).await?);
                }
                Ok::<_, BenchError>(times)
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            all.extend(r.map_err(client_err)??);
        }
        Ok(all)
    }
}

impl Client {
    /// One query, timed from sending the request to the last byte of the answer.
    async fn query(&self, origin: &str, expect: i64) -> Result<Sample, BenchError> {
        let id = uuid()?;
        let body = json!({ "sql": SQL, "id": id });
        let sent_us = wall_us();
        let t = Instant::now();
        let r = self
            .http
            .post(&self.url)
            .header("origin", origin)
            .header("x-kura-csrf", &self.csrf)
            .json(&body)
            .send()
            .await
            .map_err(client_err)?;
        let status = r.status();
        let body = r.bytes().await.map_err(client_err)?;
        let took = t.elapsed();
        let done_us = wall_us();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() || v["rows"][0][0].as_i64() != Some(expect) {
            return Err(BenchError::Client(format!(
                "the query answered {status} (expected the count {expect}): {}",
                String::from_utf8_lossy(&body)
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

/// `total` requests over `n` callers as evenly as possible.
fn split(total: usize, n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| total / n + usize::from(i < total % n))
        .collect()
}

/// Plain DuckDB on the same snapshot file: read-only, the server's threads and memory limit,
/// one database with one connection per caller.
pub(super) struct Baseline {
    pub(super) conn: duckdb::Connection,
}

fn duck_err(e: impl std::fmt::Display) -> BenchError {
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

    pub(super) fn load(
        &self,
        callers: usize,
        warmup: usize,
        total: usize,
        busy: bool,
    ) -> Result<Stats, BenchError> {
        let expect = self.count()?;
        let n = callers.max(1);
        let conns = (0..n)
            .map(|_| self.conn.try_clone().map_err(duck_err))
            .collect::<Result<Vec<_>, _>>()?;
        let warm = std::sync::Barrier::new(n + 1);
        let go = std::sync::Barrier::new(n + 1);
        let counts = split(total, n);
        let warm_each = warmup.div_ceil(n).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = conns
                .into_iter()
                .zip(counts)
                .map(|(conn, k)| {
                    let (warm, go) = (&warm, &go);
                    s.spawn(move || {
                        let warmed = (0..warm_each).try_for_each(|_| Baseline::once(&conn, expect));
                        warm.wait();
                        go.wait();
                        warmed?;
                        let mut times = Vec::with_capacity(k);
                        for _ in 0..k {
                            let t = Instant::now();
                            Baseline::once(&conn, expect)?;
                            times.push(t.elapsed());
                        }
                        Ok::<_, BenchError>(times)
                    })
                })
                .collect();
            warm.wait();
            let _spin = Spinners::start(busy);
            let cpu = Cpu::now();
            let t = Instant::now();
            go.wait();
            let mut all = Vec::new();
            for h in handles {
                let times = h
                    .join()
                    .map_err(|_| BenchError::Baseline("a caller thread panicked".into()))??;
                all.extend(times);
            }
            Ok(stats(all, t.elapsed(), cpu.since()))
        })
    }
}

fn ms(d: Duration) -> f64 {
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
        per_second: if wall.is_zero() {
            0.0
        } else {
            n as f64 / wall.as_secs_f64()
        },
        cpu_ms_process: cpu.map(|c| per_request(c.0)),
        cpu_ms_workers: cpu.map(|c| per_request(c.1)),
    }
}

/// CPU time of this process and of its reaped children (the sandbox workers), from
/// /proc/self/stat (fields 14-17, in USER_HZ = 100 ticks per second on Linux).
struct Cpu(Option<(u64, u64)>);

impl Cpu {
    fn now() -> Cpu {
        let read = || -> Option<(u64, u64)> {
            let text = std::fs::read_to_string("/proc/self/stat").ok()?;
            // Fields after the command name, which ends at the last ')': state is field 3.
            let rest = text.get(text.rfind(')')? + 1..)?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .skip(11)
                .take(4)
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            Some((f.first()? + f.get(1)?, f.get(2)? + f.get(3)?))
        };
        Cpu(read())
    }

    /// (process, children) CPU milliseconds since `now`.
    fn since(&self) -> Option<(f64, f64)> {
        let (a, b) = (self.0?, Cpu::now().0?);
        let tick_ms = 10.0;
        Some((
            b.0.saturating_sub(a.0) as f64 * tick_ms,
            b.1.saturating_sub(a.1) as f64 * tick_ms,
        ))
    }
}

/// A spinning thread on every core while alive (when `on`): on a VM whose idle vCPUs answer a
/// disk sync only at the next timer tick this shows what the same syncs cost on busy CPUs.
pub(super) struct Spinners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Spinners {
    pub(super) fn start(on: bool) -> Spinners {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (0..if on { cores } else { 0 })
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Spinners { stop, threads }
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
