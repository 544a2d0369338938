//! Staged outputs that must not go through: tampered files, identifiers, non-tables, oversized
//! tables. Each is refused with a reason, and the review stays a draft.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::*;
use kura_airlock::{Airlock, AirlockError, StagedLimits, State};

/// Stages `columns`, opens the review with context and tries to submit.
fn try_submit(f: &Fixture, id: &str, columns: &[(&str, Col)]) -> AirlockError {
    let sha = write_output(f.state(), id, columns);
    f.airlock
        .open_review(staged(id, &sha, "SELECT ..."), AUTHOR, t(0))
        .unwrap();
    f.airlock.set_context(id, AUTHOR, context(), t(1)).unwrap();
    let err = f.airlock.submit(id, AUTHOR, t(2)).unwrap_err();
    assert_eq!(f.airlock.review(id).unwrap().state, State::Draft);
    err
}

fn reasons(err: &AirlockError) -> String {
    match err {
        AirlockError::Refused { reasons, .. } => reasons.join("\n"),
        other => panic!("expected a refusal, got {other}"),
    }
}

fn a_staged_file_with_one_byte_changed_is_refused(f: Fixture) {
    let sha = write_output(f.state(), "out-t", &passing_table());
    f.airlock
        .open_review(staged("out-t", &sha, "SELECT ..."), AUTHOR, t(0))
        .unwrap();
    f.airlock
        .set_context("out-t", AUTHOR, context(), t(1))
        .unwrap();
    let path = f.state().join("outputs/out-t.arrow");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = f.airlock.submit("out-t", AUTHOR, t(2)).unwrap_err();
    match &err {
        AirlockError::Tampered {
            expected, found, ..
        } => {
            assert_eq!(expected, &sha);
            assert_ne!(found, &sha);
        }
        other => panic!("expected tampering to be detected, got {other}"),
    }
    assert!(err.to_string().contains("stage the result again"), "{err}");
    assert_eq!(f.airlock.review("out-t").unwrap().state, State::Draft);
    // The checkers' report is refused too: nobody reviews a file that is not the staged one.
    assert!(matches!(
        f.airlock.report("out-t"),
        Err(AirlockError::Tampered { .. })
    ));
}

fn an_output_with_research_id_is_refused_however_it_is_labelled(f: Fixture) {
    let ids = vec![
        "0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210",
    ];
    // Unlabelled, labelled as a dimension, and hidden under another name.
    for (i, name) in ["research_id", "dim:research_id", "dim:patient"]
        .iter()
        .enumerate()
    {
        let err = try_submit(
            &f,
            &format!("out-r{i}"),
            &[
                (name, Col::Str(ids.clone())),
                ("count:visits", Col::Int(vec![12, 15])),
            ],
        );
        let text = reasons(&err);
        assert!(
            text.contains("research_id") || text.contains("pseudonym"),
            "{name}: {text}"
        );
    }
    // Pseudonyms aggregated into one text value are caught too.
    let err = try_submit(
        &f,
        "out-r9",
        &[
            ("dim:prefecture", Col::Str(vec!["Tokyo"])),
            (
                "dim:who",
                Col::Str(vec![
                    "0123456789abcdef0123456789abcdef;fedcba9876543210fedcba9876543210",
                ]),
            ),
            ("count:patients", Col::Int(vec![12])),
        ],
    );
    assert!(reasons(&err).contains("pseudonym"), "{err}");
}

fn key_columns_are_row_level_identifiers(f: Fixture) {
    let err = try_submit(
        &f,
        "out-k",
        &[
            ("dim:institution_key", Col::Str(vec!["a1", "b2"])),
            ("count:patients", Col::Int(vec![12, 15])),
        ],
    );
    assert!(reasons(&err).contains("institution_key"), "{err}");
}

fn a_result_without_counts_or_statistics_is_not_a_table(f: Fixture) {
    let err = try_submit(
        &f,
        "out-n",
        &[
            ("pref", Col::Str(vec!["Tokyo", "Osaka"])),
            ("n", Col::Int(vec![40, 30])),
        ],
    );
    let text = reasons(&err);
    assert!(
        text.contains("count:") && text.contains("docs/sdc.md"),
        "{text}"
    );
}

fn unlabelled_columns_and_bad_values_name_what_to_fix(f: Fixture) {
    let err = try_submit(
        &f,
        "out-u",
        &[
            ("dim:prefecture", Col::Str(vec!["Tokyo", "Osaka"])),
            ("count:patients", Col::Int(vec![40, 30])),
            ("extra", Col::Int(vec![1, 2])),
        ],
    );
    assert!(reasons(&err).contains("extra"), "{err}");
    let err = try_submit(
        &f,
        "out-v",
        &[
            ("dim:prefecture", Col::Str(vec!["Tokyo", "Osaka"])),
            ("count:patients", Col::Float(vec![40.5, 30.0])),
        ],
    );
    assert!(reasons(&err).contains("40.5"), "{err}");
}

fn an_oversized_output_is_refused(f: Fixture) {
    let mut config = f.config();
    config.limits = StagedLimits {
        max_rows: 2,
        max_bytes: 1 << 20,
    };
    let airlock = Airlock::open(config).unwrap();
    let sha = write_output(f.state(), "out-o", &passing_table());
    airlock
        .open_review(staged("out-o", &sha, "SELECT ..."), AUTHOR, t(0))
        .unwrap();
    airlock
        .set_context("out-o", AUTHOR, context(), t(1))
        .unwrap();
    let err = airlock.submit("out-o", AUTHOR, t(2)).unwrap_err();
    let text = reasons(&err);
    assert!(text.contains("more than 2 rows"), "{text}");
}

fn a_whole_valued_float_count_and_a_hash_sign_value_are_read_faithfully(f: Fixture) {
    // DuckDB may return counts as doubles; "#1" must not be taken for a CSV comment.
    let review = f.submitted(
        "out-w",
        &[
            ("dim:ward", Col::Str(vec!["#1", "#2", "TOTAL"])),
            ("count:patients", Col::Float(vec![40.0, 30.0, 70.0])),
            ("institutions:n", Col::Int(vec![4, 4, 8])),
        ],
        &[],
    );
    assert_eq!(review.rounds[0].check.cells, 3);
    let report = f.airlock.report("out-w").unwrap();
    assert!(report.passed, "{:?}", report.sdc);
    let protected = report.sdc.protected_csv().unwrap();
    assert!(protected.contains("#1,40"), "{protected}");
}

on_both!(
    a_staged_file_with_one_byte_changed_is_refused,
    an_output_with_research_id_is_refused_however_it_is_labelled,
    key_columns_are_row_level_identifiers,
    a_result_without_counts_or_statistics_is_not_a_table,
    unlabelled_columns_and_bad_values_name_what_to_fix,
    a_whole_valued_float_count_and_a_hash_sign_value_are_read_faithfully,
    an_oversized_output_is_refused,
);
