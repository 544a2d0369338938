//! The SQL the build sends to DuckDB. Identifiers come from the policy, so they are always
//! quoted; comment texts are escaped literals.

use crate::error::{Result, SnapshotError};
use crate::manifest::KReport;
use crate::plan::TablePlan;

pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub fn create_table(conn: &duckdb::Connection, plan: &TablePlan) -> Result<()> {
    let cols: Vec<String> = plan
        .outputs
        .iter()
        .map(|o| format!("{} {}", ident(&o.name), o.dtype.sql()))
        .collect();
    let sql = format!("CREATE TABLE {} ({})", ident(&plan.table), cols.join(", "));
    conn.execute_batch(&sql)
        .map_err(SnapshotError::db(format!("creating table {}", plan.table)))
}

/// Descriptions travel with the file: `COMMENT ON` holds "English / 日本語".
pub fn comment(
    conn: &duckdb::Connection,
    table: &str,
    column: Option<&str>,
    en: &str,
    ja: &str,
) -> Result<()> {
    let target = match column {
        Some(c) => format!("COLUMN {}.{}", ident(table), ident(c)),
        None => format!("TABLE {}", ident(table)),
    };
    let sql = format!(
        "COMMENT ON {target} IS {}",
        literal(&format!("{en} / {ja}"))
    );
    conn.execute_batch(&sql)
        .map_err(SnapshotError::db(format!("comment on {table}")))
}

pub fn count_rows(conn: &duckdb::Connection, table: &str) -> Result<u64> {
    let n: i64 = conn
        .query_row(&format!("SELECT count(*) FROM {}", ident(table)), [], |r| {
            r.get(0)
        })
        .map_err(SnapshotError::db(format!("counting {table}")))?;
    Ok(n as u64)
}

pub fn k_anonymity(
    conn: &duckdb::Connection,
    table: &str,
    qis: &[String],
    k: u64,
) -> Result<KReport> {
    let cols: Vec<String> = qis.iter().map(|q| ident(q)).collect();
    let classes = format!(
        "SELECT count(*) AS n FROM {} GROUP BY {}",
        ident(table),
        cols.join(", ")
    );
    let ctx = format!("k-anonymity of {table}");
    let (n_classes, rows, below, rows_below): (i64, i64, i64, i64) = conn
        .query_row(
            &format!(
                "WITH c AS ({classes}) SELECT count(*), coalesce(sum(n), 0)::BIGINT, \
                 count(*) FILTER (WHERE n < {k}), \
                 coalesce(sum(n) FILTER (WHERE n < {k}), 0)::BIGINT FROM c"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .map_err(SnapshotError::db(ctx.clone()))?;
    let mut stmt = conn
        .prepare(&format!(
            "WITH c AS ({classes}) SELECT n FROM c ORDER BY n LIMIT 10"
        ))
        .map_err(SnapshotError::db(ctx.clone()))?;
    let smallest = stmt
        .query_map([], |r| r.get::<_, i64>(0))
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<i64>>>())
        .map_err(SnapshotError::db(ctx))?;
    Ok(KReport {
        table: table.to_string(),
        quasi_identifiers: qis.to_vec(),
        k,
        rows: rows as u64,
        classes: n_classes as u64,
        smallest_class_sizes: smallest.into_iter().map(|n| n as u64).collect(),
        classes_below_k: below as u64,
        rows_in_classes_below_k: rows_below as u64,
    })
}
