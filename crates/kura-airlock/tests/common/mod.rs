//! Test fixtures: a state directory, staged Arrow outputs written as the server writes them,
//! and reviews driven through the airlock's API, on either database: the state directory's
//! SQLite file, or a PostgreSQL schema of the test's own (dropped at the end), so that tests run
//! in parallel and again.
//!
//! The PostgreSQL side (`KURA_TEST_POSTGRES_URL`, the schema, `on_both!`) is
//! `kura_sql::testing`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use chrono::{DateTime, Duration, TimeZone, Utc};
use kura_airlock::{
    Airlock, AirlockConfig, AirlockDatabase, Context, Decision, PersistentLedger, Review,
    StagedOutput,
};
use sha2::{Digest, Sha256};

pub const AUTHOR: &str = "researcher";
pub const SNAPSHOT: &str = "5f1d3c0e9a7b8c6d4e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d";

pub enum Col {
    Str(Vec<&'static str>),
    Int(Vec<i64>),
    Float(Vec<f64>),
}

pub fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap() + Duration::minutes(minutes)
}

/// Writes `<state>/outputs/<id>.arrow` (Arrow IPC file, as the server does) and returns its
/// SHA-256.
pub fn write_output(state: &Path, id: &str, columns: &[(&str, Col)]) -> String {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, col)| {
            let dt = match col {
                Col::Str(_) => DataType::Utf8,
                Col::Int(_) => DataType::Int64,
                Col::Float(_) => DataType::Float64,
            };
            Field::new(*name, dt, true)
        })
        .collect();
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|(_, col)| -> ArrayRef {
            match col {
                Col::Str(v) => Arc::new(StringArray::from(v.clone())),
                Col::Int(v) => Arc::new(Int64Array::from(v.clone())),
                Col::Float(v) => Arc::new(Float64Array::from(v.clone())),
            }
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let dir = state.join("outputs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{id}.arrow"));
    let mut buf = Vec::new();
    {
        let mut w = arrow_ipc::writer::FileWriter::try_new(&mut buf, &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    std::fs::write(&path, &buf).unwrap();
    hex::encode(Sha256::digest(&buf))
}

/// A table that passes japan-rare-disease: counts >= 10 from >= 3 institutions, with totals.
pub fn passing_table() -> Vec<(&'static str, Col)> {
    vec![
        ("dim:prefecture", Col::Str(vec!["Tokyo", "Osaka", "TOTAL"])),
        ("count:patients", Col::Int(vec![40, 30, 70])),
        ("institutions:n_inst", Col::Int(vec![5, 4, 9])),
    ]
}

pub fn staged(id: &str, sha256: &str, sql: &str) -> StagedOutput {
    StagedOutput {
        id: id.to_string(),
        project: "demo-transition".to_string(),
        author: AUTHOR.to_string(),
        title: format!("MG patients ({id})"),
        sha256: sha256.to_string(),
        query_id: format!("q-{id}"),
        sql: sql.to_string(),
        snapshot_sha256: SNAPSHOT.to_string(),
        staged_at: t(0),
    }
}

pub fn context() -> Context {
    Context {
        description: "Myasthenia gravis patients by prefecture, with the national total".into(),
        denominators: "All consenting MG patients with a FY2024 form in the snapshot".into(),
        method: "count(*) and count(DISTINCT institution_key) grouped by prefecture, ROLLUP".into(),
        population_filters: vec!["disease_no = 11".into()],
    }
}

#[allow(unused_imports)] // each test binary uses its own part
pub use kura_sql::testing::{admin, base_url, url_in_schema, Kind, PgSchema, URL_ENV};

/// One test's state directory and database, and an airlock on them. More airlocks (each with
/// its own connections, as separate nodes or processes would have) open with `open_airlock`.
pub struct Fixture {
    // Dropped first: its connections close before the schema is dropped.
    pub airlock: Airlock,
    pub kind: Kind,
    pub schema: Option<PgSchema>,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(kind: Kind) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let schema = (kind == Kind::Postgres).then(PgSchema::new);
        let airlock = Airlock::open(config_for(dir.path(), schema.as_ref())).unwrap();
        Fixture {
            airlock,
            kind,
            schema,
            dir,
        }
    }

    pub fn state(&self) -> &Path {
        self.dir.path()
    }

    /// The default configuration on this fixture's state directory and database.
    pub fn config(&self) -> AirlockConfig {
        config_for(self.dir.path(), self.schema.as_ref())
    }

    pub fn database(&self) -> AirlockDatabase {
        self.config().database
    }

    /// Another airlock on the same state directory and database (a restart, or another node).
    pub fn open_airlock(&self) -> Airlock {
        Airlock::open(self.config()).unwrap()
    }

    pub fn reopen(&mut self) {
        self.airlock = self.open_airlock();
    }

    /// The persistent ledger, opened on its own.
    pub fn ledger(&self) -> PersistentLedger {
        PersistentLedger::open_at(self.state(), &self.database()).unwrap()
    }

    /// Stages `columns` as output `id`, opens its review, saves the context and submits.
    pub fn submitted(&self, id: &str, columns: &[(&str, Col)], filters: &[&str]) -> Review {
        let sha = write_output(self.state(), id, columns);
        self.airlock
            .open_review(staged(id, &sha, "SELECT ..."), AUTHOR, t(1))
            .unwrap();
        let mut ctx = context();
        ctx.population_filters = filters.iter().map(|s| s.to_string()).collect();
        self.airlock.set_context(id, AUTHOR, ctx, t(2)).unwrap();
        self.airlock.submit(id, AUTHOR, t(3)).unwrap()
    }

    /// Two checkers approve.
    pub fn approved(&self, id: &str, columns: &[(&str, Col)], filters: &[&str]) -> Review {
        self.submitted(id, columns, filters);
        self.airlock
            .vote(id, "checker1", Decision::Approve, "", t(10))
            .unwrap();
        let (review, _) = self
            .airlock
            .vote(id, "checker2", Decision::Approve, "fine", t(11))
            .unwrap();
        review
    }
}

fn config_for(dir: &Path, schema: Option<&PgSchema>) -> AirlockConfig {
    AirlockConfig::new(dir).with_database_url(schema.map(|s| s.url.as_str()))
}

/// `on_both!(f, g)` runs each `fn f(Fixture)` as two tests, `f::sqlite` and `f::postgres`.
#[allow(unused_macros)]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        kura_sql::on_both!(crate::common::Fixture::new; $($name),*);
    };
}
