//! Read-only access for the CLI and supervisors: the latest checkpoint, `tlog-proof@v1` receipts,
//! consistency proofs and search. Never takes the writer's lock, so it works beside a server.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::leaf::Leaf;
use crate::log::KEY_FILE;
use crate::merkle::{consistency_proof, inclusion_proof, leaf_hash, Hash};
use crate::note::{hex, receipt, LogKey};
use crate::sqlite::SqliteStore;
use crate::store::{LeafStore, StoredCheckpoint};
use crate::AuditError;

pub struct AuditReader {
    store: SqliteStore,
}

/// Supervisor search criteria; all given criteria must match. Times are microseconds since the
/// Unix epoch, `since` inclusive and `until` exclusive.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    pub actor: Option<String>,
    pub project: Option<String>,
    pub kind: Option<String>,
    pub since_micros: Option<i64>,
    pub until_micros: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct SearchHit {
    pub index: u64,
    pub leaf_bytes: Vec<u8>,
    pub leaf: Leaf,
    /// `None` once erased.
    pub payload: Option<serde_json::Value>,
}

impl SearchHit {
    /// One JSON object holding the exact leaf bytes, their hash, and every decoded field.
    pub fn to_json(&self) -> serde_json::Value {
        let l = &self.leaf;
        serde_json::json!({
            "index": self.index,
            "leaf": B64.encode(&self.leaf_bytes),
            "leaf_hash": hex(&leaf_hash(&self.leaf_bytes)),
            "version": self.leaf_bytes.first(),
            "timestamp": format_micros(l.timestamp_micros),
            "timestamp_micros": l.timestamp_micros,
            "type": l.kind,
            "actor": l.actor,
            "session": l.session,
            "project": l.project,
            "objects": l.objects,
            "prev_hash": hex(&l.prev_hash),
            "commitment": hex(&l.commitment),
            "payload": self.payload,
            "payload_erased": self.payload.is_none(),
        })
    }
}

pub fn format_micros(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_else(|| micros.to_string())
}

impl AuditReader {
    pub fn open(state_dir: &Path) -> Result<AuditReader, AuditError> {
        Ok(AuditReader {
            store: SqliteStore::open_read_only(state_dir)?,
        })
    }

    pub fn store(&mut self) -> &mut SqliteStore {
        &mut self.store
    }

    /// The verifier key of the log whose key file is in `state_dir`.
    pub fn verifier_key(state_dir: &Path) -> Result<String, AuditError> {
        let path = state_dir.join(KEY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| AuditError::Io {
            path: path.clone(),
            source: e,
        })?;
        let key = LogKey::parse(&text).map_err(|why| AuditError::Key { path, why })?;
        Ok(key.verifier_key())
    }

    pub fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, AuditError> {
        self.store.latest_checkpoint()
    }

    fn hashes(&mut self, size: u64) -> Result<Vec<Hash>, AuditError> {
        let leaves = self.store.leaves(size)?;
        if (leaves.len() as u64) < size {
            return Err(AuditError::Damaged {
                index: leaves.len() as u64,
                what: format!("only {} entries stored for size {size}", leaves.len()),
            });
        }
        Ok(leaves.iter().map(|l| leaf_hash(l)).collect())
    }

    /// A `tlog-proof@v1` receipt for `index` against the latest signed checkpoint.
    pub fn receipt(&mut self, index: u64) -> Result<String, AuditError> {
        let cp = self.latest_checkpoint()?.ok_or_else(|| {
            AuditError::NotFound("the log has no signed checkpoint yet".to_string())
        })?;
        if index >= cp.size {
            return Err(AuditError::NotFound(format!(
                "entry {index} is not covered by the latest signed checkpoint (size {}); \
                 checkpoints are signed every second, try again",
                cp.size
            )));
        }
        let entry = self
            .store
            .entry(index)?
            .ok_or_else(|| AuditError::NotFound(format!("entry {index} is not stored")))?;
        let hashes = self.hashes(cp.size)?;
        let proof = inclusion_proof(index as usize, &hashes);
        Ok(receipt(&entry.leaf, index, &proof, &cp.note))
    }

    /// Consistency proof from `old_size` to `new_size`, from the stored leaves.
    pub fn consistency_proof(
        &mut self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, AuditError> {
        let hashes = self.hashes(new_size)?;
        Ok(consistency_proof(old_size as usize, &hashes))
    }

    /// Visits matching entries in index order.
    pub fn search(
        &mut self,
        filter: &SearchFilter,
        visit: &mut dyn FnMut(SearchHit) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        self.store.scan(0, &mut |e| {
            let leaf = Leaf::decode(&e.leaf).map_err(|what| AuditError::Damaged {
                index: e.index,
                what,
            })?;
            let keep = filter.actor.as_ref().is_none_or(|a| *a == leaf.actor)
                && filter
                    .project
                    .as_ref()
                    .is_none_or(|p| leaf.project.as_ref() == Some(p))
                && filter.kind.as_ref().is_none_or(|k| *k == leaf.kind)
                && filter
                    .since_micros
                    .is_none_or(|s| leaf.timestamp_micros >= s)
                && filter
                    .until_micros
                    .is_none_or(|u| leaf.timestamp_micros < u);
            if keep {
                let payload = e
                    .payload
                    .map(|p| serde_json::from_str(&p.payload).unwrap_or(serde_json::Value::Null));
                visit(SearchHit {
                    index: e.index,
                    leaf_bytes: e.leaf,
                    leaf,
                    payload,
                })?;
            }
            Ok(true)
        })
    }
}
