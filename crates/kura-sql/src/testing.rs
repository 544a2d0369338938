//! Test support for the crates on this layer (feature `test-support`; never in release code):
//! the PostgreSQL the tests use, a schema of each test's own (dropped at the end) so that tests
//! run in parallel and again, and `on_both!`, which runs a test on SQLite and on PostgreSQL.
//!
//! PostgreSQL: `KURA_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`. An
//! unreachable database fails the tests; it never skips them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use postgres::{Client, NoTls};

pub const URL_ENV: &str = "KURA_TEST_POSTGRES_URL";
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn base_url() -> String {
    std::env::var(URL_ENV).unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// `url` with `search_path` set to `schema`.
pub fn url_in_schema(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// A connection to the test database, or a panic saying how to provide one.
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

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A schema that is dropped when it goes out of scope, also when the test fails.
pub struct PgSchema {
    pub name: String,
    /// The test database's URL with `search_path` set to this schema.
    pub url: String,
}

impl PgSchema {
    pub fn new() -> PgSchema {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).unwrap();
        let suffix: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let name = format!("kura_test_{}_{suffix}", std::process::id());
        admin()
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        PgSchema {
            url: url_in_schema(&base_url(), &name),
            name,
        }
    }

    /// A connection of the test's own, in this schema.
    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).unwrap()
    }
}

impl Default for PgSchema {
    fn default() -> Self {
        PgSchema::new()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&base_url(), NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// `on_both!(make; f, g)` runs each `fn f(Fixture)` as two tests, `f::sqlite` and
/// `f::postgres`, with the fixture `make(Kind::Sqlite)` / `make(Kind::Postgres)`;
/// `on_both!(&make; f, g)` passes `&Fixture` instead.
#[macro_export]
macro_rules! on_both {
    (& $make:path; $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(&$make($crate::testing::Kind::Sqlite));
                }
                #[test]
                fn postgres() {
                    super::$name(&$make($crate::testing::Kind::Postgres));
                }
            }
        )*
    };
    ($make:path; $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name($make($crate::testing::Kind::Sqlite));
                }
                #[test]
                fn postgres() {
                    super::$name($make($crate::testing::Kind::Postgres));
                }
            }
        )*
    };
}
