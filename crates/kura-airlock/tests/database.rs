#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The airlock's database itself, on both backends: the ledger keeps values, definitions and
//! order; the airlock works when called from async handlers (the PostgreSQL client runs a
//! runtime of its own); a PostgreSQL location that cannot be used stops the start with a
//! message that never shows the password.

#[macro_use]
mod common;

use std::collections::BTreeSet;

use common::*;
use kura_airlock::{
    Airlock, AirlockConfig, AirlockDatabase, AirlockError, Decision, PersistentLedger, State,
};
use kura_sdc::{ReleaseLedger, ReleasedCell};

fn cell(release: &str, predicates: &[&str], value: f64) -> ReleasedCell {
    ReleasedCell {
        release: release.to_string(),
        measure: "patients".to_string(),
        definition: predicates.iter().map(|p| p.to_string()).collect(),
        value,
    }
}

/// Cells recorded through one ledger are read back by another (another node, or after a
/// restart) exactly: values that are not whole, every predicate, the order they were recorded
/// in, and per snapshot.
fn the_ledger_keeps_cells_exactly_and_in_order(f: Fixture) {
    let mut writer = f.ledger();
    let first = vec![
        cell("r1", &["prefecture = 'Tokyo'", "disease_no = 11"], 40.0),
        cell("r1", &["prefecture = 'Osaka'"], 12.5),
    ];
    let second = vec![cell("r2", &[], 1e9 + 0.25), cell("r2", &["sex = 'F'"], 0.0)];
    writer.record("snap-a", first.clone()).unwrap();
    writer
        .record("snap-b", vec![cell("r3", &["x"], 7.0)])
        .unwrap();
    writer.record("snap-a", second.clone()).unwrap();
    writer.record("snap-a", Vec::new()).unwrap();

    let reader = f.ledger();
    let cells = reader.released("snap-a").unwrap();
    let expected: Vec<ReleasedCell> = first.into_iter().chain(second).collect();
    assert_eq!(cells.len(), expected.len());
    for (got, want) in cells.iter().zip(&expected) {
        assert_eq!(got.release, want.release);
        assert_eq!(got.measure, want.measure);
        assert_eq!(got.definition, want.definition);
        assert_eq!(got.value.to_bits(), want.value.to_bits(), "{got:?}");
    }
    assert_eq!(reader.released("snap-b").unwrap().len(), 1);
    assert!(reader.released("snap-c").unwrap().is_empty());
    // The airlock reads the same ledger.
    let through_airlock = f.airlock.with_ledger(|l| l.released("snap-a").unwrap());
    assert_eq!(through_airlock.len(), 4);
    let defs: BTreeSet<String> = through_airlock[0].definition.clone();
    assert!(defs.contains("disease_no = 11"));
}

/// The server calls the airlock from async handlers (and from `spawn_blocking`): opening, the
/// whole workflow, the ledger and dropping must work there, on a single- and a multi-threaded
/// runtime.
fn works_from_inside_an_async_runtime(f: Fixture) {
    for multi in [false, true] {
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread().build()
        }
        .unwrap();
        let id = if multi { "out-multi" } else { "out-single" };
        rt.block_on(async {
            let airlock = std::sync::Arc::new(f.open_airlock());
            let sha = write_output(f.state(), id, &passing_table());
            airlock
                .open_review(staged(id, &sha, "SELECT ..."), AUTHOR, t(1))
                .unwrap();
            airlock.set_context(id, AUTHOR, context(), t(2)).unwrap();
            airlock.submit(id, AUTHOR, t(3)).unwrap();
            airlock
                .vote(id, "checker1", Decision::Approve, "", t(4))
                .unwrap();
            airlock
                .vote(id, "checker2", Decision::Approve, "", t(5))
                .unwrap();
            let release = airlock.release(id, t(6)).unwrap();
            assert!(release.cells_recorded > 0);
            assert_eq!(airlock.report(id).unwrap().state, State::Released);
            let a2 = airlock.clone();
            let from_blocking = tokio::task::spawn_blocking(move || {
                a2.with_ledger(|l| l.released(SNAPSHOT).unwrap().len())
            })
            .await
            .unwrap();
            let from_task = {
                let a3 = airlock.clone();
                tokio::spawn(async move { a3.review(id).unwrap().state })
                    .await
                    .unwrap()
            };
            assert_eq!(from_task, State::Released);
            assert!(from_blocking >= release.cells_recorded);
            drop(airlock);
        });
    }
    assert_eq!(
        f.airlock.project_reviews("demo-transition").unwrap().len(),
        2
    );
}

/// What the airlock says it is on.
fn the_airlock_names_its_database(f: Fixture) {
    assert_eq!(f.airlock.is_postgres(), f.kind == Kind::Postgres);
    let label = f.airlock.database_label();
    match f.kind {
        Kind::Sqlite => assert!(label.ends_with("kura.sqlite"), "{label}"),
        Kind::Postgres => {
            assert!(label.starts_with("postgres://"), "{label}");
            let url = &f.schema.as_ref().unwrap().url;
            let again = Airlock::open_postgres(AirlockConfig::new(f.state()), url).unwrap();
            assert!(again.is_postgres());
            PersistentLedger::open_postgres(url).unwrap();
        }
    }
}

