//! The trial-feasibility explorer through the API (issue 7): only perturbed, rule-checked
//! numbers leave; asking again, or the same population in other words, gives the same numbers;
//! each run is audited as `explorer.run` with its filters before anything is computed and each
//! view's viewing as `result.viewed` before the answer; the snapshot's index is read once, as
//! the server's own audited query; a view's kept result is the protected table and can be
//! staged; bad forms, grants without the explorer's columns and outsiders are refused.

use kura_e2e::server::{explorer_project, Browser, Setup, TestServer};
use serde_json::{json, Value};

const VIEWS: [&str; 3] = ["by_prefecture", "by_severity", "by_institutions"];

fn setup() -> Setup {
    let now = chrono::Utc::now();
    let mut setup = Setup::default();
    setup.projects.push(explorer_project("px", now));
    setup.members.push((
        "px",
        "alice",
        "researcher",
        now + chrono::Duration::days(365),
    ));
    setup
}

/// Every shown cell (series values and totals) of a view.
fn cells(view: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for s in view["series"].as_array().unwrap() {
        out.extend(s["values"].as_array().unwrap().iter().cloned());
        if !s["total"].is_null() {
            out.push(s["total"].clone());
        }
    }
    out
}

/// The disease with the most patients and that number, by the researcher's own SQL.
fn largest_disease(alice: &Browser) -> (u64, u64) {
    let (status, r) = alice.query(
        "px",
        "SELECT disease_no, count(DISTINCT research_id) AS n FROM nanbyo_forms \
         GROUP BY disease_no ORDER BY n DESC, disease_no LIMIT 1",
    );
    assert_eq!(status, 200, "{r}");
    (
        r["rows"][0][0].as_u64().unwrap(),
        r["rows"][0][1].as_u64().unwrap(),
    )
}

