//! One store per test on either database: a temporary state directory for SQLite, a schema of
//! its own (dropped at the end) for PostgreSQL, so tests run in parallel and again. The
//! PostgreSQL side (`KURA_TEST_POSTGRES_URL`, the schema, `on_both!`) is `kura_sql::testing`.

#![allow(dead_code)]

use kura_store::Store;

#[allow(unused_imports)] // each test binary uses its own part
pub use kura_sql::testing::{base_url, url_in_schema, Kind, PgSchema as Schema};

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
        kura_sql::on_both!(&crate::common::Fixture::new; $($name),*);
    };
}
