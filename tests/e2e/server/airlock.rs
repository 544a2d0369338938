//! The airlock through the API: a researcher stages and describes an output, two checkers
//! approve it blind (the author's own vote is refused), Kura releases the protected table, the
//! project's members download it; identifiers and tampered files never get through. Each step
//! is in the audit log.

use kura_e2e::server::{answer, Setup, TestServer};
use serde_json::json;

const BY_PREFECTURE: &str =
    "SELECT pref_code AS \"dim:prefecture\", count(DISTINCT research_id) AS \"count:patients\" \
     FROM nanbyo_forms GROUP BY pref_code ORDER BY pref_code";

fn context() -> serde_json::Value {
    json!({"description": "Patients with any designated disease by prefecture of residence",
           "denominators": "All patients with a consenting form in the snapshot",
           "method": "count(DISTINCT research_id) grouped by pref_code on nanbyo_forms"})
}

/// alice runs `sql` in p1 and stages the result; returns the output id.
fn stage(server: &TestServer, sql: &str) -> String {
    let alice = server.sign_in("alice");
    let (status, result) = alice.query("p1", sql);
    assert_eq!(status, 200, "{result}");
    let (status, output) = alice.post(
        "/api/v1/projects/p1/outputs",
        json!({"query_id": result["id"], "title": "Patients by prefecture"}),
    );
    assert_eq!(status, 201, "{output}");
    assert_eq!(output["status"], "draft");
    output["id"].as_str().unwrap().to_string()
}