#[test]
fn a_feasibility_run_shows_only_protected_numbers_and_is_audited() {
    let mut server = TestServer::start(setup());
    let alice = server.sign_in("alice");

    let (status, form) = alice.get("/api/v1/projects/px/explorer");
    assert_eq!(status, 200, "{form}");
    assert_eq!(form["fields"]["diseases"].as_array().unwrap().len(), 341);
    assert_eq!(form["fields"]["prefectures"].as_array().unwrap().len(), 47);
    assert!(!form["fields"]["fiscal_years"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(form["rule_pack"], "japan-rare-disease");
    let marker = form["marker"].as_str().unwrap().to_string();

    let (disease, patients) = largest_disease(&alice);
    assert!(
        patients >= 30,
        "the test snapshot's largest disease has {patients}"
    );
    let (status, run) = alice.post(
        "/api/v1/projects/px/explorer",
        json!({"diseases": [disease]}),
    );
    assert_eq!(status, 200, "{run}");
    let result = &run["result"];
    let (mut published, mut suppressed) = (0, 0);
    for name in VIEWS {
        let view = &result[name];
        assert!(view["query_id"].is_string(), "{name}: {view}");
        let mut hidden = 0;
        for cell in cells(view) {
            match cell.get("value") {
                Some(v) => {
                    let v = v.as_u64().unwrap();
                    assert!(v == 0 || v >= 10, "{name}: published {v} under 10");
                    published += 1;
                }
                None => {
                    assert_eq!(cell["suppressed"], true, "{name}: {cell}");
                    let display = cell["display"].as_str().unwrap();
                    assert!(display == "<10" || display == marker, "{name}: {display}");
                    hidden += 1;
                }
            }
        }
        assert_eq!(view["suppressed_cells"], hidden, "{name}");
        suppressed += hidden;
    }
    assert!(
        published > 0 && suppressed > 0,
        "one disease of 3,000 patients gives both ({published} published, {suppressed} hidden)"
    );
    // The total is perturbed by at most 2 (docs/explorer.md, PTABLE).
    let total = result["by_prefecture"]["series"][0]["total"]["value"]
        .as_u64()
        .unwrap();
    assert!(total.abs_diff(patients) <= 2, "{total} vs {patients}");

    // The same population asked again, in other words: the same numbers, nothing to average.
    let (status, again) = alice.post(
        "/api/v1/projects/px/explorer",
        json!({"diseases": [disease, disease], "severity": null, "regions": []}),
    );
    assert_eq!(status, 200, "{again}");
    for name in VIEWS {
        assert_eq!(
            again["result"][name]["series"], result[name]["series"],
            "{name}"
        );
        assert_ne!(again["result"][name]["query_id"], result[name]["query_id"]);
    }

    // The kept result of a view is the protected table: published cells, no raw columns.
    let qid = result["by_prefecture"]["query_id"].as_str().unwrap();
    let (status, kept) = alice.get(&format!("/api/v1/projects/px/queries/{qid}/result"));
    assert_eq!(status, 200, "{kept}");
    let columns: Vec<&str> = kept["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["dim:prefecture", "count:patients"]);
    let protected_rows = result["by_prefecture"]["protected_csv"]
        .as_str()
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(kept["row_count"], protected_rows);
    for row in kept["rows"].as_array().unwrap() {
        let n = row[1].as_u64().unwrap();
        assert!(n == 0 || n >= 10, "kept {n}");
    }

    // Audit: the run with its filters before anything was computed, each view's viewing
    // before the answer.
    let entries = server.audit_entries();
    let run_id = run["id"].as_str().unwrap();
    let run_entry = entries
        .iter()
        .position(|e| e["type"] == "explorer.run" && e["payload"]["run_id"] == run_id)
        .expect("explorer.run of the first run");
    let logged = &entries[run_entry];
    assert_eq!(logged["actor"], "alice");
    assert_eq!(logged["payload"]["filters"]["diseases"], json!([disease]));
    for name in VIEWS {
        let qid = result[name]["query_id"].as_str().unwrap();
        assert_eq!(logged["payload"]["queries"][name], qid, "{name}");
        let object = json!(format!("query:{qid}"));
        let viewed = entries
            .iter()
            .position(|e| {
                e["type"] == "result.viewed"
                    && e["objects"].as_array().is_some_and(|o| o.contains(&object))
            })
            .unwrap_or_else(|| panic!("{name}: no result.viewed for {object}"));
        assert!(run_entry < viewed, "{name}");
        assert_eq!(entries[viewed]["payload"]["explorer_run"], run_id);
        assert_eq!(entries[viewed]["payload"]["view"], name);
        // The history names the run and keeps the SQL that defines the view's rows.
        let (status, history) = alice.get("/api/v1/projects/px/queries");
        assert_eq!(status, 200, "{history}");
        let record = history["queries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["id"] == qid)
            .unwrap_or_else(|| panic!("{name}: {qid} not in the history: {history}"));
        let sql = record["sql"].as_str().unwrap();
        assert!(
            sql.contains(run_id) && sql.contains(&format!("disease_no IN ({disease})")),
            "{name}: {sql}"
        );
        assert_eq!(record["status"], "completed");
    }
    // The index was read once for both runs, by the server, of the explorer's columns only.
    let exports: Vec<&Value> = entries
        .iter()
        .filter(|e| e["type"] == "query.submitted" && e["actor"] == "system:explorer")
        .collect();
    assert_eq!(exports.len(), 1, "{exports:?}");
    let sql = exports[0]["payload"]["sql"].as_str().unwrap();
    assert!(
        sql.contains("FROM nanbyo_forms") && !sql.contains("birth_ym"),
        "{sql}"
    );
    assert!(
        entries.iter().all(|e| e["actor"] == "system:explorer"
            || e["type"] != "query.submitted"
            || !e["payload"]["sql"]
                .as_str()
                .unwrap_or("")
                .contains("dense_rank")),
        "only the server reads the index"
    );
    assert!(
        exports[0]["index"].as_u64() < logged["index"].as_u64(),
        "read before the first run was computed"
    );

    // A view can be staged for the airlock like any kept result.
    let by_severity = result["by_severity"]["query_id"].as_str().unwrap();
    let (status, staged) = alice.post(
        "/api/v1/projects/px/outputs",
        json!({"query_id": by_severity, "title": "Severity by fiscal year"}),
    );
    assert_eq!(status, 201, "{staged}");
    let oid = staged["id"].as_str().unwrap();
    let (status, report) = alice.get(&format!("/api/v1/projects/px/outputs/{oid}/report"));
    assert_eq!(status, 200, "{report}");

    server.stop_and_verify_audit();
}

#[test]
fn bad_forms_thin_grants_and_outsiders_are_refused() {
    let server = TestServer::start(setup());
    let alice = server.sign_in("alice");
    let cases = [
        (json!({"severity": ["extreme"]}), ["severity", "moderate"]),
        (json!({"colour": ["red"]}), ["colour", "form"]),
        (json!({"diseases": "six"}), ["diseases", "list"]),
        (json!({"diseases": [0]}), ["diseases", "341"]),
        (json!({"prefectures": ["48"]}), ["prefectures", "47"]),
        (json!({"ventilator": "yes"}), ["ventilator", "true"]),
        (
            json!({"treatments": ["'; DROP TABLE x; --"]}),
            ["treatments", "not allowed"],
        ),
        (json!([1, 2]), ["form", "explorer"]),
    ];
    for (body, words) in cases {
        let (status, answer) = alice.post("/api/v1/projects/px/explorer", body.clone());
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "kura.explorer.invalid", "{body}");
        let message = answer["error"]["message"].as_str().unwrap();
        for w in words {
            assert!(message.contains(w), "{body}: {message:?} lacks {w:?}");
        }
    }

    // p1's grant lacks most of the explorer's columns: the answer names them.
    let (status, answer) = alice.get("/api/v1/projects/p1/explorer");
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "kura.explorer.unavailable");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("nanbyo_treatments.name") && message.contains("nanbyo_forms.form_key"),
        "{message}"
    );

    // Not a member: the project does not exist for them; a supervisor may not run anything.
    let bob = server.sign_in("bob");
    let (status, _) = bob.post("/api/v1/projects/px/explorer", json!({}));
    assert_eq!(status, 404);
    let sue = server.sign_in("sue");
    let (status, _) = sue.post("/api/v1/projects/px/explorer", json!({}));
    assert!(status == 404 || status == 403, "supervisor: {status}");
    // Without the CSRF token nothing runs.
    let forged = Browser {
        csrf: "wrong".into(),
        ..alice
    };
    let (status, _) = forged.post("/api/v1/projects/px/explorer", json!({}));
    assert_eq!(status, 403);
    assert!(
        server.audit_of("explorer.run").is_empty(),
        "a refused form never runs"
    );
    let submitted = server.audit_of("query.submitted");
    assert!(
        submitted
            .iter()
            .all(|e| !e["payload"]["sql"].as_str().unwrap_or("").contains("DROP")),
        "a refused form never reaches SQL"
    );
}

#[test]
fn explorer_runs_that_shift_one_filter_are_flagged_for_the_supervisor() {
    let server = TestServer::start(setup());
    let alice = server.sign_in("alice");
    for d in [11, 12, 13, 14] {
        let (status, run) = alice.post(
            "/api/v1/projects/px/explorer",
            json!({"diseases": [d], "sex": ["female"]}),
        );
        assert_eq!(status, 200, "{run}");
    }
    let sue = server.sign_in("sue");
    let (status, usage) = sue.get("/api/v1/audit/usage?days=1");
    assert_eq!(status, 200, "{usage}");
    let flags: Vec<&Value> = usage["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "differencing" && f["project"] == "px")
        .collect();
    // One flag for the four runs, naming the shifted disease and the runs' entries.
    assert_eq!(flags.len(), 1, "{usage}");
    let f = flags[0];
    assert_eq!(f["actor"], "alice");
    assert_eq!(f["shape"], "explorer: diseases, sex");
    assert_eq!(f["values"], json!(["11", "12", "13", "14"]), "{f}");
    let runs: Vec<u64> = server
        .audit_of("explorer.run")
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(f["entries"], json!(runs));
}
