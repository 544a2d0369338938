//! `build`: raw extract + policy + key -> snapshot file + manifest. Everything is written inside a
//! temporary directory next to the output and renamed into place only when complete, so a failed
//! build leaves the output path untouched and no temporary file behind.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Result, SnapshotError};
use crate::keys::MasterKey;
use crate::load::{load_table, open_raw};
use crate::manifest::{
    manifest_path, sha256_bytes, sha256_file, utc_now, ColumnInfo, DatabaseInfo, KReport, Manifest,
    PolicyInfo, SourceInfo, TableInfo, MANIFEST_FORMAT,
};
use crate::plan::{PlanContext, TablePlan};
use crate::policy::{raw_path, Policy};
use crate::transform::KeySet;
use crate::{codelists, sql, Progress};

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub raw_dir: PathBuf,
    pub policy: PathBuf,
    pub key_file: PathBuf,
    pub out: PathBuf,
    /// Names the release; the linkage key is re-keyed per release. Default: build time.
    pub release_id: Option<String>,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct BuildSummary {
    pub out: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    pub rows_read: u64,
    pub seconds: f64,
}

pub fn build(opts: &BuildOptions, progress: &mut dyn FnMut(Progress<'_>)) -> Result<BuildSummary> {
    let started = Instant::now();
    let key = MasterKey::from_file(&opts.key_file)?;
    let (policy, policy_text) = Policy::load(&opts.policy)?;
    let (built_at, default_release) = utc_now();
    let release_id = opts.release_id.clone().unwrap_or(default_release);
    check_release_id(&release_id)?;
    let out_manifest = manifest_path(&opts.out);
    for p in [&opts.out, &out_manifest] {
        if p.exists() {
            return Err(SnapshotError::Other(format!(
                "{} already exists: snapshots are immutable, choose a new output path",
                p.display()
            )));
        }
    }
    check_raw_files(&opts.raw_dir, &policy, &opts.policy)?;
    let diseases = codelists::disease_mask()?;

    let parent = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = opts.out.file_name().ok_or_else(|| {
        SnapshotError::Other(format!("{} is not a file path", opts.out.display()))
    })?;
    // Dropped (and deleted) on every error path.
    let tmp = tempfile::Builder::new()
        .prefix(".kura-snapshot-")
        .tempdir_in(&parent)
        .map_err(|e| SnapshotError::io(&parent, e))?;
    let tmp_db = tmp.path().join(file_name);
    let tmp_manifest = tmp.path().join("manifest.json");

    let conn = duckdb::Connection::open(&tmp_db).map_err(SnapshotError::db("creating the file"))?;
    codelists::create(&conn)?;
    let ctx = PlanContext {
        policy: &policy,
        policy_path: &opts.policy,
        key: &key,
        release_id: &release_id,
        set_hasher: crate::plan::SetHasher::new(),
    };
    let mut plans: Vec<TablePlan> = Vec::new();
    let mut sources = Vec::new();
    let mut kept_keys: HashMap<String, KeySet> = HashMap::new();
    let mut rows_read = 0;
    for table in policy.build_order() {
        let tp = &policy.tables[table];
        let path = raw_path(&opts.raw_dir, tp);
        progress(Progress::Table { table, file: &path });
        let t0 = Instant::now();
        let raw = open_raw(&path)?;
        let plan = ctx.plan(table, &path, &raw.header)?;
        sql::create_table(&conn, &plan)?;
        let parent_keys = tp.parent.as_ref().and_then(|p| kept_keys.get(&p.table));
        let loaded = load_table(&conn, &plan, raw, &diseases, parent_keys, progress)?;
        progress(Progress::TableDone {
            table,
            rows_read: loaded.rows_read,
            rows_kept: loaded.rows_kept,
            seconds: t0.elapsed().as_secs_f64(),
        });
        rows_read += loaded.rows_read;
        if plan.key_for_children.is_some() {
            kept_keys.insert(table.to_string(), loaded.keys);
        }
        sources.push(SourceInfo {
            table: table.to_string(),
            file: tp.file.clone(),
            bytes: loaded.source_bytes,
            sha256: loaded.source_sha256,
            rows: loaded.rows_read,
            rows_kept: loaded.rows_kept,
        });
        plans.push(plan);
    }
    drop(kept_keys);

    progress(Progress::Step("comments and k-anonymity report"));
    let mut tables = codelists::table_infos();
    for plan in &plans {
        let tp = &policy.tables[&plan.table];
        sql::comment(&conn, &plan.table, None, &tp.en, &tp.ja)?;
        let mut columns = Vec::new();
        for o in &plan.outputs {
            sql::comment(&conn, &plan.table, Some(&o.name), &o.en, &o.ja)?;
            columns.push(ColumnInfo {
                name: o.name.clone(),
                sql_type: o.dtype.sql().to_string(),
                en: o.en.clone(),
                ja: o.ja.clone(),
            });
        }
        tables.push(TableInfo {
            name: plan.table.clone(),
            en: tp.en.clone(),
            ja: tp.ja.clone(),
            rows: 0,
            columns,
        });
    }
    codelists::comment(&conn)?;
    for t in &mut tables {
        t.rows = sql::count_rows(&conn, &t.name)?;
    }
    let mut k_anonymity: Vec<KReport> = Vec::new();
    for plan in &plans {
        let tp = &policy.tables[&plan.table];
        if !tp.quasi_identifiers.is_empty() {
            let k = tp.k.unwrap_or(10);
            k_anonymity.push(sql::k_anonymity(
                &conn,
                &plan.table,
                &tp.quasi_identifiers,
                k,
            )?);
        }
    }

    progress(Progress::Step("checkpoint and fsync"));
    conn.execute_batch("CHECKPOINT")
        .map_err(SnapshotError::db("checkpoint"))?;
    conn.close().map_err(|(_, e)| SnapshotError::DuckDb {
        context: "closing".into(),
        source: e,
    })?;
    File::open(&tmp_db)
        .and_then(|f| f.sync_all())
        .map_err(|e| SnapshotError::io(&tmp_db, e))?;
    let wal = tmp
        .path()
        .join(format!("{}.wal", file_name.to_string_lossy()));
    if wal.exists() {
        return Err(SnapshotError::Other(
            "DuckDB left a write-ahead log after the checkpoint; the file would not be self-contained"
                .into(),
        ));
    }
    let (sha256, bytes) = sha256_file(&tmp_db)?;
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT,
        kura_version: env!("CARGO_PKG_VERSION").to_string(),
        release_id,
        built_at,
        database: DatabaseInfo {
            file: file_name.to_string_lossy().into_owned(),
            bytes,
            sha256,
        },
        policy: PolicyInfo {
            name: policy.name.clone(),
            file: opts.policy.display().to_string(),
            sha256: sha256_bytes(policy_text.as_bytes()),
            content: policy_text,
        },
        linkage_enabled: policy.linkage.enabled,
        sources,
        tables,
        k_anonymity,
    };
    manifest.write(&tmp_manifest)?;

    std::fs::rename(&tmp_db, &opts.out).map_err(|e| SnapshotError::io(&opts.out, e))?;
    if let Err(e) = std::fs::rename(&tmp_manifest, &out_manifest) {
        // Without its manifest the snapshot cannot be verified: take it back out.
        let _ = std::fs::remove_file(&opts.out);
        return Err(SnapshotError::io(&out_manifest, e));
    }
    File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| SnapshotError::io(&parent, e))?;
    Ok(BuildSummary {
        out: opts.out.clone(),
        manifest_path: out_manifest,
        manifest,
        rows_read,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn check_release_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::Other(format!(
            "release id {id:?}: use 1-64 characters of A-Z a-z 0-9 . _ -"
        )))
    }
}

/// Every CSV of the extract must be a table of the policy, and every table's file must exist.
fn check_raw_files(raw_dir: &Path, policy: &Policy, policy_path: &Path) -> Result<()> {
    let entries = std::fs::read_dir(raw_dir).map_err(|e| SnapshotError::io(raw_dir, e))?;
    let known: BTreeSet<&str> = policy.tables.values().map(|t| t.file.as_str()).collect();
    for entry in entries {
        let entry = entry.map_err(|e| SnapshotError::io(raw_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.to_ascii_lowercase().ends_with(".csv") && !known.contains(name.as_str()) {
            return Err(SnapshotError::Policy {
                path: policy_path.to_path_buf(),
                message: format!(
                    "raw file {} is not a table of the policy: every raw table needs a policy",
                    raw_dir.join(&name).display()
                ),
            });
        }
    }
    for t in policy.tables.values() {
        let p = raw_path(raw_dir, t);
        if !p.is_file() {
            return Err(SnapshotError::Other(format!(
                "{}: missing from the raw extract (named by policy {})",
                p.display(),
                policy_path.display()
            )));
        }
    }
    Ok(())
}
