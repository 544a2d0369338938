//! Request telemetry (docs/server.md#logs-request-ids): every request gets a request
//! id (a sane incoming `x-request-id`, else a new UUID) returned in the `x-request-id` header,
//! and a W3C trace context (a valid incoming `traceparent` continues its trace, else a new one
//! starts). Both go on the request's span, so every log line of the request carries them, and
//! on the child spans of its audit appends and sandbox runs; `otlp.rs` exports these spans. The
//! middleware also records the HTTP metrics and writes one access-log line per request.
//!
//! Header values from the network are parsed strictly (length, alphabet, the W3C grammar):
//! anything else is ignored and replaced, never logged.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use kura_audit::{Appended, AuditError, AuditSink, Event};
use tracing::field::Empty;
use tracing::Instrument;

use crate::metrics::{self, AppendSource};

/// The request id header, read (when sane) and always answered.
pub const REQUEST_ID: &str = "x-request-id";
/// The W3C Trace Context header.
pub const TRACEPARENT: &str = "traceparent";
/// The target of Kura's trace spans: the request span and its children. Logging keeps them on
/// at every level (their fields are what log lines carry); `otlp.rs` exports only these.
pub const SPAN_TARGET: &str = "kura::trace";
/// The target of the access-log line written when a request is answered.
pub const ACCESS_TARGET: &str = "kura::access";

/// Longest request id accepted from a client.
const MAX_REQUEST_ID: usize = 64;
/// Longest `traceparent` value looked at (a future version may append fields).
const MAX_TRACEPARENT: usize = 512;

/// 16 bytes naming one trace (W3C `trace-id`), never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TraceId(pub [u8; 16]);

/// 8 bytes naming one span (W3C `parent-id`), never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SpanId(pub [u8; 8]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl TraceId {
    pub fn random() -> TraceId {
        let mut b = [0u8; 16];
        fill_nonzero(&mut b);
        TraceId(b)
    }
}

impl SpanId {
    pub fn random() -> SpanId {
        let mut b = [0u8; 8];
        fill_nonzero(&mut b);
        SpanId(b)
    }
}

/// Random bytes, never all zero. Should the OS random source fail (it does not on Linux
/// after boot), the time and a counter still give distinct ids: these ids correlate logs,
/// they guard nothing.
fn fill_nonzero(b: &mut [u8]) {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    if getrandom::fill(b).is_err() || b.iter().all(|x| *x == 0) {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let seed = (nanos ^ (u128::from(n) << 64) ^ u128::from(n)).to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = seed[i % seed.len()] ^ (i as u8);
        }
        if b.iter().all(|x| *x == 0) {
            b[0] = 1;
        }
    }
}

/// A parsed W3C `traceparent`: the caller's trace, its span (our parent) and whether it is
/// sampled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub sampled: bool,
}

/// Parses a `traceparent` value by the W3C Trace Context grammar: `00-<32 hex>-<16 hex>-<2
/// hex>` in lower case, ids not all zero; a later version (not `ff`) may append `-...` after
/// those 55 characters. Anything else is None (the request starts a new trace).
pub fn parse_traceparent(value: &str) -> Option<TraceParent> {
    let v = value.as_bytes();
    if v.len() < 55 || v.len() > MAX_TRACEPARENT {
        return None;
    }
    let lower_hex = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let (version, trace, parent, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    if !(lower_hex(version) && lower_hex(trace) && lower_hex(parent) && lower_hex(flags)) {
        return None;
    }
    match version {
        b"ff" => return None,
        b"00" if v.len() != 55 => return None,
        // A later version may carry more fields, after a dash.
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    let mut flag = [0u8; 1];
    hex::decode_to_slice(trace, &mut trace_id).ok()?;
    hex::decode_to_slice(parent, &mut parent_id).ok()?;
    hex::decode_to_slice(flags, &mut flag).ok()?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id: TraceId(trace_id),
        parent_id: SpanId(parent_id),
        sampled: flag[0] & 1 == 1,
    })
}

/// A client's `x-request-id` is kept when it is 1 to 64 characters of `A-Z a-z 0-9 - _ .`
/// (what proxies and UUIDs use): nothing that could forge a log line or a header.
pub fn sane_request_id(value: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&value.len())
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A new request id: a random lower-case UUID (version 4).
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    fill_nonzero(&mut b);
    uuid_v4_text(b)
}

