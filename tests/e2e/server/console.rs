//! The supervisor console through the API (issue 7): a supervisor searches the audit log,
//! opens an entry whose inclusion proof verifies with `kura audit verify-receipt`, runs the full
//! verification (intact, then not intact once the test alters a stored leaf), and sees the
//! differencing pattern a researcher created; researchers and checkers get 403 everywhere and
//! change nothing; blind votes stay blind for a steward who is also a checker.

use std::time::{Duration, Instant};

use kura_e2e::server::{Browser, Setup, TestServer};
use serde_json::{json, Value};

const SLICE: &str = "SELECT count(*) AS n FROM nanbyo_forms WHERE disease_no = ";

fn ok(b: &Browser, path: &str) -> Value {
    let (status, body) = b.get(path);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn indices(entries: &Value) -> Vec<u64> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

/// alice runs four queries that differ only in the disease number; returns their
/// `query.submitted` indices, oldest first.
fn slice_by_disease(server: &TestServer) -> Vec<u64> {
    let alice = server.sign_in("alice");
    for d in [11, 12, 13, 14] {
        let (status, body) = alice.query("p1", &format!("{SLICE}{d}"));
        assert_eq!(status, 200, "{body}");
    }
    let mut ids: Vec<u64> = server
        .audit_of("query.submitted")
        .iter()
        .filter(|e| e["actor"] == "alice")
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 4);
    ids
}

