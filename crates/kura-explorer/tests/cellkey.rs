//! Cell keys: the Rust mirror matches DuckDB's arithmetic (vectors computed by DuckDB through the
//! sandbox), the key depends only on the set of contributors (not row order, repetition, or the
//! query that produced the cell), the secret matters, and the perturbation table is zero-mean,
//! bounded and never empties a cell.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use kura_explorer::cellkey::{
    fingerprint, noise, perturb, record_value, CellKey, CellKeySecret, PTABLE,
};
use kura_explorer::{Explorer, RecordHash, Shown, View};
use kura_sdc::CheckContext;
use serde_json::json;
use support::{cohort, evaluate_all, filters, institutions, Rng};

#[test]
fn record_values_match_duckdb() {
    // SELECT CAST('0x' || substr(sha256('0123...'), 1, 15) AS BIGINT), the same without sha256,
    // and the SQL's sum(...) % 2^60 over the distinct ids of four (one repeated), run by DuckDB
    // 2.0 through `kura query`.
    let id = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        record_value(id, RecordHash::Sha256),
        Some(282_349_999_953_837_751)
    );
    assert_eq!(
        record_value(id, RecordHash::ResearchIdPrefix),
        Some(5_124_095_576_030_430)
    );
    let ids = [
        "db4da44ebd48bf2c1fd17083dafc32ab",
        "ffffffffffffffffffffffffffffffff",
        "00000000000000000000000000000001",
        "db4da44ebd48bf2c1fd17083dafc32ab",
    ];
    assert_eq!(
        fingerprint(ids, RecordHash::Sha256),
        Some(988_204_583_693_932_407)
    );
    assert_eq!(
        record_value("not-hex-at-all!!", RecordHash::ResearchIdPrefix),
        None
    );
}

#[test]
fn the_key_depends_on_the_set_of_contributors_only() {
    let secret = CellKeySecret::new(&[1u8; 32]).unwrap();
    let mut rng = Rng(5);
    let ids: Vec<String> = (0..25).map(|_| rng.hex32()).collect();
    let base = fingerprint(ids.iter().map(String::as_str), RecordHash::Sha256).unwrap();
    for round in 0..50 {
        // Shuffle and repeat some ids (a patient with several forms in the cell).
        let mut shuffled: Vec<&str> = ids.iter().map(String::as_str).collect();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        shuffled.extend(ids.iter().take(round % 7).map(String::as_str));
        let fp = fingerprint(shuffled, RecordHash::Sha256).unwrap();
        assert_eq!(fp, base);
        assert_eq!(secret.cell_key(fp), secret.cell_key(base));
        assert_eq!(
            noise(secret.cell_key(fp), 25),
            noise(secret.cell_key(base), 25)
        );
    }
    // One patient more or less is another set: another key.
    let fewer = fingerprint(ids[1..].iter().map(String::as_str), RecordHash::Sha256).unwrap();
    assert_ne!(secret.cell_key(fewer), secret.cell_key(base));
}

#[test]
fn the_same_patients_get_the_same_number_whatever_query_produced_the_cell() {
    let mut rng = Rng(11);
    let insts = institutions(&mut rng, 6);
    let mut forms = cohort(&mut rng, 11, "13", 60, &insts["13"]);
    forms.extend(cohort(&mut rng, 11, "27", 45, &insts["27"]));
    forms.extend(cohort(&mut rng, 11, "14", 30, &insts["14"]));
    forms.extend(cohort(&mut rng, 6, "13", 50, &insts["13"]));
    let explorer = Explorer::new(&[9u8; 32], support::catalog()).unwrap();
    let run = |q: serde_json::Value| {
        let f = filters(q);
        explorer
            .protect(
                &f,
                &evaluate_all(&forms, &f, RecordHash::Sha256),
                &CheckContext::default(),
            )
            .unwrap()
    };
    let a = run(json!({"diseases": [11]}));
    // Asking again: the same page, so repeating gives nothing to average.
    assert_eq!(a, run(json!({"diseases": [11]})));
    // Worded differently, same patients (every form has a severity): the same numbers.
    let b = run(json!({"diseases": [11], "severity": ["mild", "moderate", "severe"]}));
    for view in View::ALL {
        assert_eq!(a.view(view).series, b.view(view).series, "{view:?}");
    }
    // Tokyo's cell of the national table and the total of a Tokyo-only table hold the same
    // patients: the same published number.
    let tokyo = run(json!({"diseases": [11], "prefectures": ["13"]}));
    let pos = a
        .by_prefecture
        .x
        .iter()
        .position(|l| l.key == "13")
        .unwrap();
    let cell = &a.by_prefecture.series[0].values[pos];
    assert!(matches!(cell, Shown::Value { .. }), "{cell:?}");
    assert_eq!(Some(cell), tokyo.by_prefecture.series[0].total.as_ref());
    // Both views' totals are the same patients: the same number.
    assert_eq!(
        a.by_prefecture.series[0].total,
        a.by_institutions.series[0].total
    );
}

#[test]
fn another_secret_gives_other_noise() {
    let a = CellKeySecret::new(&[1u8; 32]).unwrap();
    let b = CellKeySecret::new(&[2u8; 32]).unwrap();
    let differ = (0..200u64)
        .filter(|fp| noise(a.cell_key(*fp), 50) != noise(b.cell_key(*fp), 50))
        .count();
    assert!(differ > 100, "{differ} of 200 cells differ");
}

#[test]
fn a_short_key_is_refused_and_never_printed() {
    assert!(CellKeySecret::new(&[0u8; 31]).is_err());
    let s = CellKeySecret::new(b"0123456789abcdef0123456789abcdef").unwrap();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("0123") && !shown.contains("48, 49"),
        "{shown}"
    );
}

#[test]
fn the_perturbation_table_is_zero_mean_bounded_and_never_empties_a_cell() {
    for row in PTABLE {
        let total: u64 = row.noise.iter().map(|(_, w)| w).sum();
        let mean: i64 = row.noise.iter().map(|(d, w)| d * *w as i64).sum();
        assert_eq!(mean, 0, "row from {}", row.from_count);
        assert!(total > 0);
        for (d, _) in row.noise {
            assert!(d.abs() <= 2);
            if row.from_count > 0 {
                assert!(
                    row.from_count as i64 + d >= 1,
                    "row {} noise {d}",
                    row.from_count
                );
            }
        }
    }
    let mut rng = Rng(3);
    for n in 0..200u64 {
        for _ in 0..50 {
            let p = perturb(CellKey(rng.next()), n);
            assert_eq!(p == 0, n == 0, "{n} -> {p}");
            assert!(p.abs_diff(n) <= 2);
        }
    }
    // The key's position picks each noise with its weight.
    let mut seen: BTreeMap<i64, u64> = BTreeMap::new();
    let draws = 80_000u64;
    for _ in 0..draws {
        *seen.entry(noise(CellKey(rng.next()), 40)).or_default() += 1;
    }
    let row = PTABLE.last().unwrap();
    let total: u64 = row.noise.iter().map(|(_, w)| w).sum();
    for (d, w) in row.noise {
        let expected = draws as f64 * *w as f64 / total as f64;
        let got = seen.get(d).copied().unwrap_or(0) as f64;
        assert!(
            (got - expected).abs() < expected * 0.05,
            "noise {d}: {got} vs {expected}"
        );
    }
    // The edges of the key range map to the first and last noise.
    assert_eq!(noise(CellKey(0), 40), row.noise[0].0);
    assert_eq!(
        noise(CellKey(u64::MAX), 40),
        row.noise[row.noise.len() - 1].0
    );
}
