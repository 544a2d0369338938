//! Releases: the signed manifest and protected CSV, their verification (and what tampering
//! does to it), the persistent ledger across restarts and its differencing check, and
//! releases that fail without leaving anything behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::*;
use kura_airlock::{verify_release, AirlockError, Decision, Relation, State};
use kura_sdc::{check, CheckContext, ReleaseLedger, RuleId, RulePack};
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// docs/sdc.md's example: Tokyo 40-44 (5, 2 institutions) fails, secondary suppression hides
/// a rectangle.
fn mg_by_prefecture() -> Vec<(&'static str, Col)> {
    vec![
        (
            "dim:prefecture",
            Col::Str(vec![
                "Tokyo", "Tokyo", "Tokyo", "Osaka", "Osaka", "Osaka", "TOTAL", "TOTAL", "TOTAL",
            ]),
        ),
        (
            "dim:age_band",
            Col::Str(vec![
                "40-44", "45-49", "TOTAL", "40-44", "45-49", "TOTAL", "40-44", "45-49", "TOTAL",
            ]),
        ),
        (
            "count:patients",
            Col::Int(vec![5, 30, 35, 20, 12, 32, 25, 42, 67]),
        ),
        (
            "institutions:n_inst",
            Col::Int(vec![2, 6, 7, 4, 3, 6, 6, 8, 12]),
        ),
    ]
}

fn ledger_len(f: &Fixture) -> usize {
    f.ledger().released(SNAPSHOT).unwrap().len()
}

fn an_approved_release_is_signed_and_verifies_and_tampering_is_caught(f: Fixture) {
    f.approved("out-m", &mg_by_prefecture(), &["disease_no = 11"]);
    let release = f.airlock.release("out-m", t(20)).unwrap();
    let key = f.airlock.release_verifier_key().unwrap();
    assert!(key.starts_with("kura.local/releases+"), "{key}");
    assert!(f.state().join("keys/release-signing.key").is_file());

    // The CSV: suppressed cells replaced by the pack's marker, contributor column gone.
    let csv = std::fs::read_to_string(release.dir.join(&release.manifest.file)).unwrap();
    assert!(csv.starts_with("prefecture,age_band,patients\n"), "{csv}");
    assert!(!csv.contains("n_inst") && !csv.contains(",5\n"), "{csv}");
    assert_eq!(csv.matches('－').count(), 4, "{csv}");
    assert!(csv.contains("TOTAL,TOTAL,67"), "{csv}");

    // The manifest says what was released, from what, by whom, and its hashes match.
    let m = verify_release(&release.dir, &key).unwrap();
    assert_eq!(m, release.manifest);
    let staged = std::fs::read(f.state().join("outputs/out-m.arrow")).unwrap();
    assert_eq!(m.output_sha256, sha(&staged));
    assert_eq!(m.file_sha256, sha(csv.as_bytes()));
    assert_eq!(m.query_sha256, sha(b"SELECT ..."));
    assert_eq!(m.snapshot_sha256, SNAPSHOT);
    assert_eq!(m.reviewers, ["checker1", "checker2"]);
    assert_eq!(m.author, AUTHOR);
    assert_eq!(
        (m.rule_pack.as_str(), m.rule_pack_version.as_str()),
        ("japan-rare-disease", "1.0.0")
    );
    assert_eq!(f.airlock.review("out-m").unwrap().state, State::Released);
    // Every published count went into the ledger; the four suppressed ones did not.
    assert_eq!(release.cells_recorded, 5);
    assert_eq!(ledger_len(&f), 5);

    // The server's download re-checks the hash.
    let file = f.airlock.released_file("out-m").unwrap();
    assert_eq!(file.bytes, csv.as_bytes());
    assert_eq!(file.sha256, m.file_sha256);

    // A released output cannot be released (or withdrawn) again.
    assert!(matches!(
        f.airlock.release("out-m", t(21)),
        Err(AirlockError::WrongState { .. })
    ));
    assert!(f.airlock.withdraw("out-m", AUTHOR, t(21)).is_err());

    // Attacks on a copy of the directory.
    let attack = |name: &str, change: &dyn Fn(&std::path::Path)| {
        let copy = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&release.dir).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
        change(copy.path());
        let err = verify_release(copy.path(), &key).unwrap_err();
        assert!(matches!(err, AirlockError::Verify { .. }), "{name}: {err}");
        err.to_string()
    };
    let msg = attack("reviewer renamed", &|d| {
        let p = d.join("manifest.json");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("checker2", "checker9")).unwrap();
    });
    assert!(msg.contains("changed after signing"), "{msg}");
    attack("manifest re-serialised", &|d| {
        let p = d.join("manifest.json");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("\n  ", "\n   ")).unwrap();
    });
    let msg = attack("a suppressed cell filled in", &|d| {
        let p = d.join(&m.file);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replacen('－', "5", 1)).unwrap();
    });
    assert!(msg.contains("was changed"), "{msg}");
    attack("re-signed with another key", &|d| {
        let other = tempfile::tempdir().unwrap();
        let k = kura_audit::note::LogKey::load_or_create(
            &other.path().join("k"),
            "kura.local/releases",
        )
        .unwrap();
        let p = d.join("manifest.json");
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("checker2", "checker9");
        std::fs::write(&p, &text).unwrap();
        std::fs::write(d.join("manifest.sig"), k.sign_note(&text)).unwrap();
    });
    attack("an extra file", &|d| {
        std::fs::write(d.join("raw.csv"), "research_id\n").unwrap();
    });
    attack("signature removed", &|d| {
        std::fs::remove_file(d.join("manifest.sig")).unwrap();
    });

    // Tampering with the served file itself: the download refuses.
    std::fs::write(release.dir.join(&m.file), csv.replacen('－', "5", 1)).unwrap();
    assert!(matches!(
        f.airlock.released_file("out-m"),
        Err(AirlockError::Tampered { .. })
    ));
}

