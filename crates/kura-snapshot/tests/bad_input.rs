//! Bad input: each malformed extract, key or policy fails with an error naming what is wrong, and
//! leaves neither the output nor any temporary file behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;

/// Builds from `raw` and asserts failure, the words of the message, and an untouched directory.
fn assert_fails(raw: &Path, key: &Path, policy: Option<&Path>, want: &[&str]) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("s.duckdb");
    let mut o = opts(raw, key, &out);
    if let Some(p) = policy {
        o.policy = p.to_path_buf();
    }
    let err = build(&o).expect_err("the build must fail");
    for w in want {
        assert!(err.contains(w), "error {err:?} should mention {w:?}");
    }
    assert_eq!(
        entries(out_dir.path()),
        Vec::<String>::new(),
        "left files behind: {err}"
    );
}

fn setup(
    change: impl FnOnce(&mut Extract),
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut x = Extract::tiny();
    change(&mut x);
    let raw = dir.path().join("raw");
    x.write(&raw);
    let key = write_key(dir.path(), "key", 1, 32);
    (dir, raw, key)
}

#[test]
fn the_tiny_fixture_itself_builds() {
    let (dir, raw, key) = setup(|_| {});
    let out = dir.path().join("ok.duckdb");
    let m = build(&opts(&raw, &key, &out)).unwrap().manifest;
    let rows: Vec<(String, u64)> = m.tables.iter().map(|t| (t.name.clone(), t.rows)).collect();
    assert!(rows.contains(&("nanbyo_forms".into(), 1)), "{rows:?}");
    assert!(rows.contains(&("nanbyo_treatments".into(), 1)), "{rows:?}");
    assert!(
        rows.contains(&("designated_diseases".into(), 341)),
        "{rows:?}"
    );
}

#[test]
fn wrong_column_count() {
    let (_d, raw, key) = setup(|_| {});
    let f = raw.join("nanbyo_treatments.csv");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("N1-2021,drug,mesalazine,2019-11,extra\n");
    std::fs::write(&f, text).unwrap();
    assert_fails(
        &raw,
        &key,
        None,
        &[
            "nanbyo_treatments.csv",
            "line 3",
            "5 fields",
            "header has 4",
        ],
    );
}

#[test]
fn bad_date() {
    let (_d, raw, key) = setup(|x| {
        x.nanbyo[0].insert("written_date", "2021-02-30".into());
    });
    assert_fails(
        &raw,
        &key,
        None,
        &["nanbyo_forms.csv", "line 2", "written_date", "2021-02-30"],
    );
}

#[test]
fn bad_era_birth_date() {
    let (_d, raw, key) = setup(|x| {
        x.shoman[0].insert("birth_date", "S64.02.01".into());
    });
    assert_fails(
        &raw,
        &key,
        None,
        &["shoman_forms.csv", "line 2", "birth_date", "S64.02.01"],
    );
}

#[test]
fn unknown_disease_number() {
    let (_d, raw, key) = setup(|x| {
        let mut second = x.nanbyo[0].clone();
        second.insert("disease_no", "342".into());
        x.nanbyo.push(second);
    });
    assert_fails(
        &raw,
        &key,
        None,
        &["nanbyo_forms.csv", "line 3", "disease_no", "342", "unknown"],
    );
}

#[test]
fn bad_enumeration() {
    let (_d, raw, key) = setup(|x| {
        x.nanbyo[0].insert("severity", "extreme".into());
    });
    assert_fails(
        &raw,
        &key,
        None,
        &["nanbyo_forms.csv", "severity", "extreme"],
    );
}

#[test]
fn invalid_utf8() {
    let (_d, raw, key) = setup(|_| {});
    let f = raw.join("nanbyo_forms.csv");
    let mut bytes = std::fs::read(&f).unwrap();
    let at = bytes
        .windows("山田".len())
        .position(|w| w == "山田".as_bytes())
        .unwrap();
    bytes[at] = 0xff;
    std::fs::write(&f, bytes).unwrap();
    assert_fails(
        &raw,
        &key,
        None,
        &["nanbyo_forms.csv", "line 2", "name_kanji", "UTF-8"],
    );
}

#[test]
fn missing_key_file() {
    let (d, raw, _key) = setup(|_| {});
    assert_fails(
        &raw,
        &d.path().join("no-such-key"),
        None,
        &["key file", "no-such-key", "cannot read"],
    );
}

#[test]
fn short_key_file() {
    let (d, raw, _key) = setup(|_| {});
    let short = write_key(d.path(), "short", 1, 31);
    assert_fails(&raw, &short, None, &["key file", "31 bytes", "at least 32"]);
}

#[test]
fn policy_naming_an_unknown_column() {
    let (d, raw, key) = setup(|_| {});
    let text = std::fs::read_to_string(policy_path()).unwrap();
    let p = d.path().join("p.toml");
    let marker = "[tables.institutions.columns]\n";
    std::fs::write(
        &p,
        text.replace(
            marker,
            &format!("{marker}bogus = {{ action = \"drop\" }}\n"),
        ),
    )
    .unwrap();
    assert_fails(
        &raw,
        &key,
        Some(&p),
        &[
            "bogus",
            "institutions",
            "institutions.csv",
            "no such column",
        ],
    );
}

#[test]
fn raw_column_not_in_policy() {
    let (_d, raw, key) = setup(|_| {});
    let f = raw.join("institutions.csv");
    let text = std::fs::read_to_string(&f).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[0].push_str(",fax");
    lines[1].push_str(",03-1234-9999");
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    assert_fails(
        &raw,
        &key,
        None,
        &[
            "institutions.csv",
            "institutions",
            "`fax`",
            "does not mention",
        ],
    );
}

#[test]
fn raw_file_not_in_policy() {
    let (_d, raw, key) = setup(|_| {});
    std::fs::write(raw.join("doctors.csv"), "doctor_number\nD1\n").unwrap();
    assert_fails(
        &raw,
        &key,
        None,
        &["doctors.csv", "not a table of the policy"],
    );
}

#[test]
fn an_existing_output_is_not_overwritten() {
    let (d, raw, key) = setup(|_| {});
    let out = d.path().join("s.duckdb");
    std::fs::write(&out, b"earlier snapshot").unwrap();
    let err = build(&opts(&raw, &key, &out)).unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"earlier snapshot");
}
