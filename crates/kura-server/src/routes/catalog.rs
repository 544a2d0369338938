//! The data catalog (issue 7): every installed snapshot as its manifest describes it (tables,
//! columns with types and Japanese/English descriptions, row counts rounded to protect small
//! numbers, build date, hashes) and the public code lists (`codes`). Any signed-in user may read
//! it: it is metadata, not data, so no Cedar action guards it and nothing is audited
//! (docs/server.md, "Data catalog").
//!
//! The listing reads manifests only, never a `.duckdb` file: a snapshot's file is hashed against
//! its manifest where it is used (`snapshots.rs`), and hashing every snapshot on every visit of
//! the catalog would cost minutes. A missing, oversized or invalid manifest leaves that snapshot
//! out and logs a warning; it never fails the page.

pub(crate) mod codes;

use std::path::Path;

use axum::extract::State;
use axum::Json;
use kura_snapshot::{manifest_path, Manifest};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::session::Caller;
use crate::state::AppState;

/// The manifest layout this listing understands (`kura_snapshot::Manifest::read` accepts the
/// same one and nothing else).
const MANIFEST_FORMAT: u32 = 1;
/// Real manifests are tens of KiB (the policy text is the largest part); anything far larger
/// is not one, and reading it on every visit would let one bad file slow every page.
const MAX_MANIFEST_BYTES: u64 = 8 << 20;

/// `GET /api/v1/catalog`: every installed snapshot with a readable manifest, by name.
pub async fn snapshots(
    State(app): State<AppState>,
    _caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let dir = app.snapshots.dir().to_path_buf();
    let snapshots = tokio::task::spawn_blocking(move || list(&dir))
        .await
        .map_err(|e| ApiError::Internal(format!("catalog task: {e}")))?;
    Ok(Json(json!({ "snapshots": snapshots })))
}

/// `GET /api/v1/catalog/codes`: designated diseases, prefectures and regions.
pub async fn codes(_caller: Caller) -> Result<Json<Value>, ApiError> {
    codes::code_lists().map(Json)
}

/// A row count as the catalog shows it: `None` ("<10") below 10, otherwise rounded half up to
/// two significant figures (47 -> 47, 341 -> 340, 6,447 -> 6,400, 10,592 -> 11,000). The exact
/// count of a table never leaves the server through the catalog.
pub fn round_rows(n: u64) -> Option<u64> {
    if n < 10 {
        return None;
    }
    let mut unit = 1u64;
    while n / unit >= 100 {
        unit *= 10;
    }
    let (q, r) = (n / unit, n % unit);
    let q = if unit > 1 && r >= unit / 2 { q + 1 } else { q };
    Some(q.saturating_mul(unit))
}

/// The catalog entries of the snapshots in `dir`, sorted by name; unusable ones are logged
/// and skipped.
pub(crate) fn list(dir: &Path) -> Vec<Value> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("catalog: cannot list {}: {e}", dir.display());
            }
            return Vec::new();
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            let name = file.strip_suffix(".duckdb")?.to_string();
            // Metadata only (follows a symlink): the file's contents are never opened here.
            entry.path().is_file().then_some(name)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| match describe(dir, &name) {
            Ok(entry) => Some(entry),
            Err(why) => {
                tracing::warn!("catalog: snapshot {name:?} left out: {why}");
                None
            }
        })
        .collect()
}

fn describe(dir: &Path, name: &str) -> Result<Value, String> {
    // Only names a project can be granted (`Snapshots::get` refuses the others).
    if !kura_store::valid_id(name) {
        return Err("its file name is not a valid snapshot id ([a-z0-9][a-z0-9-]{0,63})".into());
    }
    let path = manifest_path(&dir.join(format!("{name}.duckdb")));
    let size = std::fs::metadata(&path)
        .map_err(|e| format!("manifest {}: {e}", path.display()))?
        .len();
    if size > MAX_MANIFEST_BYTES {
        return Err(format!(
            "manifest {} is {size} bytes, more than {MAX_MANIFEST_BYTES}",
            path.display()
        ));
    }
    // One read: the hash shown is the hash of exactly the bytes described.
    let bytes = std::fs::read(&path).map_err(|e| format!("manifest {}: {e}", path.display()))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| format!("manifest {} is not valid: {e}", path.display()))?;
    if manifest.format_version != MANIFEST_FORMAT {
        return Err(format!(
            "manifest {} has format_version {}, not {MANIFEST_FORMAT}",
            path.display(),
            manifest.format_version
        ));
    }
    Ok(entry(name, &manifest, &hex::encode(Sha256::digest(&bytes))))
}

