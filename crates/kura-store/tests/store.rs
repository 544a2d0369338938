#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The control-plane store: accounts, sessions, pending logins, projects, queries, outputs;
//! every test on SQLite and on PostgreSQL (`common/mod.rs` says how to point them at one).

#[macro_use]
mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{Fixture, Kind};
use kura_store::{
    Member, NewAccount, OutputRecord, Project, QueryRecord, QueryStatus, SessionLimits, Store,
    StoreError,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()
}

fn limits() -> SessionLimits {
    SessionLimits {
        idle: Duration::minutes(30),
        absolute: Duration::hours(12),
    }
}

fn account(store: &Store, id: &str) {
    let roles = vec!["researcher".to_string()];
    store
        .create_account(
            &NewAccount {
                id,
                name: "Name",
                roles: &roles,
                password_hash: "$argon2id$stub",
            },
            t0(),
        )
        .unwrap();
}

fn project(id: &str) -> Project {
    Project {
        id: id.into(),
        title: "Title".into(),
        description: String::new(),
        snapshot: "demo".into(),
        tables: BTreeMap::from([("nanbyo_forms".to_string(), vec!["*".to_string()])]),
        starts: t0(),
        expires: t0() + Duration::days(30),
        created_by: "steward".into(),
        created_at: t0(),
    }
}

fn accounts_are_unique_and_ids_checked(f: &Fixture) {
    let s = f.open();
    account(&s, "alice");
    let roles = vec![];
    let again = s.create_account(
        &NewAccount {
            id: "alice",
            name: "Other",
            roles: &roles,
            password_hash: "x",
        },
        t0(),
    );
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    for bad in ["", "Alice", "a b", "../x", "a@b", &"a".repeat(65)] {
        let r = s.create_account(
            &NewAccount {
                id: bad,
                name: "n",
                roles: &roles,
                password_hash: "x",
            },
            t0(),
        );
        assert!(
            matches!(r, Err(StoreError::Invalid { .. })),
            "{bad:?}: {r:?}"
        );
    }
    let (a, hash) = s.local_credentials("alice").unwrap().unwrap();
    assert_eq!(a.roles, vec!["researcher"]);
    assert_eq!(hash.as_deref(), Some("$argon2id$stub"));
}

fn sessions_end_when_idle_or_at_absolute_expiry_and_tokens_are_not_stored(f: &Fixture) {
    let s = f.open();
    account(&s, "alice");
    let (token, session) = s.create_session("alice", limits(), t0()).unwrap();
    assert_ne!(session.id, token, "only a hash of the token is kept");
    let stored = f.stored_bytes();
    assert!(
        stored
            .windows(session.id.len())
            .any(|w| w == session.id.as_bytes()),
        "the dump holds the sessions"
    );
    let needle = token.as_bytes();
    assert!(
        !stored.windows(needle.len()).any(|w| w == needle),
        "token stored"
    );
    // Used every 20 minutes: still alive after 2 hours.
    for i in 1..=6 {
        let now = t0() + Duration::minutes(20 * i);
        assert!(
            s.session(&token, limits(), now).unwrap().is_some(),
            "step {i}"
        );
    }
    // Idle for 31 minutes: gone, and stays gone.
    let late = t0() + Duration::minutes(120 + 31);
    assert!(s.session(&token, limits(), late).unwrap().is_none());
    assert!(s
        .session(&token, limits(), t0() + Duration::minutes(121))
        .unwrap()
        .is_none());

    let (token, _) = s.create_session("alice", limits(), t0()).unwrap();
    let mut now = t0();
    while now < t0() + Duration::hours(12) - Duration::minutes(10) {
        now += Duration::minutes(10);
        assert!(s.session(&token, limits(), now).unwrap().is_some());
    }
    assert!(s
        .session(&token, limits(), t0() + Duration::hours(12))
        .unwrap()
        .is_none());
    assert!(s.session("not-a-token", limits(), t0()).unwrap().is_none());
}

fn disabling_an_account_ends_its_sessions(f: &Fixture) {
    let s = f.open();
    account(&s, "alice");
    let (token, _) = s.create_session("alice", limits(), t0()).unwrap();
    let a = s.disable_account("alice").unwrap();
    assert!(a.disabled);
    assert!(s.session(&token, limits(), t0()).unwrap().is_none());
    assert!(matches!(
        s.disable_account("nobody"),
        Err(StoreError::NotFound { .. })
    ));
}

fn a_pending_login_completes_at_most_once(f: &Fixture) {
    let s = f.open();
    let key = s.put_pending_login("{\"state\":\"x\"}", t0()).unwrap();
    assert_eq!(
        s.take_pending_login(&key).unwrap().as_deref(),
        Some("{\"state\":\"x\"}")
    );
    assert_eq!(s.take_pending_login(&key).unwrap(), None);
    assert_eq!(s.take_pending_login("guess").unwrap(), None);
}

