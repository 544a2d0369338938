//! `kura state backup`: a consistent copy of a state directory while the server runs. Every
//! SQLite database is copied first with SQLite's online backup API (one read transaction, so the
//! control plane, the airlock and the audit log are copied as of one moment, and the server keeps
//! writing meanwhile); then the other files. Files are written before the rows that name them
//! (results, staged outputs, releases, keys), so the files copied after the databases include
//! every file the copied rows name; files written meanwhile are extra and harmless. The audit log
//! of the copy is verified, and the manifest (every file's size and SHA-256) is written last.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::manifest::{
    copy_new, hash_file, is_missing_or_empty, private_dir, set_mode, sync_dir, write_whole,
    AuditSummary, FileEntry, Kind, LeftOut, Manifest, FILES, FORMAT, MANIFEST,
};

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// How long a database copy waits for SQLite locks before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(60);
/// Directories are followed through symbolic links at most this deep (a link loop ends here).
const MAX_DEPTH: usize = 32;

pub struct Options<'a> {
    pub state: &'a Path,
    pub to: &'a Path,
    pub with_snapshots: bool,
}

/// One file of the state directory found by the walk.
struct Found {
    /// Relative, `/`-separated.
    rel: String,
    path: PathBuf,
    bytes: u64,
    mode: u32,
}

pub fn backup(options: &Options) -> anyhow::Result<Manifest> {
    let state = std::path::absolute(options.state)
        .with_context(|| format!("resolving {}", options.state.display()))?;
    if !state.is_dir() {
        bail!("the state directory {} does not exist", state.display());
    }
    if !is_missing_or_empty(options.to)? {
        bail!(
            "{} is not empty: back up into a new directory (a backup is never merged into \
             another)",
            options.to.display()
        );
    }
    if std::path::absolute(options.to)?.starts_with(&state) {
        bail!("the backup cannot be inside the state directory it copies");
    }
    private_dir(options.to)?;
    let root = options.to.join(FILES);
    private_dir(&root)?;
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    // 1. The databases, each as of one moment.
    let mut files: BTreeMap<String, FileEntry> = BTreeMap::new();
    let databases: Vec<Found> = walk(&state)?
        .into_iter()
        .filter(|f| is_sqlite(&f.path))
        .collect();
    let mut dirs = BTreeSet::from([options.to.to_path_buf(), root.clone()]);
    for db in &databases {
        let to = target(&root, &db.rel, &mut dirs)?;
        copy_sqlite(&db.path, &to)?;
        set_mode(&to, db.mode)?;
        files.insert(
            db.rel.clone(),
            entry(&db.rel, Kind::Sqlite, 0, String::new(), db.mode),
        );
    }

    // 2. Every other file, as it is now.
    let db_names: BTreeSet<&str> = databases.iter().map(|d| d.rel.as_str()).collect();
    let mut left_out = Vec::new();
    for f in walk(&state)? {
        if files.contains_key(&f.rel) || is_database_side_file(&f.rel, &db_names) {
            continue;
        }
        if !options.with_snapshots && is_snapshot_database(&f.rel) {
            left_out.push(LeftOut {
                path: f.rel.clone(),
                bytes: f.bytes,
            });
            continue;
        }
        let to = target(&root, &f.rel, &mut dirs)?;
        match copy_new(&f.path, &to, f.mode) {
            Ok((bytes, sha256)) => {
                files.insert(
                    f.rel.clone(),
                    entry(&f.rel, Kind::File, bytes, sha256, f.mode),
                );
            }
            // Removed since the walk (a replaced temporary file): nothing to keep.
            Err(e) if not_found(&e) && !f.path.exists() => {
                let _ = std::fs::remove_file(&to);
                tracing::warn!("{} disappeared during the backup; skipped", f.rel);
            }
            Err(e) => return Err(e),
        }
    }

    // 3. The copy's audit log, checked by the independent verifier.
    let audit = if root.join(kura_audit::KEY_FILE).is_file() && root.join("kura.sqlite").is_file() {
        let report = kura_audit::verify::verify_state(&root, None, None)
            .context("verifying the audit log of the backup")?;
        Some(AuditSummary::from_report(&report))
    } else {
        None
    };
    for f in files.values_mut().filter(|f| f.kind == Kind::Sqlite) {
        let path = root.join(&f.path);
        let (bytes, sha256) =
            hash_file(&path).with_context(|| format!("hashing {}", path.display()))?;
        f.bytes = bytes;
        f.sha256 = sha256;
    }
    for dir in dirs.iter().rev() {
        sync_dir(dir)?;
    }

    // 4. The manifest, last: with it the backup is complete.
    let manifest = Manifest {
        format: FORMAT.to_string(),
        kura_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at,
        source: state.display().to_string(),
        with_snapshots: options.with_snapshots,
        files: files.into_values().collect(),
        left_out,
        audit,
    };
    let mut text = serde_json::to_string_pretty(&manifest)?;
    text.push('\n');
    write_whole(&options.to.join(MANIFEST), text.as_bytes())?;
    Ok(manifest)
}

fn entry(rel: &str, kind: Kind, bytes: u64, sha256: String, mode: u32) -> FileEntry {
    FileEntry {
        path: rel.to_string(),
        kind,
        bytes,
        sha256,
        mode,
    }
}

