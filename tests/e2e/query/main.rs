//! End-to-end tests of the sandboxed query engine (issue 4): the attack suite, each defence
//! layer on its own, limits, crashes, auditing and the `kura query` command. Workers are the
//! real `kura sandbox-worker` binary.
// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attacks;
mod cli;
mod explorer_index;
mod layers;
mod limits;
mod pool;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use kura_audit::{Appended, AuditError, AuditSink, Event};
use kura_query::{
    EngineConfig, Layers, Limits, ProjectScope, QueryEngine, QueryError, QueryRequest,
};

/// One fixture snapshot (300 patients) shared by every test in this binary.
pub fn snapshot() -> &'static Path {
    static SNAP: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SNAP
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("snap-test.duckdb");
            kura_query::fixture::create(&path, 300).unwrap();
            (dir, path)
        })
        .1
}

/// The test project's grant: some columns of nanbyo_forms, and prefectures. shoman_forms,
/// institutions, nanbyo_treatments and nanbyo_forms.birth_ym/sex belong to other projects.
pub fn scope() -> ProjectScope {
    ProjectScope {
        name: "p-test".into(),
        snapshot: Some("snap-test".into()),
        tables: [
            (
                "nanbyo_forms".to_string(),
                [
                    "research_id",
                    "form_year",
                    "disease_no",
                    "pref_code",
                    "severity",
                ]
                .map(String::from)
                .to_vec(),
            ),
            ("prefectures".to_string(), vec!["*".to_string()]),
        ]
        .into_iter()
        .collect(),
        expires: None,
    }
}

pub fn test_limits() -> Limits {
    Limits {
        timeout_ms: 10_000,
        max_rows: 100_000,
        max_bytes: 16 * 1024 * 1024,
        memory_limit_mib: 256,
        threads: 2,
        max_temp_mib: 64,
    }
}

pub fn engine(layers: Layers) -> QueryEngine {
    let mut config = EngineConfig::new(kura_e2e::kura_bin());
    config.layers = layers;
    config.limits = test_limits();
    QueryEngine::new(config).unwrap()
}

/// Records events; can be told to fail.
#[derive(Default, Clone)]
pub struct MemoryAudit {
    pub events: Arc<Mutex<Vec<Event>>>,
    pub fail: bool,
}

impl AuditSink for MemoryAudit {
    fn append(&self, event: Event) -> Result<Appended, AuditError> {
        if self.fail {
            return Err(AuditError::Unavailable("test: disk full".into()));
        }
        let mut ev = self.events.lock().unwrap();
        ev.push(event);
        Ok(Appended {
            index: ev.len() as u64 - 1,
            leaf_hash: [0; 32],
        })
    }
}

pub fn run_with(
    engine: &QueryEngine,
    sql: &str,
    limits: Option<Limits>,
) -> Result<kura_query::QueryResult, QueryError> {
    let scope = scope();
    engine.run(
        &QueryRequest {
            sql,
            project: &scope,
            user: "alice",
            session: Some("s1"),
            snapshot: snapshot(),
            snapshot_sha256: None,
            id: None,
            limits,
        },
        &MemoryAudit::default(),
    )
}

/// First column of the first row, as a string (for small checks).
pub fn first_cell(r: &kura_query::QueryResult) -> String {
    let b = &r.batches[0];
    kura_query::arrow::util::display::array_value_to_string(b.column(0), 0).unwrap()
}

pub fn column_names(r: &kura_query::QueryResult) -> Vec<String> {
    r.outcome
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// All rows of the first column, as strings.
pub fn first_column(r: &kura_query::QueryResult) -> Vec<String> {
    let mut out = Vec::new();
    for b in &r.batches {
        for i in 0..b.num_rows() {
            out.push(
                kura_query::arrow::util::display::array_value_to_string(b.column(0), i).unwrap(),
            );
        }
    }
    out
}
