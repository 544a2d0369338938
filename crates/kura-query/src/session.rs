//! The worker's DuckDB connection: security settings fixed at open, the snapshot attached
//! read-only under an unguessable alias, views exposing only the granted columns, and
//! `lock_configuration` last so researcher SQL cannot change any of it.

use std::collections::{BTreeMap, BTreeSet};

use duckdb::Connection;

use crate::duck::Database;

use crate::protocol::WorkerSetup;

/// An open, locked connection ready for one researcher query.
pub struct Session {
    pub conn: Connection,
    /// Declared after `conn` so the connection closes before the database.
    pub db: Database,
    /// Lower-case names the researcher may use in FROM (the gate's view of the grant).
    pub granted: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}")]
pub struct SessionError {
    pub step: &'static str,
    pub message: String,
}

fn at(step: &'static str) -> impl Fn(duckdb::Error) -> SessionError {
    move |e| SessionError {
        step,
        message: e.to_string(),
    }
}

/// Quotes an identifier for DuckDB (`"` doubled).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for DuckDB (`'` doubled).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Session {
    pub fn open(setup: &WorkerSetup, alias: &str) -> Result<Session, SessionError> {
        let limits = &setup.limits;
        // Limits apply in every mode; they are not a switchable layer.
        let mut settings = vec![
            ("memory_limit", format!("{}MiB", limits.memory_limit_mib)),
            ("threads", limits.threads.max(1).to_string()),
            (
                "temp_directory",
                setup.temp_dir.to_string_lossy().into_owned(),
            ),
            (
                "max_temp_directory_size",
                format!("{}MiB", limits.max_temp_mib),
            ),
        ];
        if setup.layers.settings {
            for key in [
                "autoinstall_known_extensions",
                "autoload_known_extensions",
                "allow_community_extensions",
                "allow_unsigned_extensions",
            ] {
                settings.push((key, "false".into()));
            }
        }
        // DuckDB sizes itself at open from /proc/self/cgroup and /sys/fs/cgroup, which the
        // confined worker cannot read (DuckDB 2.0 then dereferences a null file handle and
        // aborts). It skips those files when SLURM's variables are set, so the worker states its
        // limits there instead of widening Landlock to host information. The worker's
        // environment is otherwise empty and it is single-threaded here.
        std::env::set_var("SLURM_CPUS_ON_NODE", limits.threads.max(1).to_string());
        std::env::set_var("SLURM_MEM_PER_NODE", limits.memory_limit_mib.to_string());
        let (db, conn) = Database::open_in_memory(&settings).map_err(|message| SessionError {
            step: "opening DuckDB",
            message,
        })?;
        conn.execute_batch(&format!(
            "ATTACH {} AS {} (READ_ONLY)",
            literal(&setup.snapshot.to_string_lossy()),
            ident(alias)
        ))
        .map_err(at("attaching the snapshot read-only"))?;

        let columns = snapshot_columns(&conn, alias)?;
        let mut granted = BTreeSet::new();
        for (table, wanted) in &setup.tables {
            let Some(have) = columns.get(table) else {
                return Err(SessionError {
                    step: "building views",
                    message: format!("granted table {table:?} does not exist in the snapshot"),
                });
            };
            granted.insert(table.to_lowercase());
            if !setup.layers.views {
                continue;
            }
            let chosen: Vec<&String> = if wanted.iter().any(|c| c == "*") {
                have.iter().collect()
            } else {
                for c in wanted {
                    if !have.contains(c) {
                        return Err(SessionError {
                            step: "building views",
                            message: format!(
                                "granted column {c:?} does not exist in table {table:?}"
                            ),
                        });
                    }
                }
                wanted.iter().collect()
            };
            let list: Vec<String> = chosen.iter().map(|c| ident(c)).collect();
            conn.execute_batch(&format!(
                "CREATE VIEW main.{} AS SELECT {} FROM {}.main.{}",
                ident(table),
                list.join(", "),
                ident(alias),
                ident(table)
            ))
            .map_err(at("building views"))?;
        }
        if !setup.layers.views {
            // Without views the query sees the snapshot's own tables, every column.
            conn.execute_batch(&format!("USE {}", ident(alias)))
                .map_err(at("selecting the snapshot"))?;
        }
        if setup.layers.settings {
            // ATTACH needs external access, so it is switched off after, and the lock comes last.
            conn.execute_batch(
                "SET enable_external_access = false; SET lock_configuration = true;",
            )
            .map_err(at("locking the configuration"))?;
        }
        Ok(Session { conn, db, granted })
    }

    /// Runs a few trusted statements so the researcher's query does not pay DuckDB's
    /// first-use costs (binding the views, loading the parser's JSON serialiser, first reads of
    /// each table's metadata). Only useful when nobody waits: a spare worker does it before it
    /// reports ready. Errors are ignored; the real query reports its own.
    pub fn warm_up(&self) {
        let _ = self
            .conn
            .query_row("SELECT json_serialize_sql('SELECT 1')", [], |r| {
                r.get::<_, String>(0)
            });
        for table in &self.granted {
            if let Ok(mut stmt) = self
                .conn
                .prepare(&format!("SELECT * FROM {} LIMIT 1", ident(table)))
            {
                let _ = stmt.query_arrow([]).map(|rows| rows.count());
            }
        }
    }
}

/// Table -> columns (in table order) of the attached snapshot.
fn snapshot_columns(
    conn: &Connection,
    alias: &str,
) -> Result<BTreeMap<String, Vec<String>>, SessionError> {
    let mut stmt = conn
        .prepare(
            "SELECT table_name, column_name FROM duckdb_columns() \
             WHERE database_name = ? AND schema_name = 'main' ORDER BY table_name, column_index",
        )
        .map_err(at("listing snapshot columns"))?;
    let rows = stmt
        .query_map([alias], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(at("listing snapshot columns"))?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        let (t, c) = row.map_err(at("listing snapshot columns"))?;
        out.entry(t).or_default().push(c);
    }
    Ok(out)
}
