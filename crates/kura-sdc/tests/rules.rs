//! Each rule on its own, with cells at and around its threshold. Packs here hold only the rule
//! under test, so that no other rule (secondary suppression in particular) changes the mask.

// Helpers outside #[test] functions panic on bad fixtures, which is what a test wants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kura_sdc::csv_input::parse_csv;
use kura_sdc::{check, CheckContext, Report, RuleId, RulePack};

fn pack(rules: &str) -> RulePack {
    let text = format!("name = \"t\"\nversion = \"1\"\nmarker = \"x\"\n{rules}");
    RulePack::from_toml(&text, "test").unwrap()
}

fn run(pack: &RulePack, csv: &str) -> Report {
    let table = parse_csv(csv, "t.csv").unwrap();
    check(&table, pack, &CheckContext::default()).unwrap()
}

/// Failing flags of the first measure, row by row.
fn mask(r: &Report, rule: RuleId) -> Vec<bool> {
    let mut rows: Vec<_> = r.cells.iter().filter(|c| c.measure == 0).collect();
    rows.sort_by_key(|c| c.row);
    rows.iter()
        .map(|c| c.failures.iter().any(|f| f.rule == rule))
        .collect()
}

#[test]
fn threshold_with_zero_allowed() {
    let p = pack("[[rules]]\nkind = \"threshold\"\nmin = 10\nzero_allowed = true\n");
    let r = run(&p, "dim:x,count:n\na,0\nb,1\nc,9\nd,10\ne,11\n");
    assert_eq!(
        mask(&r, RuleId::Threshold),
        [false, true, true, false, false]
    );
    assert!(!r.passed());
    let reason = &r.cell(2, 0).unwrap().failures[0].reason;
    assert!(reason.contains('9') && reason.contains("10"), "{reason}");
}

#[test]
fn threshold_with_zeros_disclosive_as_in_uk_acro() {
    let uk = RulePack::builtin("uk-acro").unwrap();
    let r = run(&uk, "dim:x,count:n\na,0\nb,9\nc,10\n");
    assert_eq!(mask(&r, RuleId::Threshold), [true, true, false]);
}

#[test]
fn threshold_applies_to_statistics_through_their_count() {
    let p = pack("[[rules]]\nkind = \"threshold\"\nmin = 10\nzero_allowed = true\n");
    let r = run(&p, "dim:x,count:n,stat:mean_age\na,9,50.5\nb,10,61.2\n");
    assert!(!r.cell(0, 1).unwrap().passed());
    assert!(r.cell(1, 1).unwrap().passed());
    // A statistic without any count behind it cannot be checked, so it fails.
    let r = run(&p, "dim:x,stat:mean_age\na,50.5\n");
    assert!(!r.passed());
    // `n:` supplies the count.
    let r = run(&p, "dim:x,stat:mean_age,n:n\na,50.5,12\n");
    assert!(r.passed());
}

#[test]
fn institutions_minimum_with_zero_allowed() {
    let p = pack("[[rules]]\nkind = \"institutions\"\nmin = 3\n");
    let r = run(
        &p,
        "dim:x,count:n,institutions:k\na,0,0\nb,50,1\nc,50,2\nd,50,3\ne,50,\n",
    );
    assert_eq!(
        mask(&r, RuleId::Institutions),
        [false, true, true, false, false]
    );
}

#[test]
fn municipality_population_bands() {
    let jp = RulePack::builtin("japan-rare-disease").unwrap();
    let Some(rule) = jp
        .rules
        .iter()
        .find(|r| matches!(r, kura_sdc::Rule::Municipality { .. }))
    else {
        panic!("japan pack has no municipality rule")
    };
    let p = RulePack {
        rules: vec![rule.clone()],
        ..jp.clone()
    };
    let r = run(
        &p,
        "dim:municipality,count:n,population:pop\n\
         tiny,50,1999\ntiny0,0,1999\nsmall19,19,2000\nsmall20,20,2000\nsmall0,0,2000\n\
         mid19,19,24999\nbig19,19,25000\nnopop,19,\n",
    );
    assert_eq!(
        mask(&r, RuleId::Municipality),
        [true, true, true, false, false, true, false, false]
    );
    assert!(r.cell(0, 0).unwrap().failures[0]
        .reason
        .contains("no count"));
}

#[test]
fn age_bands_must_be_five_years_with_100_plus_pooled() {
    let p = pack(
        "[[rules]]\nkind = \"age_bands\"\ndimensions = [\"age_band\"]\nwidth = 5\npooled_from = 100\n",
    );
    let ok = run(
        &p,
        "dim:age_band,count:n\n0-4,20\n40-44,30\n95-99,12\n100+,11\nTOTAL,73\n",
    );
    assert!(ok.refusals.is_empty(), "{:?}", ok.refusals);
    for bad in ["40-49", "41-45", "100-104", "105+", "forties"] {
        let r = run(&p, &format!("dim:age_band,count:n\n0-4,20\n{bad},30\n"));
        assert_eq!(r.refusals.len(), 1, "{bad} should be refused");
        assert_eq!(r.refusals[0].rule, RuleId::AgeBands);
        assert!(r.refusals[0].reason.contains(bad));
        assert!(r.protected.is_none());
    }
    // Other dimensions are not age dimensions.
    assert!(run(&p, "dim:year,count:n\n2020-2024,20\n")
        .refusals
        .is_empty());
}

