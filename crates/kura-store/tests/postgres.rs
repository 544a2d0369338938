#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What only the PostgreSQL store has: its URL and its failures, and tables that match
//! SQLite's; and that a SQLite file made before PostgreSQL was supported still opens.

mod common;

use std::collections::BTreeMap;

use common::{base_url, url_in_schema, Schema};
use kura_store::{Store, StoreError, StoreLocation};

fn open_err(url: &str) -> StoreError {
    match Store::open_postgres(url) {
        Ok(_) => panic!("{url} opened"),
        Err(e) => e,
    }
}

#[test]
fn an_unreachable_database_is_a_clear_error_without_the_password() {
    let e = open_err("postgres://kura:sekrit@127.0.0.1:1/control");
    let text = e.to_string();
    assert!(matches!(e, StoreError::Postgres { .. }), "{e:?}");
    assert!(
        text.contains("postgres://kura@127.0.0.1:1/control") && text.contains("cannot connect"),
        "{text}"
    );
    assert!(!text.contains("sekrit"), "{text}");
    let location = StoreLocation::Postgres("postgres://kura:sekrit@127.0.0.1:1/control".into());
    assert!(!format!("{location:?}").contains("sekrit"));
}

#[test]
fn a_bad_url_tls_and_a_missing_schema_are_refused_with_what_to_do() {
    let e = open_err("mysql://nope");
    assert!(matches!(e, StoreError::Config(_)), "{e:?}");
    let e = open_err(&format!("{}?sslmode=require", base_url()));
    assert!(
        matches!(&e, StoreError::Config(m) if m.contains("TLS")),
        "{e:?}"
    );
    let e = open_err(&url_in_schema(&base_url(), "kura_store_no_such_schema"));
    assert!(
        matches!(&e, StoreError::Config(m) if m.contains("search_path")),
        "{e:?}"
    );
}

#[test]
fn the_location_follows_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::new();
    let sqlite = StoreLocation::from_config(dir.path(), None);
    assert_eq!(sqlite, StoreLocation::State(dir.path().to_path_buf()));
    assert!(!Store::open_at(&sqlite).unwrap().is_postgres());
    let pg = StoreLocation::from_config(dir.path(), Some(&schema.url));
    let store = Store::open_at(&pg).unwrap();
    assert!(store.is_postgres());
    assert!(
        store.label().starts_with("postgres://"),
        "{}",
        store.label()
    );
}

/// Table -> column names, in order.
type Columns = BTreeMap<String, Vec<String>>;

#[test]
fn both_databases_have_the_same_tables_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join(kura_store::DB_FILE)).unwrap();
    let mut sqlite = Columns::new();
    let mut stmt = conn
        .prepare(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name LIKE 'ctl_%' ORDER BY m.name, p.cid",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    for row in rows {
        let (table, column) = row.unwrap();
        sqlite.entry(table).or_default().push(column);
    }

    let schema = Schema::new();
    drop(Store::open_postgres(&schema.url).unwrap());
    let mut pg = Columns::new();
    for r in schema
        .client()
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
            &[],
        )
        .unwrap()
    {
        pg.entry(r.get(0)).or_default().push(r.get(1));
    }
    assert_eq!(sqlite.len(), 7, "{sqlite:?}");
    assert_eq!(sqlite, pg);
}

/// The tables as the first release created them (before PostgreSQL): such a file opens and
/// its rows read back.
const FIRST_SQLITE_SCHEMA: &str = "
CREATE TABLE ctl_accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL, roles TEXT NOT NULL,
    password TEXT, source TEXT NOT NULL, subject TEXT, disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL);
CREATE UNIQUE INDEX ctl_accounts_subject ON ctl_accounts(subject);
CREATE TABLE ctl_sessions (token_hash TEXT PRIMARY KEY, user TEXT NOT NULL,
    csrf_token TEXT NOT NULL, created_at TEXT NOT NULL, last_seen TEXT NOT NULL,
    expires_at TEXT NOT NULL);
CREATE INDEX ctl_sessions_user ON ctl_sessions(user);
INSERT INTO ctl_accounts VALUES ('alice', 'Alice', '[\"researcher\"]', 'x', 'local', NULL, 1,
    '2026-11-25T09:00:00.000000Z');
";

#[test]
fn a_sqlite_file_from_before_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    rusqlite::Connection::open(dir.path().join(kura_store::DB_FILE))
        .unwrap()
        .execute_batch(FIRST_SQLITE_SCHEMA)
        .unwrap();
    let s = Store::open(dir.path()).unwrap();
    let a = s.account("alice").unwrap().unwrap();
    assert!(a.disabled);
    assert_eq!(a.roles, vec!["researcher"]);
    s.upsert_oidc_account("https://idp|bob", "bob", "Bob", &[], a.created_at)
        .unwrap();
    assert!(!s.account("bob").unwrap().unwrap().disabled);
}