/// The entry with its proof, once a signed checkpoint covers it.
fn entry_with_proof(b: &Browser, index: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let detail = ok(b, &format!("/api/v1/audit/entries/{index}"));
        if !detail["receipt"].is_null() || Instant::now() > deadline {
            return detail;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn verify(b: &Browser) -> Value {
    let (status, report) = b.post("/api/v1/audit/verify", json!({}));
    assert_eq!(status, 200, "{report}");
    report
}

#[test]
fn a_supervisor_browses_proves_verifies_and_sees_tampering_and_differencing() {
    let server = TestServer::start(Setup::default());
    let submitted = slice_by_disease(&server);
    assert_eq!(server.sign_in_attempt("alice", "not her password").0, 401);
    let sue = server.sign_in("sue");

    // Search by type and actor: newest first, only what matches.
    let page = ok(
        &sue,
        "/api/v1/audit/entries?type=query.submitted&actor=alice",
    );
    let mut newest_first = submitted.clone();
    newest_first.reverse();
    assert_eq!(indices(&page["entries"]), newest_first);
    assert_eq!(page["matched"], 4);
    assert!(page["next_before"].is_null());
    let sql: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["sql"].as_str().unwrap())
        .collect();
    assert!(
        sql[0].ends_with("= 14") && sql[3].ends_with("= 11"),
        "{sql:?}"
    );
    for e in page["entries"].as_array().unwrap() {
        assert_eq!(
            (e["type"].as_str(), e["actor"].as_str()),
            (Some("query.submitted"), Some("alice"))
        );
        assert_eq!(e["project"], "p1");
    }
    // Pages: three, then the last one.
    let first = ok(&sue, "/api/v1/audit/entries?type=query.submitted&limit=3");
    assert_eq!(indices(&first["entries"]), newest_first[..3].to_vec());
    let before = first["next_before"].as_u64().unwrap();
    let rest = ok(
        &sue,
        &format!("/api/v1/audit/entries?type=query.submitted&limit=3&before={before}"),
    );
    assert_eq!(indices(&rest["entries"]), newest_first[3..].to_vec());
    assert!(rest["next_before"].is_null());
    // Other filters.
    let failed = ok(&sue, "/api/v1/audit/entries?type=signin.failed");
    assert!(failed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor"] == "alice" && e["payload"]["reason"].is_string()));
    assert_eq!(ok(&sue, "/api/v1/audit/entries?project=p2")["matched"], 0);
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let q = format!("/api/v1/audit/entries?since={}", later.replace('+', "%2B"));
    assert_eq!(ok(&sue, &q)["matched"], 0);

    // One entry with its inclusion proof, which verifies with the CLI and the log's key.
    let detail = entry_with_proof(&sue, submitted[0]);
    assert_eq!(detail["entry"]["index"], submitted[0]);
    assert_eq!(detail["entry"]["payload"]["sql"], format!("{SLICE}11"));
    assert_eq!(detail["proof"]["valid"], true, "{detail}");
    let state = server.state.path().to_str().unwrap();
    let key = kura_e2e::kura(&["audit", "public-key", "--state", state]);
    let key = String::from_utf8(key.stdout).unwrap().trim().to_string();
    assert_eq!(detail["verifier_key"], key.as_str());
    let checkpoint = ok(&sue, "/api/v1/audit/checkpoint");
    assert_eq!(checkpoint["verifier_key"], key.as_str());
    assert!(checkpoint["checkpoint"]["size"].as_u64().unwrap() > submitted[0]);
    let file = server.state.path().join("entry-receipt.txt");
    std::fs::write(&file, detail["receipt"].as_str().unwrap()).unwrap();
    let out = kura_e2e::kura(&[
        "audit",
        "verify-receipt",
        file.to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("query.submitted"));

    // The differencing pattern is flagged with the entries behind it.
    let usage = ok(&sue, "/api/v1/audit/usage?days=1");
    let flag = usage["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "differencing")
        .unwrap_or_else(|| panic!("no differencing flag: {usage}"));
    assert_eq!(flag["actor"], "alice");
    assert_eq!(flag["project"], "p1");
    assert_eq!(flag["entries"], json!(submitted));
    assert_eq!(flag["values"], json!(["11", "12", "13", "14"]));
    assert_eq!(usage["totals"]["queries"]["p1"], 4);
    assert!(usage["totals"]["failed_signins"].as_u64().unwrap() >= 1);
    let today: u64 = usage["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["queries"]["p1"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(today, 4, "{usage}");

    // Verify now: intact, and the verification itself is in the log with its result.
    let report = verify(&sue);
    assert_eq!(report["intact"], true, "{report}");
    assert!(report["problem"].is_null());
    assert!(report["entries"].as_u64().unwrap() > submitted[3]);
    let audited: Vec<Value> = server
        .audit_of("audit.verified")
        .into_iter()
        .filter(|e| e["objects"] == json!(["audit:verify"]))
        .collect();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["actor"], "sue");
    assert_eq!(audited[0]["payload"]["intact"], true);

    // Someone with access to the database changes one byte of a stored leaf.
    let target = submitted[1];
    let db = rusqlite::Connection::open(server.state.path().join("kura.sqlite")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut leaf: Vec<u8> = db
        .query_row(
            "SELECT leaf FROM audit_leaves WHERE idx = ?1",
            [target as i64],
            |r| r.get(0),
        )
        .unwrap();
    let last = leaf.len() - 1;
    leaf[last] ^= 0x01;
    let changed = db
        .execute(
            "UPDATE audit_leaves SET leaf = ?1 WHERE idx = ?2",
            rusqlite::params![leaf, target as i64],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let report = verify(&sue);
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["problem"]["index"], target, "{report}");
    let detail = ok(&sue, &format!("/api/v1/audit/entries/{target}"));
    assert_eq!(detail["proof"]["valid"], false, "{detail}");
    let verdicts: Vec<Value> = server
        .audit_of("audit.verified")
        .into_iter()
        .filter(|e| e["objects"] == json!(["audit:verify"]))
        .map(|e| e["payload"]["intact"].clone())
        .collect();
    assert_eq!(verdicts, vec![json!(true), json!(false)]);
}

#[test]
fn researchers_and_checkers_get_403_everywhere_and_change_nothing() {
    let mut setup = Setup::default();
    setup.accounts.push(("sam", vec!["steward", "researcher"]));
    let server = TestServer::start(setup);
    let before = server.audit_entries().len();
    let gets = [
        "/api/v1/audit/entries",
        "/api/v1/audit/entries?type=signin",
        "/api/v1/audit/entries/0",
        "/api/v1/audit/checkpoint",
        "/api/v1/audit/usage?days=30",
    ];
    let mut refusals = 0;
    for who in ["alice", "carol"] {
        let b = server.sign_in(who);
        for path in gets {
            let (status, body) = b.get(path);
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (403, Some("kura.forbidden")),
                "{who} GET {path}: {body}"
            );
            assert!(body.get("entries").is_none() && body.get("checkpoint").is_none());
        }
        let (status, body) = b.post("/api/v1/audit/verify", json!({}));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("kura.forbidden")),
            "{body}"
        );
        refusals += gets.len() + 1;
    }
    let after = server.audit_entries();
    let new: Vec<&Value> = after[before..].iter().collect();
    let denied: Vec<&&Value> = new
        .iter()
        .filter(|e| e["type"] == "access.denied")
        .collect();
    assert_eq!(denied.len(), refusals, "every refusal is audited");
    assert!(denied
        .iter()
        .all(|e| e["payload"]["action"] == "read_audit"));
    assert!(
        new.iter()
            .all(|e| e["type"] == "access.denied" || e["type"] == "signin"),
        "nothing else happened: {new:?}"
    );

    // A steward reads the log too; verification needs the CSRF token like every action.
    let sam = server.sign_in("sam");
    assert_eq!(sam.get("/api/v1/audit/entries").0, 200);
    let r = sam
        .client
        .post(server.url("/api/v1/audit/verify"))
        .header("origin", &server.origin)
        .json(&json!({}))
        .send()
        .unwrap();
    let (status, body) = kura_e2e::server::answer(r);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("kura.csrf"))
    );
    assert!(server
        .audit_of("audit.verified")
        .iter()
        .all(|e| e["objects"] != json!(["audit:verify"])));

    // Bad parameters are refused with a reason, not ignored.
    for path in [
        "/api/v1/audit/entries?limit=0",
        "/api/v1/audit/entries?limit=501",
        "/api/v1/audit/entries?limit=ten",
        "/api/v1/audit/entries?type=query.deleted",
        "/api/v1/audit/entries?since=yesterday",
        "/api/v1/audit/entries?actor=a&actor=b",
        "/api/v1/audit/entries?sort=asc",
        "/api/v1/audit/entries/first",
        "/api/v1/audit/usage?days=0",
        "/api/v1/audit/usage?days=367",
    ] {
        let (status, body) = sam.get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "kura.request.invalid", "{path}");
    }
    assert_eq!(sam.get("/api/v1/audit/entries/999999").0, 404);
}

