//! Operations telemetry of a real `kura serve`: Prometheus metrics on their own plain-HTTP
//! listener (counters and histograms move with sign-ins, queries and audit appends; the airlock
//! gauge counts staged outputs; no user, project or SQL in any label; nothing on the HTTPS
//! port), JSON logs whose every line of a request carries its request id and trace, hostile
//! `x-request-id` and `traceparent` values replaced, and the spans exported over OTLP/HTTP to a
//! collector on loopback.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

use kura_e2e::server::{
    free_port, https_client, prepare_state, spawn_serve_with, stop_child, Browser, Setup, PASSWORD,
};
use serde_json::{json, Value};

/// A server started with extra environment and its stderr (the log) in `<state>/server.log`.
struct Served {
    state: tempfile::TempDir,
    origin: String,
    child: Option<Child>,
}

impl Served {
    fn start(setup: Setup, env: &[(&str, &str)]) -> Served {
        let (state, config) = prepare_state(&setup);
        let log = std::fs::File::create(state.path().join("server.log")).unwrap();
        let mut all_env = vec![("KURA_LOG", "info")];
        all_env.extend_from_slice(env);
        let (child, origin) = spawn_serve_with(&config, &[], &all_env, Stdio::from(log));
        Served {
            state,
            origin,
            child: Some(child),
        }
    }

    fn browser(&self) -> Browser {
        Browser {
            client: https_client(self.state.path()),
            origin: self.origin.clone(),
            csrf: String::new(),
        }
    }

    fn sign_in(&self, user: &str) -> Browser {
        let b = self.browser();
        let (status, body) = b.login(user, PASSWORD);
        assert_eq!(status, 200, "{body}");
        Browser {
            csrf: body["csrf_token"].as_str().unwrap().to_string(),
            ..b
        }
    }

    fn stop(&mut self) {
        let status = stop_child(&mut self.child.take().unwrap());
        assert!(
            status.success(),
            "graceful stop: {status:?}\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET http://<addr>/metrics` as series -> value (`name{labels}` exactly as exposed).
fn scrape(addr: &str) -> (String, HashMap<String, f64>) {
    let r = reqwest::blocking::get(format!("http://{addr}/metrics")).unwrap();
    assert_eq!(r.status(), 200);
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = r.text().unwrap();
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse::<f64>().unwrap())
        })
        .collect();
    (text, series)
}

fn value(series: &HashMap<String, f64>, name: &str) -> f64 {
    series.get(name).copied().unwrap_or(0.0)
}

