//! Authorization through the API: supervisors read but never change, expired or future
//! membership gives nothing, observers cannot query, researchers cannot administer, stewards
//! manage projects and every change is audited before it is stored.

use chrono::{Duration, Utc};
use kura_e2e::server::{project, Setup, TestServer};
use serde_json::json;

#[test]
fn supervisors_read_everything_but_change_nothing() {
    let mut setup = Setup::default();
    setup.accounts.push(("boss", vec!["supervisor", "steward"]));
    let server = TestServer::start(setup);
    for who in ["sue", "boss"] {
        let s = server.sign_in(who);
        let (status, list) = s.get("/api/v1/projects");
        assert_eq!(status, 200);
        assert_eq!(
            list["projects"].as_array().unwrap().len(),
            2,
            "{who} sees every project"
        );
        assert_eq!(s.get("/api/v1/projects/p2").0, 200);
        assert_eq!(s.get("/api/v1/accounts").0, 200);
        let writes = [
            s.post(
                "/api/v1/projects",
                json!({"id": format!("new-{who}"), "title": "t", "snapshot": "demo",
                       "tables": {"nanbyo_forms": ["*"]}, "starts": "2026-01-01T00:00:00Z",
                       "expires": "2030-01-01T00:00:00Z"}),
            ),
            s.send(
                "PUT",
                &format!("/api/v1/projects/p1/members/{who}"),
                Some(json!({"role": "researcher", "expires": "2030-01-01T00:00:00Z"})),
            ),
            s.send("DELETE", "/api/v1/projects/p1/members/alice", None),
            s.query("p1", "SELECT 1"),
            s.post("/api/v1/accounts/alice/disable", json!({})),
            s.post(
                "/api/v1/accounts",
                json!({"id": "mallory", "name": "M", "roles": ["steward"], "password": "a long enough password 1"}),
            ),
        ];
        for (i, (status, body)) in writes.iter().enumerate() {
            assert_eq!(*status, 403, "{who} write #{i}: {body}");
            assert_eq!(body["error"]["code"], "kura.forbidden");
        }
    }
    let stu = server.sign_in("stu");
    let (_, p1) = stu.get("/api/v1/projects/p1");
    assert_eq!(
        p1["members"].as_array().unwrap().len(),
        1,
        "membership unchanged"
    );
    let (_, accounts) = stu.get("/api/v1/accounts");
    assert!(accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["id"] != "mallory" && a["disabled"] == false));
    assert!(server.audit_of("query.submitted").is_empty());
    assert!(server.audit_of("admin.action").is_empty());
    assert!(server.audit_of("access.denied").len() >= 12);
}

#[test]
fn expired_or_future_membership_gives_nothing_and_observers_cannot_query() {
    let now = Utc::now();
    let mut setup = Setup::default();
    setup.projects.push(project("p3", now));
    let mut future = project("p4", now);
    future.starts = now + Duration::days(2);
    setup.projects.push(future);
    setup.members = vec![
        ("p1", "alice", "researcher", now - Duration::hours(1)),
        ("p3", "alice", "observer", now + Duration::days(30)),
        ("p4", "alice", "researcher", now + Duration::days(30)),
    ];
    let server = TestServer::start(setup);
    let alice = server.sign_in("alice");
    let (_, list) = alice.get("/api/v1/projects");
    let ids: Vec<_> = list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("p3")], "only the live membership is listed");
    for p in ["p1", "p4"] {
        assert_eq!(alice.get(&format!("/api/v1/projects/{p}")).0, 404, "{p}");
        assert_eq!(
            alice.get(&format!("/api/v1/projects/{p}/catalog")).0,
            404,
            "{p}"
        );
        assert_eq!(alice.query(p, "SELECT 1").0, 404, "{p}");
    }
    // Observer: may look, may not query.
    let (status, catalog) = alice.get("/api/v1/projects/p3/catalog");
    assert_eq!(status, 200, "{catalog}");
    let (status, body) = alice.query("p3", "SELECT 1");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("kura.forbidden")),
        "{body}"
    );
    assert!(server.audit_of("query.submitted").is_empty());
}

#[test]
fn researchers_cannot_administer_and_stewards_changes_are_audited() {
    let server = TestServer::start(Setup::default());
    let alice = server.sign_in("alice");
    let new_project = json!({"id": "p5", "title": "Feasibility", "snapshot": "demo",
        "tables": {"nanbyo_forms": ["disease_no", "sex"]},
        "starts": "2026-01-01T00:00:00Z", "expires": "2030-01-01T00:00:00Z"});
    assert_eq!(alice.post("/api/v1/projects", new_project.clone()).0, 403);
    assert_eq!(alice.get("/api/v1/accounts").0, 403);
    let member = json!({"role": "researcher", "expires": "2030-01-01T00:00:00Z"});
    assert_eq!(
        alice
            .send(
                "PUT",
                "/api/v1/projects/p1/members/bob",
                Some(member.clone())
            )
            .0,
        403
    );

    let stu = server.sign_in("stu");
    let (status, body) = stu.post("/api/v1/projects", new_project.clone());
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        stu.post("/api/v1/projects", new_project).0,
        409,
        "ids are unique"
    );
    let (status, body) = stu.send("PUT", "/api/v1/projects/p5/members/alice", Some(member));
    assert_eq!(status, 200, "{body}");
    // alice can now query p5, and sees only the granted columns.
    let (status, body) = alice.query("p5", "SELECT disease_no, sex FROM nanbyo_forms LIMIT 3");
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice.query("p5", "SELECT severity FROM nanbyo_forms");
    assert_eq!(status, 422, "ungranted column: {body}");
    let (_, catalog) = alice.get("/api/v1/projects/p5/catalog");
    let cols: Vec<_> = catalog["tables"][0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(cols, vec![json!("disease_no"), json!("sex")]);
    assert_eq!(
        stu.send("DELETE", "/api/v1/projects/p5/members/alice", None)
            .0,
        204
    );
    assert_eq!(alice.query("p5", "SELECT 1").0, 404, "removed member");

    let actions: Vec<String> = server
        .audit_of("admin.action")
        .iter()
        .map(|e| e["payload"]["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        vec!["project.create", "member.set", "member.remove"]
    );
}
