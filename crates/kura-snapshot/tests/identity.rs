//! Research IDs and linkage keys: one person under spelling variants gets one research ID across
//! forms and registries; another key, another ID; the linkage key exists only when the policy
//! enables it and differs between releases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn variants_extract() -> Extract {
    let mut x = Extract::tiny();
    x.nanbyo = vec![
        nanbyo_row("N1-2019", "ヤマダ ハナコ", "1958-04-12"),
        nanbyo_row("N1-2020", "ﾔﾏﾀﾞ ﾊﾅｺ", "S33.04.12"),
        nanbyo_row("N1-2021", "ヤマダ\u{3000}ハナコ", "S33.4.12"),
        nanbyo_row("N1-2022", "ヤマダハナコ", "1958-04-12"),
        nanbyo_row("N2-2021", "ヤマダ ハナコ", "1958-04-13"),
        nanbyo_row("N3-2021", "ヤマダ タロウ", "1958-04-12"),
    ];
    x.shoman = vec![shoman_row("C1-2012", " ﾔﾏﾀﾞﾊﾅｺ ", "S33.04.12")];
    x
}

#[test]
fn spelling_variants_of_one_person_share_a_research_id() {
    let dir = tempfile::tempdir().unwrap();
    variants_extract().write(&dir.path().join("raw"));
    let key = write_key(dir.path(), "key", 1, 32);
    let out = dir.path().join("s.duckdb");
    build(&opts(&dir.path().join("raw"), &key, &out)).unwrap();
    let ids = query_strings(
        &out,
        "SELECT research_id FROM nanbyo_forms ORDER BY written_ym, form_year, research_id",
    );
    assert_eq!(ids.len(), 6);
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    // Four spellings of person 1, then a different DOB and a different name.
    assert_eq!(distinct.len(), 3, "{ids:?}");
    let person1 = query_strings(
        &out,
        "SELECT DISTINCT research_id FROM nanbyo_forms WHERE research_id IN \
         (SELECT research_id FROM shoman_forms)",
    );
    assert_eq!(
        person1.len(),
        1,
        "the 小慢 child is the same person as the adult"
    );
    let n: Vec<String> = query_strings(
        &out,
        &format!(
            "SELECT CAST(count(*) AS VARCHAR) FROM nanbyo_forms WHERE research_id = '{}'",
            person1[0]
        ),
    );
    assert_eq!(n, ["4"]);
}

#[test]
fn another_key_gives_other_ids_and_pseudonyms() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    variants_extract().write(&raw);
    let (k1, k2) = (
        write_key(dir.path(), "k1", 1, 32),
        write_key(dir.path(), "k2", 2, 32),
    );
    let (a, b) = (dir.path().join("a.duckdb"), dir.path().join("b.duckdb"));
    build(&opts(&raw, &k1, &a)).unwrap();
    build(&opts(&raw, &k2, &b)).unwrap();
    let c = dir.path().join("c.duckdb");
    build(&opts(&raw, &k1, &c)).unwrap();
    let ids = "SELECT research_id FROM nanbyo_forms ORDER BY form_year, written_ym, research_id";
    assert_eq!(
        query_strings(&a, ids),
        query_strings(&c, ids),
        "same key, same IDs"
    );
    for sql in [
        "SELECT research_id FROM nanbyo_forms",
        "SELECT form_key FROM nanbyo_forms",
        "SELECT institution_key FROM institutions",
    ] {
        let (x, y) = (query_strings(&a, sql), query_strings(&b, sql));
        assert!(!x.is_empty());
        assert!(x.iter().all(|v| !y.contains(v)), "{sql}: {x:?} vs {y:?}");
    }
}

#[test]
fn the_key_never_reaches_the_snapshot_or_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    Extract::tiny().write(&raw);
    let key = write_key(dir.path(), "key", 9, 48);
    let out = dir.path().join("s.duckdb");
    build(&opts(&raw, &key, &out)).unwrap();
    let key_bytes = std::fs::read(&key).unwrap();
    let key_hex: String = key_bytes.iter().map(|b| format!("{b:02x}")).collect();
    for f in [out.clone(), kura_snapshot::manifest_path(&out)] {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes
                .windows(16)
                .any(|w| key_bytes.windows(16).any(|k| k == w)),
            "{f:?}"
        );
        assert!(!String::from_utf8_lossy(&bytes).contains(&key_hex[..32]));
    }
}

#[test]
fn linkage_key_only_when_enabled_and_rekeyed_per_release() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    Extract::tiny().write(&raw);
    let key = write_key(dir.path(), "key", 1, 32);
    let off = dir.path().join("off.duckdb");
    build(&opts(&raw, &key, &off)).unwrap();
    let cols = query_strings(
        &off,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'nanbyo_forms'",
    );
    assert!(!cols.iter().any(|c| c == "linkage_key"), "{cols:?}");

    let text = std::fs::read_to_string(policy_path()).unwrap();
    let enabled = dir.path().join("linkage.toml");
    std::fs::write(&enabled, text.replace("enabled = false", "enabled = true")).unwrap();
    let mut keys = Vec::new();
    for release in ["r1", "r2"] {
        let out = dir.path().join(format!("{release}.duckdb"));
        let mut o = opts(&raw, &key, &out);
        o.policy = enabled.clone();
        o.release_id = Some(release.into());
        let m = build(&o).unwrap().manifest;
        assert_eq!(m.release_id, release);
        assert!(m.linkage_enabled);
        let k = query_strings(&out, "SELECT linkage_key FROM nanbyo_forms");
        assert_eq!(k.len(), 1);
        assert_ne!(k[0], "12345678");
        keys.push(k[0].clone());
        // The research ID stays the same across releases; only the linkage key changes.
        keys.push(query_strings(&out, "SELECT research_id FROM nanbyo_forms")[0].clone());
    }
    assert_ne!(
        keys[0], keys[2],
        "linkage keys of two releases must not join"
    );
    assert_eq!(keys[1], keys[3]);
}
