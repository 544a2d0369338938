#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Two airlocks on one database (two nodes, each with its own connections; on SQLite two
//! processes' worth of connections to one file), racing threads through the steps that must
//! happen once: opening a review; checkers voting on the same review at the same moment (the
//! review ends in one state that its stored votes explain, and the approval releases once); two
//! nodes releasing the same output; two releases from one snapshot whose tables together would
//! disclose a cell (one is refused, never both released); creating the release signing key.

#[macro_use]
mod common;

use std::sync::Barrier;

use common::*;
use kura_airlock::{
    verify_release, Airlock, AirlockError, Decision, Outcome, Release, Review, State,
};
use kura_sdc::ReleaseLedger;
use sha2::{Digest, Sha256};

/// Races run this many times each: interleavings differ from one run to the next.
const ROUNDS: usize = 6;

/// Runs `f(airlock, thread)` on `threads` threads released together, alternating the two
/// airlocks; returns the results in thread order.
fn race<T: Send>(
    nodes: &[Airlock; 2],
    threads: usize,
    f: impl Fn(&Airlock, usize) -> T + Sync,
) -> Vec<T> {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (barrier, f, node) = (&barrier, &f, &nodes[i % 2]);
                s.spawn(move || {
                    barrier.wait();
                    f(node, i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn two_nodes(f: &Fixture) -> [Airlock; 2] {
    [f.open_airlock(), f.open_airlock()]
}

/// A snapshot of its own per round, so that rounds do not see each other's ledger cells.
fn snapshot(round: usize) -> String {
    hex::encode(Sha256::digest(format!("snapshot {round}").as_bytes()))
}

/// Stages `columns` as `id` from `snapshot`, opens the review, gives the context and submits.
fn submit_from(f: &Fixture, id: &str, snapshot: &str, columns: &[(&str, Col)]) {
    let sha = write_output(f.state(), id, columns);
    let mut output = staged(id, &sha, "SELECT ...");
    output.snapshot_sha256 = snapshot.to_string();
    f.airlock.open_review(output, AUTHOR, t(1)).unwrap();
    f.airlock.set_context(id, AUTHOR, context(), t(2)).unwrap();
    f.airlock.submit(id, AUTHOR, t(3)).unwrap();
}

fn approve_from(f: &Fixture, id: &str, snapshot: &str, columns: &[(&str, Col)]) {
    submit_from(f, id, snapshot, columns);
    for (checker, at) in [("checker1", 10), ("checker2", 11)] {
        f.airlock
            .vote(id, checker, Decision::Approve, "", t(at))
            .unwrap();
    }
}

/// The outcome a round must have with these votes in the order they were stored: two agreeing
/// votes decide; after a split, the median of three.
fn expected_outcome(votes: &[Decision]) -> Option<Outcome> {
    let of = |d: Decision| match d {
        Decision::Approve => Outcome::Approved,
        Decision::RequestChanges => Outcome::ChangesRequested,
        Decision::Reject => Outcome::Rejected,
    };
    match votes {
        [a, b] if a == b => Some(of(*a)),
        [_, _, _] => {
            let mut sorted = votes.to_vec();
            sorted.sort();
            Some(of(sorted[1]))
        }
        _ => None,
    }
}

/// Cells of `release` in the ledger of `snapshot`, read by a ledger of its own.
fn ledger_cells_of(f: &Fixture, snapshot: &str, release: &str) -> usize {
    f.ledger()
        .released(snapshot)
        .unwrap()
        .iter()
        .filter(|c| c.release == release)
        .count()
}

/// Authors' requests opening the review of one output on both nodes at once: one opens it,
/// every other is a `Conflict`, and the review has one history.
fn a_review_is_opened_by_one_node(f: Fixture) {
    let nodes = two_nodes(&f);
    for round in 0..ROUNDS {
        let id = format!("out-o{round}");
        let sha = write_output(f.state(), &id, &passing_table());
        let results = race(&nodes, 4, |node, _| {
            node.open_review(staged(&id, &sha, "SELECT ..."), AUTHOR, t(1))
        });
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {results:?}"
        );
        for r in &results {
            assert!(
                matches!(r, Ok(_) | Err(AirlockError::Conflict { .. })),
                "round {round}: {r:?}"
            );
        }
        let review = f.airlock.review(&id).unwrap();
        assert_eq!(review.state, State::Draft);
        assert_eq!(review.history.len(), 1, "round {round}");
    }
}

/// Three checkers vote at once on one review through two nodes: the round closes once, as the
/// votes that were stored say (whichever two came first); a vote that comes after it closed is
/// refused; the thread whose vote approved releases, and the release happens once, with its
/// cells in the ledger once. Half the rounds end approved whatever the order (approve, reject,
/// approve), the others with changes requested (approve, changes, reject).
fn racing_votes_close_the_round_once_and_release_once(f: Fixture) {
    let nodes = two_nodes(&f);
    let mut seen_tiebreaks = 0;
    for round in 0..ROUNDS {
        let decisions = if round % 2 == 0 {
            [Decision::Approve, Decision::Reject, Decision::Approve]
        } else {
            [
                Decision::Approve,
                Decision::RequestChanges,
                Decision::Reject,
            ]
        };
        let id = format!("out-v{round}");
        let snap = snapshot(round);
        submit_from(&f, &id, &snap, &passing_table());
        let results = race(&nodes, decisions.len(), |node, i| {
            let comment = if decisions[i] == Decision::Approve {
                ""
            } else {
                "the TOTAL row must be explained"
            };
            let voted = node.vote(
                &id,
                &format!("checker{}", i + 1),
                decisions[i],
                comment,
                t(10),
            );
            let released = match &voted {
                Ok((_, Some(Outcome::Approved))) => Some(node.release(&id, t(20))),
                _ => None,
            };
            (voted, released)
        });

        let review: Review = f.open_airlock().review(&id).unwrap();
        let stored: Vec<Decision> = review
            .visible_votes("supervisor")
            .iter()
            .map(|v| v.decision)
            .collect();
        let outcome = expected_outcome(&stored);
        let expected = if round % 2 == 0 {
            Outcome::Approved
        } else {
            Outcome::ChangesRequested
        };
        assert_eq!(outcome, Some(expected), "round {round}: {stored:?}");
        if stored.len() == 3 {
            seen_tiebreaks += 1;
        }
        // Every accepted vote is stored; every other was refused as coming too late.
        let accepted = results.iter().filter(|(v, _)| v.is_ok()).count();
        assert_eq!(accepted, stored.len(), "round {round}: {results:?}");
        for (v, _) in &results {
            assert!(
                matches!(v, Ok(_) | Err(AirlockError::WrongState { .. })),
                "round {round}: {v:?}"
            );
        }
        // Exactly one vote closed the round, with the outcome the stored votes give.
        let closing: Vec<Outcome> = results
            .iter()
            .filter_map(|(v, _)| v.as_ref().ok().and_then(|(_, o)| *o))
            .collect();
        assert_eq!(
            closing,
            vec![outcome.unwrap()],
            "round {round}: {results:?}"
        );
        assert_eq!(review.rounds[0].outcome, outcome, "round {round}");
        let closed_entries = review
            .history
            .iter()
            .filter(|h| h.action == "round_closed")
            .count();
        assert_eq!(closed_entries, 1, "round {round}: {:?}", review.history);

        let releases: Vec<&Result<Release, AirlockError>> =
            results.iter().filter_map(|(_, r)| r.as_ref()).collect();
        if outcome == Some(Outcome::Approved) {
            assert_eq!(releases.len(), 1, "round {round}: {results:?}");
            let release = releases[0].as_ref().unwrap();
            assert_eq!(review.state, State::Released, "round {round}");
            let key = nodes[0].release_verifier_key().unwrap();
            verify_release(&release.dir, &key).unwrap();
            assert_eq!(
                ledger_cells_of(&f, &snap, &id),
                release.cells_recorded,
                "round {round}: the release's cells, once"
            );
            assert!(release.cells_recorded > 0);
        } else {
            assert!(releases.is_empty(), "round {round}: {results:?}");
            assert_eq!(ledger_cells_of(&f, &snap, &id), 0, "round {round}");
        }
    }
    // Not an assertion on timing: just what was exercised.
    eprintln!("{seen_tiebreaks} of {ROUNDS} rounds needed the third vote");
}

/// Two nodes release the same approved output at once: one release, one `WrongState`, one
/// directory, the cells in the ledger once.
fn one_output_released_on_two_nodes_is_released_once(f: Fixture) {
    let nodes = two_nodes(&f);
    for round in 0..ROUNDS {
        let id = format!("out-r{round}");
        let snap = snapshot(round);
        approve_from(&f, &id, &snap, &passing_table());
        let results = race(&nodes, 2, |node, _| node.release(&id, t(20)));
        let ok: Vec<&Release> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(ok.len(), 1, "round {round}: {results:?}");
        for r in &results {
            assert!(
                matches!(r, Ok(_) | Err(AirlockError::WrongState { .. })),
                "round {round}: {r:?}"
            );
        }
        assert_eq!(ledger_cells_of(&f, &snap, &id), ok[0].cells_recorded);
        assert_eq!(
            f.airlock.review(&id).unwrap().state,
            State::Released,
            "round {round}"
        );
        let key = nodes[1].release_verifier_key().unwrap();
        verify_release(&ok[0].dir, &key).unwrap();
    }
    let orphaned = f.state().join("releases/.orphaned");
    assert!(!orphaned.exists(), "no release directory was left behind");
}

/// Patients with MG in Tokyo, and the women among them: each passes alone; together they give
/// the number of men (3), a differencing disclosure.
fn tokyo_total() -> Vec<(&'static str, Col)> {
    vec![
        ("dim:prefecture", Col::Str(vec!["Tokyo"])),
        ("dim:disease", Col::Str(vec!["11"])),
        ("count:patients", Col::Int(vec![40])),
    ]
}

fn tokyo_women() -> Vec<(&'static str, Col)> {
    vec![
        ("dim:prefecture", Col::Str(vec!["Tokyo"])),
        ("dim:disease", Col::Str(vec!["11"])),
        ("dim:sex", Col::Str(vec!["F"])),
        ("count:patients", Col::Int(vec![37])),
    ]
}

/// Two approved outputs from one snapshot that would disclose a cell together are released at
/// the same moment on two nodes: the release that checks second sees the first's cells, so
/// exactly one is released and the other goes back to its author; the ledger holds the
/// winner's cells only, and only the winner's directory exists.
fn overlapping_releases_on_two_nodes_never_both_pass(f: Fixture) {
    let nodes = two_nodes(&f);
    let mut winners = [0usize; 2];
    for round in 0..ROUNDS {
        let snap = snapshot(round);
        let ids = [format!("out-t{round}"), format!("out-f{round}")];
        approve_from(&f, &ids[0], &snap, &tokyo_total());
        approve_from(&f, &ids[1], &snap, &tokyo_women());
        let results = race(&nodes, 2, |node, i| node.release(&ids[i], t(20)));

        let won: Vec<usize> = (0..2).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        let (w, l) = (won[0], 1 - won[0]);
        winners[w] += 1;
        match &results[l] {
            Err(AirlockError::CheckChanged { reason, .. }) => {
                assert!(reason.contains("= 3"), "round {round}: {reason}")
            }
            other => panic!("round {round}: expected the second release refused, got {other:?}"),
        }
        let cells = f.ledger().released(&snap).unwrap();
        assert!(
            !cells.is_empty() && cells.iter().all(|c| c.release == ids[w]),
            "round {round}: {cells:?}"
        );
        assert_eq!(
            cells.len(),
            results[w].as_ref().unwrap().cells_recorded,
            "round {round}"
        );
        let reader = f.open_airlock();
        assert_eq!(reader.review(&ids[w]).unwrap().state, State::Released);
        assert_eq!(
            reader.review(&ids[l]).unwrap().state,
            State::ChangesRequested
        );
        assert!(reader.release_record(&ids[l]).unwrap().is_none());
        assert!(!f.state().join("releases").join(&ids[l]).exists());
    }
    eprintln!("releases won: total {}, women {}", winners[0], winners[1]);
}

/// The first two releases of a state directory, from two snapshots (so neither waits for the
/// other's ledger lock), on two nodes at once: both create the release key if missing, one key
/// is kept, and both releases verify with it.
fn the_first_releases_on_two_nodes_share_one_signing_key(first: Fixture) {
    let kind = first.kind;
    let mut fixtures = vec![first];
    fixtures.extend((1..ROUNDS).map(|_| Fixture::new(kind)));
    for (round, f) in fixtures.iter().enumerate() {
        let nodes = two_nodes(f);
        let ids = [format!("out-k{round}a"), format!("out-k{round}b")];
        for (i, id) in ids.iter().enumerate() {
            approve_from(f, id, &snapshot(2 * round + i), &passing_table());
        }
        let results = race(&nodes, 2, |node, i| node.release(&ids[i], t(20)));
        let key = nodes[0].release_verifier_key().unwrap();
        for r in &results {
            let release = r.as_ref().unwrap_or_else(|e| panic!("round {round}: {e}"));
            verify_release(&release.dir, &key).unwrap();
        }
        let keys: Vec<String> = std::fs::read_dir(f.state().join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(keys, ["release-signing.key"], "round {round}");
    }
}

/// Nodes asking for the verifier key of a fresh state directory at once (each creates the key
/// if missing) all get the one key that stays.
fn racing_nodes_create_one_release_key(first: Fixture) {
    let kind = first.kind;
    let mut fixtures = vec![first];
    fixtures.extend((1..ROUNDS).map(|_| Fixture::new(kind)));
    for (round, f) in fixtures.iter().enumerate() {
        let nodes = two_nodes(f);
        let keys = race(&nodes, 8, |node, _| node.release_verifier_key());
        let stored = f.airlock.release_verifier_key().unwrap();
        for k in &keys {
            assert_eq!(k.as_ref().ok(), Some(&stored), "round {round}: {keys:?}");
        }
    }
}

on_both!(
    a_review_is_opened_by_one_node,
    racing_votes_close_the_round_once_and_release_once,
    one_output_released_on_two_nodes_is_released_once,
    overlapping_releases_on_two_nodes_never_both_pass,
    the_first_releases_on_two_nodes_share_one_signing_key,
    racing_nodes_create_one_release_key,
);
