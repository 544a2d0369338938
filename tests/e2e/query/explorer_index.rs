//! The explorer's in-memory index against DuckDB itself: on the pseudonymised test snapshot (the
//! real pipeline, 3,000 patients), the index read with its export statement through the real
//! sandbox gives, for random requests, exactly the rows of the three views' SQL run through the
//! same sandbox; and its catalog equals the catalog statements' answer. This ties the index (and
//! the server's Arrow reader, `kura_server::explorer::push_batch`) to the SQL that defines the
//! views.

use std::collections::BTreeMap;

use kura_explorer::query::REQUIRED_COLUMNS;
use kura_explorer::{Catalog, ExplorerIndex, Feasibility, IndexBuilder, RawView, RecordHash};
use kura_query::QueryRequest;
use kura_query::{CancelHandle, EngineConfig, Limits, ProjectScope, QueryEngine};
use serde_json::{json, Value};

use crate::MemoryAudit;

fn scope() -> ProjectScope {
    ProjectScope {
        name: "p-explorer".into(),
        snapshot: Some("demo".into()),
        tables: REQUIRED_COLUMNS
            .iter()
            .map(|(t, cols)| (t.to_string(), cols.iter().map(|c| c.to_string()).collect()))
            .collect::<BTreeMap<_, _>>(),
        expires: None,
    }
}

fn engine() -> QueryEngine {
    let mut config = EngineConfig::new(kura_e2e::kura_bin());
    config.limits = Limits {
        timeout_ms: 120_000,
        max_rows: u64::MAX,
        max_bytes: u64::MAX,
        memory_limit_mib: 1024,
        threads: 2,
        max_temp_mib: 256,
    };
    QueryEngine::new(config).unwrap()
}

/// Runs `sql` on the test snapshot, handing each batch to `each`.
fn stream(
    engine: &QueryEngine,
    sql: &str,
    each: &mut dyn FnMut(&kura_query::arrow::record_batch::RecordBatch),
) {
    let scope = scope();
    let snapshot = kura_e2e::server::snapshot_dir().join("demo.duckdb");
    engine
        .run_streaming(
            &QueryRequest {
                sql,
                project: &scope,
                user: "alice",
                session: None,
                snapshot: &snapshot,
                snapshot_sha256: None,
                id: None,
                limits: None,
            },
            &MemoryAudit::default(),
            &CancelHandle::default(),
            each,
        )
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
}

fn csv(engine: &QueryEngine, sql: &str) -> String {
    let mut out = Vec::new();
    {
        let mut w = kura_query::export::csv_writer(&mut out);
        stream(engine, sql, &mut |b| w.write(b).unwrap());
    }
    String::from_utf8(out).unwrap()
}

fn read_index(engine: &QueryEngine) -> ExplorerIndex {
    let mut builder = IndexBuilder::new();
    let sql = kura_explorer::index::export_sql(RecordHash::default());
    stream(engine, &sql, &mut |b| {
        kura_server::explorer::push_batch(&mut builder, b).unwrap()
    });
    builder.finish()
}

/// splitmix64, for reproducible random requests.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }

    fn some(&mut self, pool: &[Value]) -> Option<Value> {
        (self.below(2) == 0).then(|| {
            let n = 1 + self.below(3);
            Value::Array(
                (0..n)
                    .map(|_| pool[self.below(pool.len() as u64) as usize].clone())
                    .collect(),
            )
        })
    }
}

#[test]
fn the_index_gives_the_rows_of_the_views_sql_on_a_real_snapshot() {
    let engine = engine();
    let index = read_index(&engine);
    assert!(index.patients() > 1000, "{} patients", index.patients());

    // The catalog equals what the catalog statements answer.
    let lines = |sql: &str| -> Vec<String> {
        csv(&engine, sql)
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    let treatments = lines(Catalog::TREATMENTS_SQL);
    let years: Vec<u16> = lines(Catalog::FISCAL_YEARS_SQL)
        .iter()
        .map(|y| y.parse().unwrap())
        .collect();
    assert!(!treatments.is_empty() && !years.is_empty());
    let catalog = index.catalog().unwrap();
    assert_eq!(
        catalog,
        Catalog::new(treatments.clone(), years.clone()).unwrap()
    );

    // Diseases with patients, most first, so requests find people.
    let diseases: Vec<Value> = lines(
        "SELECT disease_no FROM nanbyo_forms GROUP BY disease_no \
         ORDER BY count(DISTINCT research_id) DESC, disease_no LIMIT 12",
    )
    .iter()
    .map(|d| json!(d.parse::<u64>().unwrap()))
    .collect();
    let pool = |items: &[&str]| items.iter().map(|s| json!(s)).collect::<Vec<_>>();
    let treatment_pool: Vec<Value> = treatments.iter().take(8).map(|t| json!(t)).collect();
    let year_pool: Vec<Value> = years.iter().map(|y| json!(y)).collect();
    let mut rng = Rng(2026);
    let mut requests = vec![json!({}), json!({"diseases": [diseases[0].clone()]})];
    for _ in 0..14 {
        let mut r = serde_json::Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                r.insert(k.into(), v);
            }
        };
        put("diseases", rng.some(&diseases));
        put("severity", rng.some(&pool(&["mild", "moderate", "severe"])));
        put("sex", rng.some(&pool(&["male", "female"])));
        put(
            "age_bands",
            rng.some(&pool(&["40-44", "60-64", "65-69", "70-74"])),
        );
        put("regions", rng.some(&pool(&["kanto", "kinki", "kyushu"])));
        put(
            "diagnosis_category",
            rng.some(&pool(&["definite", "probable"])),
        );
        put("treatments", rng.some(&treatment_pool));
        put("fiscal_years", rng.some(&year_pool));
        if rng.below(3) == 0 {
            r.insert("ventilator".into(), json!(rng.below(2) == 0));
        }
        requests.push(Value::Object(r));
    }
    let explorer = kura_explorer::Explorer::new(&[7u8; 32], catalog.clone()).unwrap();
    let mut nonempty = 0;
    for q in &requests {
        let f = serde_json::from_value::<Feasibility>(q.clone())
            .unwrap()
            .validate(&catalog)
            .unwrap();
        let got = index.raw_views(&f);
        for (view_query, from_index) in explorer.queries(&f).iter().zip(&got) {
            let mut from_sql =
                RawView::from_csv(view_query.view, &csv(&engine, &view_query.sql)).unwrap();
            from_sql.rows.sort_by(|a, b| a.dims.cmp(&b.dims));
            assert_eq!(from_index, &from_sql, "{q} {:?}", view_query.view);
        }
        if got[0].rows.iter().any(|r| r.patients > 0) {
            nonempty += 1;
        }
    }
    assert!(
        nonempty >= 8,
        "{nonempty} of {} requests found patients",
        requests.len()
    );
}
