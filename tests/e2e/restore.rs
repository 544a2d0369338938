//! Backup and restore of a state directory (`kura state`, docs/operations.md "Restore test"). A
//! backup taken while the server runs restores into a new directory that serves again: the
//! accounts sign in, the projects, queries and staged outputs up to the backup are there and
//! nothing after it, and the restored audit log verifies, while a checkpoint witnessed after the
//! backup reports the rollback. A damaged or incomplete backup restores nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use kura_e2e::kura;
use kura_e2e::server::{snapshot_dir, Browser, Setup, TestServer};
use serde_json::{json, Value};

fn run(args: &[&str]) -> (i32, String, String) {
    let out: Output = kura(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn backup(state: &Path, to: &Path, with_snapshots: bool) -> Value {
    let mut args = vec!["state", "backup", "--state", s(state), "--to", s(to)];
    if with_snapshots {
        args.push("--with-snapshots");
    }
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "backup: {out}{err}");
    serde_json::from_str(&std::fs::read_to_string(to.join("manifest.json")).unwrap()).unwrap()
}

fn new_project(stu: &Browser, id: &str) {
    let (status, body) = stu.post(
        "/api/v1/projects",
        json!({"id": id, "title": format!("Project {id}"), "snapshot": "demo",
               "tables": {"nanbyo_forms": ["disease_no", "sex"]},
               "starts": "2026-01-01T00:00:00Z", "expires": "2030-01-01T00:00:00Z"}),
    );
    assert_eq!(status, 201, "{body}");
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// The tree size line of a signed checkpoint.
fn checkpoint_size(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_backup_taken_while_serving_restores_into_a_working_server_whose_log_verifies() {
    let mut server = TestServer::start(Setup::default());
    let state = server.state.path().to_path_buf();
    let alice = server.sign_in("alice");
    let stu = server.sign_in("stu");
    let (status, before) = alice.query(
        "p1",
        "SELECT disease_no, count(*) AS n FROM nanbyo_forms GROUP BY disease_no ORDER BY 1 LIMIT 5",
    );
    assert_eq!(status, 200, "{before}");
    let (status, output) = alice.post(
        "/api/v1/projects/p1/outputs",
        json!({"query_id": before["id"], "title": "Before the backup"}),
    );
    assert_eq!(status, 201, "{output}");
    new_project(&stu, "before");
    // The server signs a checkpoint within a second of new entries; the backup should hold one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while run(&["audit", "checkpoint", "--state", s(&state)]).0 != 0 {
        assert!(std::time::Instant::now() < deadline, "no checkpoint signed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Backed up while the server runs.
    let backups = tempfile::tempdir().unwrap();
    let b = backups.path().join("b1");
    let manifest = backup(&state, &b, false);
    let files: Vec<&Value> = manifest["files"].as_array().unwrap().iter().collect();
    let file = |p: &str| files.iter().find(|f| f["path"] == p).copied();
    assert_eq!(file("kura.sqlite").unwrap()["kind"], "sqlite");
    for key in ["audit-signing.key", "keys/explorer.key", "tls/key.pem"] {
        assert_eq!(file(key).unwrap()["mode"], "0600", "{key} stays private");
    }
    let staged = format!("outputs/{}.arrow", output["id"].as_str().unwrap());
    assert!(file(&staged).is_some(), "the staged output is copied");
    assert!(file("snapshots/demo.duckdb.manifest.json").is_some());
    assert!(file("snapshots/demo.duckdb").is_none());
    assert_eq!(manifest["left_out"][0]["path"], "snapshots/demo.duckdb");
    for f in &files {
        let p = f["path"].as_str().unwrap();
        assert!(
            !p.ends_with("-wal") && !p.ends_with("-shm") && !p.ends_with("audit.lock"),
            "{p} is not state"
        );
    }
    let backed_up_entries = manifest["audit"]["entries"].as_u64().unwrap();
    assert_eq!(manifest["audit"]["intact"], true);
    let (code, out, err) = run(&["state", "check", "--from", s(&b)]);
    assert_eq!(code, 0, "{out}{err}");

    // Activity after the backup, then a graceful stop (its final checkpoint).
    let (status, after) = alice.query("p1", "SELECT count(*) AS n FROM nanbyo_forms");
    assert_eq!(status, 200, "{after}");
    new_project(&stu, "after");
    server.stop_and_verify_audit();
    let (code, witnessed, err) = run(&["audit", "checkpoint", "--state", s(&state)]);
    assert_eq!(code, 0, "{err}");
    assert!(checkpoint_size(&witnessed) > backed_up_entries);
    let witnessed_file = backups.path().join("witnessed.txt");
    std::fs::write(&witnessed_file, &witnessed).unwrap();

    // Restore into a new directory.
    let restored = tempfile::tempdir().unwrap();
    let target = restored.path();
    let (code, out, err) = run(&["state", "restore", "--from", s(&b), "--state", s(target)]);
    assert_eq!(code, 0, "restore: {out}{err}");
    assert!(
        out.contains(&format!("intact, {backed_up_entries} entries")),
        "the restored log's size is printed: {out}"
    );
    assert!(
        out.contains("latest signed checkpoint") && out.contains("kura.local/audit"),
        "{out}"
    );
    assert!(out.contains("snapshots/demo.duckdb"), "{out}");
    let (code, out, err) = run(&["audit", "verify", "--state", s(target)]);
    assert_eq!(code, 0, "the restored log verifies: {out}{err}");
    let (code, out, err) = run(&[
        "audit",
        "verify",
        "--state",
        s(target),
        "--trusted-checkpoint",
        s(&witnessed_file),
    ]);
    assert_eq!(
        code, 3,
        "a checkpoint witnessed after the backup sees the rollback: {out}{err}"
    );

    // The manual step: the snapshot from the snapshot store, checked against its manifest.
    std::fs::copy(
        snapshot_dir().join("demo.duckdb"),
        target.join("snapshots/demo.duckdb"),
    )
    .unwrap();
    let snapshot = target.join("snapshots/demo.duckdb");
    let (code, out, err) = run(&["snapshot", "verify", s(&snapshot)]);
    assert_eq!(code, 0, "{out}{err}");

    let mut server = TestServer::serve(restored);
    let alice = server.sign_in("alice");
    let stu = server.sign_in("stu");
    let (_, projects) = stu.get("/api/v1/projects");
    let projects = ids(&projects, "projects");
    assert!(projects.contains(&"before".to_string()), "{projects:?}");
    assert!(!projects.contains(&"after".to_string()), "{projects:?}");
    let (_, history) = alice.get("/api/v1/projects/p1/queries");
    let history = ids(&history, "queries");
    assert!(history.contains(&before["id"].as_str().unwrap().to_string()));
    assert!(!history.contains(&after["id"].as_str().unwrap().to_string()));
    let (_, outputs) = alice.get("/api/v1/projects/p1/outputs");
    assert_eq!(
        ids(&outputs, "outputs"),
        vec![output["id"].as_str().unwrap()]
    );
    let (status, body) = alice.query("p1", "SELECT count(*) AS n FROM nanbyo_forms");
    assert_eq!(status, 200, "queries run on the restored state: {body}");
    server.stop_and_verify_audit();
}

/// Copies a directory tree (a backup, to damage the copy).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// Restores `backup` into a new path and into an empty directory: both must fail with `code`
/// and a message containing `names`, and leave nothing behind.
fn restore_is_refused(backup: &Path, code: i32, names: &str) {
    let work = tempfile::tempdir().unwrap();
    let new = work.path().join("new");
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for target in [&new, &empty] {
        let (got, out, err) = run(&[
            "state",
            "restore",
            "--from",
            s(backup),
            "--state",
            s(target),
        ]);
        assert_eq!(got, code, "{out}{err}");
        assert!(err.contains(names), "the error names {names}: {err}");
    }
    assert!(!new.exists(), "nothing written");
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn a_damaged_or_incomplete_backup_restores_nothing() {
    let mut server = TestServer::start(Setup::default());
    let state = server.state.path().to_path_buf();
    let alice = server.sign_in("alice");
    let (status, result) = alice.query("p1", "SELECT count(*) AS n FROM nanbyo_forms");
    assert_eq!(status, 200, "{result}");
    let (status, output) = alice.post(
        "/api/v1/projects/p1/outputs",
        json!({"query_id": result["id"], "title": "Staged"}),
    );
    assert_eq!(status, 201, "{output}");
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good");
    let manifest = backup(&state, &good, true);
    assert!(server.stop().success());
    assert!(manifest["left_out"].as_array().unwrap().is_empty());
    let (code, out, err) = run(&["state", "check", "--from", s(&good)]);
    assert_eq!(code, 0, "{out}{err}");

    // One changed byte in any file: the database, a staged output, a key, the snapshot.
    let staged = format!("outputs/{}.arrow", output["id"].as_str().unwrap());
    for file in [
        "kura.sqlite",
        staged.as_str(),
        "audit-signing.key",
        "snapshots/demo.duckdb",
    ] {
        let damaged = work
            .path()
            .join(format!("damaged-{}", file.replace('/', "_")));
        copy_tree(&good, &damaged);
        flip_a_byte(&damaged.join("files").join(file));
        let (code, out, err) = run(&["state", "check", "--from", s(&damaged)]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains(file), "{err}");
        restore_is_refused(&damaged, 1, file);
    }

    // A missing file, and a backup without its manifest (interrupted before the end).
    let missing = work.path().join("missing");
    copy_tree(&good, &missing);
    std::fs::remove_file(missing.join("files/keys/explorer.key")).unwrap();
    restore_is_refused(&missing, 1, "keys/explorer.key");
    let incomplete = work.path().join("incomplete");
    copy_tree(&good, &incomplete);
    std::fs::remove_file(incomplete.join("manifest.json")).unwrap();
    restore_is_refused(&incomplete, 1, "manifest.json");

    // A manifest that points outside the target.
    let escaping = work.path().join("escaping");
    copy_tree(&good, &escaping);
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(escaping.join("manifest.json")).unwrap())
            .unwrap();
    m["files"][0]["path"] = json!("../outside");
    std::fs::write(escaping.join("manifest.json"), m.to_string()).unwrap();
    restore_is_refused(&escaping, 1, "../outside");

    // A target that holds anything is refused and left as it was.
    let occupied = work.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("kura.toml"), "listen = \"127.0.0.1:1\"\n").unwrap();
    let (code, out, err) = run(&[
        "state",
        "restore",
        "--from",
        s(&good),
        "--state",
        s(&occupied),
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&occupied).unwrap().count(), 1);

    // A backup is never written over another one.
    let (code, out, err) = run(&["state", "backup", "--state", s(&state), "--to", s(&good)]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("not empty"), "{err}");
    let (code, out, err) = run(&["state", "check", "--from", s(&good)]);
    assert_eq!(code, 0, "{out}{err}");
}