fn oidc_accounts_never_take_over_local_ones(f: &Fixture) {
    let s = f.open();
    account(&s, "alice");
    let r = s.upsert_oidc_account("https://idp|alice", "alice", "Alice", &[], t0());
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    let roles = vec!["researcher".to_string()];
    let b = s
        .upsert_oidc_account("https://idp|bob", "bob", "Bob", &roles, t0())
        .unwrap();
    assert_eq!(b.roles, roles);
    // Roles and name follow the provider on the next sign-in; the id stays.
    let b2 = s
        .upsert_oidc_account("https://idp|bob", "ignored", "Robert", &[], t0())
        .unwrap();
    assert_eq!((b2.id.as_str(), b2.name.as_str()), ("bob", "Robert"));
    assert!(b2.roles.is_empty());
}

fn projects_validate_and_members_round_trip(f: &Fixture) {
    let s = f.open();
    account(&s, "alice");
    let mut bad = project("p1");
    bad.expires = bad.starts;
    assert!(matches!(
        s.create_project(&bad),
        Err(StoreError::Invalid { .. })
    ));
    let mut bad = project("p1");
    bad.tables.insert("x; DROP".into(), vec!["*".into()]);
    assert!(matches!(
        s.create_project(&bad),
        Err(StoreError::Invalid { .. })
    ));
    s.create_project(&project("p1")).unwrap();
    assert!(matches!(
        s.create_project(&project("p1")),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.project("p1").unwrap().unwrap(), project("p1"));
    let m = Member {
        user: "alice".into(),
        role: "researcher".into(),
        expires: t0() + Duration::days(3),
    };
    s.set_member("p1", &m).unwrap();
    assert_eq!(s.members("p1").unwrap(), vec![m.clone()]);
    assert_eq!(s.projects_of("alice").unwrap().len(), 1);
    assert!(matches!(
        s.set_member(
            "p1",
            &Member {
                user: "ghost".into(),
                ..m.clone()
            }
        ),
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.remove_member("p1", "alice").unwrap());
    assert!(!s.remove_member("p1", "alice").unwrap());
    assert!(s.projects_of("alice").unwrap().is_empty());
}

fn query_history_is_per_user_and_project_newest_first(f: &Fixture) {
    let s = f.open();
    let q = |id: &str, user: &str, project: &str, minute: i64| QueryRecord {
        id: id.into(),
        project: project.into(),
        user: user.into(),
        sql: "SELECT 1".into(),
        status: QueryStatus::Running,
        row_count: None,
        duration_ms: None,
        result_sha256: None,
        snapshot_sha256: "ab".into(),
        error: None,
        started_at: t0() + Duration::minutes(minute),
    };
    s.insert_query(&q("q1", "alice", "p1", 1)).unwrap();
    s.insert_query(&q("q2", "alice", "p1", 2)).unwrap();
    s.insert_query(&q("q3", "bob", "p1", 3)).unwrap();
    s.insert_query(&q("q4", "alice", "p2", 4)).unwrap();
    assert!(matches!(
        s.insert_query(&q("q1", "alice", "p1", 5)),
        Err(StoreError::Conflict { .. })
    ));
    s.finish_query(
        "q1",
        QueryStatus::Completed,
        Some(7),
        12,
        Some("cafe"),
        None,
    )
    .unwrap();
    let ids: Vec<_> = s
        .queries("p1", "alice", 10)
        .unwrap()
        .into_iter()
        .map(|q| (q.id, q.status))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("q2".to_string(), QueryStatus::Running),
            ("q1".to_string(), QueryStatus::Completed)
        ]
    );
    assert!(
        s.query("p2", "q1").unwrap().is_none(),
        "another project's query"
    );
    let got = s.query("p1", "q1").unwrap().unwrap();
    assert_eq!(
        (got.row_count, got.result_sha256.as_deref()),
        (Some(7), Some("cafe"))
    );

    let o = OutputRecord {
        id: "out-1".into(),
        project: "p1".into(),
        query_id: "q1".into(),
        author: "alice".into(),
        title: "Counts".into(),
        description: String::new(),
        status: "staged".into(),
        row_count: 7,
        sha256: "beef".into(),
        created_at: t0(),
    };
    s.insert_output(&o).unwrap();
    assert_eq!(s.outputs("p1").unwrap(), vec![o]);
    assert!(s.outputs("p2").unwrap().is_empty());
}

fn several_queries_are_recorded_together_or_not_at_all(f: &Fixture) {
    let s = f.open();
    let q = |id: &str| QueryRecord {
        id: id.into(),
        project: "p1".into(),
        user: "alice".into(),
        sql: format!("SELECT '{id}'"),
        status: QueryStatus::Completed,
        row_count: Some(3),
        duration_ms: Some(4),
        result_sha256: Some("cafe".into()),
        snapshot_sha256: "ab".into(),
        error: None,
        started_at: t0(),
    };
    s.insert_queries(&[q("a"), q("b"), q("c")]).unwrap();
    assert_eq!(s.queries("p1", "alice", 10).unwrap().len(), 3);
    assert_eq!(s.query("p1", "b").unwrap().unwrap(), q("b"));
    // "b" is taken: neither "d" before it nor "e" after it is kept.
    let e = s.insert_queries(&[q("d"), q("b"), q("e")]).unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict { id, .. } if id == "b"),
        "{e}"
    );
    assert!(s.query("p1", "d").unwrap().is_none());
    assert!(s.query("p1", "e").unwrap().is_none());
    assert_eq!(s.queries("p1", "alice", 10).unwrap().len(), 3);
}