#[test]
fn votes_in_an_open_round_stay_blind_for_a_steward_who_is_also_a_checker() {
    let mut setup = Setup::default();
    setup.accounts.push(("eve", vec!["steward", "checker"]));
    let server = TestServer::start(setup);
    let alice = server.sign_in("alice");
    let (status, result) = alice.query(
        "p1",
        "SELECT sex AS \"dim:sex\", count(DISTINCT research_id) AS \"count:patients\" \
         FROM nanbyo_forms GROUP BY sex ORDER BY sex",
    );
    assert_eq!(status, 200, "{result}");
    let (status, output) = alice.post(
        "/api/v1/projects/p1/outputs",
        json!({"query_id": result["id"], "title": "Patients by sex"}),
    );
    assert_eq!(status, 201, "{output}");
    let base = format!(
        "/api/v1/projects/p1/outputs/{}",
        output["id"].as_str().unwrap()
    );
    let context = json!({"description": "Patients with any designated disease by sex",
                         "denominators": "All patients with a consenting form in the snapshot",
                         "method": "count(DISTINCT research_id) grouped by sex on nanbyo_forms"});
    let (status, body) = alice.send("PUT", &format!("{base}/context"), Some(context));
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice.post(&format!("{base}/submit"), json!({}));
    assert_eq!(status, 200, "{body}");
    let carol = server.sign_in("carol");
    let (status, body) = carol.post(
        &format!("{base}/votes"),
        json!({"decision": "reject", "comment": "not needed"}),
    );
    assert_eq!(status, 200, "{body}");

    let decisions = "/api/v1/audit/entries?type=review.decision";
    let eve = server.sign_in("eve");
    let seen = ok(&eve, decisions);
    let vote = &seen["entries"][0];
    assert_eq!(vote["actor"], "carol");
    assert!(vote["payload"].is_null(), "{vote}");
    assert_eq!(vote["payload_sealed"], true);
    let usage = ok(&eve, "/api/v1/audit/usage?days=1");
    assert_eq!(
        usage["totals"]["decisions"],
        json!({"approve": 0, "request_changes": 0, "reject": 0, "sealed": 1})
    );
    // A supervisor who is no checker reads it.
    let sue = server.sign_in("sue");
    assert_eq!(
        ok(&sue, decisions)["entries"][0]["payload"]["decision"],
        "reject"
    );

    // Once the round closes, the checker-steward reads it too.
    let dave = server.sign_in("dave");
    let (status, body) = dave.post(
        &format!("{base}/votes"),
        json!({"decision": "reject", "comment": "agree"}),
    );
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("rejected")),
        "{body}"
    );
    let seen = ok(&eve, decisions);
    assert_eq!(seen["matched"], 2);
    assert!(seen["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["payload"]["decision"] == "reject" && e["payload_sealed"] == false));
    let usage = ok(&eve, "/api/v1/audit/usage?days=1");
    assert_eq!(usage["totals"]["decisions"]["reject"], 2);
    assert_eq!(usage["totals"]["turnaround"]["count"], 1);
}
