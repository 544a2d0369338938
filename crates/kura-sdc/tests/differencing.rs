//! Differencing against the release ledger, released totals feeding secondary suppression, and
//! the ACRO results.json shape.

// Helpers outside #[test] functions panic on bad fixtures, which is what a test wants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use kura_sdc::acro;
use kura_sdc::csv_input::parse_csv;
use kura_sdc::{
    check, Action, CheckContext, InMemoryLedger, ReleaseLedger, ReleasedCell, RuleId, RulePack,
};

fn def(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn released(value: f64, items: &[&str]) -> ReleasedCell {
    ReleasedCell {
        release: "output-1".into(),
        measure: "patients".into(),
        definition: def(items),
        value,
    }
}

fn japan() -> RulePack {
    RulePack::builtin("japan-rare-disease").unwrap()
}

#[test]
fn a_nested_release_that_differs_by_four_is_flagged_naming_both_cells() {
    let mut ledger = InMemoryLedger::default();
    ledger
        .record(
            "snap-a",
            vec![released(25.0, &["age_band=40-44", "prefecture=Tokyo"])],
        )
        .unwrap();
    let mut table = parse_csv(
        "dim:prefecture,dim:age_band,count:patients,institutions:k\nTokyo,40-44,21,5\n",
        "new.csv",
    )
    .unwrap();
    table.population_filters = vec!["disease != X".into()];
    let ctx = CheckContext {
        snapshot: "snap-a",
        ledger: Some(&ledger),
    };
    let r = check(&table, &japan(), &ctx).unwrap();
    let cell = r.cell(0, 0).unwrap();
    let f = cell
        .failures
        .iter()
        .find(|f| f.rule == RuleId::Differencing)
        .expect("differencing must be caught");
    assert!(f.reason.contains("= 4"), "{}", f.reason);
    assert!(
        f.reason.contains("output-1") && f.reason.contains("25"),
        "{}",
        f.reason
    );
    assert!(
        f.reason.contains("this cell") && f.reason.contains("21"),
        "{}",
        f.reason
    );
    assert!(f.reason.contains("disease != X"), "{}", f.reason);
    assert_eq!(cell.action, Action::Suppress);

    // Another snapshot's releases do not count; neither does a difference of 10 or more.
    let other = CheckContext {
        snapshot: "snap-b",
        ledger: Some(&ledger),
    };
    assert!(check(&table, &japan(), &other).unwrap().passed());
    table.rows[0].values[0] = 15.0;
    assert!(check(&table, &japan(), &ctx).unwrap().passed());
}

#[test]
fn two_overlapping_releases_revealing_three_are_caught_in_both_directions() {
    // Released first: MG patients in Tokyo (40), then women with MG in Tokyo (37) would reveal 3
    // men. And the other way round: the finer cell released first, the coarser one new.
    let mut ledger = InMemoryLedger::default();
    ledger
        .record(
            "s",
            vec![released(40.0, &["disease=11", "prefecture=Tokyo"])],
        )
        .unwrap();
    let finer = parse_csv(
        "dim:prefecture,dim:disease,dim:sex,count:patients\nTokyo,11,F,37\n",
        "finer.csv",
    )
    .unwrap();
    let ctx = CheckContext {
        snapshot: "s",
        ledger: Some(&ledger),
    };
    let r = check(&finer, &japan(), &ctx).unwrap();
    assert_eq!(r.count(RuleId::Differencing), 1);

    let mut ledger2 = InMemoryLedger::default();
    ledger2
        .record(
            "s",
            vec![released(37.0, &["disease=11", "prefecture=Tokyo", "sex=F"])],
        )
        .unwrap();
    let coarser = parse_csv(
        "dim:prefecture,dim:disease,count:patients\nTokyo,11,40\n",
        "c.csv",
    )
    .unwrap();
    let ctx2 = CheckContext {
        snapshot: "s",
        ledger: Some(&ledger2),
    };
    assert_eq!(
        check(&coarser, &japan(), &ctx2)
            .unwrap()
            .count(RuleId::Differencing),
        1
    );

    // Not nested (Osaka instead of Tokyo), or another measure: not compared.
    let osaka = parse_csv(
        "dim:prefecture,dim:disease,dim:sex,count:patients\nOsaka,11,F,37\n",
        "o.csv",
    )
    .unwrap();
    assert_eq!(
        check(&osaka, &japan(), &ctx)
            .unwrap()
            .count(RuleId::Differencing),
        0
    );
    let visits = parse_csv(
        "dim:prefecture,dim:disease,dim:sex,count:visits\nTokyo,11,F,37\n",
        "v.csv",
    )
    .unwrap();
    assert_eq!(
        check(&visits, &japan(), &ctx)
            .unwrap()
            .count(RuleId::Differencing),
        0
    );
}

#[test]
fn a_released_total_makes_the_new_tables_line_an_equation() {
    // uk-acro does not assume public totals. The new table has no margins, so a lone small cell
    // needs no partner; but once the Tokyo total (over sex) was released, F = total - M.
    let uk = RulePack::builtin("uk-acro").unwrap();
    let table = parse_csv(
        "dim:prefecture,dim:sex,count:patients\nTokyo,F,5\nTokyo,M,40\nOsaka,F,30\nOsaka,M,35\n",
        "t.csv",
    )
    .unwrap();
    let plain = check(&table, &uk, &CheckContext::default()).unwrap();
    assert_eq!(plain.count(RuleId::Secondary), 0);
    let mut ledger = InMemoryLedger::default();
    ledger
        .record("s", vec![released(45.0, &["prefecture=Tokyo"])])
        .unwrap();
    let ctx = CheckContext {
        snapshot: "s",
        ledger: Some(&ledger),
    };
    let r = check(&table, &uk, &ctx).unwrap();
    assert_eq!(
        r.cell(1, 0).unwrap().action,
        Action::Suppress,
        "Tokyo M must be hidden too"
    );
}

#[test]
fn acro_results_json_has_acros_fields() {
    let table = parse_csv(
        "dim:prefecture,count:patients,institutions:k\nTokyo,5,4\nOsaka,30,4\nKyoto,40,4\nTOTAL,75,9\n",
        "t.csv",
    )
    .unwrap();
    let r = check(&table, &japan(), &CheckContext::default()).unwrap();
    let rec = acro::record(
        &r,
        "output_0",
        "t_protected.csv",
        "kura sdc check",
        "2026-01-01T00:00:00",
    );
    let doc = acro::results_json(vec![("output_0".into(), rec)]);
    assert!(doc["version"].is_string());
    let out = &doc["results"]["output_0"];
    for key in [
        "uid",
        "status",
        "type",
        "properties",
        "files",
        "outcome",
        "command",
        "summary",
        "timestamp",
        "comments",
        "exception",
    ] {
        assert!(!out[key].is_null(), "missing {key}");
    }
    assert_eq!(out["status"], "fail");
    assert_eq!(out["type"], "table");
    assert_eq!(out["files"][0]["name"], "t_protected.csv");
    let sdc = &out["files"][0]["sdc"];
    assert_eq!(sdc["summary"]["threshold"], 1);
    assert_eq!(sdc["summary"]["suppressed"], true);
    assert_eq!(sdc["cells"]["threshold"][0], serde_json::json!([0, 0]));
    assert_eq!(
        out["outcome"]["patients"]["prefecture=Tokyo"],
        "threshold; "
    );
    assert_eq!(out["outcome"]["patients"]["prefecture=Kyoto"], "ok");
    // Osaka (30) is the next smallest cell: secondary suppression.
    assert_eq!(
        out["outcome"]["patients"]["prefecture=Osaka"],
        "secondary; "
    );
}

#[test]
fn the_documented_example_gives_the_documented_mask() {
    // docs/sdc.md, "The staged output and the CSV header convention".
    let csv = "# disease 11, FY2024 snapshot\n\
        dim:prefecture,dim:age_band,count:patients,institutions:n_inst\n\
        Tokyo,40-44,5,2\nTokyo,45-49,30,6\nTokyo,TOTAL,35,7\n\
        Osaka,40-44,20,4\nOsaka,45-49,12,3\nOsaka,TOTAL,32,6\n\
        TOTAL,40-44,25,6\nTOTAL,45-49,42,8\nTOTAL,TOTAL,67,12\n";
    let table = parse_csv(csv, "mg_by_prefecture.csv").unwrap();
    let r = check(&table, &japan(), &CheckContext::default()).unwrap();
    let hidden: Vec<bool> = (0..9)
        .map(|i| r.cell(i, 0).unwrap().action == Action::Suppress)
        .collect();
    assert_eq!(
        hidden,
        [true, true, false, true, true, false, false, false, false]
    );
    let first: Vec<RuleId> = r
        .cell(0, 0)
        .unwrap()
        .failures
        .iter()
        .map(|f| f.rule)
        .collect();
    assert_eq!(first, [RuleId::Threshold, RuleId::Institutions]);
    let text = r.to_text();
    assert!(text.contains("line 3") && text.contains("－"), "{text}");
    let protected = r.protected_csv().unwrap();
    assert!(
        !protected.contains("n_inst"),
        "contributor data must not leave: {protected}"
    );
}
