//! `kura audit ...` through the binary: exit codes of `verify` for tampering (1), usage errors
//! (2) and forks (3), the other subcommands, and a SIGKILL crash test of the writer.
// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kura_e2e::{kura, kura_bin};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn note(dir: &Path, text: &str) {
    let o = kura(&["audit", "note", "--state", s(dir), "--actor", "ops", text]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn verify(dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["audit", "verify", "--state", s(dir)];
    args.extend_from_slice(extra);
    let o = kura(&args);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

fn sql(dir: &Path, q: &str) {
    rusqlite::Connection::open(dir.join("kura.sqlite"))
        .unwrap()
        .execute_batch(q)
        .unwrap();
}

#[test]
fn verify_exit_codes_and_subcommands() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..6 {
        note(d.path(), &format!("maintenance step {i}"));
    }
    assert_eq!(verify(d.path(), &[]).0, 0);
    let cp = kura(&["audit", "checkpoint", "--state", s(d.path())]);
    let trusted = d.path().join("trusted.checkpoint");
    std::fs::write(&trusted, &cp.stdout).unwrap();
    assert!(String::from_utf8_lossy(&cp.stdout).starts_with("kura.local/audit\n6\n"));
    let key = kura(&["audit", "public-key", "--state", s(d.path())]);
    assert!(String::from_utf8_lossy(&key.stdout).starts_with("kura.local/audit+"));
    let proof = kura(&["audit", "proof", "--state", s(d.path()), "--index", "3"]);
    assert!(String::from_utf8_lossy(&proof.stdout).starts_with("c2sp.org/tlog-proof@v1\n"));
    let search = kura(&[
        "audit",
        "search",
        "--state",
        s(d.path()),
        "--type",
        "operator.note",
        "--json",
    ]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&search.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[2]["payload"]["text"], "maintenance step 2");
    // Usage error.
    assert_eq!(
        verify(d.path(), &["--trusted-checkpoint", "/nonexistent"]).0,
        2
    );
    // Tampering: one flipped bit.
    let c = rusqlite::Connection::open(d.path().join("kura.sqlite")).unwrap();
    let mut leaf: Vec<u8> = c
        .query_row("SELECT leaf FROM audit_leaves WHERE idx = 2", [], |r| {
            r.get(0)
        })
        .unwrap();
    leaf[60] ^= 0x04;
    c.execute("UPDATE audit_leaves SET leaf = ?1 WHERE idx = 2", [leaf])
        .unwrap();
    drop(c);
    let (code, out) = verify(d.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 2"), "{out}");
}

#[test]
fn resigned_rewrite_against_a_trusted_checkpoint_exits_3() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..4 {
        note(d.path(), &format!("n{i}"));
    }
    let trusted = d.path().join("trusted");
    std::fs::write(
        &trusted,
        kura(&["audit", "checkpoint", "--state", s(d.path())]).stdout,
    )
    .unwrap();
    sql(
        d.path(),
        "DELETE FROM audit_leaves; DELETE FROM audit_payloads; DELETE FROM audit_checkpoints;",
    );
    for i in 0..5 {
        note(d.path(), &format!("forged {i}"));
    }
    assert_eq!(verify(d.path(), &[]).0, 0);
    let (code, out) = verify(d.path(), &["--trusted-checkpoint", s(&trusted)]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("trusted checkpoint") && out.contains("log's checkpoint"),
        "{out}"
    );
}

#[test]
fn acknowledged_entries_survive_sigkill() {
    let d = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    for round in 0..5u64 {
        let mut child = Command::new(kura_bin())
            .args(["audit", "stress", "--writers", "8", "--state", s(d.path())])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(150 + round * 40));
        child.kill().unwrap();
        child.wait().unwrap();
        for l in reader.join().unwrap() {
            let p: Vec<&str> = l.split(' ').collect();
            if p.len() == 3 && p[0] == "ack" {
                acked.push((p[1].parse::<i64>().unwrap(), p[2].to_string()));
            }
        }
    }
    assert!(!acked.is_empty());
    assert_eq!(verify(d.path(), &[]).0, 0);
    let search = kura(&["audit", "search", "--state", s(d.path()), "--json"]);
    let hashes: std::collections::HashMap<i64, String> = String::from_utf8_lossy(&search.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["index"].as_i64().unwrap(),
                v["leaf_hash"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (i, h) in &acked {
        assert_eq!(
            hashes.get(i),
            Some(h),
            "acknowledged entry {i} lost or changed"
        );
    }
}
