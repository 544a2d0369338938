//! `--what-if`: the profile requests on DuckDB directly (one caller, one request at a time) in
//! variants of the explorer's SQL and of the snapshot's layout, to see what each would save
//! before anyone changes kura-explorer or the snapshot build:
//! - the record hash `ResearchIdPrefix` instead of SHA-256 of each research id;
//! - one statement for the three views, sharing `forms`, `patient_keys` and
//!   `patient_institutions` (built here from the three generated texts; its rows are checked
//!   equal to theirs);
//! - `nanbyo_forms` stored sorted by `disease_no` (a scratch copy), so that DuckDB's zone maps
//!   can skip the row groups of other diseases (rows checked equal too).

use std::path::Path;
use std::time::{Duration, Instant};

use kura_explorer::{Explorer, Filters, RecordHash, View, ViewQuery};
use kura_query::Limits;
use serde::Serialize;

use super::super::load::{duck_err, own_cpu_ms, stats};
use super::super::BenchError;
use super::direct;
use super::workload::Class;

/// One variant: per class (p50 ms, p99 ms, CPU ms per request of this process).
#[derive(Debug, Clone, Serialize)]
pub struct WhatIfRow {
    pub variant: &'static str,
    pub disease: Option<(f64, f64, f64)>,
    pub national: Option<(f64, f64, f64)>,
}

/// The identifiers of a view's own CTEs, renamed per view in the combined statement.
const VIEW_CTES: [&str; 3] = ["cells", "cell_counts", "cell_institutions"];

fn suffix(view: View) -> &'static str {
    match view {
        View::ByPrefecture => "p",
        View::BySeverity => "s",
        View::ByInstitutions => "i",
    }
}