/// `<root>/<rel>`, with its parent directories created (and remembered for the final fsync).
fn target(root: &Path, rel: &str, dirs: &mut BTreeSet<PathBuf>) -> anyhow::Result<PathBuf> {
    let to = root.join(rel);
    if let Some(parent) = to.parent() {
        private_dir(parent)?;
        let mut p = parent;
        while p != root && dirs.insert(p.to_path_buf()) {
            match p.parent() {
                Some(up) => p = up,
                None => break,
            }
        }
    }
    Ok(to)
}

/// Copies one SQLite database with the online backup API in a single step (one read
/// transaction: a consistent copy however busy the server is), then makes the copy a
/// self-contained rollback-journal file (the server switches it back to WAL when it opens it)
/// and checks it.
fn copy_sqlite(from: &Path, to: &Path) -> anyhow::Result<()> {
    let ctx = |what: &str| format!("{what} {}", from.display());
    let src = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| ctx("opening the database"))?;
    src.busy_timeout(Duration::from_secs(10))
        .with_context(|| ctx("opening the database"))?;
    let mut dst = Connection::open(to).with_context(|| format!("creating {}", to.display()))?;
    {
        let backup = Backup::new(&src, &mut dst).with_context(|| ctx("starting the backup of"))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            // -1: every page in one step, under one read transaction of the source.
            match backup.step(-1).with_context(|| ctx("backing up"))? {
                StepResult::Done => break,
                StepResult::More => {}
                // Busy or Locked: another connection holds a lock; retry until the deadline.
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => bail!("{}: locked for more than {LOCK_WAIT:?}", ctx("backing up")),
            }
        }
    }
    drop(src);
    let mode: String = dst
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .with_context(|| format!("setting the journal mode of {}", to.display()))?;
    if !mode.eq_ignore_ascii_case("delete") {
        bail!("{}: journal mode stays {mode}", to.display());
    }
    let check: String = dst
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .with_context(|| format!("checking {}", to.display()))?;
    if check != "ok" {
        bail!(
            "the copy {} fails SQLite's quick_check: {check}",
            to.display()
        );
    }
    dst.close()
        .map_err(|(_, e)| e)
        .with_context(|| format!("closing {}", to.display()))?;
    File::open(to)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", to.display()))
}

fn is_sqlite(path: &Path) -> bool {
    let mut head = [0u8; 16];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|()| &head == SQLITE_MAGIC)
        .unwrap_or(false)
}

/// `-wal`, `-shm` and `-journal` files belong to their database, which the backup API copied.
fn is_database_side_file(rel: &str, databases: &BTreeSet<&str>) -> bool {
    ["-wal", "-shm", "-journal"].iter().any(|suffix| {
        rel.strip_suffix(suffix)
            .is_some_and(|db| databases.contains(db))
    })
}

/// `snapshots/<name>.duckdb`: large and immutable, kept by the data steward.
fn is_snapshot_database(rel: &str) -> bool {
    rel.strip_prefix("snapshots/")
        .is_some_and(|name| !name.contains('/') && name.ends_with(".duckdb"))
}

/// Names that are never state: the writer's lock, and files being written (each published by
/// a rename when complete, so the complete file is either there already or not yet).
fn is_transient(name: &str) -> bool {
    name == kura_audit::LOCK_FILE
        || name.ends_with(".tmp")
        || name.starts_with(".tmp-")
        || name.starts_with(".kura-snapshot-")
        // The release key is written under `.release-signing.key.<random>`, then linked.
        || name.starts_with(".release-signing.key.")
}

fn not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    })
}

/// Every regular file under `state`, sorted, following symbolic links (a snapshot directory
/// may be a link to shared storage); sockets, devices and link loops are errors.
fn walk(state: &Path) -> anyhow::Result<Vec<Found>> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    walk_dir(state, "", 0, &mut seen, &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn walk_dir(
    dir: &Path,
    prefix: &str,
    depth: usize,
    seen: &mut BTreeSet<PathBuf>,
    out: &mut Vec<Found>,
) -> anyhow::Result<()> {
    let real = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    if depth > MAX_DEPTH || !seen.insert(real) {
        bail!(
            "{} is reached twice or too deep (a symbolic link loop?)",
            dir.display()
        );
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            bail!(
                "{}: file names must be UTF-8 to be listed in the manifest",
                e.path().display()
            );
        };
        if is_transient(name) {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let path = e.path();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        if meta.is_dir() {
            walk_dir(&path, &rel, depth + 1, seen, out)?;
        } else if meta.is_file() {
            out.push(Found {
                rel,
                path,
                bytes: meta.len(),
                mode: meta.permissions().mode() & 0o7777,
            });
        } else {
            bail!(
                "{} is neither a file nor a directory: remove it or move it out of the state \
                 directory",
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_files_snapshots_and_transients_are_recognised() {
        let dbs = BTreeSet::from(["kura.sqlite"]);
        assert!(is_database_side_file("kura.sqlite-wal", &dbs));
        assert!(is_database_side_file("kura.sqlite-shm", &dbs));
        assert!(!is_database_side_file("other.sqlite-wal", &dbs));
        assert!(is_snapshot_database("snapshots/demo.duckdb"));
        assert!(!is_snapshot_database("snapshots/demo.duckdb.manifest.json"));
        assert!(!is_snapshot_database("outputs/demo.duckdb"));
        for t in [
            "audit.lock",
            "q1.arrow.tmp",
            ".tmp-o1",
            ".kura-snapshot-ab12",
            ".release-signing.key.0011",
        ] {
            assert!(is_transient(t), "{t}");
        }
        assert!(!is_transient("release-signing.key"));
        assert!(!is_transient(".orphaned"));
    }
}
