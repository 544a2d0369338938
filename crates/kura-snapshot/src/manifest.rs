//! The manifest next to every snapshot (`FILE.duckdb.manifest.json`): what the file is (its
//! SHA-256), what it contains (schema with descriptions, row counts), how it was made (policy and
//! its hash, source files and their hashes, release, build time, Kura version) and the
//! k-anonymity report. `verify` checks a snapshot against it.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, SnapshotError};
use crate::keys::hex;

/// Version of the manifest layout; readers refuse other versions.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub kura_version: String,
    pub release_id: String,
    /// UTC, RFC 3339.
    pub built_at: String,
    pub database: DatabaseInfo,
    pub policy: PolicyInfo,
    pub linkage_enabled: bool,
    pub sources: Vec<SourceInfo>,
    pub tables: Vec<TableInfo>,
    pub k_anonymity: Vec<KReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatabaseInfo {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyInfo {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceInfo {
    pub table: String,
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    pub rows: u64,
    pub rows_kept: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableInfo {
    pub name: String,
    pub en: String,
    pub ja: String,
    pub rows: u64,
    pub columns: Vec<ColumnInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub sql_type: String,
    pub en: String,
    pub ja: String,
}

/// k-anonymity of one table over its policy's quasi-identifiers (rows, not persons).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KReport {
    pub table: String,
    pub quasi_identifiers: Vec<String>,
    pub k: u64,
    pub rows: u64,
    pub classes: u64,
    /// The smallest equivalence class sizes, ascending (up to 10).
    pub smallest_class_sizes: Vec<u64>,
    pub classes_below_k: u64,
    pub rows_in_classes_below_k: u64,
}

/// The manifest path of a snapshot: `FILE.duckdb` -> `FILE.duckdb.manifest.json`.
pub fn manifest_path(snapshot: &Path) -> PathBuf {
    let mut s = snapshot.as_os_str().to_owned();
    s.push(".manifest.json");
    PathBuf::from(s)
}

/// SHA-256 and length of a file.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).map_err(|e| SnapshotError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| SnapshotError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((hex(&h.finalize()), n_total))
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read(path).map_err(|e| SnapshotError::io(path, e))?;
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| SnapshotError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if m.format_version != MANIFEST_FORMAT {
            return Err(SnapshotError::Manifest {
                path: path.to_path_buf(),
                message: format!(
                    "format_version {} is not {MANIFEST_FORMAT}",
                    m.format_version
                ),
            });
        }
        Ok(m)
    }

    /// Writes and fsyncs the manifest at `path` (the caller renames it into place).
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| SnapshotError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut f = File::create(path).map_err(|e| SnapshotError::io(path, e))?;
        f.write_all(&json)
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(|e| SnapshotError::io(path, e))
    }
}

/// Current UTC time as RFC 3339 and as a compact id (`r20261103T120102Z`).
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let d = crate::normalise::Date::from_epoch_days((secs / 86_400) as i64);
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    (
        format!("{}T{h:02}:{m:02}:{s:02}Z", d.iso()),
        format!(
            "r{:04}{:02}{:02}T{h:02}{m:02}{s:02}Z",
            d.year, d.month, d.day
        ),
    )
}