#[test]
fn two_blind_approvals_release_a_protected_table_that_members_download() {
    let server = TestServer::start(Setup::default());
    let oid = stage(&server, BY_PREFECTURE);
    let base = format!("/api/v1/projects/p1/outputs/{oid}");
    let alice = server.sign_in("alice");

    let (status, body) = alice.post(&format!("{base}/submit"), json!({}));
    assert_eq!(status, 422, "no context yet: {body}");
    let (status, body) = alice.send("PUT", &format!("{base}/context"), Some(context()));
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice.post(&format!("{base}/submit"), json!({}));
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("submitted")),
        "{body}"
    );

    // The author can never review, whatever she tries.
    let (status, body) = alice.post(&format!("{base}/votes"), json!({"decision": "approve"}));
    assert_eq!(status, 403, "{body}");

    let carol = server.sign_in("carol");
    let (_, queue) = carol.get("/api/v1/reviews");
    assert_eq!(queue["reviews"][0]["output"]["id"], oid.as_str(), "{queue}");
    let (status, report) = carol.get(&format!("{base}/report"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["sql"], BY_PREFECTURE);
    let failing = report["failing_cells"].as_u64().unwrap();
    assert!(
        failing > 0,
        "3,000 patients over 47 prefectures leave small cells: {report}"
    );
    let (status, body) = carol.post(
        &format!("{base}/votes"),
        json!({"decision": "approve", "comment": "ok"}),
    );
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("submitted")),
        "{body}"
    );
    let (status, body) = carol.post(&format!("{base}/votes"), json!({"decision": "approve"}));
    assert_eq!(status, 409, "one vote per round: {body}");

    // dave cannot see carol's decision before he votes.
    let dave = server.sign_in("dave");
    let (_, seen) = dave.get(&base);
    assert_eq!(seen["votes"], json!([]), "{seen}");
    assert_eq!(seen["open_round"]["votes_cast"], 1);
    let (status, body) = dave.post(&format!("{base}/votes"), json!({"decision": "approve"}));
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("released")),
        "{body}"
    );
    assert_eq!(body["release"]["file_sha256"].as_str().unwrap().len(), 64);

    // Members download the protected table; nobody else does.
    let r = alice
        .client
        .get(server.url(&format!("{base}/download")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let csv = r.text().unwrap();
    assert!(csv.lines().count() > 10, "{csv}");
    for line in csv.lines().skip(1) {
        let count = line.rsplit(',').next().unwrap();
        if let Ok(n) = count.parse::<u64>() {
            assert!(n == 0 || n >= 10, "a count under 10 was released: {line}");
        }
    }
    // A supervisor verifies the release with the key alone; one changed byte is caught.
    let state = server.state.path().to_str().unwrap();
    let key = kura_e2e::kura(&["release", "public-key", "--state", state]);
    let key = String::from_utf8(key.stdout).unwrap().trim().to_string();
    let dir = server.state.path().join("releases").join(&oid);
    let out = kura_e2e::kura(&["release", "verify", dir.to_str().unwrap(), "--key", &key]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("approved by carol and dave"));
    let released = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "csv"))
        .unwrap();
    let original = std::fs::read(&released).unwrap();
    std::fs::write(
        &released,
        original
            .iter()
            .map(|b| if *b == b'1' { b'2' } else { *b })
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let out = kura_e2e::kura(&["release", "verify", dir.to_str().unwrap(), "--key", &key]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&released, original).unwrap();

    // The release's receipt proves its audit entry with the log's public key alone.
    // Until a signed checkpoint covers the entry (at most a second) the answer is 503.
    let mut r = alice
        .client
        .get(server.url(&format!("{base}/receipt")))
        .send()
        .unwrap();
    for _ in 0..100 {
        if r.status() != 503 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        r = alice
            .client
            .get(server.url(&format!("{base}/receipt")))
            .send()
            .unwrap();
    }
    assert_eq!(r.status(), 200);
    let receipt_file = server.state.path().join("receipt.txt");
    std::fs::write(&receipt_file, r.text().unwrap()).unwrap();
    let log_key = kura_e2e::kura(&["audit", "public-key", "--state", state]);
    let log_key = String::from_utf8(log_key.stdout)
        .unwrap()
        .trim()
        .to_string();
    let out = kura_e2e::kura(&[
        "audit",
        "verify-receipt",
        receipt_file.to_str().unwrap(),
        "--key",
        &log_key,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("output.released") && said.contains(&oid),
        "{said}"
    );

    let (_, list) = alice.get("/api/v1/projects/p1/outputs");
    assert_eq!(
        list["outputs"][0]["status"], "released",
        "the list shows the review state"
    );

    let bob = server.sign_in("bob");
    assert_eq!(
        bob.get(&format!("{base}/download")).0,
        404,
        "not a member of p1"
    );
    let sue = server.sign_in("sue");
    assert_eq!(
        sue.get(&format!("{base}/download")).0,
        403,
        "supervisors oversee, not take"
    );

    let kinds: Vec<String> = server
        .audit_entries()
        .iter()
        .filter(|e| e["objects"].to_string().contains(&oid))
        .map(|e| {
            let phase = e["payload"]["phase"]
                .as_str()
                .or(e["payload"]["action"].as_str());
            format!(
                "{}{}",
                e["type"].as_str().unwrap(),
                phase.map(|p| format!(":{p}")).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "output.staged",
            "export.requested:submit",
            "export.requested:submit",
            "export.requested:context",
            "export.requested:submit",
            "access.denied:review_output",
            "review.decision",
            "review.decision",
            "review.decision",
            "review.decision",
            "output.released:requested",
            "output.released:released",
            "output.downloaded",
            "access.denied:view_output",
            "access.denied:download_release",
        ],
        "the refused first submit and second vote have a request and a refusal entry"
    );
}

#[test]
fn identifiers_and_tampered_files_never_get_through() {
    let server = TestServer::start(Setup::default());
    let alice = server.sign_in("alice");

    let oid = stage(&server, "SELECT research_id AS \"dim:who\", count(*) AS \"count:forms\" FROM nanbyo_forms GROUP BY research_id LIMIT 50");
    let base = format!("/api/v1/projects/p1/outputs/{oid}");
    alice.send("PUT", &format!("{base}/context"), Some(context()));
    let (status, body) = alice.post(&format!("{base}/submit"), json!({}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("kura.airlock.refused")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("research_id"),
        "{body}"
    );

    let oid = stage(&server, BY_PREFECTURE);
    let base = format!("/api/v1/projects/p1/outputs/{oid}");
    alice.send("PUT", &format!("{base}/context"), Some(context()));
    let file = server
        .state
        .path()
        .join("outputs")
        .join(format!("{oid}.arrow"));
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let (status, body) = alice.post(&format!("{base}/submit"), json!({}));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("changed"),
        "{body}"
    );
    let (_, review) = alice.get(&base);
    assert_eq!(review["state"], "draft");
    let (_, queue) = server.sign_in("carol").get("/api/v1/reviews");
    assert_eq!(queue["reviews"], json!([]), "nothing reached the checkers");
    let r = alice
        .client
        .get(server.url(&format!("{base}/download")))
        .send()
        .unwrap();
    assert_eq!(answer(r).0, 404, "nothing was released");
}
