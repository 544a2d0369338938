//! Bad input answers a clear 4xx with a stable code, and changes nothing: oversized bodies,
//! malformed JSON, wrong content type, unknown fields, unknown ids, another project's ids.

use kura_e2e::server::{answer, Setup, TestServer};
use serde_json::json;

#[test]
fn malformed_oversized_and_non_json_bodies_are_refused() {
    let server = TestServer::start(Setup::default());
    let stu = server.sign_in("stu");
    let url = server.url("/api/v1/projects");
    let post = |body: Vec<u8>, content_type: &str| {
        answer(
            stu.client
                .post(&url)
                .header("origin", &server.origin)
                .header("x-kura-csrf", &stu.csrf)
                .header("content-type", content_type)
                .body(body)
                .send()
                .unwrap(),
        )
    };
    let (status, body) = post(b"{\"id\": \"p9\", ".to_vec(), "application/json");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("kura.request.malformed_json")),
        "{body}"
    );
    let (status, body) = post(b"id=p9".to_vec(), "application/x-www-form-urlencoded");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("kura.request.not_json")),
        "{body}"
    );
    let mut big = br#"{"id": "p9", "title": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 100 * 1024));
    big.extend(br#"", "snapshot": "demo", "tables": {}, "starts": "2026-01-01T00:00:00Z", "expires": "2027-01-01T00:00:00Z"}"#);
    let (status, body) = post(big, "application/json");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("kura.request.too_large")),
        "{body}"
    );
    let (status, body) = stu.post(
        "/api/v1/projects",
        json!({"id": "p9", "title": "t", "snapshot": "demo", "tables": {"nanbyo_forms": ["*"]},
               "starts": "2026-01-01T00:00:00Z", "expires": "2027-01-01T00:00:00Z", "admin": true}),
    );
    assert_eq!(status, 400, "unknown field: {body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("admin"),
        "{body}"
    );
    let (status, body) = stu.post(
        "/api/v1/projects",
        json!({"id": "p9", "title": "t", "snapshot": "demo", "tables": {"no_such_table": ["*"]},
               "starts": "2026-01-01T00:00:00Z", "expires": "2027-01-01T00:00:00Z"}),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("kura.project.unknown_table")),
        "{body}"
    );
    let (status, body) = stu.post(
        "/api/v1/projects",
        json!({"id": "p9", "title": "t", "snapshot": "demo", "tables": {"nanbyo_forms": ["name_kana"]},
               "starts": "2026-01-01T00:00:00Z", "expires": "2027-01-01T00:00:00Z"}),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("kura.project.unknown_column")),
        "{body}"
    );
    let (status, body) = stu.get("/api/v1/projects/p9");
    assert_eq!(status, 404, "nothing was created: {body}");
    assert!(server
        .audit_of("admin.action")
        .iter()
        .all(|e| e["payload"]["action"] != "project.create"));
}

#[test]
fn unknown_ids_answer_404() {
    let server = TestServer::start(Setup::default());
    let alice = server.sign_in("alice");
    for path in [
        "/api/v1/projects/nope",
        "/api/v1/projects/nope/catalog",
        "/api/v1/projects/p1/queries/00000000-0000-4000-8000-000000000000/result",
        "/api/v1/no-such-endpoint",
    ] {
        let (status, body) = alice.get(path);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("kura.not_found")),
            "{path}: {body}"
        );
    }
    let (status, body) = alice.post(
        "/api/v1/projects/p1/queries",
        json!({"sql": "SELECT 1", "id": "not-a-uuid"}),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("kura.query.invalid")),
        "{body}"
    );
    let (status, body) = alice.post(
        "/api/v1/projects/p1/outputs",
        json!({"query_id": "nope", "title": "t"}),
    );
    assert_eq!(status, 404, "{body}");
}

#[test]
fn another_projects_ids_reveal_nothing_and_are_audited() {
    let server = TestServer::start(Setup::default());
    let alice = server.sign_in("alice");
    let bob = server.sign_in("bob");
    let (status, body) = bob.query("p2", "SELECT count(*) AS n FROM nanbyo_forms");
    assert_eq!(status, 200, "{body}");
    let bobs_query = body["id"].as_str().unwrap().to_string();

    // alice is not a member of p2: it looks like it does not exist.
    let (missing_status, missing) = alice.get("/api/v1/projects/does-not-exist");
    for path in [
        "/api/v1/projects/p2".to_string(),
        "/api/v1/projects/p2/catalog".to_string(),
        "/api/v1/projects/p2/queries".to_string(),
        format!("/api/v1/projects/p2/queries/{bobs_query}/result"),
    ] {
        let (status, body) = alice.get(&path);
        assert_eq!(status, missing_status, "{path}: {body}");
        assert_eq!(body["error"]["code"], missing["error"]["code"], "{path}");
    }
    let (status, _) = alice.query("p2", "SELECT 1");
    assert_eq!(status, 404);
    // Bob's query id through alice's own project: still not hers.
    let (status, _) = alice.get(&format!("/api/v1/projects/p1/queries/{bobs_query}/result"));
    assert_eq!(status, 404);
    let (status, _) = alice.post(
        "/api/v1/projects/p1/outputs",
        json!({"query_id": bobs_query, "title": "stolen"}),
    );
    assert_eq!(status, 404);
    let (status, body) = alice.post(
        &format!("/api/v1/projects/p2/queries/{bobs_query}/cancel"),
        json!({}),
    );
    assert_eq!(status, 404, "{body}");
    let (_, list) = alice.get("/api/v1/projects");
    let ids: Vec<_> = list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("p1")]);

    let denied = server.audit_of("access.denied");
    assert!(
        denied
            .iter()
            .filter(|e| e["actor"] == "alice" && e["objects"].to_string().contains("p2"))
            .count()
            >= 5,
        "{denied:#?}"
    );
    assert!(server
        .audit_of("query.submitted")
        .iter()
        .all(|e| e["actor"] != "alice"));
}
