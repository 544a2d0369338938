//! `kura snapshot build|verify` as a data steward runs them: exit codes, messages, files left.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use kura_e2e::kura;

fn policy() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies/pseudonymise.toml")
        .display()
        .to_string()
}

fn generate(dir: &Path) -> String {
    let raw = dir.join("raw");
    let out = kura(&[
        "registry",
        "generate",
        "--patients",
        "300",
        "--seed",
        "3",
        "--out",
        raw.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    raw.display().to_string()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn build_then_verify_then_detect_a_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    let raw = generate(dir.path());
    let key = dir.path().join("kura.key");
    std::fs::write(&key, [0x5au8; 32]).unwrap();
    let snap = dir.path().join("out/s.duckdb");
    std::fs::create_dir_all(snap.parent().unwrap()).unwrap();
    let s = snap.to_str().unwrap();
    let out = kura(&[
        "snapshot",
        "build",
        "--raw",
        &raw,
        "--policy",
        &policy(),
        "--key-file",
        key.to_str().unwrap(),
        "--out",
        s,
        "--release-id",
        "e2e-1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nanbyo_forms"),
        "progress on stderr"
    );
    assert_eq!(
        names(snap.parent().unwrap()),
        ["s.duckdb", "s.duckdb.manifest.json"]
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{s}.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["release_id"], "e2e-1");

    let ok = kura(&["snapshot", "verify", s]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let mut bytes = std::fs::read(&snap).unwrap();
    let at = bytes.len() / 3;
    bytes[at] = bytes[at].wrapping_add(1);
    std::fs::write(&snap, bytes).unwrap();
    let bad = kura(&["snapshot", "verify", s]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SHA-256 differs"));
}

#[test]
fn a_short_key_fails_with_exit_2_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let raw = generate(dir.path());
    let key = dir.path().join("short.key");
    std::fs::write(&key, b"too short").unwrap();
    let outdir = dir.path().join("out");
    std::fs::create_dir_all(&outdir).unwrap();
    let out = kura(&[
        "snapshot",
        "build",
        "--raw",
        &raw,
        "--policy",
        &policy(),
        "--key-file",
        key.to_str().unwrap(),
        "--out",
        outdir.join("s.duckdb").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("short.key") && err.contains("at least 32"),
        "{err}"
    );
    assert!(names(&outdir).is_empty());
}