fn the_persistent_ledger_survives_a_restart_and_catches_differencing(mut f: Fixture) {
    // Release 1: MG patients in Tokyo = 40.
    f.approved(
        "out-1",
        &[
            ("dim:prefecture", Col::Str(vec!["Tokyo"])),
            ("dim:disease", Col::Str(vec!["11"])),
            ("count:patients", Col::Int(vec![40])),
        ],
        &[],
    );
    f.airlock.release("out-1", t(20)).unwrap();
    f.reopen();

    let ledger = f.ledger();
    let cells = ledger.released(SNAPSHOT).unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].value, 40.0);
    assert!(ledger.released("another-snapshot").unwrap().is_empty());

    // kura-sdc's own check against the persistent ledger: women with MG in Tokyo = 37 would
    // reveal 3 men.
    let finer = kura_sdc::csv_input::parse_csv(
        "dim:prefecture,dim:disease,dim:sex,count:patients\nTokyo,11,F,37\n",
        "finer.csv",
    )
    .unwrap();
    let pack = RulePack::builtin("japan-rare-disease").unwrap();
    let ctx = CheckContext {
        snapshot: SNAPSHOT,
        ledger: Some(&ledger),
    };
    assert_eq!(
        check(&finer, &pack, &ctx)
            .unwrap()
            .count(RuleId::Differencing),
        1
    );

    // The same through the airlock after the restart: the report flags it and shows the overlap.
    f.submitted(
        "out-2",
        &[
            ("dim:prefecture", Col::Str(vec!["Tokyo"])),
            ("dim:disease", Col::Str(vec!["11"])),
            ("dim:sex", Col::Str(vec!["F"])),
            ("count:patients", Col::Int(vec![37])),
        ],
        &[],
    );
    let report = f.airlock.report("out-2").unwrap();
    let cell = report.sdc.cell(0, 0).unwrap();
    let failure = cell
        .failures
        .iter()
        .find(|x| x.rule == RuleId::Differencing)
        .expect("differencing must be caught after a restart");
    assert!(
        failure.reason.contains("= 3") && failure.reason.contains("out-1"),
        "{}",
        failure.reason
    );
    assert_eq!(report.overlaps.len(), 1);
    let o = &report.overlaps[0];
    assert_eq!(
        (o.relation, o.difference, o.release.as_str()),
        (Relation::InsideReleased, 3.0, "out-1")
    );
    assert!(o.same_snapshot);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["sdc"]["cells"][0]["failures"][0]["rule"],
        "differencing"
    );
    assert_eq!(json["overlaps"][0]["relation"], "inside_released");

    // Approved as protected (the 37 suppressed), the release publishes nothing new.
    f.airlock
        .vote("out-2", "checker1", Decision::Approve, "", t(30))
        .unwrap();
    f.airlock
        .vote("out-2", "checker2", Decision::Approve, "", t(31))
        .unwrap();
    let release = f.airlock.release("out-2", t(32)).unwrap();
    assert_eq!(release.cells_recorded, 0);
    let csv = std::fs::read_to_string(release.dir.join(&release.manifest.file)).unwrap();
    assert!(!csv.contains("37"), "{csv}");
}

