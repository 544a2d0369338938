//! Where a log lives: a state directory (SQLite, one writer process) or a PostgreSQL database
//! shared by several nodes. One value names the store and the signing key file, so the writer,
//! the reader and the verifier of a deployment are all opened from the same configuration.

use std::path::{Path, PathBuf};

use crate::log::KEY_FILE;
use crate::note::LogKey;
use crate::AuditError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditLocation {
    /// `<dir>/kura.sqlite` and `<dir>/audit-signing.key`; one writer process at a time (`flock`).
    State(PathBuf),
    /// A PostgreSQL database (`postgres://user@host:port/db`, libpq-style parameters allowed)
    /// shared by any number of writer processes, each with a copy of the same key file.
    Postgres { url: String, key_file: PathBuf },
}

impl AuditLocation {
    pub fn postgres(url: impl Into<String>, key_file: impl Into<PathBuf>) -> AuditLocation {
        AuditLocation::Postgres {
            url: url.into(),
            key_file: key_file.into(),
        }
    }

    /// The signing key file of this log.
    pub fn key_file(&self) -> PathBuf {
        match self {
            AuditLocation::State(dir) => dir.join(KEY_FILE),
            AuditLocation::Postgres { key_file, .. } => key_file.clone(),
        }
    }

    /// The verifier key (`name+keyid+base64key`) of the key file of this log.
    pub fn verifier_key(&self) -> Result<String, AuditError> {
        key_file_verifier_key(&self.key_file())
    }
}

/// Reads a signer key file and returns its verifier key.
pub fn key_file_verifier_key(path: &Path) -> Result<String, AuditError> {
    let text = std::fs::read_to_string(path).map_err(|e| AuditError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let key = LogKey::parse(&text).map_err(|why| AuditError::Key {
        path: path.to_path_buf(),
        why,
    })?;
    Ok(key.verifier_key())
}
