//! `kura state restore`: a backup into a new state directory. The manifest and every file's size
//! and SHA-256 are checked before anything is written, so a damaged backup leaves the target as
//! it was; the files are then copied (hashed again on the way, modes as recorded) and synced,
//! and the restored audit log is verified by the independent verifier.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::manifest::{
    copy_new, is_missing_or_empty, private_dir, relative_path, sync_dir, AuditSummary, Damaged,
    Manifest, FILES,
};

pub struct Restored {
    pub manifest: Manifest,
    /// The restored log as the verifier sees it (none: the backup holds no audit log).
    pub audit: Option<AuditSummary>,
    /// 0 intact, 1 tampered, 3 fork or rollback (as `kura audit verify`).
    pub audit_exit: u8,
}

pub fn restore(from: &Path, state: &Path) -> anyhow::Result<Restored> {
    let manifest = Manifest::read(from)?;
    manifest.check(from)?;
    if !is_missing_or_empty(state)? {
        bail!(
            "{} is not empty: restore into a new or empty directory (a restore never merges \
             into an existing state)",
            state.display()
        );
    }
    let existed = state.exists();
    private_dir(state)?;
    if let Err(e) = copy_all(from, state, &manifest) {
        // The target was empty: take back everything this restore wrote.
        let cleaned = if existed {
            empty_dir(state)
        } else {
            std::fs::remove_dir_all(state).with_context(|| format!("removing {}", state.display()))
        };
        if let Err(c) = cleaned {
            tracing::error!("cleaning up the partial restore failed: {c:#}");
        }
        return Err(e);
    }
    let (audit, audit_exit) =
        if state.join(kura_audit::KEY_FILE).is_file() && state.join("kura.sqlite").is_file() {
            let report = kura_audit::verify::verify_state(state, None, None)
                .context("verifying the restored audit log")?;
            (Some(AuditSummary::from_report(&report)), report.exit_code())
        } else {
            (None, 0)
        };
    Ok(Restored {
        manifest,
        audit,
        audit_exit,
    })
}

fn copy_all(from: &Path, state: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let root = from.join(FILES);
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::from([state.to_path_buf()]);
    for f in &manifest.files {
        let rel = relative_path(&f.path).map_err(|why| Damaged {
            path: f.path.clone(),
            why,
        })?;
        let to = state.join(&rel);
        if let Some(parent) = to.parent() {
            private_dir(parent)?;
            let mut p = parent;
            while p != state && dirs.insert(p.to_path_buf()) {
                match p.parent() {
                    Some(up) => p = up,
                    None => break,
                }
            }
        }
        let (bytes, sha256) = copy_new(&root.join(&rel), &to, f.mode)?;
        // Checked a moment ago; a change since then is still caught.
        if bytes != f.bytes || sha256 != f.sha256 {
            return Err(Damaged {
                path: f.path.clone(),
                why: "changed while it was being restored".to_string(),
            }
            .into());
        }
    }
    for dir in dirs.iter().rev() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn empty_dir(dir: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = e?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}