fn a_new_password_ends_the_sessions_and_only_local_accounts_have_one(f: &Fixture) {
    let s = f.open();
    account(&s, "alice");
    let (token, _) = s.create_session("alice", limits(), t0()).unwrap();
    s.set_password("alice", "$argon2id$new").unwrap();
    assert!(s.session(&token, limits(), t0()).unwrap().is_none());
    let (_, hash) = s.local_credentials("alice").unwrap().unwrap();
    assert_eq!(hash.as_deref(), Some("$argon2id$new"));
    s.upsert_oidc_account("https://idp|bob", "bob", "Bob", &[], t0())
        .unwrap();
    assert!(matches!(
        s.set_password("bob", "$argon2id$x"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.local_credentials("bob").unwrap().unwrap().1.is_none());
}

fn a_query_ends_once_and_unknown_queries_cannot_end(f: &Fixture) {
    let s = f.open();
    let q = QueryRecord {
        id: "q1".into(),
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
    };
    s.insert_query(&q).unwrap();
    s.finish_query("q1", QueryStatus::Failed, None, 3, None, Some("boom"))
        .unwrap();
    let again = s.finish_query("q1", QueryStatus::Completed, Some(1), 4, Some("ff"), None);
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    let got = s.query("p1", "q1").unwrap().unwrap();
    assert_eq!(
        (got.status, got.duration_ms, got.error.as_deref()),
        (QueryStatus::Failed, Some(3), Some("boom"))
    );
    let unknown = s.finish_query("nope", QueryStatus::Completed, None, 1, None, None);
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );
}

fn sessions_start_only_for_enabled_accounts(f: &Fixture) {
    let s = f.open();
    let ghost = s.create_session("ghost", limits(), t0());
    assert!(
        matches!(ghost, Err(StoreError::NotFound { .. })),
        "{ghost:?}"
    );
    account(&s, "alice");
    s.disable_account("alice").unwrap();
    let disabled = s.create_session("alice", limits(), t0());
    assert!(
        matches!(disabled, Err(StoreError::NotFound { .. })),
        "{disabled:?}"
    );
}

/// Ids and times order byte by byte on both databases, whatever PostgreSQL's locale.
fn lists_sort_byte_by_byte(f: &Fixture) {
    let s = f.open();
    let ids = ["ab", "a-c", "a_b", "a.b", "a0", "b", "a-b-c"];
    for id in ids {
        account(&s, id);
    }
    let mut expected: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    expected.sort();
    let got: Vec<String> = s.accounts().unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(got, expected);
}

fn what_is_stored_survives_reopening(f: &Fixture) {
    {
        let s = f.open();
        account(&s, "alice");
        s.create_project(&project("p1")).unwrap();
    }
    let s = f.open();
    assert_eq!(s.account("alice").unwrap().unwrap().name, "Name");
    assert_eq!(s.project("p1").unwrap().unwrap(), project("p1"));
    s.ping().unwrap();
    assert_eq!(s.is_postgres(), f.kind == Kind::Postgres);
    assert_eq!(s.path().is_some(), f.kind == Kind::Sqlite);
}

/// The server calls the store from async handlers: opening, using and dropping a store there
/// must work (the PostgreSQL client runs a runtime of its own).
fn works_from_inside_an_async_runtime(f: &Fixture) {
    for multi in [false, true] {
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread().build()
        }
        .unwrap();
        rt.block_on(async {
            let s = f.open();
            let id = if multi { "multi" } else { "single" };
            account(&s, id);
            let (token, _) = s.create_session(id, limits(), t0()).unwrap();
            assert!(s.session(&token, limits(), t0()).unwrap().is_some());
            let s = std::sync::Arc::new(s);
            let s2 = s.clone();
            let task = tokio::spawn(async move { s2.account(id).unwrap().is_some() });
            assert!(task.await.unwrap());
            drop(s);
        });
    }
}

on_both!(
    accounts_are_unique_and_ids_checked,
    sessions_end_when_idle_or_at_absolute_expiry_and_tokens_are_not_stored,
    disabling_an_account_ends_its_sessions,
    a_pending_login_completes_at_most_once,
    oidc_accounts_never_take_over_local_ones,
    projects_validate_and_members_round_trip,
    query_history_is_per_user_and_project_newest_first,
    several_queries_are_recorded_together_or_not_at_all,
    a_new_password_ends_the_sessions_and_only_local_accounts_have_one,
    a_query_ends_once_and_unknown_queries_cannot_end,
    sessions_start_only_for_enabled_accounts,
    lists_sort_byte_by_byte,
    what_is_stored_survives_reopening,
    works_from_inside_an_async_runtime,
);
