//! The independent verifier behind `kura audit verify`. It reads the stored leaves, payloads and
//! checkpoints through `LeafStore` and checks them with its own leaf parser and Merkle code
//! (`verify/merkle.rs`), never the writer's: every index, chain link, timestamp order, payload
//! commitment, checkpoint signature and root, and consistency with a trusted checkpoint.

pub mod leaf;
pub mod merkle;
pub mod note;
mod pipeline;

use std::collections::BTreeMap;
use std::path::Path;

use crate::store::{LeafStore, ScanEnd};
use crate::{AuditError, AuditLocation};
use merkle::TreeBuilder;
pub use note::{open_checkpoint, verify_receipt, Checkpoint, VerifierKey};
use pipeline::{Checked, Commitment};

/// A fork or rollback: the log disagrees with a checkpoint the caller trusted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    pub what: String,
    pub trusted_checkpoint: String,
    pub log_checkpoint: Option<String>,
}

/// The outcome of a verification. `exit_code` maps it to the CLI's 0 / 1 / 3.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub entries: u64,
    pub checkpoints: u64,
    pub erased_payloads: u64,
    pub latest_checkpoint: Option<String>,
    /// The lowest bad index and what is wrong there.
    pub tampering: Option<(u64, String)>,
    pub conflict: Option<Conflict>,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.tampering.is_none() && self.conflict.is_none()
    }

    /// 0 intact, 3 fork or rollback (it outranks other damage), 1 tampering.
    pub fn exit_code(&self) -> u8 {
        if self.conflict.is_some() {
            3
        } else if self.tampering.is_some() {
            1
        } else {
            0
        }
    }

    fn flag(&mut self, index: u64, what: String) {
        if self.tampering.as_ref().is_none_or(|(i, _)| index < *i) {
            self.tampering = Some((index, what));
        }
    }
}

/// How the verifier spreads its work.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Threads that parse, check commitments and hash leaves; 1 runs everything on the caller's
    /// thread. The store is read and the tree folded on two more threads.
    pub threads: usize,
    /// Entries per chunk handed from the reader to the checking threads.
    pub chunk_len: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            threads: std::thread::available_parallelism()
                .map(|n| n.get().min(8))
                .unwrap_or(1),
            chunk_len: 2048,
        }
    }
}

/// Verifies the whole log in `store` against `key`, and against `trusted` (a signed checkpoint
/// note) when given. `Err` means the check could not run (I/O, unusable key or trusted file).
pub fn verify_store(
    store: &mut dyn LeafStore,
    key: &VerifierKey,
    trusted: Option<&str>,
) -> Result<Report, AuditError> {
    verify_store_with(store, key, trusted, VerifyOptions::default())
}