fn nothing_is_written_when_the_check_fails_at_release_time(f: Fixture) {
    // Both approved while nothing was released: each passed on its own.
    f.approved(
        "out-a",
        &[
            ("dim:prefecture", Col::Str(vec!["Tokyo"])),
            ("dim:disease", Col::Str(vec!["11"])),
            ("count:patients", Col::Int(vec![40])),
        ],
        &[],
    );
    f.approved(
        "out-b",
        &[
            ("dim:prefecture", Col::Str(vec!["Tokyo"])),
            ("dim:disease", Col::Str(vec!["11"])),
            ("dim:sex", Col::Str(vec!["F"])),
            ("count:patients", Col::Int(vec![37])),
        ],
        &[],
    );
    f.airlock.release("out-a", t(20)).unwrap();
    assert_eq!(ledger_len(&f), 1);

    // Releasing B now would reveal 3: refused, nothing written, back to the author.
    let err = f.airlock.release("out-b", t(21)).unwrap_err();
    match &err {
        AirlockError::CheckChanged { reason, .. } => {
            assert!(
                reason.contains("differencing") && reason.contains("= 3"),
                "{reason}"
            )
        }
        other => panic!("expected the changed check to stop the release, got {other}"),
    }
    let releases = f.state().join("releases");
    let names: Vec<String> = std::fs::read_dir(&releases)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["out-a"], "only the first release is on disk");
    assert_eq!(ledger_len(&f), 1, "no cell of B was recorded");
    assert!(f.airlock.release_record("out-b").unwrap().is_none());
    assert!(matches!(
        f.airlock.released_file("out-b"),
        Err(AirlockError::NotFound { .. })
    ));
    let review = f.airlock.review("out-b").unwrap();
    assert_eq!(review.state, State::ChangesRequested);
    assert!(review.history.iter().any(|h| h.action == "release_refused"));

    // Resubmitted, the checkers see the suppressed version; that one is released.
    let review = f.airlock.submit("out-b", AUTHOR, t(22)).unwrap();
    assert_eq!(review.rounds[1].check.failing_cells, 1);
    f.airlock
        .vote("out-b", "checker1", Decision::Approve, "", t(23))
        .unwrap();
    f.airlock
        .vote("out-b", "checker3", Decision::Approve, "", t(24))
        .unwrap();
    let release = f.airlock.release("out-b", t(25)).unwrap();
    assert_eq!(release.manifest.reviewers, ["checker1", "checker3"]);
    assert_eq!(release.manifest.round, 2);
}

fn a_release_that_cannot_write_leaves_no_trace_and_can_be_retried(f: Fixture) {
    f.approved("out-w", &passing_table(), &[]);
    // `releases` is a file: the directory cannot be made.
    std::fs::write(f.state().join("releases"), "in the way").unwrap();
    let err = f.airlock.release("out-w", t(20)).unwrap_err();
    assert!(matches!(err, AirlockError::Io { .. }), "{err}");
    assert_eq!(f.airlock.review("out-w").unwrap().state, State::Approved);
    assert_eq!(ledger_len(&f), 0);
    assert!(f.airlock.release_record("out-w").unwrap().is_none());

    // A leftover directory from a crash between rename and commit is set aside, not served.
    std::fs::remove_file(f.state().join("releases")).unwrap();
    std::fs::create_dir_all(f.state().join("releases/out-w")).unwrap();
    std::fs::write(f.state().join("releases/out-w/stale.csv"), "x").unwrap();
    let release = f.airlock.release("out-w", t(21)).unwrap();
    assert_eq!(ledger_len(&f), 3);
    let key = f.airlock.release_verifier_key().unwrap();
    verify_release(&release.dir, &key).unwrap();
    assert!(f.state().join("releases/.orphaned").is_dir());
}

fn an_output_refused_by_tighter_rules_at_release_goes_back_to_the_author(mut f: Fixture) {
    f.approved("out-l", &passing_table(), &[]);
    // The operator lowers the row limit after approval: the 3-row table is now oversized.
    let mut config = f.config();
    config.limits.max_rows = 2;
    f.airlock = kura_airlock::Airlock::open(config).unwrap();
    let err = f.airlock.release("out-l", t(20)).unwrap_err();
    assert!(
        matches!(&err, AirlockError::CheckChanged { reason, .. } if reason.contains("more than 2 rows")),
        "{err}"
    );
    assert_eq!(
        f.airlock.review("out-l").unwrap().state,
        State::ChangesRequested
    );
    assert!(!f.state().join("releases/out-l").exists());
    assert_eq!(ledger_len(&f), 0);
}

on_both!(
    an_approved_release_is_signed_and_verifies_and_tampering_is_caught,
    the_persistent_ledger_survives_a_restart_and_catches_differencing,
    nothing_is_written_when_the_check_fails_at_release_time,
    a_release_that_cannot_write_leaves_no_trace_and_can_be_retried,
    an_output_refused_by_tighter_rules_at_release_goes_back_to_the_author,
);
