//! OpenTelemetry export of Kura's trace spans (docs/server.md#traces): a `tracing` layer that
//! turns the spans `telemetry.rs` opens (target `kura::trace`: the request, its audit appends,
//! its sandbox runs) into OTLP spans, and a task that posts them in batches to an OTLP/HTTP
//! collector (`<endpoint>/v1/traces`, JSON encoding). Off unless `[telemetry] otlp_endpoint` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set; when off the layer does nothing.
//!
//! Why not the `opentelemetry` SDK crates: Kura has no spans but these few, whose ids it already
//! makes for its logs; the SDK, its OTLP exporter and `tracing-opentelemetry` add about fifteen
//! crates (prost, a second reqwest) to the build for what is ~300 lines here. OTLP/HTTP with
//! JSON is a stable part of the OTLP 1.x specification; any collector or backend that speaks
//! OTLP/HTTP accepts it.
//!
//! Only an allow-list of fields becomes span attributes (the request id, method, route
//! template, status, audit source, query outcome): never a user, a project, SQL or a value.
//! Export never blocks a request: spans go through a bounded queue, and a full queue drops the
//! span (`kura_trace_spans_dropped_total`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::telemetry::SPAN_TARGET;

/// The environment variable OpenTelemetry SDKs read for the collector's base URL.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The environment variable naming the service (default `kura`).
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";

/// Spans waiting for export; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Spans per request to the collector.
const MAX_BATCH: usize = 512;
/// How long a span waits for its batch to fill.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Time allowed for one post to the collector.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

static ENABLED: AtomicBool = AtomicBool::new(false);
static SENDER: Mutex<Option<mpsc::Sender<Msg>>> = Mutex::new(None);

enum Msg {
    Span(Box<Value>),
    Flush(oneshot::Sender<()>),
}

fn sender() -> Option<mpsc::Sender<Msg>> {
    match SENDER.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// The collector's traces URL: `OTEL_EXPORTER_OTLP_ENDPOINT` semantics (a base URL to which
/// `v1/traces` is appended), from the configuration or else the environment. None: no export.
pub fn traces_url(configured: Option<&url::Url>) -> Result<Option<url::Url>, String> {
    let base = match configured {
        Some(u) => u.clone(),
        None => match std::env::var(ENDPOINT_ENV) {
            Ok(v) if !v.trim().is_empty() => url::Url::parse(v.trim())
                .map_err(|e| format!("{ENDPOINT_ENV} is not a URL: {e}"))?,
            _ => return Ok(None),
        },
    };
    check_endpoint(&base)?;
    let mut base = base;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join("v1/traces")
        .map(Some)
        .map_err(|e| format!("otlp_endpoint: {e}"))
}

/// An endpoint must be `http://` or `https://`, without credentials, query or fragment.
pub fn check_endpoint(u: &url::Url) -> Result<(), String> {
    if !matches!(u.scheme(), "http" | "https") {
        return Err("the OTLP endpoint must be an http:// or https:// URL".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("the OTLP endpoint must not carry credentials".into());
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("the OTLP endpoint must not have a query or fragment".into());
    }
    Ok(())
}

/// Starts exporting to `traces_url` (from `traces_url()`), describing this node as
/// `instance` (its listen address). Must run inside the tokio runtime; a second start (a
/// second server in one process) replaces the first.
pub fn start(traces_url: url::Url, instance: String) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(POST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("OTLP client: {e}"))?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let resource = resource(&instance);
    tokio::spawn(export(rx, client, traces_url.clone(), resource));
    match SENDER.lock() {
        Ok(mut g) => *g = Some(tx),
        Err(p) => *p.into_inner() = Some(tx),
    }
    ENABLED.store(true, Ordering::Release);
    tracing::info!("exporting trace spans to {traces_url} (OTLP/HTTP, JSON)");
    Ok(())
}

/// Sends what is queued and waits for it (at most `timeout`): at shutdown.
pub async fn flush(timeout: Duration) {
    let Some(tx) = sender() else { return };
    let (done, wait) = oneshot::channel();
    if tx.send(Msg::Flush(done)).await.is_ok() {
        let _ = tokio::time::timeout(timeout, wait).await;
    }
}

fn resource(instance: &str) -> Value {
    let service = std::env::var(SERVICE_NAME_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "kura".to_string());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut attributes = vec![
        string_attr("service.name", &service),
        string_attr("service.version", env!("CARGO_PKG_VERSION")),
        string_attr("service.instance.id", instance),
    ];
    if !host.is_empty() {
        attributes.push(string_attr("host.name", &host));
    }
    json!({ "attributes": attributes })
}

fn string_attr(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// The export task: batches spans (at most `MAX_BATCH`, at most `BATCH_DELAY` old) and posts
/// them; a failed post is counted and logged (at most once a minute), and its spans dropped.
async fn export(
    mut rx: mpsc::Receiver<Msg>,
    client: reqwest::Client,
    url: url::Url,
    resource: Value,
) {
    let mut batch: Vec<Value> = Vec::new();
    let mut deadline = tokio::time::Instant::now();
    let mut last_warning: Option<Instant> = None;
    loop {
        let msg = if batch.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    post(&client, &url, &resource, &mut batch, &mut last_warning).await;
                    continue;
                }
            }
        };
        match msg {
            None => {
                post(&client, &url, &resource, &mut batch, &mut last_warning).await;
                return;
            }
            Some(Msg::Span(span)) => {
                if batch.is_empty() {
                    deadline = tokio::time::Instant::now() + BATCH_DELAY;
                }
                batch.push(*span);
                if batch.len() >= MAX_BATCH {
                    post(&client, &url, &resource, &mut batch, &mut last_warning).await;
                }
            }
            Some(Msg::Flush(done)) => {
                post(&client, &url, &resource, &mut batch, &mut last_warning).await;
                let _ = done.send(());
            }
        }
    }
}