/// The review counts a metrics scrape reads: every state listed, each review in its state.
fn reviews_are_counted_by_state(f: Fixture) {
    let count = |state: State| {
        f.airlock
            .review_counts()
            .unwrap()
            .into_iter()
            .find(|(s, _)| *s == state)
            .map(|(_, n)| n)
    };
    assert_eq!(f.airlock.review_counts().unwrap().len(), State::ALL.len());
    assert_eq!(count(State::Submitted), Some(0));
    f.submitted("out-a", &passing_table(), &[]);
    f.submitted("out-b", &passing_table(), &[]);
    let sha = write_output(f.state(), "out-c", &passing_table());
    f.airlock
        .open_review(staged("out-c", &sha, "SELECT ..."), AUTHOR, t(1))
        .unwrap();
    assert_eq!(count(State::Submitted), Some(2));
    assert_eq!(count(State::Draft), Some(1));
    assert_eq!(count(State::Released), Some(0));
}

/// A node keeps each snapshot's released cells indexed and reads only newer rows: cells another
/// node records after the index was built are seen by the next check, in order, and the check
/// catches differencing against them.
fn a_node_sees_cells_recorded_by_another_after_its_index_was_built(f: Fixture) {
    let node_a = f.open_airlock();
    let mut node_b = f.ledger();
    node_b
        .record("snap-a", vec![cell("r1", &["pref=13"], 40.0)])
        .unwrap();
    // What node A's checks compare with: its index of snap-a, as the releases of the cells
    // nested with the total and with Tokyo.
    let indexed = |a: &Airlock| {
        a.with_ledger(|l| {
            let mut out = Vec::new();
            l.with_released("snap-a", &mut |r| {
                out = r
                    .nested("patients", &BTreeSet::new())
                    .into_iter()
                    .chain(r.nested("patients", &BTreeSet::from(["pref=13".to_string()])))
                    .map(|c| c.release.clone())
                    .collect();
            })
            .unwrap();
            out
        })
    };
    assert_eq!(indexed(&node_a), ["r1"]);
    node_b
        .record(
            "snap-a",
            vec![cell("r2", &[], 43.0), cell("r2", &["pref=27"], 3.0)],
        )
        .unwrap();
    node_b
        .record("snap-b", vec![cell("r3", &[], 43.0)])
        .unwrap();
    // With the total: r1's and r2's prefectures; with Tokyo: r2's total.
    assert_eq!(indexed(&node_a), ["r1", "r2", "r2"]);

    // Tokyo = 40 again is no news; but 43 released for everyone minus 40 leaves 3 outside Tokyo.
    let table = kura_sdc::csv_input::parse_csv(
        "dim:pref,count:patients,institutions:k\n13,40,5\n",
        "new.csv",
    )
    .unwrap();
    let pack = kura_sdc::RulePack::builtin("japan-rare-disease").unwrap();
    let report = node_a.with_ledger(|l| {
        let ctx = kura_sdc::CheckContext {
            snapshot: "snap-a",
            ledger: Some(l),
        };
        kura_sdc::check(&table, &pack, &ctx).unwrap()
    });
    let reasons: Vec<&str> = report
        .cell(0, 0)
        .unwrap()
        .failures
        .iter()
        .filter(|x| x.rule == kura_sdc::RuleId::Differencing)
        .map(|x| x.reason.as_str())
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("release r2"), "{}", reasons[0]);
}

on_both!(
    the_ledger_keeps_cells_exactly_and_in_order,
    a_node_sees_cells_recorded_by_another_after_its_index_was_built,
    works_from_inside_an_async_runtime,
    the_airlock_names_its_database,
    reviews_are_counted_by_state,
);

/// Nothing listens on port 1: the start fails with what to check, never with the password.
#[test]
fn an_unreachable_database_stops_the_start_without_showing_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://kura:hunter2secret@127.0.0.1:1/kura?connect_timeout=2";
    let config = AirlockConfig::new(dir.path()).with_database_url(Some(url));
    assert!(!format!("{config:?}").contains("hunter2secret"));
    let err = Airlock::open(config).err().expect("nothing listens there");
    let text = err.to_string();
    assert!(matches!(err, AirlockError::Postgres { .. }), "{err:?}");
    assert!(
        text.contains("postgres://kura@127.0.0.1:1/kura") && text.contains("cannot connect"),
        "{text}"
    );
    assert!(!text.contains("hunter2secret") && !format!("{err:?}").contains("hunter2secret"));

    for bad in [
        "postgres://kura:hunter2secret@127.0.0.1:1/kura?sslmode=require",
        "not a url at all = =",
    ] {
        let db = AirlockDatabase::Postgres(bad.to_string());
        let err = PersistentLedger::open_at(dir.path(), &db)
            .err()
            .expect("refused");
        assert!(matches!(err, AirlockError::Config(_)), "{err:?}");
        assert!(!err.to_string().contains("hunter2secret"), "{err}");
    }
}
