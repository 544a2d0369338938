//! Read-only access for the CLI and supervisors: the latest checkpoint, `tlog-proof@v1` receipts,
//! consistency proofs and search. Never takes the writer's lock, so it works beside a server.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::leaf::Leaf;
use crate::location::{key_file_verifier_key, AuditLocation};
use crate::log::KEY_FILE;
use crate::merkle::{consistency_proof, inclusion_proof, leaf_hash, Hash};
use crate::note::{hex, receipt};
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::store::{EntryChunk, LeafStore, NewEntry, ScanEnd, StoredCheckpoint, StoredEntry};
use crate::AuditError;

pub struct AuditReader {
    store: ReaderStore,
}

/// The store behind a reader: whichever backend the log is kept in.
pub enum ReaderStore {
    Sqlite(SqliteStore),
    Postgres(Box<PgStore>),
}

impl ReaderStore {
    fn inner(&mut self) -> &mut dyn LeafStore {
        match self {
            ReaderStore::Sqlite(s) => s,
            ReaderStore::Postgres(s) => s.as_mut(),
        }
    }
}

impl LeafStore for ReaderStore {
    fn append(&mut self, entries: &[NewEntry]) -> Result<(), AuditError> {
        self.inner().append(entries)
    }
    fn scan(
        &mut self,
        from: u64,
        visit: &mut dyn FnMut(StoredEntry) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        self.inner().scan(from, visit)
    }
    fn scan_chunks(
        &mut self,
        from: u64,
        chunk_len: usize,
        visit: &mut dyn FnMut(EntryChunk) -> Result<bool, AuditError>,
    ) -> Result<ScanEnd, AuditError> {
        self.inner().scan_chunks(from, chunk_len, visit)
    }
    fn orphan_payloads(&mut self) -> Result<Vec<u64>, AuditError> {
        self.inner().orphan_payloads()
    }
    fn entry(&mut self, index: u64) -> Result<Option<StoredEntry>, AuditError> {
        self.inner().entry(index)
    }
    fn leaves(&mut self, size: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.inner().leaves(size)
    }
    fn count(&mut self) -> Result<u64, AuditError> {
        self.inner().count()
    }
    fn erase_payload(&mut self, index: u64) -> Result<bool, AuditError> {
        self.inner().erase_payload(index)
    }
    fn add_checkpoint(&mut self, checkpoint: &StoredCheckpoint) -> Result<(), AuditError> {
        self.inner().add_checkpoint(checkpoint)
    }
    fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        self.inner().checkpoints()
    }
    fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, AuditError> {
        self.inner().latest_checkpoint()
    }
    fn truncate(&mut self, from: u64) -> Result<u64, AuditError> {
        self.inner().truncate(from)
    }
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
    /// Opens the SQLite log of a state directory read-only.
    pub fn open(state_dir: &Path) -> Result<AuditReader, AuditError> {
        Ok(AuditReader {
            store: ReaderStore::Sqlite(SqliteStore::open_read_only(state_dir)?),
        })
    }

    /// Opens a PostgreSQL log read-only (its own connection, in read-only transactions).
    pub fn open_postgres(url: &str) -> Result<AuditReader, AuditError> {
        Ok(AuditReader {
            store: ReaderStore::Postgres(Box::new(PgStore::open_read_only(url)?)),
        })
    }

    pub fn open_at(location: &AuditLocation) -> Result<AuditReader, AuditError> {
        match location {
            AuditLocation::State(dir) => AuditReader::open(dir),
            AuditLocation::Postgres { url, .. } => AuditReader::open_postgres(url),
        }
    }

    pub fn store(&mut self) -> &mut ReaderStore {
        &mut self.store
    }

    /// The verifier key of the log whose key file is in `state_dir`.
    pub fn verifier_key(state_dir: &Path) -> Result<String, AuditError> {
        key_file_verifier_key(&state_dir.join(KEY_FILE))
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
