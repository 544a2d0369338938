//! The backup's `manifest.json` (format `kura-state-backup/1`) and the file operations backup and
//! restore share: hashing, copying with a hash, private directories, fsync, safe relative paths.
//! A backup directory is `manifest.json` plus `files/<path>` for every file the manifest lists;
//! the manifest is written last, so a directory without one is an incomplete backup.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FORMAT: &str = "kura-state-backup/1";
pub const MANIFEST: &str = "manifest.json";
/// The copied state, under the backup directory.
pub const FILES: &str = "files";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub kura_version: String,
    /// UTC, RFC 3339.
    pub created_at: String,
    /// The state directory that was backed up (absolute).
    pub source: String,
    pub with_snapshots: bool,
    /// Every file of the backup, sorted by path.
    pub files: Vec<FileEntry>,
    /// Snapshot databases not copied (no `--with-snapshots`): immutable files the operator keeps
    /// elsewhere; their own manifests (with their SHA-256) are in `files`.
    pub left_out: Vec<LeftOut>,
    /// The backed-up audit log as the independent verifier saw it (none: no log in the state).
    pub audit: Option<AuditSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the state directory, `/`-separated.
    pub path: String,
    pub kind: Kind,
    pub bytes: u64,
    pub sha256: String,
    /// Permission bits, restored as they were; octal text (`"0600"` for keys).
    #[serde(with = "octal")]
    pub mode: u32,
}

/// File modes as octal text, as `ls` and `chmod` show them.
mod octal {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:04o}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        u32::from_str_radix(&text, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| D::Error::custom(format!("mode {text:?} is not octal permission bits")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A SQLite database copied with SQLite's online backup API (one read transaction), stored
    /// in rollback-journal mode so it is one self-contained file.
    Sqlite,
    /// Any other file, copied byte for byte.
    File,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeftOut {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSummary {
    pub entries: u64,
    pub checkpoints: u64,
    /// The latest signed checkpoint, verbatim (its second line is the tree size).
    pub latest_checkpoint: Option<String>,
    pub intact: bool,
    /// What the verifier found wrong, when not intact.
    pub problem: Option<String>,
}

impl AuditSummary {
    pub fn from_report(report: &kura_audit::verify::Report) -> AuditSummary {
        let problem = match (&report.conflict, &report.tampering) {
            (Some(c), _) => Some(c.what.clone()),
            (None, Some((index, what))) => Some(format!("entry {index}: {what}")),
            (None, None) => None,
        };
        AuditSummary {
            entries: report.entries,
            checkpoints: report.checkpoints,
            latest_checkpoint: report.latest_checkpoint.clone(),
            intact: report.intact(),
            problem,
        }
    }

    /// The size line of the latest checkpoint.
    pub fn checkpoint_size(&self) -> Option<u64> {
        self.latest_checkpoint
            .as_deref()
            .and_then(|n| n.lines().nth(1))
            .and_then(|s| s.parse().ok())
    }
}

/// A backup file that is missing or differs from the manifest: the backup is damaged. `kura
/// state` answers it with exit code 1, other errors with 2.
#[derive(Debug)]
pub struct Damaged {
    pub path: String,
    pub why: String,
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backup file {}: {}", self.path, self.why)
    }
}

impl std::error::Error for Damaged {}

impl Manifest {
    /// Reads and checks `<backup>/manifest.json`.
    pub fn read(backup: &Path) -> anyhow::Result<Manifest> {
        let path = backup.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Damaged {
                    path: MANIFEST.to_string(),
                    why: format!(
                        "missing in {}: the backup is incomplete (a backup writes its manifest \
                         last) or this is not a backup directory",
                        backup.display()
                    ),
                }
                .into())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| Damaged {
            path: MANIFEST.to_string(),
            why: format!("not a {FORMAT} manifest: {e}"),
        })?;
        if manifest.format != FORMAT {
            bail!(
                "{}: format {:?}, this kura reads {FORMAT}",
                path.display(),
                manifest.format
            );
        }
        for f in &manifest.files {
            relative_path(&f.path).map_err(|why| Damaged {
                path: f.path.clone(),
                why,
            })?;
        }
        Ok(manifest)
    }

    /// Checks that every listed file is in the backup with its size and SHA-256.
    pub fn check(&self, backup: &Path) -> anyhow::Result<()> {
        let root = backup.join(FILES);
        for f in &self.files {
            let damaged = |why: String| Damaged {
                path: f.path.clone(),
                why,
            };
            let path = root.join(relative_path(&f.path).map_err(damaged)?);
            let (bytes, sha256) = match hash_file(&path) {
                Ok(h) => h,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(damaged(format!("missing ({})", path.display())).into())
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            if bytes != f.bytes || sha256 != f.sha256 {
                return Err(damaged(format!(
                    "{bytes} bytes with SHA-256 {sha256}, the manifest says {} bytes with \
                     SHA-256 {}: the file was changed or damaged",
                    f.bytes, f.sha256
                ))
                .into());
            }
        }
        Ok(())
    }
}

/// A manifest path as a relative path of normal components only: a manifest cannot make
/// restore write outside its target.
pub fn relative_path(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && !path.contains('\0')
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p.to_path_buf())
    } else {
        Err(format!(
            "{path:?} is not a relative path inside the state directory"
        ))
    }
}

/// Size and lower-case hex SHA-256 of a file.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    hash_copy(&mut File::open(path)?, None)
}

/// Reads `from` to its end, hashing it and writing it to `to` when given.
fn hash_copy(from: &mut File, mut to: Option<&mut File>) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        if let Some(out) = to.as_deref_mut() {
            out.write_all(chunk)?;
        }
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// Copies `from` to the new file `to` (never overwriting) with permission bits `mode`, synced;
/// returns the size and SHA-256 of what was copied.
pub fn copy_new(from: &Path, to: &Path, mode: u32) -> anyhow::Result<(u64, String)> {
    let mut src = File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    let hashed = hash_copy(&mut src, Some(&mut dst))
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)?;
    dst.sync_all()
        .with_context(|| format!("syncing {}", to.display()))?;
    Ok(hashed)
}

/// Sets permission bits exactly (the umask does not apply).
pub fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Creates a directory and its missing parents, readable by the owner only (backups and state
/// hold keys).
pub fn private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Flushes a directory's entries (new names) to disk.
pub fn sync_dir(path: &Path) -> anyhow::Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing the directory {}", path.display()))
}

/// Writes `bytes` to `path` whole: a temporary file, fsync, rename, fsync of the directory.
pub fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    sync_dir(dir)
}

/// Whether `dir` is missing or an empty directory (the only targets backup and restore write).
pub fn is_missing_or_empty(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn manifest_paths_cannot_leave_the_target() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a", "a\0b"] {
            assert!(relative_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "kura.sqlite",
            "keys/explorer.key",
            "releases/.orphaned/o1/x.csv",
        ] {
            assert_eq!(relative_path(good).unwrap(), PathBuf::from(good));
        }
    }
}