/// `verify_store` with explicit threading; the report does not depend on `options`.
pub fn verify_store_with(
    store: &mut dyn LeafStore,
    key: &VerifierKey,
    trusted: Option<&str>,
    options: VerifyOptions,
) -> Result<Report, AuditError> {
    let trusted = trusted
        .map(|t| {
            open_checkpoint(t, key).map_err(|why| {
                AuditError::Config(format!("the trusted checkpoint is unusable: {why}"))
            })
        })
        .transpose()?;
    let mut report = Report::default();
    let stored = store.checkpoints()?;
    report.checkpoints = stored.len() as u64;
    report.latest_checkpoint = stored.last().map(|c| c.note.clone());
    // Sizes whose root must be compared: every valid stored checkpoint, and the trusted one.
    let mut expect: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    for c in &stored {
        let at = c.size.saturating_sub(1);
        match open_checkpoint(&c.note, key) {
            Err(why) => report.flag(at, format!("checkpoint for size {}: {why}", c.size)),
            Ok(cp) if cp.size != c.size || cp.root != c.root => report.flag(
                at,
                format!(
                    "checkpoint row for size {} does not match its signed note (size {})",
                    c.size, cp.size
                ),
            ),
            Ok(cp) => {
                expect.insert(cp.size, cp.root);
            }
        }
    }
    let mut trusted_root_here: Option<[u8; 32]> = None;
    let mut tree = TreeBuilder::default();
    let mut prev = [0u8; 32];
    let mut last_micros = i64::MIN;
    let mut next_expect = expect.iter().peekable();
    let trusted_size = trusted.as_ref().map(|t| t.size);
    let mut fold = |c: &Checked| {
        let i = tree.size();
        if c.stored_index != i {
            report.flag(
                i,
                format!(
                    "entry {i} is missing: the next stored entry is {}",
                    c.stored_index
                ),
            );
            return false;
        }
        match &c.head {
            Err(why) => report.flag(i, format!("leaf is malformed: {why}")),
            Ok(h) => {
                if h.index != i {
                    report.flag(i, format!("leaf at position {i} says index {}", h.index));
                } else if h.prev != prev {
                    report.flag(i, "previous-leaf hash breaks the chain".into());
                } else if h.micros < last_micros {
                    report.flag(i, "timestamp is earlier than the previous entry's".into());
                }
                last_micros = h.micros;
            }
        }
        match c.commitment {
            Commitment::Erased => report.erased_payloads += 1,
            Commitment::Differs => {
                report.flag(i, "stored payload does not match its commitment".into())
            }
            Commitment::Matches | Commitment::Unchecked => {}
        }
        prev = c.hash;
        tree.add_leaf_hash(c.hash);
        let size = tree.size();
        while let Some((s, root)) = next_expect.peek() {
            if **s > size {
                break;
            }
            if **s == size && tree.root() != **root {
                report.flag(
                    size - 1,
                    format!("tree root at size {size} differs from the signed checkpoint"),
                );
            }
            next_expect.next();
        }
        if trusted_size == Some(size) {
            trusted_root_here = Some(tree.root());
        }
        true
    };
    let orphans = match pipeline::run(store, options.threads, options.chunk_len, &mut fold)? {
        ScanEnd::Complete { orphans } => orphans,
        ScanEnd::Stopped => store.orphan_payloads()?,
    };
    report.entries = tree.size();
    if let Some(c) = stored.iter().rev().find(|c| c.size > tree.size()) {
        report.flag(
            tree.size(),
            format!(
                "the log has {} entries but a checkpoint signed size {}",
                tree.size(),
                c.size
            ),
        );
    }
    if let Some(orphan) = orphans.iter().min() {
        report.flag(
            *orphan,
            "a payload is stored for an entry that does not exist".into(),
        );
    }
    if let Some(t) = trusted {
        let log_cp = |size: u64| {
            stored
                .iter()
                .find(|c| c.size == size)
                .or(stored.last())
                .map(|c| c.note.clone())
        };
        let conflict = if t.size == 0 {
            None
        } else if t.size > tree.size() {
            Some(format!(
                "rollback: the trusted checkpoint has size {} but the log holds {} entries",
                t.size,
                tree.size()
            ))
        } else if trusted_root_here != Some(t.root) {
            Some(format!(
                "fork: the log's tree at size {} has a different root from the trusted checkpoint",
                t.size
            ))
        } else {
            None
        };
        if let Some(what) = conflict {
            report.conflict = Some(Conflict {
                what,
                trusted_checkpoint: t.text.clone(),
                log_checkpoint: log_cp(t.size),
            });
        }
    }
    Ok(report)
}

/// Verifies the log in `state_dir`. `verifier_key` defaults to the key of the log's key file.
pub fn verify_state(
    state_dir: &Path,
    verifier_key: Option<&str>,
    trusted: Option<&str>,
) -> Result<Report, AuditError> {
    verify_at(
        &AuditLocation::State(state_dir.to_path_buf()),
        verifier_key,
        trusted,
    )
}

/// Verifies the log at `location` (a state directory or a PostgreSQL database). `verifier_key`
/// defaults to the key of the location's key file.
pub fn verify_at(
    location: &AuditLocation,
    verifier_key: Option<&str>,
    trusted: Option<&str>,
) -> Result<Report, AuditError> {
    let key_text = match verifier_key {
        Some(k) => k.to_string(),
        None => location.verifier_key()?,
    };
    let mut reader = crate::AuditReader::open_at(location)?;
    verify_reader(&mut reader, &key_text, trusted)
}

/// Verifies the log behind an open reader with `verifier_key`, and cross-checks the writer's
/// consistency proof from `trusted` to the latest checkpoint with the verifier's own checker.
pub fn verify_reader(
    reader: &mut crate::AuditReader,
    verifier_key: &str,
    trusted: Option<&str>,
) -> Result<Report, AuditError> {
    let key = VerifierKey::parse(verifier_key)
        .map_err(|why| AuditError::Config(format!("verifier key: {why}")))?;
    let report = verify_store(reader.store(), &key, trusted)?;
    // Cross-check the writer's consistency proof against the verifier's checker.
    if let (Some(t), Some(latest), true) = (trusted, &report.latest_checkpoint, report.intact()) {
        let (Ok(t), Ok(l)) = (open_checkpoint(t, &key), open_checkpoint(latest, &key)) else {
            return Ok(report);
        };
        if t.size <= l.size {
            let proof: Vec<Vec<u8>> = reader
                .consistency_proof(t.size, l.size)?
                .into_iter()
                .map(|h| h.to_vec())
                .collect();
            merkle::verify_consistency(t.size, l.size, &t.root, &l.root, &proof).map_err(
                |why| {
                    AuditError::Config(format!(
                        "internal disagreement: the writer's consistency proof from {} to {} \
                         fails the verifier ({why}); report this as a bug",
                        t.size, l.size
                    ))
                },
            )?;
        }
    }
    Ok(report)
}