async fn post(
    client: &reqwest::Client,
    url: &url::Url,
    resource: &Value,
    batch: &mut Vec<Value>,
    last_warning: &mut Option<Instant>,
) {
    if batch.is_empty() {
        return;
    }
    let body = export_request(resource, std::mem::take(batch));
    let outcome = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await;
    let problem = match outcome {
        Ok(r) if r.status().is_success() => return,
        Ok(r) => format!("the collector answered {}", r.status()),
        Err(e) => e.to_string(),
    };
    crate::metrics::global().span_export_failed();
    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
        *last_warning = Some(Instant::now());
        tracing::warn!("trace spans not exported to {url}: {problem}");
    }
}

/// An OTLP `ExportTraceServiceRequest` in its JSON encoding.
pub fn export_request(resource: &Value, spans: Vec<Value>) -> Value {
    json!({
        "resourceSpans": [{
            "resource": resource,
            "scopeSpans": [{
                "scope": {"name": "kura-server", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    })
}

/// The `tracing` layer that collects Kura's trace spans for export. Installed by the binary
/// with its log output; it does nothing until `start` is called.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpanExportLayer;

/// A span being recorded: its fields so far.
#[derive(Default)]
struct OpenSpan {
    name: &'static str,
    start_ns: u64,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    sampled: bool,
    method: String,
    route: String,
    status: Option<u64>,
    outcome: String,
    attributes: Vec<Value>,
}

impl Visit for OpenSpan {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "trace_id" => self.trace_id = value.to_string(),
            "span_id" => self.span_id = value.to_string(),
            "parent_span_id" => self.parent_span_id = value.to_string(),
            "method" => self.method = value.to_string(),
            "route" => self.route = value.to_string(),
            "outcome" => self.outcome = value.to_string(),
            "request_id" => self.attributes.push(string_attr("kura.request_id", value)),
            "source" => self
                .attributes
                .push(string_attr("kura.audit.source", value)),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here; their Debug is their Display.
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "status" {
            self.status = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Ok(v) = u64::try_from(value) {
            self.record_u64(field, v);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "sampled" {
            self.sampled = value;
        }
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

impl OpenSpan {
    /// The OTLP JSON of the finished span.
    fn finish(mut self, end_ns: u64) -> Value {
        let server = self.name == "request";
        let name = if server {
            format!("{} {}", self.method, self.route)
        } else {
            self.name.to_string()
        };
        if !self.method.is_empty() {
            self.attributes
                .push(string_attr("http.request.method", &self.method));
        }
        if !self.route.is_empty() {
            self.attributes.push(string_attr("http.route", &self.route));
        }
        if let Some(s) = self.status {
            self.attributes
                .push(json!({"key": "http.response.status_code",
                                        "value": {"intValue": s.to_string()}}));
        }
        if !self.outcome.is_empty() {
            self.attributes
                .push(string_attr("kura.query.outcome", &self.outcome));
        }
        // Server errors are span errors; a client's 4xx or a refused query is not (OpenTelemetry
        // HTTP conventions).
        let error = self.status.is_some_and(|s| s >= 500) || self.outcome == "failed";
        let mut span = json!({
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "name": name,
            "kind": if server { 2 } else { 1 },
            "startTimeUnixNano": self.start_ns.to_string(),
            "endTimeUnixNano": end_ns.to_string(),
            "attributes": self.attributes,
            "status": {"code": if error { 2 } else { 0 }},
        });
        if !self.parent_span_id.is_empty() {
            span["parentSpanId"] = Value::String(self.parent_span_id);
        }
        span
    }
}

impl<S> Layer<S> for SpanExportLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !ENABLED.load(Ordering::Acquire) || attrs.metadata().target() != SPAN_TARGET {
            return;
        }
        let mut open = OpenSpan {
            name: attrs.metadata().name(),
            start_ns: unix_nanos(),
            sampled: true,
            ..OpenSpan::default()
        };
        attrs.record(&mut open);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(open);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(open) = span.extensions_mut().get_mut::<OpenSpan>() {
                values.record(open);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<OpenSpan>() else {
            return;
        };
        if !open.sampled || open.trace_id.is_empty() || open.span_id.is_empty() {
            return;
        }
        let Some(tx) = sender() else { return };
        if tx
            .try_send(Msg::Span(Box::new(open.finish(unix_nanos()))))
            .is_err()
        {
            crate::metrics::global().span_dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_is_the_endpoint_plus_v1_traces() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let t = |s: &str| traces_url(Some(&u(s))).unwrap().unwrap().to_string();
        assert_eq!(
            t("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            t("https://otel.example.jp/collector/"),
            "https://otel.example.jp/collector/v1/traces"
        );
        assert_eq!(
            t("https://otel.example.jp/collector"),
            "https://otel.example.jp/collector/v1/traces"
        );
        for bad in [
            "ftp://otel.example.jp",
            "http://user:secret@otel.example.jp",
            "http://otel.example.jp/?token=x",
        ] {
            assert!(traces_url(Some(&u(bad))).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn spans_carry_only_allow_listed_attributes() {
        let open = OpenSpan {
            name: "request",
            start_ns: 1,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: "1111111111111111".into(),
            sampled: true,
            method: "POST".into(),
            route: "/api/v1/projects/{pid}/queries".into(),
            status: Some(503),
            outcome: String::new(),
            attributes: vec![string_attr("kura.request_id", "r-1")],
        };
        let span = open.finish(2);
        assert_eq!(span["name"], "POST /api/v1/projects/{pid}/queries");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["status"]["code"], 2, "5xx is an error");
        assert_eq!(span["parentSpanId"], "1111111111111111");
        assert_eq!(span["endTimeUnixNano"], "2");
        let keys: Vec<&str> = span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "kura.request_id",
                "http.request.method",
                "http.route",
                "http.response.status_code"
            ]
        );
    }

    #[test]
    fn unknown_fields_never_become_attributes() {
        use tracing_subscriber::layer::SubscriberExt;
        // A span of Kura's target with fields that must not leave: the visitor ignores them.
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        struct Probe(std::sync::Arc<Mutex<Vec<Value>>>);
        impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Probe {
            fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
                let mut open = OpenSpan {
                    name: attrs.metadata().name(),
                    sampled: true,
                    ..OpenSpan::default()
                };
                attrs.record(&mut open);
                self.0.lock().unwrap().push(open.finish(0));
            }
        }
        let subscriber = tracing_subscriber::registry().with(Probe(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let _s = tracing::info_span!(
                target: "kura::trace",
                "query.execute",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                span_id = "00f067aa0ba902b7",
                user = "alice",
                sql = "SELECT secret FROM t",
                project = "p1",
            );
        });
        let spans = seen.lock().unwrap();
        let text = spans[0].to_string();
        for leak in ["alice", "SELECT", "p1"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
    }
}
