//! One store per test on either database: a temporary state directory for SQLite, a schema of
//! its own (dropped at the end) for PostgreSQL, so tests run in parallel and again.
//!
//! PostgreSQL: `KURA_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`. An
//! unreachable database fails the tests; it never skips them.

#![allow(dead_code)]

use kura_store::Store;
use postgres::{Client, NoTls};

pub const URL_ENV: &str = "KURA_TEST_POSTGRES_URL";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn base_url() -> String {
    std::env::var(URL_ENV).unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// `url` with `search_path` set to `schema`.
pub fn url_in_schema(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

pub fn admin() -> Client {
    let base = base_url();
    Client::connect(&base, NoTls).unwrap_or_else(|e| {
        let cause = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        panic!(
            "these tests need PostgreSQL, which is not reachable at {base}: {e}{cause}; \
             start it, or point {URL_ENV} at one"
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A schema that is dropped when it goes out of scope, also when the test fails.
pub struct Schema {
    pub name: String,
    pub url: String,
}

impl Schema {
    pub fn new() -> Schema {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).unwrap();
        let name = format!("kura_store_test_{}_{}", std::process::id(), hex::encode(b));
        admin()
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        Schema {
            url: url_in_schema(&base_url(), &name),
            name,
        }
    }

    /// A connection of the test's own, in this schema.
    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&base_url(), NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// One test's database, on which any number of stores (each with its own connections, as
/// separate nodes or processes would have) can be opened.
pub struct Fixture {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    pub schema: Option<Schema>,
}

impl Fixture {
    pub fn new(kind: Kind) -> Fixture {
        Fixture {
            kind,
            dir: tempfile::tempdir().unwrap(),
            schema: (kind == Kind::Postgres).then(Schema::new),
        }
    }

    pub fn open(&self) -> Store {
        match &self.schema {
            None => Store::open(self.dir.path()).unwrap(),
            Some(s) => Store::open_postgres(&s.url).unwrap(),
        }
    }

    /// Every byte the database holds for the control plane (SQLite: the file and its WAL;
    /// PostgreSQL: every row of every `ctl_*` table as text).
    pub fn stored_bytes(&self) -> Vec<u8> {
        match &self.schema {
            None => {
                let mut bytes = std::fs::read(self.dir.path().join(kura_store::DB_FILE)).unwrap();
                bytes.extend(
                    std::fs::read(self.dir.path().join("kura.sqlite-wal")).unwrap_or_default(),
                );
                bytes
            }
            Some(s) => {
                let mut c = s.client();
                let mut out = Vec::new();
                for table in [
                    "ctl_accounts",
                    "ctl_projects",
                    "ctl_members",
                    "ctl_sessions",
                    "ctl_pending_logins",
                    "ctl_queries",
                    "ctl_outputs",
                ] {
                    let text: String = c
                        .query_one(
                            &format!(
                                "SELECT coalesce(string_agg(t::text, '|'), '') FROM {table} t"
                            ),
                            &[],
                        )
                        .unwrap()
                        .get(0);
                    out.extend(text.into_bytes());
                }
                out
            }
        }
    }
}

/// `on_both!(f, g)` runs each `fn f(&Fixture)` as two tests, `f::sqlite` and `f::postgres`.
#[allow(unused_macros)]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(&crate::common::Fixture::new(crate::common::Kind::Sqlite));
                }
                #[test]
                fn postgres() {
                    super::$name(&crate::common::Fixture::new(crate::common::Kind::Postgres));
                }
            }
        )*
    };
}
