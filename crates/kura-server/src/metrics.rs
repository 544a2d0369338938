//! Prometheus metrics (docs/server.md#metrics): the process-wide registry, the handles the
//! request path records into (HTTP requests, sandbox queries, explorer runs, audit appends,
//! sign-ins), the gauges read when Prometheus scrapes (the airlock's reviews by state, the
//! process's memory and file descriptors), and the `/metrics` router served on its own
//! plain-HTTP listener (`[metrics] listen`), never on the researchers' HTTPS port.
//!
//! Labels come from closed sets only (route templates, method names, status classes, outcome
//! words, event types): never a raw path, a user, a project, SQL or any data value, so neither
//! the series count nor what a scrape reveals depends on what users send.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kura_audit::EventKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::error::ApiError;
use crate::state::AppState;

/// Content type of the Prometheus text format (0.0.4) that `/metrics` answers with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route template of requests that matched no route (never the raw path).
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppendLabels {
    source: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SigninLabels {
    method: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

/// Where an audit append came from: the server's own handlers, or the query engine (its
/// `query.submitted` / `query.completed` / `query.refused`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendSource {
    Server,
    Engine,
}

impl AppendSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AppendSource::Server => "server",
            AppendSource::Engine => "engine",
        }
    }
}

/// Every metric Kura exports. One per process (`global()`): a node is one process.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Hist<RouteLabels>,
    http_in_flight: Gauge,
    queries: Family<OutcomeLabels, Counter>,
    query_duration: Hist<OutcomeLabels>,
    explorer_runs: Family<OutcomeLabels, Counter>,
    explorer_duration: Hist<OutcomeLabels>,
    audit_appends: Family<TypeLabels, Counter>,
    audit_append_duration: Hist<AppendLabels>,
    signins: Family<SigninLabels, Counter>,
    airlock_reviews: Family<StateLabels, Gauge>,
    airlock_scrape_errors: Counter,
    spans_dropped: Counter,
    span_export_failures: Counter,
    resident_memory: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    threads: Gauge,
    start_time: Gauge,
}

fn request_buckets() -> Histogram {
    // 1 ms .. ~65 s: sign-in (argon2id) and queries are the slow ones.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

fn query_buckets() -> Histogram {
    // 10 ms .. ~5.5 min: a query's default timeout is 60 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.01, 2.0, 16,
    ))
}