/// 16 random bytes as a lower-case version-4 UUID (the version and variant bits set).
pub fn uuid_v4_text(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The one value of a header, when it is sent exactly once and is text.
fn single<'a>(headers: &'a HeaderMap, name: &'static str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// The ids of the request being answered (a task-local of its future).
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub request_id: Arc<str>,
    pub trace_id: TraceId,
    /// The request span's id: the parent of the child spans.
    pub span_id: SpanId,
    pub sampled: bool,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// The context of the request whose future is running, if any.
pub fn current() -> Option<RequestContext> {
    CONTEXT.try_with(|c| c.clone()).ok()
}

/// The request id of the request whose future is running, if any.
pub fn current_request_id() -> Option<Arc<str>> {
    CONTEXT.try_with(|c| c.request_id.clone()).ok()
}

impl RequestContext {
    /// The span of one audit append made for this request.
    pub fn audit_span(&self, source: AppendSource) -> tracing::Span {
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "audit.append",
            request_id = %self.request_id,
            trace_id = %self.trace_id,
            span_id = %SpanId::random(),
            parent_span_id = %self.span_id,
            source = source.as_str(),
            sampled = Empty,
        );
        if !self.sampled {
            span.record("sampled", false);
        }
        span
    }

    /// The span of one sandboxed query run for this request; `outcome` is recorded when it
    /// ends.
    pub fn query_span(&self) -> tracing::Span {
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "query.execute",
            request_id = %self.request_id,
            trace_id = %self.trace_id,
            span_id = %SpanId::random(),
            parent_span_id = %self.span_id,
            outcome = Empty,
            sampled = Empty,
        );
        if !self.sampled {
            span.record("sampled", false);
        }
        span
    }
}

/// The span of an audit append of the current request (none outside a request).
pub fn audit_span(source: AppendSource) -> tracing::Span {
    current().map_or_else(tracing::Span::none, |c| c.audit_span(source))
}

/// The middleware around every route (`router.rs`): request id, trace context, the request
/// span, the HTTP metrics, the access-log line and the `x-request-id` answer header.
pub async fn trace_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = metrics::method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| metrics::UNMATCHED_ROUTE.to_string());
    // The path without the query string (which may hold an OpenID code or search terms).
    let path = request.uri().path().to_string();
    let request_id: Arc<str> = match single(request.headers(), REQUEST_ID) {
        Some(v) if sane_request_id(v) => v.into(),
        _ => new_request_id().into(),
    };
    let parent = single(request.headers(), TRACEPARENT).and_then(parse_traceparent);
    let context = RequestContext {
        request_id: request_id.clone(),
        trace_id: parent.map_or_else(TraceId::random, |p| p.trace_id),
        span_id: SpanId::random(),
        sampled: parent.is_none_or(|p| p.sampled),
    };
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "request",
        request_id = %request_id,
        method,
        route = %route,
        trace_id = %context.trace_id,
        span_id = %context.span_id,
        parent_span_id = Empty,
        sampled = Empty,
        status = Empty,
        latency_ms = Empty,
    );
    if let Some(p) = parent {
        span.record("parent_span_id", tracing::field::display(p.parent_id));
    }
    if !context.sampled {
        span.record("sampled", false);
    }
    let m = metrics::global();
    let in_flight = m.in_flight();
    let mut response = CONTEXT
        .scope(context, next.run(request))
        .instrument(span.clone())
        .await;
    drop(in_flight);
    let took = started.elapsed();
    let status = response.status().as_u16();
    m.http_request(method, &route, status, took);
    let latency_ms = millis(took);
    span.record("status", status);
    span.record("latency_ms", latency_ms);
    span.in_scope(|| {
        tracing::info!(
            target: ACCESS_TARGET,
            path = %path,
            status,
            latency_ms,
            "{method} {route} {status} {latency_ms} ms"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), v);
    }
    response
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The audit log as the query engine sees it: each append timed into
/// `kura_audit_append_duration_seconds{source="engine"}`, counted by type, and traced as a
/// child span of the request.
pub struct MeasuredAudit<'a> {
    inner: &'a dyn AuditSink,
    context: Option<&'a RequestContext>,
}

impl<'a> MeasuredAudit<'a> {
    pub fn new(inner: &'a dyn AuditSink, context: Option<&'a RequestContext>) -> Self {
        MeasuredAudit { inner, context }
    }
}

