//! Starting and describing the service: health and readiness, the OpenAPI document matches the
//! routes exactly, and a broken policy or configuration stops the start with a message naming
//! what is wrong.

use kura_e2e::server::{serve_refused, Setup, TestServer};

#[test]
fn health_readiness_and_an_openapi_document_that_matches_the_routes() {
    let server = TestServer::start(Setup::default());
    let b = server.sign_in("alice");
    assert_eq!(
        b.get("/healthz"),
        (200, serde_json::json!({"status": "ok"}))
    );
    let (status, ready) = b.get("/readyz");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["audit"], "ok");
    let (status, doc) = b.get("/api/openapi.json");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    let mut routed: Vec<(String, String)> = kura_server::router::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .chain(
            kura_server::router::UI_ROUTES
                .iter()
                .map(|p| ("GET".to_string(), p.to_string())),
        )
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed, "openapi.json and the router disagree");

    // Every listed route is really routed: it never reaches the fallback or a 405.
    for (method, path) in &routed {
        let concrete = path
            .replace("{pid}", "p1")
            .replace("{uid}", "alice")
            .replace("{qid}", "00000000-0000-4000-8000-000000000000");
        let body = (method != "GET").then(|| serde_json::json!({}));
        let (status, answer) = if method == "GET" {
            b.get(&concrete)
        } else {
            b.send(method, &concrete, body)
        };
        assert_ne!(status, 405, "{method} {concrete}");
        assert_ne!(
            answer["error"]["message"], "this path not found",
            "{method} {concrete}"
        );
    }
}

#[test]
fn a_broken_policy_or_configuration_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("authz");
    std::fs::create_dir_all(&policies).unwrap();
    let src = kura_e2e::repo_root().join("policies/authz");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), policies.join(entry.file_name())).unwrap();
    }
    std::fs::write(
        policies.join("broken.cedar"),
        "permit(principal, action, resource) when { resource.no_such_attribute };",
    )
    .unwrap();
    let config = dir.path().join("kura.toml");
    let stderr = serve_refused(
        &config,
        &format!(
            "state_dir = \"state\"\nlisten = \"127.0.0.1:0\"\nauthz_policies = \"{}\"\n",
            policies.display()
        ),
    );
    assert!(stderr.contains("broken.cedar"), "{stderr}");

    let stderr = serve_refused(
        &config,
        "listen = \"127.0.0.1:0\"\n[session]\nidle_minutes = 5\n",
    );
    assert!(stderr.contains("idle_minutes"), "{stderr}");
}
