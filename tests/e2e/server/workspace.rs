//! The researcher's workspace through the API: catalog, queries (capped rows, refusals,
//! cancel), history, viewing a result again, staging an output; every step in the audit log,
//! which verifies after a graceful shutdown.

use std::time::Duration;

use kura_e2e::server::{Setup, TestServer};
use serde_json::json;

#[test]
fn a_researchers_day_is_capped_audited_and_verifiable() {
    let mut server = TestServer::start(Setup {
        config: "[query]\nmax_rows_shown = 5\n".into(),
        ..Setup::default()
    });
    let alice = server.sign_in("alice");

    let (status, catalog) = alice.get("/api/v1/projects/p1/catalog");
    assert_eq!(status, 200, "{catalog}");
    let tables: Vec<_> = catalog["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(
        tables,
        vec![json!("designated_diseases"), json!("nanbyo_forms")]
    );
    let snapshot_sha = catalog["snapshot"]["sha256"].as_str().unwrap().to_string();
    assert_eq!(snapshot_sha.len(), 64);

    let sql = "SELECT disease_no, count(*) AS n FROM nanbyo_forms GROUP BY disease_no ORDER BY disease_no LIMIT 20";
    let (status, result) = alice.query("p1", sql);
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["row_count"], 20);
    assert_eq!(result["rows_shown"], 5);
    assert_eq!(result["truncated"], true);
    assert_eq!(result["rows"].as_array().unwrap().len(), 5);
    assert_eq!(result["columns"][0]["name"], "disease_no");
    assert!(
        result["rows"][0][1].is_number(),
        "counts are numbers: {result}"
    );
    assert_eq!(result["snapshot_sha256"], snapshot_sha.as_str());
    let qid = result["id"].as_str().unwrap().to_string();

    let (status, refused) = alice.query("p1", "COPY nanbyo_forms TO '/tmp/out.csv'");
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("kura.query.refused")),
        "{refused}"
    );

    let (_, history) = alice.get("/api/v1/projects/p1/queries");
    let statuses: Vec<_> = history["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!("refused"), json!("completed")]);

    let (status, again) = alice.get(&format!("/api/v1/projects/p1/queries/{qid}/result"));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["rows"], result["rows"]);
    assert_eq!(again["result_sha256"], result["result_sha256"]);

    let (status, output) = alice.post(
        "/api/v1/projects/p1/outputs",
        json!({"query_id": qid, "title": "Patients by disease", "description": "counts per disease_no"}),
    );
    assert_eq!(status, 201, "{output}");
    assert_eq!(output["status"], "draft");
    assert_eq!(output["row_count"], 20);
    let (_, outputs) = alice.get("/api/v1/projects/p1/outputs");
    assert_eq!(outputs["outputs"][0]["id"], output["id"]);
    assert!(server
        .state
        .path()
        .join("outputs")
        .join(format!("{}.arrow", output["id"].as_str().unwrap()))
        .is_file());

    let entries = server.audit_entries();
    let kinds: Vec<&str> = entries
        .iter()
        .filter(|e| e["actor"] == "alice")
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "signin",
            "query.submitted",
            "query.completed",
            "result.viewed",
            "query.submitted",
            "query.refused",
            "result.viewed",
            "output.staged"
        ]
    );
    let submitted = &entries
        .iter()
        .find(|e| e["type"] == "query.submitted")
        .unwrap()["payload"];
    assert_eq!(submitted["sql"], sql);
    assert_eq!(submitted["snapshot_sha256"], snapshot_sha.as_str());
    let completed = &entries
        .iter()
        .find(|e| e["type"] == "query.completed")
        .unwrap()["payload"];
    assert_eq!(completed["rows"], 20);
    assert_eq!(completed["sha256"], result["result_sha256"]);

    server.stop_and_verify_audit();
}

#[test]
fn a_running_query_can_be_cancelled_by_its_author_only() {
    let server = TestServer::start(Setup::default());
    let alice = server.sign_in("alice");
    let bob = server.sign_in("bob");
    let id = "5d9b1c1e-0f7a-4c3e-9a55-2b7f0c1d2e3f";
    let slow = "SELECT sum(a.disease_no * b.sex + c.disease_no) FROM nanbyo_forms a, nanbyo_forms b, nanbyo_forms c";
    let runner = std::thread::spawn({
        let client = alice.client.clone();
        let origin = alice.origin.clone();
        let csrf = alice.csrf.clone();
        move || {
            kura_e2e::server::answer(
                client
                    .post(format!("{origin}/api/v1/projects/p1/queries"))
                    .header("origin", &origin)
                    .header("x-kura-csrf", &csrf)
                    .json(&json!({"sql": slow, "id": id}))
                    .send()
                    .unwrap(),
            )
        }
    });
    // Wait until it is running.
    let mut running = false;
    for _ in 0..100 {
        let (_, h) = alice.get("/api/v1/projects/p1/queries");
        if h["queries"]
            .as_array()
            .is_some_and(|q| q.iter().any(|q| q["id"] == id))
        {
            running = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(running, "the query never showed up as running");
    let (status, _) = bob.post(
        &format!("/api/v1/projects/p1/queries/{id}/cancel"),
        json!({}),
    );
    assert_eq!(status, 404, "bob is not in p1");
    let (status, body) = alice.post(
        &format!("/api/v1/projects/p1/queries/{id}/cancel"),
        json!({}),
    );
    assert_eq!(
        (status, body["cancelled"].as_bool()),
        (202, Some(true)),
        "{body}"
    );
    let (status, body) = runner.join().unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("kura.query.cancelled")),
        "{body}"
    );
    let (_, h) = alice.get("/api/v1/projects/p1/queries");
    assert_eq!(h["queries"][0]["status"], "cancelled");
}