fn append_buckets() -> Histogram {
    // 100 µs .. ~3.3 s: an append waits for a durable commit (fsync, or a PostgreSQL commit).
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 16,
    ))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(request_buckets as fn() -> Histogram),
            http_in_flight: Gauge::default(),
            queries: Family::default(),
            query_duration: Family::new_with_constructor(query_buckets as fn() -> Histogram),
            explorer_runs: Family::default(),
            explorer_duration: Family::new_with_constructor(query_buckets as fn() -> Histogram),
            audit_appends: Family::default(),
            audit_append_duration: Family::new_with_constructor(
                append_buckets as fn() -> Histogram,
            ),
            signins: Family::default(),
            airlock_reviews: Family::default(),
            airlock_scrape_errors: Counter::default(),
            spans_dropped: Counter::default(),
            span_export_failures: Counter::default(),
            resident_memory: Gauge::default(),
            virtual_memory: Gauge::default(),
            open_fds: Gauge::default(),
            max_fds: Gauge::default(),
            threads: Gauge::default(),
            start_time: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "kura_http_requests",
            "HTTP requests answered, by method, route template and status class",
            m.http_requests.clone(),
        );
        registry.register_with_unit(
            "kura_http_request_duration",
            "Time to answer an HTTP request (until the response head), by method and route template",
            Unit::Seconds,
            m.http_duration.clone(),
        );
        registry.register(
            "kura_http_requests_in_flight",
            "HTTP requests being answered now",
            m.http_in_flight.clone(),
        );
        registry.register(
            "kura_queries",
            "Sandboxed queries finished (API queries), by outcome: \
             completed, refused, failed, cancelled, timeout",
            m.queries.clone(),
        );
        registry.register_with_unit(
            "kura_query_duration",
            "Time a sandboxed query took, audit appends and worker included, by outcome",
            Unit::Seconds,
            m.query_duration.clone(),
        );
        registry.register(
            "kura_explorer_runs",
            "Trial-feasibility explorer runs, by outcome: completed, refused, failed, cancelled, timeout",
            m.explorer_runs.clone(),
        );
        registry.register_with_unit(
            "kura_explorer_run_duration",
            "Time an explorer run took (its three views), by outcome",
            Unit::Seconds,
            m.explorer_duration.clone(),
        );
        registry.register(
            "kura_audit_appends",
            "Audit entries appended durably, by event type",
            m.audit_appends.clone(),
        );
        registry.register_with_unit(
            "kura_audit_append_duration",
            "Time until an audit append was durable (or failed), by source (server, engine) and result (ok, error)",
            Unit::Seconds,
            m.audit_append_duration.clone(),
        );
        registry.register(
            "kura_signins",
            "Sign-in attempts as audited, by method (local, oidc) and result (ok, failed, rate_limited)",
            m.signins.clone(),
        );
        registry.register(
            "kura_airlock_reviews",
            "Staged outputs by review state, read from the airlock's tables at scrape time \
             (shared by all nodes of one database: aggregate with max, not sum)",
            m.airlock_reviews.clone(),
        );
        registry.register(
            "kura_airlock_scrape_errors",
            "Scrapes that could not read the airlock's review counts",
            m.airlock_scrape_errors.clone(),
        );
        registry.register(
            "kura_trace_spans_dropped",
            "Spans not exported because the OTLP export queue was full",
            m.spans_dropped.clone(),
        );
        registry.register(
            "kura_trace_export_failures",
            "OTLP span batches the collector did not accept",
            m.span_export_failures.clone(),
        );
        let build: Family<VersionLabels, Gauge> = Family::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("kura_build_info", "The running Kura version", build);
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            m.resident_memory.clone(),
        );
        registry.register_with_unit(
            "process_virtual_memory",
            "Virtual memory size",
            Unit::Bytes,
            m.virtual_memory.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            m.open_fds.clone(),
        );
        registry.register(
            "process_max_fds",
            "Limit on open file descriptors",
            m.max_fds.clone(),
        );
        registry.register("process_threads", "OS threads", m.threads.clone());
        registry.register_with_unit(
            "process_start_time",
            "When the process started its metrics (Unix time)",
            Unit::Seconds,
            m.start_time.clone(),
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        m.start_time.set(i64::try_from(now).unwrap_or(i64::MAX));
        Metrics { registry, ..m }
    }

    /// One answered HTTP request.
    pub fn http_request(&self, method: &'static str, route: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method,
                route: route.to_string(),
                status: status_class(status),
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method,
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a request in flight until the returned guard is dropped (also when the client
    /// goes away and the request's future is dropped).
    pub fn in_flight(&self) -> InFlight<'_> {
        self.http_in_flight.inc();
        InFlight(&self.http_in_flight)
    }

    /// One sandboxed query finished with `outcome` (`query_outcome`).
    pub fn query(&self, outcome: &'static str, took: Duration) {
        let labels = OutcomeLabels { outcome };
        self.queries.get_or_create(&labels).inc();
        self.query_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// One explorer run (`POST /api/v1/projects/{pid}/explorer`) finished: call it with the
    /// handler's result and the time since it started.
    pub fn explorer_run<T>(&self, result: &Result<T, ApiError>, took: Duration) {
        let labels = OutcomeLabels {
            outcome: api_outcome(result),
        };
        self.explorer_runs.get_or_create(&labels).inc();
        self.explorer_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// One audit append finished (durable when `ok`), taking `took`.
    pub fn audit_append(&self, source: AppendSource, ok: bool, took: Duration) {
        self.audit_append_duration
            .get_or_create(&AppendLabels {
                source: source.as_str(),
                result: if ok { "ok" } else { "error" },
            })
            .observe(took.as_secs_f64());
    }

    /// An entry was appended: counted by type, and sign-ins by method and result (the payload's
    /// `method` and `reason`, mapped to closed sets).
    pub fn audited(&self, kind: EventKind, payload: &serde_json::Value) {
        self.audit_appends
            .get_or_create(&TypeLabels {
                r#type: kind.as_str(),
            })
            .inc();
        let result = match kind {
            EventKind::SignIn => "ok",
            EventKind::SignInFailed if payload["reason"] == "rate_limited" => "rate_limited",
            EventKind::SignInFailed => "failed",
            _ => return,
        };
        let method = match payload["method"].as_str() {
            Some("local") => "local",
            Some("oidc") => "oidc",
            _ => "other",
        };
        self.signins
            .get_or_create(&SigninLabels { method, result })
            .inc();
    }

    /// A finished span could not be queued for export.
    pub fn span_dropped(&self) {
        self.spans_dropped.inc();
    }

    /// A batch of spans was not accepted by the collector.
    pub fn span_export_failed(&self) {
        self.span_export_failures.inc();
    }

    /// Reads the scrape-time gauges (airlock reviews by state, process figures) and encodes
    /// everything in the Prometheus text format. Blocking: the airlock reads its database.
    pub fn render(&self, airlock: Option<&kura_airlock::Airlock>) -> Result<String, ApiError> {
        if let Some(airlock) = airlock {
            match airlock.review_counts() {
                Ok(counts) => {
                    for (state, n) in counts {
                        self.airlock_reviews
                            .get_or_create(&StateLabels {
                                state: state.as_str(),
                            })
                            .set(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                }
                Err(e) => {
                    self.airlock_scrape_errors.inc();
                    tracing::warn!("metrics: cannot count the airlock's reviews: {e}");
                }
            }
        }
        let p = process::read();
        let set = |g: &Gauge, v: Option<u64>| {
            if let Some(v) = v {
                g.set(i64::try_from(v).unwrap_or(i64::MAX));
            }
        };
        set(&self.resident_memory, p.resident_bytes);
        set(&self.virtual_memory, p.virtual_bytes);
        set(&self.open_fds, p.open_fds);
        set(&self.max_fds, p.max_fds);
        set(&self.threads, p.threads);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
        Ok(out)
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The process's metrics (created on first use).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// `2xx`, `4xx`, ...: the status label (a class, so codes cannot multiply the series).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The method label: the standard methods by name, anything else (extension methods a
/// client may invent) as `other`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// A sandboxed query's outcome word, as the query history uses them: `completed`, `refused`
/// (the statement gate or the grant), `cancelled`, `timeout`, or `failed` (everything else:
/// DuckDB errors, caps, a worker that died, an audit append that failed).
pub fn query_outcome<T>(result: &Result<T, kura_query::QueryError>) -> &'static str {
    use kura_query::QueryError;
    match result {
        Ok(_) => "completed",
        Err(QueryError::Cancelled) => "cancelled",
        Err(QueryError::Timeout(_)) => "timeout",
        Err(e) if e.refusal_rule().is_some() => "refused",
        Err(_) => "failed",
    }
}

/// The outcome word of an API action: the client's request refused (4xx), timed out or
/// cancelled, or failed on the server's side.
pub fn api_outcome<T>(result: &Result<T, ApiError>) -> &'static str {
    match result {
        Ok(_) => "completed",
        Err(ApiError::Timeout(_)) => "timeout",
        Err(ApiError::Cancelled) => "cancelled",
        Err(e) if e.status().is_client_error() => "refused",
        Err(_) => "failed",
    }
}

/// The metrics listener's routes: `GET /metrics` only.
pub fn router(app: AppState) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(app)
}

async fn scrape(State(app): State<AppState>) -> Response {
    let airlock = app.airlock.clone();
    let rendered =
        tokio::task::spawn_blocking(move || global().render(Some(airlock.as_ref()))).await;
    match rendered {
        Ok(Ok(text)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::Internal(format!("metrics task: {e}")).into_response(),
    }
}

/// What Linux says about this process under `/proc/self` (None elsewhere, or when a file
/// cannot be read).
mod process {
    #[derive(Default)]
    pub struct Figures {
        pub resident_bytes: Option<u64>,
        pub virtual_bytes: Option<u64>,
        pub open_fds: Option<u64>,
        pub max_fds: Option<u64>,
        pub threads: Option<u64>,
    }

    pub fn read() -> Figures {
        let mut f = Figures::default();
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            for line in status.lines() {
                let value = |l: &str| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                };
                if line.starts_with("VmRSS:") {
                    f.resident_bytes = value(line).map(|kib| kib * 1024);
                } else if line.starts_with("VmSize:") {
                    f.virtual_bytes = value(line).map(|kib| kib * 1024);
                } else if line.starts_with("Threads:") {
                    f.threads = value(line);
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries.
            f.open_fds = Some((dir.count() as u64).saturating_sub(1));
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            f.max_fds = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok());
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_closed_sets() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(999), "5xx");
        let invented = axum::http::Method::from_bytes(b"EXFILTRATE-alice").unwrap();
        assert_eq!(method_label(&invented), "other");
        assert_eq!(method_label(&axum::http::Method::POST), "POST");
        let refused: Result<(), _> = Err(kura_query::QueryError::Syntax {
            message: "x".into(),
            position: None,
        });
        assert_eq!(query_outcome(&refused), "refused");
        let timeout: Result<(), _> = Err(kura_query::QueryError::Timeout(Duration::from_secs(1)));
        assert_eq!(query_outcome(&timeout), "timeout");
        let denied: Result<(), _> = Err(ApiError::Forbidden("no".into()));
        assert_eq!(api_outcome(&denied), "refused");
        let broken: Result<(), _> = Err(ApiError::Internal("x".into()));
        assert_eq!(api_outcome(&broken), "failed");
    }

    #[test]
    fn sign_ins_are_counted_by_method_and_result_only() {
        let m = Metrics::new();
        let payload = serde_json::json!({"method": "local", "reason": "rate_limited",
                                         "address": "10.1.2.3"});
        m.audited(EventKind::SignInFailed, &payload);
        m.audited(
            EventKind::SignIn,
            &serde_json::json!({"method": "oidc", "roles": ["researcher"]}),
        );
        m.audited(
            EventKind::SignInFailed,
            &serde_json::json!({"method": "alice's password", "reason": "bad_credentials"}),
        );
        let text = m.render(None).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains(r#"kura_signins_total{method="local",result="rate_limited"} 1"#));
        assert!(text.contains(r#"kura_signins_total{method="oidc",result="ok"} 1"#));
        assert!(text.contains(r#"kura_signins_total{method="other",result="failed"} 1"#));
        assert!(text.contains(r#"kura_audit_appends_total{type="signin.failed"} 2"#));
        assert!(
            !text.contains("10.1.2.3") && !text.contains("alice"),
            "{text}"
        );
    }

    #[test]
    fn histograms_and_process_figures_are_exposed() {
        let m = Metrics::new();
        m.http_request(
            "GET",
            "/api/v1/projects/{pid}",
            200,
            Duration::from_millis(3),
        );
        m.query("completed", Duration::from_millis(120));
        m.audit_append(AppendSource::Engine, true, Duration::from_micros(900));
        let text = m.render(None).unwrap_or_else(|e| panic!("{e}"));
        for needle in [
            r#"kura_http_requests_total{method="GET",route="/api/v1/projects/{pid}",status="2xx"} 1"#,
            r#"kura_http_request_duration_seconds_count{method="GET",route="/api/v1/projects/{pid}"} 1"#,
            r#"kura_audit_append_duration_seconds_count{source="engine",result="ok"} 1"#,
            "kura_build_info{version=",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        // 120 ms lands in the 0.16 s bucket and every one above it, not in 0.08 s.
        let bucket = |le: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("kura_query_duration_seconds_bucket{")
                        && l.contains(&format!("le=\"{le}\""))
                        && l.contains(r#"outcome="completed""#)
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        assert_eq!(bucket("0.08").as_deref(), Some("0"), "{text}");
        assert_eq!(bucket("0.16").as_deref(), Some("1"), "{text}");
        assert_eq!(bucket("+Inf").as_deref(), Some("1"), "{text}");
        if cfg!(target_os = "linux") {
            let rss = text
                .lines()
                .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
                .and_then(|v| v.parse::<u64>().ok());
            assert!(rss.is_some_and(|b| b > 1024 * 1024), "{text}");
        }
    }
}
