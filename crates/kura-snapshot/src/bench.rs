//! The benchmark baseline: DuckDB loading the same CSVs with a plain
//! `CREATE TABLE t AS SELECT * FROM read_csv(...)` into a fresh file, no checks, no
//! pseudonymisation. `kura bench snapshot` times it next to `build`.

use std::path::Path;
use std::time::Instant;

use crate::error::{Result, SnapshotError};
use crate::sql::{ident, literal};

/// What the plain load did.
#[derive(Debug, Clone)]
pub struct PlainLoad {
    pub rows: u64,
    pub seconds: f64,
}

/// Loads every `*.csv` of `raw_dir` into a new DuckDB file `out` (one table per file), with
/// CHECKPOINT and fsync so that it does the same durable work as a build.
pub fn plain_load(raw_dir: &Path, out: &Path) -> Result<PlainLoad> {
    let mut files: Vec<_> = std::fs::read_dir(raw_dir)
        .map_err(|e| SnapshotError::io(raw_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let started = Instant::now();
    let conn = duckdb::Connection::open(out).map_err(SnapshotError::db("plain load: open"))?;
    let mut rows = 0u64;
    for f in &files {
        let table = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sql = format!(
            "CREATE TABLE {} AS SELECT * FROM read_csv({})",
            ident(&table),
            literal(&f.to_string_lossy())
        );
        conn.execute_batch(&sql)
            .map_err(SnapshotError::db(format!("plain load of {}", f.display())))?;
        rows += crate::sql::count_rows(&conn, &table)?;
    }
    conn.execute_batch("CHECKPOINT")
        .map_err(SnapshotError::db("plain load: checkpoint"))?;
    conn.close().map_err(|(_, e)| SnapshotError::DuckDb {
        context: "plain load: close".into(),
        source: e,
    })?;
    std::fs::File::open(out)
        .and_then(|f| f.sync_all())
        .map_err(|e| SnapshotError::io(out, e))?;
    Ok(PlainLoad {
        rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}