#[test]
fn metrics_move_with_sign_ins_queries_and_appends_on_a_private_listener_only() {
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut server = Served::start(
        Setup {
            config: format!("[metrics]\nlisten = \"{metrics}\"\n"),
            ..Setup::default()
        },
        &[],
    );
    let (_, before) = scrape(&metrics);

    let (status, _) = server.browser().login("alice", "not the password");
    assert_eq!(status, 401);
    let alice = server.sign_in("alice");
    let sql = "SELECT disease_no, count(*) AS n FROM nanbyo_forms GROUP BY disease_no ORDER BY disease_no LIMIT 20";
    let (status, result) = alice.query("p1", sql);
    assert_eq!(status, 200, "{result}");
    let (status, refused) = alice.query("p1", "COPY nanbyo_forms TO '/tmp/out.csv'");
    assert_eq!(status, 422, "{refused}");
    let (status, output) = alice.post(
        "/api/v1/projects/p1/outputs",
        json!({"query_id": result["id"], "title": "Patients by disease",
               "description": "counts per disease_no"}),
    );
    assert_eq!(status, 201, "{output}");

    let (text, after) = scrape(&metrics);
    let moved = |name: &str| value(&after, name) - value(&before, name);
    assert_eq!(
        moved(r#"kura_signins_total{method="local",result="ok"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"kura_signins_total{method="local",result="failed"}"#),
        1.0
    );
    assert_eq!(moved(r#"kura_queries_total{outcome="completed"}"#), 1.0);
    assert_eq!(moved(r#"kura_queries_total{outcome="refused"}"#), 1.0);
    assert_eq!(
        moved(r#"kura_query_duration_seconds_count{outcome="completed"}"#),
        1.0
    );
    assert!(moved(r#"kura_query_duration_seconds_sum{outcome="completed"}"#) > 0.0);
    let queries = r#"route="/api/v1/projects/{pid}/queries""#;
    assert_eq!(
        moved(&format!(
            r#"kura_http_requests_total{{method="POST",{queries},status="2xx"}}"#
        )),
        1.0,
        "{text}"
    );
    assert_eq!(
        moved(&format!(
            r#"kura_http_requests_total{{method="POST",{queries},status="4xx"}}"#
        )),
        1.0
    );
    assert_eq!(
        moved(&format!(
            r#"kura_http_request_duration_seconds_count{{method="POST",{queries}}}"#
        )),
        2.0
    );
    // Sign-ins, a result view and the staged output are the server's appends; each query's
    // submission and outcome are the engine's.
    assert!(
        moved(r#"kura_audit_append_duration_seconds_count{source="server",result="ok"}"#) >= 4.0,
        "{text}"
    );
    assert!(
        moved(r#"kura_audit_append_duration_seconds_count{source="engine",result="ok"}"#) >= 3.0,
        "{text}"
    );
    assert_eq!(
        moved(r#"kura_audit_appends_total{type="output.staged"}"#),
        1.0
    );
    let bucket_lines = text
        .lines()
        .filter(|l| l.starts_with("kura_audit_append_duration_seconds_bucket{"))
        .count();
    assert!(bucket_lines > 10, "{text}");
    assert_eq!(value(&after, r#"kura_airlock_reviews{state="draft"}"#), 1.0);
    assert_eq!(
        value(&after, r#"kura_airlock_reviews{state="submitted"}"#),
        0.0
    );
    assert!(
        value(&after, "process_resident_memory_bytes") > 1e6,
        "{text}"
    );
    assert!(value(&after, "process_open_fds") > 0.0, "{text}");

    // Labels name routes and outcomes, never who, which project or what SQL.
    for leak in [
        "alice",
        "p1",
        "nanbyo_forms",
        "disease",
        "/api/v1/projects/p1",
        "127.0.0.1",
    ] {
        assert!(!text.contains(leak), "{leak:?} in the metrics:\n{text}");
    }

    // Researchers reach the HTTPS port only, and it has no /metrics.
    let (status, body) = alice.get("/metrics");
    assert_eq!(status, 404, "{body}");
    let r = https_client(server.state.path())
        .get(format!("{}/metrics", server.origin))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.text().unwrap().contains("kura_"));
    // The metrics listener serves /metrics and nothing else.
    let r = reqwest::blocking::get(format!("http://{metrics}/api/v1/session")).unwrap();
    assert_eq!(r.status(), 404);
    // A probe for an unknown path is counted under one label, not by its path.
    let (_, now) = scrape(&metrics);
    assert!(
        value(
            &now,
            r#"kura_http_requests_total{method="GET",route="unmatched",status="4xx"}"#
        ) >= 2.0
    );
    server.stop();
}

/// What the loopback collector received: (path, JSON body) of each POST.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A loopback OTLP/HTTP collector: records each POST and answers 200.
fn collector() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sink = sink.clone();
            std::thread::spawn(move || serve_collector(stream, sink));
        }
    });
    (addr, got)
}

fn serve_collector(stream: TcpStream, sink: Received) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        sink.lock().unwrap().push((path, json));
        let _ = out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        );
    }
}

#[test]
fn logs_and_exported_spans_carry_request_ids_and_the_callers_trace() {
    let (collector_addr, exported) = collector();
    let mut server = Served::start(
        Setup {
            config: format!("[telemetry]\notlp_endpoint = \"http://{collector_addr}\"\n"),
            ..Setup::default()
        },
        &[("KURA_LOG_FORMAT", "json")],
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let login = |request_id: &str, traceparent: &str| {
        server
            .browser()
            .client
            .post(format!("{}/api/v1/session", server.origin))
            .header("origin", &server.origin)
            .header("x-kura-csrf", "login")
            .header("x-request-id", request_id)
            .header("traceparent", traceparent)
            .json(&json!({"username": "alice", "password": PASSWORD}))
            .send()
            .unwrap()
    };

    // A sane request id and a valid traceparent are kept.
    let r = login("e2e-signin-1", &format!("00-{trace}-{parent}-01"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "e2e-signin-1");

    // A hostile request id is replaced by a fresh one; a malformed traceparent starts a new trace.
    let evil_id = r#"x","level":"ERROR","message":"forged"#;
    let upper = format!("00-{}-{parent}-01", trace.to_uppercase());
    let r = login(evil_id, &upper);
    assert_eq!(r.status(), 200);
    let fresh = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(fresh, evil_id);
    assert_eq!(fresh.len(), 36, "a UUID: {fresh}");

    // Errors name the request id too, as the header does; no header: a new id.
    let b = server.browser();
    let r = b
        .client
        .get(format!("{}/api/v1/session", server.origin))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let error_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["request_id"], error_id.as_str(), "{body}");

    // A query: its audit appends and the sandbox run are child spans of the request.
    let alice = server.sign_in("alice");
    let r = alice
        .client
        .post(format!("{}/api/v1/projects/p1/queries", server.origin))
        .header("origin", &server.origin)
        .header("x-kura-csrf", &alice.csrf)
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .json(&json!({"sql": "SELECT count(*) AS n FROM nanbyo_forms"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let query_request = r.headers()["x-request-id"].to_str().unwrap().to_string();

    server.stop(); // flushes the span export
    let log = server.log();

    // Every line is one JSON object.
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_request = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect()
    };
    let signin = of_request("e2e-signin-1");
    let access = signin
        .iter()
        .find(|l| l["target"] == "kura::access")
        .unwrap_or_else(|| panic!("no access line for the sign-in in\n{log}"));
    assert_eq!(access["status"], 200);
    assert_eq!(access["span"]["trace_id"], trace);
    assert_eq!(access["span"]["parent_span_id"], parent);
    assert_eq!(access["span"]["route"], "/api/v1/session");
    assert_eq!(access["span"]["method"], "POST");
    let server_span = access["span"]["span_id"].as_str().unwrap().to_string();
    assert_eq!(server_span.len(), 16);

    let replaced = of_request(&fresh);
    assert!(!replaced.is_empty(), "no line for {fresh}");
    for l in &replaced {
        assert_ne!(
            l["span"]["trace_id"], trace,
            "malformed traceparent was used: {l}"
        );
        assert_eq!(l["span"]["trace_id"].as_str().unwrap().len(), 32);
    }
    assert!(!log.contains("forged"), "the hostile id reached the log");
    assert!(!of_request(&error_id).is_empty());

    // Lines of the query request: the access line and any line inside its child spans carry
    // the request id and the caller's trace.
    let query_lines = of_request(&query_request);
    assert!(query_lines.iter().any(|l| l["target"] == "kura::access"));
    for l in &query_lines {
        assert_eq!(l["span"]["trace_id"], trace, "{l}");
    }
    for l in lines.iter().filter(|l| l["span"]["trace_id"] == trace) {
        let id = l["span"]["request_id"].as_str().unwrap_or_default();
        assert!(
            id == "e2e-signin-1" || id == query_request,
            "a line of the trace without its request id: {l}"
        );
    }

    // The collector got the spans: the sign-in as a server span continuing the caller's trace,
    // its audit append as a child; the query's sandbox run and the engine's appends.
    let posts = exported.lock().unwrap().clone();
    assert!(!posts.is_empty(), "nothing exported; log:\n{log}");
    let mut spans = Vec::new();
    for (path, body) in &posts {
        assert_eq!(path, "/v1/traces");
        let rs = &body["resourceSpans"][0];
        let attrs = rs["resource"]["attributes"].as_array().unwrap();
        assert!(attrs
            .iter()
            .any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "kura"));
        for s in rs["scopeSpans"][0]["spans"].as_array().unwrap() {
            spans.push(s.clone());
        }
        // Routes and outcomes only: no user, password, project or SQL leaves.
        let text = body.to_string();
        for leak in ["alice", PASSWORD, "nanbyo_forms", "/projects/p1"] {
            assert!(!text.contains(leak), "{leak:?} exported: {text}");
        }
    }
    let signin_span = spans
        .iter()
        .find(|s| s["spanId"] == server_span.as_str())
        .unwrap_or_else(|| panic!("sign-in span {server_span} not exported: {spans:?}"));
    assert_eq!(signin_span["traceId"], trace);
    assert_eq!(signin_span["parentSpanId"], parent);
    assert_eq!(signin_span["name"], "POST /api/v1/session");
    assert_eq!(signin_span["kind"], 2);
    let start: u64 = signin_span["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u64 = signin_span["endTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(end >= start && start > 1_600_000_000_000_000_000);
    assert!(signin_span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["key"] == "http.response.status_code" && a["value"]["intValue"] == "200"));
    assert!(
        spans.iter().any(|s| s["name"] == "audit.append"
            && s["traceId"] == trace
            && s["parentSpanId"] == server_span.as_str()),
        "no audit.append child of the sign-in: {spans:?}"
    );
    let query_span = spans
        .iter()
        .find(|s| s["name"] == "query.execute" && s["traceId"] == trace)
        .unwrap_or_else(|| panic!("no query.execute span: {spans:?}"));
    assert!(query_span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["key"] == "kura.query.outcome" && a["value"]["stringValue"] == "completed"));
    let engine_appends = spans
        .iter()
        .filter(|s| {
            s["name"] == "audit.append"
                && s["traceId"] == trace
                && s["attributes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["value"]["stringValue"] == "engine")
        })
        .count();
    assert!(
        engine_appends >= 2,
        "query.submitted and query.completed: {spans:?}"
    );
    // The hostile sign-in started its own trace.
    assert!(spans
        .iter()
        .filter(|s| s["name"] == "POST /api/v1/session")
        .any(|s| s["traceId"] != trace));
}