impl AuditSink for MeasuredAudit<'_> {
    fn append(&self, event: Event) -> Result<Appended, AuditError> {
        let span = self
            .context
            .map_or_else(tracing::Span::none, |c| c.audit_span(AppendSource::Engine));
        let _entered = span.enter();
        let kind = event.kind;
        let payload = if kind_counts_payload(kind) {
            event.payload.clone()
        } else {
            serde_json::Value::Null
        };
        let started = Instant::now();
        let result = self.inner.append(event);
        let m = metrics::global();
        m.audit_append(AppendSource::Engine, result.is_ok(), started.elapsed());
        if result.is_ok() {
            m.audited(kind, &payload);
        }
        result
    }
}

/// Whether `Metrics::audited` reads the payload of this kind (sign-ins only), so other
/// payloads (SQL, for the engine's entries) are not copied for nothing.
pub fn kind_counts_payload(kind: kura_audit::EventKind) -> bool {
    matches!(
        kind,
        kura_audit::EventKind::SignIn | kura_audit::EventKind::SignInFailed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_continues_its_trace() {
        let p = parse_traceparent(GOOD).unwrap();
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(p.sampled);
        let unsampled = GOOD.replace("-01", "-00");
        assert!(!parse_traceparent(&unsampled).unwrap().sampled);
        // A later version may append fields after a dash.
        let later = GOOD.replacen("00-", "cc-", 1) + "-what-the-future-holds";
        assert!(parse_traceparent(&later).is_some());
    }

    #[test]
    fn malformed_or_hostile_traceparents_start_a_new_trace() {
        let long = format!("{GOOD}-{}", "a".repeat(600));
        let cases = [
            String::new(),
            "00".to_string(),
            GOOD.to_uppercase(),
            GOOD.replace("4bf92f", "4BF92F"),
            GOOD.replacen("00-", "ff-", 1),
            GOOD.to_string() + "-extra", // version 00 has exactly four fields
            GOOD.replacen("00-", "cc-", 1) + "x", // later version: extra only after '-'
            GOOD.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            GOOD.replace("00f067aa0ba902b7", &"0".repeat(16)),
            GOOD.replace("-00f067aa", "_00f067aa"),
            GOOD.replace("4bf92f35", "+bf92f35"), // from_str_radix would take it
            GOOD.replace("4bf92f35", " 4bf92f3"),
            GOOD.replace("-01", "-1g"),
            format!("{GOOD}\r\nx-injected: 1"),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .replace('4', "ﾖ")
                .chars()
                .take(55)
                .collect(),
            long,
        ];
        for c in &cases {
            assert_eq!(parse_traceparent(c), None, "{c:?} was accepted");
        }
    }

    #[test]
    fn only_sane_request_ids_are_kept() {
        for ok in [
            "a",
            "req-42",
            "5f0c6a1e-2b7d-4c1a-9f5e-0d9a1b2c3d4e",
            "A.b_C-9",
        ] {
            assert!(sane_request_id(ok), "{ok:?}");
        }
        let too_long = "a".repeat(65);
        for bad in [
            "",
            too_long.as_str(),
            "id with spaces",
            "id\nforged log line",
            "id\",\"level\":\"ERROR",
            "<script>",
            "リクエスト",
            "id;drop",
        ] {
            assert!(!sane_request_id(bad), "{bad:?} was accepted");
        }
    }

    #[test]
    fn new_ids_are_fresh_and_well_formed() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert!(sane_request_id(&a) && a.len() == 36, "{a}");
        assert_eq!(&a[14..15], "4", "version 4: {a}");
        assert_ne!(TraceId::random(), TraceId::random());
        assert_ne!(SpanId::random().0, [0; 8]);
        let mut zeros = [0u8; 4];
        fill_nonzero(&mut zeros);
        assert_ne!(zeros, [0; 4]);
    }

    #[test]
    fn a_header_sent_twice_is_not_used() {
        let mut h = HeaderMap::new();
        h.append(TRACEPARENT, HeaderValue::from_static(GOOD));
        assert_eq!(single(&h, TRACEPARENT), Some(GOOD));
        h.append(TRACEPARENT, HeaderValue::from_static(GOOD));
        assert_eq!(single(&h, TRACEPARENT), None);
    }
}