fn entry(name: &str, m: &Manifest, manifest_sha256: &str) -> Value {
    let tables: Vec<Value> = m
        .tables
        .iter()
        .map(|t| {
            let rounded = round_rows(t.rows);
            let columns: Vec<Value> = t
                .columns
                .iter()
                .map(|c| json!({"name": c.name, "type": c.sql_type, "en": c.en, "ja": c.ja}))
                .collect();
            json!({
                "name": t.name, "en": t.en, "ja": t.ja,
                "rows_rounded": rounded,
                "rows_text": rounded.map_or_else(|| "<10".to_string(), |n| n.to_string()),
                "columns": columns,
            })
        })
        .collect();
    json!({
        "name": name,
        "built_at": m.built_at,
        "release_id": m.release_id,
        "kura_version": m.kura_version,
        "sha256": m.database.sha256,
        "bytes": m.database.bytes,
        "manifest_sha256": manifest_sha256,
        "policy": m.policy.name,
        "policy_sha256": m.policy.sha256,
        "tables": tables,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use kura_snapshot::{ColumnInfo, TableInfo};

    #[test]
    fn counts_under_ten_are_hidden_and_the_rest_keep_two_significant_figures() {
        for n in 0..10 {
            assert_eq!(round_rows(n), None, "{n}");
        }
        let cases = [
            (10, 10),
            (47, 47),
            (99, 99),
            (100, 100),
            (104, 100),
            (105, 110),
            (341, 340),
            (995, 1000),
            (1_197, 1_200),
            (6_447, 6_400),
            (10_592, 11_000),
            (1_234_567, 1_200_000),
        ];
        for (n, want) in cases {
            assert_eq!(round_rows(n), Some(want), "{n}");
        }
        assert!(round_rows(u64::MAX).is_some(), "no overflow");
    }

    fn manifest(rows: u64) -> Manifest {
        let text = serde_json::json!({
            "format_version": 1, "kura_version": "0.1.0", "release_id": "r1",
            "built_at": "2026-01-02T03:04:05Z",
            "database": {"file": "x.duckdb", "bytes": 1, "sha256": "ab"},
            "policy": {"name": "p", "file": "p.toml", "sha256": "cd", "content": "secret policy"},
            "linkage_enabled": false, "sources": [], "tables": [], "k_anonymity": []
        });
        let mut m: Manifest = serde_json::from_value(text).unwrap();
        m.tables.push(TableInfo {
            name: "t".into(),
            en: "A table".into(),
            ja: "表".into(),
            rows,
            columns: vec![ColumnInfo {
                name: "c".into(),
                sql_type: "INTEGER".into(),
                en: "A column".into(),
                ja: "列".into(),
            }],
        });
        m
    }

    #[test]
    fn the_listing_reads_manifests_and_skips_what_it_cannot_describe() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // The database files are not DuckDB at all: the listing must not care.
        for name in ["good", "tiny", "broken", "orphan", "Bad_Name", "future"] {
            std::fs::write(d.join(format!("{name}.duckdb")), b"not a database").unwrap();
        }
        manifest(6_447)
            .write(&d.join("good.duckdb.manifest.json"))
            .unwrap();
        manifest(3)
            .write(&d.join("tiny.duckdb.manifest.json"))
            .unwrap();
        manifest(50)
            .write(&d.join("Bad_Name.duckdb.manifest.json"))
            .unwrap();
        std::fs::write(d.join("broken.duckdb.manifest.json"), b"{not json").unwrap();
        let mut future = manifest(50);
        future.format_version = 2;
        future
            .write(&d.join("future.duckdb.manifest.json"))
            .unwrap();
        // A manifest without its database is not an installed snapshot.
        manifest(50)
            .write(&d.join("gone.duckdb.manifest.json"))
            .unwrap();

        let listed = list(d);
        let names: Vec<&str> = listed.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["good", "tiny"]);
        let good = &listed[0];
        let bytes = std::fs::read(d.join("good.duckdb.manifest.json")).unwrap();
        assert_eq!(
            good["manifest_sha256"],
            hex::encode(Sha256::digest(&bytes)),
            "the hash of the manifest file itself"
        );
        assert_eq!(good["sha256"], "ab");
        assert_eq!(good["tables"][0]["rows_rounded"], 6_400);
        assert_eq!(good["tables"][0]["rows_text"], "6400");
        assert_eq!(good["tables"][0]["columns"][0]["type"], "INTEGER");
        assert_eq!(listed[1]["tables"][0]["rows_rounded"], Value::Null);
        assert_eq!(listed[1]["tables"][0]["rows_text"], "<10");
        let tables = serde_json::to_string(&good["tables"]).unwrap();
        assert!(!tables.contains("6447"), "no exact count: {tables}");
        let text = serde_json::to_string(&listed).unwrap();
        assert!(!text.contains("secret policy"), "no policy text");

        assert!(list(&d.join("missing")).is_empty());
    }
}
