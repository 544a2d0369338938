//! The data catalog (issue 7): every signed-in user sees every installed snapshot as its
//! manifest describes it, with row counts rounded so that no small or exact count leaves, and
//! the code lists; nobody else sees anything. The listing never reads a snapshot's database
//! file, and a snapshot with a missing or broken manifest is left out without failing the page.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kura_e2e::server::{Browser, Setup, TestServer};
use serde_json::{json, Value};

fn manifest_of(server: &TestServer, name: &str) -> Value {
    let path = server
        .state
        .path()
        .join(format!("snapshots/{name}.duckdb.manifest.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Every number anywhere in `v`.
fn numbers(v: &Value, out: &mut Vec<u64>) {
    match v {
        Value::Number(n) => out.extend(n.as_u64()),
        Value::Array(a) => a.iter().for_each(|x| numbers(x, out)),
        Value::Object(o) => o.values().for_each(|x| numbers(x, out)),
        _ => {}
    }
}

/// The published rule (docs/server.md): under 10 is "<10"; otherwise the nearest number with
/// at most two significant figures, halves rounded up. Checked as properties of the answer,
/// not by re-running the server's arithmetic.
fn assert_rounded(table: &Value, true_rows: u64) {
    let name = &table["name"];
    if true_rows < 10 {
        assert_eq!(table["rows_rounded"], Value::Null, "{name}");
        assert_eq!(table["rows_text"], "<10", "{name}");
        return;
    }
    let shown = table["rows_rounded"].as_u64().unwrap();
    assert_eq!(table["rows_text"], shown.to_string(), "{name}");
    let digits = true_rows.to_string().len() as u32;
    let unit = 10u64.pow(digits.saturating_sub(2));
    assert!(
        shown.is_multiple_of(unit),
        "{name}: {shown} has more than two significant figures"
    );
    // The nearest multiple of `unit`; a tie goes up.
    let diff = shown.abs_diff(true_rows);
    assert!(
        diff * 2 < unit || (diff * 2 == unit && shown > true_rows),
        "{name}: {true_rows} shown as {shown}"
    );
    if !true_rows.is_multiple_of(unit) {
        let mut found = Vec::new();
        numbers(table, &mut found);
        assert!(
            !found.contains(&true_rows),
            "{name}: exact count {true_rows} leaked"
        );
    }
}

#[test]
fn every_signed_in_user_sees_each_snapshot_with_rounded_counts() {
    let server = TestServer::start(Setup::default());
    let manifest = manifest_of(&server, "demo");
    let manifest_path = server
        .state
        .path()
        .join("snapshots/demo.duckdb.manifest.json");

    // A researcher, a checker, a supervisor and a steward: the same catalog for all.
    let mut answers = Vec::new();
    for who in ["alice", "carol", "sue", "stu"] {
        let (status, body) = server.sign_in(who).get("/api/v1/catalog");
        assert_eq!(status, 200, "{who}: {body}");
        answers.push(body);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    let catalog = &answers[0];
    let snapshots = catalog["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 1, "{catalog}");
    let demo = &snapshots[0];
    assert_eq!(demo["name"], "demo");
    assert_eq!(demo["built_at"], manifest["built_at"]);
    assert_eq!(demo["release_id"], manifest["release_id"]);
    assert_eq!(demo["sha256"], manifest["database"]["sha256"]);
    assert_eq!(demo["policy"], manifest["policy"]["name"]);
    assert_eq!(demo["manifest_sha256"], sha256_of(&manifest_path));

    // Tables and columns exactly as the manifest describes them, counts rounded.
    let tables = demo["tables"].as_array().unwrap();
    let expected = manifest["tables"].as_array().unwrap();
    assert_eq!(tables.len(), expected.len());
    for (got, want) in tables.iter().zip(expected) {
        assert_eq!(got["name"], want["name"]);
        assert_eq!(got["en"], want["en"]);
        assert_eq!(got["ja"], want["ja"]);
        assert_eq!(got["columns"], want["columns"], "{}", want["name"]);
        assert_rounded(got, want["rows"].as_u64().unwrap());
    }
    let table = |name: &str| tables.iter().find(|t| t["name"] == name).unwrap();
    assert_eq!(table("designated_diseases")["rows_text"], "340", "341 rows");
    assert_eq!(table("prefectures")["rows_text"], "47");

    // Metadata only: nothing of the raw extracts (their hashes) or the policy's text.
    let text = catalog.to_string();
    for source in manifest["sources"].as_array().unwrap() {
        assert!(!text.contains(source["sha256"].as_str().unwrap()));
    }
    assert!(!text.contains(manifest["policy"]["content"].as_str().unwrap()));
}

#[test]
fn small_counts_show_as_under_ten_and_unusable_snapshots_are_left_out() {
    let server = TestServer::start(Setup::default());
    let snaps = server.state.path().join("snapshots");
    let mut tiny = manifest_of(&server, "demo");
    let counts = [7u64, 0, 9, 10, 12_345, 99_950];
    for (t, n) in tiny["tables"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(counts)
    {
        t["rows"] = json!(n);
    }
    std::fs::write(
        snaps.join("tiny.duckdb.manifest.json"),
        serde_json::to_vec_pretty(&tiny).unwrap(),
    )
    .unwrap();
    // A 256 GiB (sparse) database file: hashing or opening it would take minutes, so a prompt
    // answer shows that the catalog reads the manifest only.
    std::fs::File::create(snaps.join("tiny.duckdb"))
        .unwrap()
        .set_len(256 << 30)
        .unwrap();
    std::fs::write(snaps.join("broken.duckdb"), b"x").unwrap();
    std::fs::write(
        snaps.join("broken.duckdb.manifest.json"),
        b"{\"format_version\": 1,",
    )
    .unwrap();
    std::fs::write(snaps.join("orphan.duckdb"), b"x").unwrap();
    std::fs::write(snaps.join("Not_An_Id.duckdb"), b"x").unwrap();
    std::fs::copy(
        snaps.join("demo.duckdb.manifest.json"),
        snaps.join("Not_An_Id.duckdb.manifest.json"),
    )
    .unwrap();

    let alice = server.sign_in("alice");
    let started = Instant::now();
    let (status, catalog) = alice.get("/api/v1/catalog");
    assert_eq!(status, 200, "{catalog}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let names: Vec<&str> = catalog["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["demo", "tiny"],
        "broken, orphan and bad names left out"
    );
    let tables = catalog["snapshots"][1]["tables"].as_array().unwrap();
    let shown: Vec<&str> = tables
        .iter()
        .map(|t| t["rows_text"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["<10", "<10", "<10", "10", "12000", "100000"]);
    for (t, n) in tables.iter().zip(counts) {
        assert_rounded(t, n);
    }
}

#[test]
fn code_lists_hold_every_designated_disease_and_prefecture() {
    let server = TestServer::start(Setup::default());
    let (status, codes) = server.sign_in("carol").get("/api/v1/catalog/codes");
    assert_eq!(status, 200, "{codes}");
    let diseases = codes["diseases"].as_array().unwrap();
    assert_eq!(diseases.len(), 341);
    for (i, d) in diseases.iter().enumerate() {
        assert_eq!(d["no"], i + 1);
        assert!(!d["name_ja"].as_str().unwrap().is_empty());
        assert!(!d["name_en"].as_str().unwrap().is_empty(), "{d}");
    }
    assert_eq!(diseases[5]["name_ja"], "パーキンソン病");
    assert_eq!(diseases[5]["name_en"], "Parkinson's disease");
    assert_eq!(diseases[96]["name_ja"], "潰瘍性大腸炎");

    let prefectures = codes["prefectures"].as_array().unwrap();
    assert_eq!(prefectures.len(), 47);
    let tokyo = prefectures.iter().find(|p| p["code"] == "13").unwrap();
    assert_eq!(tokyo["name_ja"], "東京都");
    assert_eq!(tokyo["name_en"], "Tokyo");
    assert_eq!(tokyo["region"], "kanto");
    let total: u64 = prefectures
        .iter()
        .map(|p| p["population_2020"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 126_146_099, "the official 2020 census total");
    let regions: Vec<&str> = codes["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(regions.len(), 8);
    for p in prefectures {
        assert!(regions.contains(&p["region"].as_str().unwrap()), "{p}");
    }
}

#[test]
fn without_a_session_the_catalog_answers_401() {
    let server = TestServer::start(Setup::default());
    let stranger = Browser {
        client: server.client(),
        origin: server.origin.clone(),
        csrf: String::new(),
    };
    for path in ["/api/v1/catalog", "/api/v1/catalog/codes"] {
        let (status, body) = stranger.get(path);
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error"]["code"], "kura.auth.required");
    }
    // A session that has ended is no session.
    let alice = server.sign_in("alice");
    assert_eq!(alice.get("/api/v1/catalog").0, 200);
    assert_eq!(alice.send("DELETE", "/api/v1/session", None).0, 204);
    assert_eq!(alice.get("/api/v1/catalog").0, 401);
    assert_eq!(alice.get("/api/v1/catalog/codes").0, 401);
}
