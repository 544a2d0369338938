#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Two stores on one database (two nodes, each with its own connections), racing threads
//! through the operations that must happen once: taking a pending login, creating an account,
//! a project or an output, the first OpenID sign-in of an identity, finishing a query; and
//! sign-ins racing the disabling of the account. Each race runs on PostgreSQL (several nodes)
//! and on SQLite (several processes on one file).

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::sync::Barrier;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::Fixture;
use kura_store::{
    NewAccount, OutputRecord, Project, QueryRecord, QueryStatus, SessionLimits, Store, StoreError,
};

/// Racing threads: half on each store.
const THREADS: usize = 4;
const ROUNDS: usize = 12;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()
}

fn limits() -> SessionLimits {
    SessionLimits {
        idle: Duration::minutes(30),
        absolute: Duration::hours(12),
    }
}

/// Runs `f(store, thread)` on `THREADS` threads released together, alternating the two stores;
/// returns the results in thread order.
fn race<T: Send>(stores: &[Store; 2], f: impl Fn(&Store, usize) -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (barrier, f, store) = (&barrier, &f, &stores[i % 2]);
                s.spawn(move || {
                    barrier.wait();
                    f(store, i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn two(f: &Fixture) -> [Store; 2] {
    [f.open(), f.open()]
}

fn new_account(s: &Store, id: &str) -> Result<(), StoreError> {
    let roles = vec!["researcher".to_string()];
    s.create_account(
        &NewAccount {
            id,
            name: "Name",
            roles: &roles,
            password_hash: "$argon2id$stub",
        },
        t0(),
    )
    .map(|_| ())
}

/// Exactly one `Ok`, every other result a `Conflict`.
fn one_winner<T: std::fmt::Debug>(results: &[Result<T, StoreError>]) -> usize {
    let winners: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results {
        assert!(
            matches!(r, Ok(_) | Err(StoreError::Conflict { .. })),
            "{results:?}"
        );
    }
    winners[0]
}

fn a_pending_login_is_taken_by_one_node(f: &Fixture) {
    let stores = two(f);
    for round in 0..ROUNDS {
        let body = format!("{{\"state\":\"{round}\"}}");
        let key = stores[round % 2].put_pending_login(&body, t0()).unwrap();
        let taken = race(&stores, |s, _| s.take_pending_login(&key).unwrap());
        let got: Vec<&String> = taken.iter().flatten().collect();
        assert_eq!(got, vec![&body], "round {round}: {taken:?}");
    }
}

fn an_account_is_created_by_one_node(f: &Fixture) {
    let stores = two(f);
    for round in 0..ROUNDS {
        let id = format!("user{round}");
        let results = race(&stores, |s, _| new_account(s, &id));
        one_winner(&results);
    }
    assert_eq!(stores[0].accounts().unwrap().len(), ROUNDS);
}

fn a_project_is_created_by_one_node(f: &Fixture) {
    let stores = two(f);
    for round in 0..ROUNDS {
        let results = race(&stores, |s, i| {
            s.create_project(&Project {
                id: format!("p{round}"),
                title: format!("by thread {i}"),
                description: String::new(),
                snapshot: "demo".into(),
                tables: BTreeMap::from([("t".to_string(), vec!["*".to_string()])]),
                starts: t0(),
                expires: t0() + Duration::days(1),
                created_by: "steward".into(),
                created_at: t0(),
            })
        });
        let winner = one_winner(&results);
        let stored = stores[1].project(&format!("p{round}")).unwrap().unwrap();
        assert_eq!(stored.title, format!("by thread {winner}"));
    }
}

fn a_first_oidc_sign_in_on_two_nodes_makes_one_account(f: &Fixture) {
    let stores = two(f);
    for round in 0..ROUNDS {
        let subject = format!("https://idp|user{round}");
        let id = format!("oidc-{round}");
        let results = race(&stores, |s, i| {
            s.upsert_oidc_account(&subject, &id, &format!("Name {i}"), &[], t0())
        });
        for r in &results {
            assert_eq!(r.as_ref().unwrap().id, id, "{results:?}");
        }
    }
    assert_eq!(stores[0].accounts().unwrap().len(), ROUNDS);
}

fn a_query_is_finished_by_one_node_and_its_output_staged_once(f: &Fixture) {
    let stores = two(f);
    for round in 0..ROUNDS {
        let qid = format!("q{round}");
        stores[0]
            .insert_query(&QueryRecord {
                id: qid.clone(),
                project: "p1".into(),
                user: "alice".into(),
                sql: "SELECT 1".into(),
                status: QueryStatus::Running,
                row_count: None,
                duration_ms: None,
                result_sha256: None,
                snapshot_sha256: "ab".into(),
                error: None,
                started_at: t0(),
            })
            .unwrap();
        let results = race(&stores, |s, i| {
            s.finish_query(
                &qid,
                QueryStatus::Completed,
                Some(i as u64),
                i as u64,
                Some(&format!("sha{i}")),
                None,
            )
        });
        let winner = one_winner(&results);
        let stored = stores[1].query("p1", &qid).unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.row_count, stored.result_sha256),
            (
                QueryStatus::Completed,
                Some(winner as u64),
                Some(format!("sha{winner}"))
            )
        );
        let results = race(&stores, |s, i| {
            s.insert_output(&OutputRecord {
                id: format!("out-{round}"),
                project: "p1".into(),
                query_id: qid.clone(),
                author: "alice".into(),
                title: format!("by thread {i}"),
                description: String::new(),
                status: "staged".into(),
                row_count: 1,
                sha256: "beef".into(),
                created_at: t0(),
            })
        });
        one_winner(&results);
    }
    assert_eq!(stores[0].outputs("p1").unwrap().len(), ROUNDS);
}

/// Sign-ins on both nodes while one of them disables the account: no session started by a
/// sign-in that succeeded survives the disabling.
fn no_session_outlives_a_concurrent_disabling(f: &Fixture) {
    let stores = two(f);
    for round in 0..ROUNDS {
        let id = format!("user{round}");
        new_account(&stores[0], &id).unwrap();
        let tokens = race(&stores, |s, i| {
            let mut tokens = Vec::new();
            if i == 0 {
                s.disable_account(&id).unwrap();
                return tokens;
            }
            // Sign in until the disabling is seen.
            for _ in 0..200 {
                match s.create_session(&id, limits(), t0()) {
                    Ok((token, _)) => tokens.push(token),
                    Err(StoreError::NotFound { .. }) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            tokens
        });
        let tokens: Vec<String> = tokens.into_iter().flatten().collect();
        for token in &tokens {
            for s in &stores {
                assert!(
                    s.session(token, limits(), t0()).unwrap().is_none(),
                    "round {round}: a session of the disabled account survived"
                );
            }
        }
    }
}

/// Sign-ins on both nodes at once, each sweeping the expired sessions of the others: none
/// fails (a deadlock between two sweeps is retried) and every new session is live.
fn sign_ins_sweeping_each_other_all_succeed(f: &Fixture) {
    let stores = two(f);
    for i in 0..THREADS {
        new_account(&stores[0], &format!("user{i}")).unwrap();
    }
    let short = SessionLimits {
        idle: Duration::minutes(1),
        absolute: Duration::minutes(5),
    };
    let results = race(&stores, |s, i| {
        let mut live = Vec::new();
        for step in 0..30 {
            let now = t0() + Duration::minutes(step);
            let (token, _) = s.create_session(&format!("user{i}"), short, now).unwrap();
            live.push((token, now));
        }
        live
    });
    let end = t0() + Duration::minutes(29);
    for (token, at) in results.into_iter().flatten().filter(|(_, at)| *at == end) {
        assert!(stores[0].session(&token, short, at).unwrap().is_some());
    }
}

on_both!(
    a_pending_login_is_taken_by_one_node,
    an_account_is_created_by_one_node,
    a_project_is_created_by_one_node,
    a_first_oidc_sign_in_on_two_nodes_makes_one_account,
    a_query_is_finished_by_one_node_and_its_output_staged_once,
    no_session_outlives_a_concurrent_disabling,
    sign_ins_sweeping_each_other_all_succeed,
);