#[test]
fn nk_dominance_at_and_around_ninety_percent() {
    let p = pack("[[rules]]\nkind = \"dominance\"\nn = 2\nk = 0.9\n");
    // Totals 100: top two 89 (passes), 90 (exactly 90%: fails, as in ACRO's `>= k`); the total
    // comes from `total:` or the statistic.
    let r = run(
        &p,
        "dim:x,count:n,stat:cost,top1:a,top2:b,total:t\n\
         a,20,100,60,29,\nb,20,100,60,30,\nc,20,5,60,29,100\nd,20,5,60,30,100\n",
    );
    let fails: Vec<bool> = (0..4)
        .map(|row| {
            r.cell(row, 1)
                .unwrap()
                .failures
                .iter()
                .any(|f| f.rule == RuleId::Dominance)
        })
        .collect();
    assert_eq!(fails, [false, true, false, true]);
    // Counts are not subject to dominance.
    assert!(r.cell(1, 0).unwrap().passed());
}

#[test]
fn p_ratio_at_and_around_ten_percent() {
    let p = pack("[[rules]]\nkind = \"p_ratio\"\np = 0.1\n");
    // top1 = 50: the rest must be at least 5. Row d: rest 3 = 10% of 30 exactly, where
    // `0.1 * 30` rounds above 3 in floating point: ACRO divides, and so must we.
    let r = run(
        &p,
        "dim:x,count:n,stat:cost,top1:a,top2:b\na,20,85,50,30\nb,20,84,50,30\nc,20,200,50,30\n\
         d,20,63,30,30\n",
    );
    let fails: Vec<bool> = (0..4)
        .map(|row| {
            r.cell(row, 1)
                .unwrap()
                .failures
                .iter()
                .any(|f| f.rule == RuleId::PRatio)
        })
        .collect();
    assert_eq!(fails, [false, true, false, false]);
}

#[test]
fn residual_degrees_of_freedom() {
    let p = pack("[[rules]]\nkind = \"dof\"\nmin = 10\n");
    let r = run(&p, "dim:term,stat:coef,dof:df\nage,0.3,9\nsex,0.1,10\n");
    assert!(!r.cell(0, 0).unwrap().passed());
    assert!(r.cell(1, 0).unwrap().passed());
}

#[test]
fn row_level_outputs_are_refused_whole() {
    let jp = RulePack::builtin("japan-rare-disease").unwrap();
    for csv in [
        "research_id,count:n\nabc,50\n",
        "dim:research_id,count:n\nabc,50\n",
        "dim:x,count:Research_ID\nabc,50\n",
    ] {
        let r = run(&jp, csv);
        assert!(
            r.refusals.iter().any(|f| f.rule == RuleId::RowLevel),
            "{csv}"
        );
        assert!(r.protected.is_none());
        assert!(!r.passed());
    }
    let p = pack(
        "[[rules]]\nkind = \"row_level\"\nidentifier_columns = [\"research_id\"]\nmax_rows = 3\n",
    );
    assert!(run(&p, "dim:x,count:n\na,50\nb,50\nc,50\n").passed());
    let r = run(&p, "dim:x,count:n\na,50\nb,50\nc,50\nd,50\n");
    assert!(r.refusals[0].reason.contains("4 rows"));
}

#[test]
fn unclassified_columns_are_bad_input() {
    let p = pack("[[rules]]\nkind = \"threshold\"\nmin = 10\nzero_allowed = true\n");
    let table = parse_csv("dim:x,count:n,notes\na,50,hello\n", "t.csv").unwrap();
    let err = check(&table, &p, &CheckContext::default()).unwrap_err();
    assert!(err.to_string().contains("notes"), "{err}");
}

#[test]
fn opensafely_redacts_then_rounds_to_five() {
    let os = RulePack::builtin("opensafely").unwrap();
    let r = run(
        &os,
        "dim:x,count:n\nzero,0\nseven,7\neight,8\ntwelve,12\nthirteen,13\ntotal_like,1002\n",
    );
    let p = r.protected.as_ref().unwrap();
    let shown: Vec<&str> = p.rows.iter().map(|row| row[1].as_str()).collect();
    assert_eq!(
        shown,
        ["[REDACTED]", "[REDACTED]", "10", "10", "15", "1000"]
    );
    assert_eq!(
        mask(&r, RuleId::Threshold),
        [true, true, false, false, false, false]
    );
    // Rounding is a protection, not a failure.
    assert!(run(&os, "dim:x,count:n\na,8\nb,13\n").passed());
}
