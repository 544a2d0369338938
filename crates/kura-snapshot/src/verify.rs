//! `verify`: does a snapshot file still match its manifest? The SHA-256 of the whole file decides;
//! when it matches, the schema and row counts inside the file are compared with the manifest too,
//! so a manifest edited to describe other content is caught as well.

use std::collections::BTreeMap;
use std::path::Path;

use duckdb::{AccessMode, Config};

use crate::error::{Result, SnapshotError};
use crate::manifest::{manifest_path, sha256_bytes, sha256_file, Manifest};
use crate::sql::ident;

/// The outcome of a verification: empty `problems` means the snapshot matches.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub manifest: Manifest,
    pub sha256: String,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn verify(snapshot: &Path) -> Result<VerifyReport> {
    let manifest = Manifest::read(&manifest_path(snapshot))?;
    let (sha256, bytes) = sha256_file(snapshot)?;
    let mut problems = Vec::new();
    if bytes != manifest.database.bytes {
        problems.push(format!(
            "size differs: manifest says {} bytes, file has {bytes}",
            manifest.database.bytes
        ));
    }
    if sha256 != manifest.database.sha256 {
        problems.push(format!(
            "SHA-256 differs: manifest {}, file {sha256}",
            manifest.database.sha256
        ));
    }
    if sha256_bytes(manifest.policy.content.as_bytes()) != manifest.policy.sha256 {
        problems.push("the policy text in the manifest does not match its SHA-256".into());
    }
    // Only a file with the recorded hash is opened: a modified file is not fed to DuckDB.
    if problems.is_empty() {
        compare_contents(snapshot, &manifest, &mut problems)?;
    }
    Ok(VerifyReport {
        manifest,
        sha256,
        problems,
    })
}

fn compare_contents(snapshot: &Path, m: &Manifest, problems: &mut Vec<String>) -> Result<()> {
    let config = Config::default()
        .access_mode(AccessMode::ReadOnly)
        .map_err(SnapshotError::db("read-only config"))?;
    let conn = duckdb::Connection::open_with_flags(snapshot, config)
        .map_err(SnapshotError::db(format!("opening {}", snapshot.display())))?;
    let ctx = "reading the schema";
    let mut stmt = conn
        .prepare(
            "SELECT table_name, column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'main' ORDER BY table_name, ordinal_position",
        )
        .map_err(SnapshotError::db(ctx))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .map_err(SnapshotError::db(ctx))?;
    let mut actual: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (t, c, ty) in rows {
        actual.entry(t).or_default().push((c, ty));
    }
    for t in &m.tables {
        let want: Vec<(String, String)> = t
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.sql_type.clone()))
            .collect();
        match actual.remove(&t.name) {
            None => problems.push(format!(
                "table {} is in the manifest but not the file",
                t.name
            )),
            Some(have) if have != want => problems.push(format!(
                "table {}: columns differ: manifest {want:?}, file {have:?}",
                t.name
            )),
            Some(_) => {
                let n: i64 = conn
                    .query_row(
                        &format!("SELECT count(*) FROM {}", ident(&t.name)),
                        [],
                        |r| r.get(0),
                    )
                    .map_err(SnapshotError::db("counting rows"))?;
                if n as u64 != t.rows {
                    problems.push(format!(
                        "table {}: manifest says {} rows, file has {n}",
                        t.name, t.rows
                    ));
                }
            }
        }
    }
    for t in actual.keys() {
        problems.push(format!("table {t} is in the file but not the manifest"));
    }
    Ok(())
}
