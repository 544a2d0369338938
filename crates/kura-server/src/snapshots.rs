//! The snapshots a project can be granted: `<state>/snapshots/<name>.duckdb` with its manifest.
//! A snapshot is hashed once, on first use, and refused when the file does not match its
//! manifest; the verified hash is what audit entries and the UI show.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kura_snapshot::{manifest_path, sha256_file, Manifest};

use crate::error::ApiError;

pub struct Snapshots {
    dir: PathBuf,
    verified: Mutex<HashMap<String, Arc<SnapshotInfo>>>,
}

#[derive(Debug)]
pub struct SnapshotInfo {
    pub name: String,
    pub path: PathBuf,
    pub manifest: Manifest,
}

impl SnapshotInfo {
    pub fn sha256(&self) -> &str {
        &self.manifest.database.sha256
    }
}

impl Snapshots {
    pub fn new(dir: PathBuf) -> Snapshots {
        Snapshots {
            dir,
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The verified snapshot `name` (blocking: hashes the file the first time).
    pub fn get(&self, name: &str) -> Result<Arc<SnapshotInfo>, ApiError> {
        if let Some(info) = self.lock().get(name) {
            return Ok(info.clone());
        }
        if !kura_store::valid_id(name) {
            return Err(ApiError::not_found(format!("snapshot {name:?}")));
        }
        let path = self.dir.join(format!("{name}.duckdb"));
        if !path.is_file() {
            return Err(ApiError::Unavailable(format!(
                "snapshot {name:?} is not installed on this server"
            )));
        }
        let manifest = Manifest::read(&manifest_path(&path))
            .map_err(|e| ApiError::Internal(format!("snapshot {name}: {e}")))?;
        let (sha256, _) =
            sha256_file(&path).map_err(|e| ApiError::Internal(format!("snapshot {name}: {e}")))?;
        if sha256 != manifest.database.sha256 {
            return Err(ApiError::Internal(format!(
                "snapshot {name}: file hash {sha256} does not match its manifest ({}); \
                 it was changed after it was built",
                manifest.database.sha256
            )));
        }
        let info = Arc::new(SnapshotInfo {
            name: name.to_string(),
            path,
            manifest,
        });
        self.lock().insert(name.to_string(), info.clone());
        Ok(info)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SnapshotInfo>>> {
        match self.verified.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}