/// Replaces whole identifiers (runs of `[A-Za-z0-9_]`) equal to one of `VIEW_CTES`.
fn rename(sql: &str, tag: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if VIEW_CTES.contains(&word.as_str()) {
            out.push_str(&format!("{word}_{tag}"));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in sql.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// One statement with the three views' rows, `(view, dim1, dim2, patients, institutions,
/// fingerprint)`, from the three generated texts: their common CTEs once, each view's own
/// CTEs renamed, each view's final SELECT as a CTE, then a UNION ALL.
pub(super) fn combined_sql(queries: &[ViewQuery]) -> Result<String, BenchError> {
    let bad = |why: &str| BenchError::Breakdown(format!("combining the views' SQL: {why}"));
    let marker = ", cells AS (";
    let mut common: Option<&str> = None;
    let mut own = Vec::new();
    for q in queries {
        let at = q.sql.find(marker).ok_or_else(|| bad("no cells CTE"))?;
        let (head, tail) = q.sql.split_at(at);
        match common {
            None => common = Some(head),
            Some(c) if c == head => {}
            Some(_) => return Err(bad("the views filter differently")),
        }
        // tail: ", cells AS (...), cell_counts AS (...), cell_institutions AS (...) SELECT ...
        // ORDER BY ..."
        let select = tail
            .rfind(") SELECT ")
            .ok_or_else(|| bad("no final SELECT"))?;
        let order = tail.rfind(" ORDER BY ").ok_or_else(|| bad("no ORDER BY"))?;
        let tag = suffix(q.view);
        let ctes = rename(&tail[..=select], tag);
        let body = rename(&tail[select + 2..order], tag);
        own.push(format!("{ctes}, out_{tag} AS ({body})"));
    }
    let common = common.ok_or_else(|| bad("no views"))?;
    let parts: Vec<String> = queries
        .iter()
        .map(|q| {
            let tag = suffix(q.view);
            let dims = q.view.dimensions();
            let dim = |i: usize| {
                dims.get(i)
                    .map_or("CAST(NULL AS VARCHAR)".to_string(), |d| {
                        format!("\"dim:{d}\"")
                    })
            };
            format!(
                "SELECT '{}' AS view, {} AS dim1, {} AS dim2, \"count:patients\" AS patients, \
                 \"institutions:n_institutions\" AS institutions, \"cellkey:patients\" AS \
                 fingerprint FROM out_{tag}",
                q.view.name(),
                dim(0),
                dim(1)
            )
        })
        .collect();
    Ok(format!(
        "{common}{} {}",
        own.concat(),
        parts.join(" UNION ALL ")
    ))
}

/// A row of any view: (view, dimensions, patients, institutions, fingerprint).
type AnyRow = (String, Vec<String>, i64, i64, Option<i64>);

fn rows_of_views(
    conn: &duckdb::Connection,
    queries: &[ViewQuery],
) -> Result<Vec<AnyRow>, BenchError> {
    let mut all = Vec::new();
    for q in queries {
        let raw = direct::raw_view(q.view, &direct::run_view(conn, &q.sql)?)?;
        for r in raw.rows {
            all.push((
                q.view.name().to_string(),
                r.dims,
                r.patients as i64,
                r.institutions as i64,
                r.fingerprint.map(|f| f as i64),
            ));
        }
    }
    all.sort();
    Ok(all)
}

fn rows_of_combined(conn: &duckdb::Connection, sql: &str) -> Result<Vec<AnyRow>, BenchError> {
    let mut stmt = conn.prepare(sql).map_err(duck_err)?;
    let mut all = stmt
        .query_map([], |r| {
            let mut dims = vec![r.get::<_, String>(1)?];
            if let Some(d) = r.get::<_, Option<String>>(2)? {
                dims.push(d);
            }
            Ok((
                r.get::<_, String>(0)?,
                dims,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })
        .map_err(duck_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(duck_err)?;
    all.sort();
    Ok(all)
}

/// A scratch database in `dir` with `nanbyo_forms` sorted by `disease_no` and
/// `nanbyo_treatments` as they are; the other tables are not needed by the explorer.
fn sorted_copy(
    dir: &Path,
    snapshot: &Path,
    limits: &Limits,
) -> Result<duckdb::Connection, BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Breakdown(format!("sorted copy: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    let file = dir.join("forms-by-disease.duckdb");
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(dir.join("forms-by-disease.duckdb.wal"));
    let config = duckdb::Config::default()
        .threads(i64::from(limits.threads))
        .and_then(|c| c.max_memory(&format!("{}MiB", limits.memory_limit_mib)))
        .map_err(|e| err(&e))?;
    let conn = duckdb::Connection::open_with_flags(&file, config).map_err(|e| err(&e))?;
    let snap = snapshot.display().to_string().replace('\'', "''");
    conn.execute_batch(&format!(
        "ATTACH '{snap}' AS snap (READ_ONLY); \
         CREATE TABLE nanbyo_forms AS SELECT * FROM snap.nanbyo_forms ORDER BY disease_no; \
         CREATE TABLE nanbyo_treatments AS SELECT * FROM snap.nanbyo_treatments; \
         DETACH snap; CHECKPOINT;"
    ))
    .map_err(|e| err(&e))?;
    Ok(conn)
}

/// Runs the variants over the requests (`filters` with their class) and checks that each
/// variant's rows equal the generated SQL's.
pub(super) fn what_if(
    explorer: &Explorer,
    conn: &duckdb::Connection,
    requests: &[(Class, Filters)],
    scratch: &Path,
    snapshot: &Path,
    limits: &Limits,
) -> Result<Vec<WhatIfRow>, BenchError> {
    let sha = explorer.clone().with_record_hash(RecordHash::Sha256);
    let prefix = explorer
        .clone()
        .with_record_hash(RecordHash::ResearchIdPrefix);
    let sorted = sorted_copy(scratch, snapshot, limits)?;
    // Each variant: its name, the database, one statement (else three), the prefix hash (else
    // SHA-256).
    let variants: [(&'static str, &duckdb::Connection, bool, bool); 6] = [
        ("3 statements as generated (SHA-256)", conn, false, false),
        (
            "3 statements, record hash research_id prefix",
            conn,
            false,
            true,
        ),
        ("1 statement for the 3 views (SHA-256)", conn, true, false),
        ("1 statement, research_id prefix", conn, true, true),
        (
            "3 statements on forms sorted by disease_no",
            &sorted,
            false,
            false,
        ),
        (
            "1 statement, prefix, forms sorted by disease_no",
            &sorted,
            true,
            true,
        ),
    ];
    // The rows each variant must give: the generated SQL's, per record hash (fingerprints
    // differ between hashes).
    let mut expected = Vec::with_capacity(requests.len());
    for (_, f) in requests {
        expected.push((
            rows_of_views(conn, &sha.queries(f))?,
            rows_of_views(conn, &prefix.queries(f))?,
        ));
    }
    // Request by request, every variant in turn, so that load from elsewhere on the machine
    // falls on all variants alike: (class, time, CPU ms of this process) per variant.
    let mut samples: Vec<Vec<(Class, Duration, f64)>> =
        variants.iter().map(|_| Vec::new()).collect();
    for ((class, f), (rows_sha, rows_prefix)) in requests.iter().zip(&expected) {
        for (v, (name, db, one, use_prefix)) in variants.iter().enumerate() {
            let ex = if *use_prefix { &prefix } else { &sha };
            let want = if *use_prefix { rows_prefix } else { rows_sha };
            let queries = ex.queries(f);
            let combined = if *one {
                Some(combined_sql(&queries)?)
            } else {
                None
            };
            let cpu = own_cpu_ms();
            let t = Instant::now();
            let got = match &combined {
                Some(sql) => rows_of_combined(db, sql)?,
                None => rows_of_views(db, &queries)?,
            };
            let took = t.elapsed();
            let cpu = match (cpu, own_cpu_ms()) {
                (Some(a), Some(b)) => b - a,
                _ => 0.0,
            };
            if &got != want {
                return Err(BenchError::Check(format!(
                    "what-if \"{name}\" gave other rows than the generated SQL"
                )));
            }
            samples[v].push((*class, took, cpu));
        }
    }
    let per_class = |v: &[(Class, Duration, f64)], class: Class| {
        let picked: Vec<&(Class, Duration, f64)> = v.iter().filter(|s| s.0 == class).collect();
        if picked.is_empty() {
            return None;
        }
        let cpu = picked.iter().map(|s| s.2).sum::<f64>() / picked.len() as f64;
        let s = stats(picked.iter().map(|s| s.1).collect(), Duration::ZERO, None);
        Some((s.p50_ms, s.p99_ms, cpu))
    };
    let rows = variants
        .iter()
        .zip(&samples)
        .map(|((name, ..), v)| WhatIfRow {
            variant: name,
            disease: per_class(v, Class::Disease),
            national: per_class(v, Class::National),
        })
        .collect();
    drop(sorted);
    let _ = std::fs::remove_dir_all(scratch);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use kura_explorer::{Catalog, Feasibility};

    use super::*;

    #[test]
    fn the_combined_statement_shares_the_common_ctes_once() {
        let catalog = Catalog::new(["cells therapy".to_string()], [2020, 2021]).unwrap();
        let explorer = Explorer::new(&[7u8; 32], catalog).unwrap();
        let form: Feasibility = serde_json::from_value(serde_json::json!({
            "diseases": [11], "treatments": ["cells therapy"]
        }))
        .unwrap();
        let filters = explorer.validate(&form).unwrap();
        let sql = combined_sql(&explorer.queries(&filters)).unwrap();
        assert_eq!(sql.matches("WITH forms AS (").count(), 1, "{sql}");
        assert_eq!(sql.matches("patient_keys AS (").count(), 1);
        // The treatment literal in the common part is left alone.
        assert!(sql.contains("'cells therapy'"));
        for tag in ["p", "s", "i"] {
            assert_eq!(
                sql.matches(&format!(" cells_{tag} AS (")).count(),
                1,
                "{sql}"
            );
            assert!(sql.contains(&format!("FROM out_{tag}")));
        }
        assert!(!sql.contains(" cells AS ("));
        assert!(!sql.contains("ORDER BY"));
        assert_eq!(sql.matches(" UNION ALL ").count(), 2);
        assert!(combined_sql(&[]).is_err());
    }
}
