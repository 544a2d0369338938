//! Shared by the verifier tests of both backends: a store wrapper that keeps every `LeafStore`
//! default method (as a new backend would) and a chunked scan collected into rows.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use kura_audit::store::{EntryChunk, NewEntry, ScanEnd, StoredEntry};
use kura_audit::{AuditError, LeafStore, StoredCheckpoint};

/// A store that keeps every `LeafStore` default, as a new backend would.
pub struct DefaultScan<S>(pub S);

impl<S: LeafStore> LeafStore for DefaultScan<S> {
    fn append(&mut self, entries: &[NewEntry]) -> Result<(), AuditError> {
        self.0.append(entries)
    }
    fn scan(
        &mut self,
        from: u64,
        visit: &mut dyn FnMut(StoredEntry) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        self.0.scan(from, visit)
    }
    fn orphan_payloads(&mut self) -> Result<Vec<u64>, AuditError> {
        self.0.orphan_payloads()
    }
    fn entry(&mut self, index: u64) -> Result<Option<StoredEntry>, AuditError> {
        self.0.entry(index)
    }
    fn leaves(&mut self, size: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.0.leaves(size)
    }
    fn count(&mut self) -> Result<u64, AuditError> {
        self.0.count()
    }
    fn erase_payload(&mut self, index: u64) -> Result<bool, AuditError> {
        self.0.erase_payload(index)
    }
    fn add_checkpoint(&mut self, c: &StoredCheckpoint) -> Result<(), AuditError> {
        self.0.add_checkpoint(c)
    }
    fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        self.0.checkpoints()
    }
    fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, AuditError> {
        self.0.latest_checkpoint()
    }
    fn truncate(&mut self, from: u64) -> Result<u64, AuditError> {
        self.0.truncate(from)
    }
}

pub type Row = (u64, Vec<u8>, Option<(Vec<u8>, Vec<u8>)>);

pub fn chunked(store: &mut dyn LeafStore, from: u64, chunk_len: usize) -> (Vec<Row>, ScanEnd) {
    let mut rows = Vec::new();
    let end = store
        .scan_chunks(from, chunk_len, &mut |c: EntryChunk| {
            assert!(c.len() <= chunk_len && !c.is_empty());
            rows.extend(c.iter().map(|e| {
                (
                    e.index,
                    e.leaf.to_vec(),
                    e.payload.map(|(s, p)| (s.to_vec(), p.to_vec())),
                )
            }));
            Ok(true)
        })
        .unwrap();
    (rows, end)
}
