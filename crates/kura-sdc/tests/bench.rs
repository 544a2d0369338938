//! The `kura bench sdc` machinery: the synthetic table is what it claims to be, the boundary
//! cells get ACRO's verdicts, and the mask comparison catches disagreements.

use kura_sdc::bench::acro_run::{mask, AcroCells, AcroResult};
use kura_sdc::bench::bench_pack;
use kura_sdc::bench::data::{
    aggregate, compare, kura_mask, row_index, Microdata, NK, P_RATIO, THRESHOLD,
};
use kura_sdc::{check, CheckContext, RuleId, TOTAL};

#[test]
fn generation_is_deterministic_and_margins_add_up() {
    let a = Microdata::generate(12, 9, 7);
    assert_eq!(a, Microdata::generate(12, 9, 7));
    assert_ne!(a, Microdata::generate(12, 9, 8));
    let t = aggregate(&a);
    assert_eq!(t.rows.len(), 13 * 10);
    let grand = &t.rows[row_index(9, 12, 9)];
    assert_eq!(grand.dims, [TOTAL, TOTAL]);
    assert_eq!(grand.values[0], a.len() as f64);
    // Each row total is the sum of its cells, and its top contribution the largest of theirs.
    for i in 0..12 {
        let cells: Vec<_> = (0..9).map(|j| &t.rows[row_index(9, i, j)]).collect();
        let total = &t.rows[row_index(9, i, 9)];
        assert_eq!(total.dims[1], TOTAL);
        let n: f64 = cells.iter().map(|r| r.values[0]).sum();
        assert_eq!(total.values[0], n);
        let max =
            a.r.iter()
                .zip(&a.v)
                .filter(|(r, _)| **r == i)
                .map(|(_, v)| *v)
                .fold(0.0, f64::max);
        let top = &total.meta.contributors.as_ref().unwrap().top;
        assert_eq!(top.first().copied().unwrap_or(0.0), max);
    }
}

#[test]
fn every_rule_fires_and_boundary_cells_get_acros_verdict() {
    let micro = Microdata::generate(40, 40, 3);
    let table = aggregate(&micro);
    let report = check(&table, &bench_pack().unwrap(), &CheckContext::default()).unwrap();
    let m = kura_mask(&report, 1, table.rows.len());
    for bit in [THRESHOLD, NK, P_RATIO] {
        assert!(m.iter().any(|x| x & bit != 0), "rule bit {bit} never fires");
    }
    let mut boundary_nk = 0;
    let mut boundary_p = 0;
    for (row, r) in table.rows.iter().enumerate() {
        let c = r.meta.contributors.as_ref().unwrap();
        // Top two exactly 90% of the total: ACRO's `>= k` fails it.
        if c.top == [45.0, 45.0] && c.total == Some(100.0) {
            boundary_nk += 1;
            assert_eq!(m[row] & NK, NK, "row {row}");
            assert_eq!(m[row] & P_RATIO, 0, "row {row}");
        }
        // Rest exactly 10% of the largest: ACRO's `< p` passes it.
        if c.top == [100.0, 50.0] && c.total == Some(160.0) {
            boundary_p += 1;
            assert_eq!(m[row] & P_RATIO, 0, "row {row}");
        }
    }
    assert!(boundary_nk > 0 && boundary_p > 0);
    // Every fourth row has one small count: secondary suppression hides a second cell there.
    let secondary_rows: Vec<u32> = report
        .cells
        .iter()
        .filter(|c| c.measure == 0 && c.failures.iter().any(|f| f.rule == RuleId::Secondary))
        .map(|c| (c.row / 41) as u32)
        .collect();
    for i in (0..40).step_by(4) {
        assert!(secondary_rows.contains(&i), "row {i}: {secondary_rows:?}");
    }
}

fn acro_result(rows: u32, cols: u32, cells: AcroCells) -> AcroResult {
    let labels = |n: u32| {
        (0..n)
            .map(|x| x.to_string())
            .chain(["All".to_string()])
            .collect()
    };
    AcroResult {
        acro_version: "test".into(),
        pandas_version: "test".into(),
        suppress: false,
        seconds: 1.0,
        microdata_rows: 0,
        rows: labels(rows),
        cols: labels(cols),
        cells,
        suppressed_after: 0,
    }
}

#[test]
fn acro_positions_map_onto_kura_rows_and_disagreements_are_reported() {
    let r = acro_result(
        2,
        3,
        AcroCells {
            threshold: vec![[0, 1], [2, 3]],
            nk: vec![[1, 0]],
            p_ratio: vec![[1, 0]],
        },
    );
    let m = mask(&r, 2, 3).unwrap();
    assert_eq!(m.len(), 3 * 4);
    assert_eq!(m[row_index(3, 0, 1)], THRESHOLD);
    assert_eq!(
        m[row_index(3, 2, 3)],
        THRESHOLD,
        "the grand total (All, All)"
    );
    assert_eq!(m[row_index(3, 1, 0)], NK | P_RATIO);
    assert!(compare(&m, &m).is_empty());
    let mut kura = m.clone();
    kura[row_index(3, 1, 0)] = NK;
    kura[row_index(3, 0, 0)] = THRESHOLD;
    let diff = compare(&kura, &m);
    assert_eq!(diff.len(), 2);
    assert!(diff
        .iter()
        .any(|d| d.rule == "p-ratio" && !d.kura && d.acro && d.row == row_index(3, 1, 0)));
    assert!(diff
        .iter()
        .any(|d| d.rule == "threshold" && d.kura && !d.acro && d.row == 0));
}

#[test]
fn a_differently_shaped_acro_table_is_not_compared() {
    let r = acro_result(2, 3, AcroCells::default());
    assert!(mask(&r, 3, 3).is_err());
    let mut shuffled = r.clone();
    shuffled.rows.swap(0, 1);
    assert!(mask(&shuffled, 2, 3).is_err());
    let out_of_range = acro_result(
        2,
        3,
        AcroCells {
            threshold: vec![[5, 0]],
            ..AcroCells::default()
        },
    );
    assert!(mask(&out_of_range, 2, 3).is_err());
}
