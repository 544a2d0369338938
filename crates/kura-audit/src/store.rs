//! The storage interface of the log. The writer and the verifier only talk to `LeafStore`:
//! SQLite (`sqlite.rs`) and PostgreSQL (`postgres.rs`) implement it. Sequencing several writers
//! on one PostgreSQL log is beside it, in `postgres/shared.rs`.

use crate::AuditError;

/// One entry to persist: the leaf bytes that enter the tree, and beside them the payload and its
/// salt (which can be erased later).
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub index: u64,
    pub leaf: Vec<u8>,
    pub salt: [u8; 32],
    pub payload: String,
}

/// A stored entry as read back.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub index: u64,
    pub leaf: Vec<u8>,
    /// `None` once erased.
    pub payload: Option<StoredPayload>,
}

impl StoredEntry {
    /// From a row of either backend: index, leaf, and the payload columns (both NULL once
    /// erased; a half-erased pair reads as erased).
    pub fn from_columns(
        index: i64,
        leaf: Vec<u8>,
        salt: Option<Vec<u8>>,
        payload: Option<String>,
    ) -> StoredEntry {
        StoredEntry {
            index: index as u64,
            leaf,
            payload: match (salt, payload) {
                (Some(salt), Some(payload)) => Some(StoredPayload { salt, payload }),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredPayload {
    pub salt: Vec<u8>,
    pub payload: String,
}

/// A run of consecutive stored entries packed into one buffer, so that bulk readers (the
/// verifier) pay no allocation per entry and can hand whole chunks to other threads.
#[derive(Debug, Default)]
pub struct EntryChunk {
    bytes: Vec<u8>,
    rows: Vec<ChunkRow>,
}

/// Where one entry's parts sit in `EntryChunk::bytes`: leaf, then salt, then payload.
#[derive(Debug, Clone, Copy)]
struct ChunkRow {
    index: u64,
    start: usize,
    leaf_end: usize,
    salt_end: usize,
    end: usize,
    has_payload: bool,
}

/// One entry of an `EntryChunk`, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ChunkEntry<'a> {
    pub index: u64,
    pub leaf: &'a [u8],
    /// `(salt, payload bytes)`, `None` once erased.
    pub payload: Option<(&'a [u8], &'a [u8])>,
}

impl EntryChunk {
    pub fn with_capacity(entries: usize) -> EntryChunk {
        EntryChunk {
            // Leaves are ~120 bytes and payloads tens of bytes; a guess saves regrowth.
            bytes: Vec::with_capacity(entries * 256),
            rows: Vec::with_capacity(entries),
        }
    }

    pub fn push(&mut self, index: u64, leaf: &[u8], payload: Option<(&[u8], &[u8])>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(leaf);
        let leaf_end = self.bytes.len();
        if let Some((salt, p)) = payload {
            self.bytes.extend_from_slice(salt);
            let salt_end = self.bytes.len();
            self.bytes.extend_from_slice(p);
            self.rows.push(ChunkRow {
                index,
                start,
                leaf_end,
                salt_end,
                end: self.bytes.len(),
                has_payload: true,
            });
        } else {
            self.rows.push(ChunkRow {
                index,
                start,
                leaf_end,
                salt_end: leaf_end,
                end: leaf_end,
                has_payload: false,
            });
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = ChunkEntry<'_>> + '_ {
        self.rows.iter().map(|r| ChunkEntry {
            index: r.index,
            leaf: &self.bytes[r.start..r.leaf_end],
            payload: r.has_payload.then(|| {
                (
                    &self.bytes[r.leaf_end..r.salt_end],
                    &self.bytes[r.salt_end..r.end],
                )
            }),
        })
    }
}

/// How a chunked scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every entry was visited; `orphans` are the payload rows whose index has no leaf, in the
    /// store's order (a scan from a later index may leave out rows below it).
    Complete { orphans: Vec<u64> },
    /// The visitor asked to stop; orphans were not looked for.
    Stopped,
}

/// A signed checkpoint as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: [u8; 32],
    /// The full signed note, exactly as signed.
    pub note: String,
}

/// Storage for leaves, payloads and checkpoints. Every mutating call is one durable transaction:
/// it returns `Ok` only after the data is on stable storage.
pub trait LeafStore: Send {
    /// Appends a batch of consecutive entries atomically.
    fn append(&mut self, entries: &[NewEntry]) -> Result<(), AuditError>;
    /// Visits stored entries with index >= `from` in index order; stop early by returning false.
    fn scan(
        &mut self,
        from: u64,
        visit: &mut dyn FnMut(StoredEntry) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError>;
    /// Like `scan`, but hands over up to `chunk_len` entries at a time, and on a complete scan
    /// also reports orphan payloads. Backends should override it with a bulk read; this default
    /// is built on `scan` and `orphan_payloads`.
    fn scan_chunks(
        &mut self,
        from: u64,
        chunk_len: usize,
        visit: &mut dyn FnMut(EntryChunk) -> Result<bool, AuditError>,
    ) -> Result<ScanEnd, AuditError> {
        let chunk_len = chunk_len.max(1);
        let mut chunk = EntryChunk::with_capacity(chunk_len);
        let mut stopped = false;
        self.scan(from, &mut |e| {
            let payload = e.payload.as_ref();
            chunk.push(
                e.index,
                &e.leaf,
                payload.map(|p| (&p.salt[..], p.payload.as_bytes())),
            );
            if chunk.len() >= chunk_len {
                let full = std::mem::replace(&mut chunk, EntryChunk::with_capacity(chunk_len));
                stopped = !visit(full)?;
            }
            Ok(!stopped)
        })?;
        if !stopped && !chunk.is_empty() {
            stopped = !visit(chunk)?;
        }
        if stopped {
            return Ok(ScanEnd::Stopped);
        }
        Ok(ScanEnd::Complete {
            orphans: self.orphan_payloads()?,
        })
    }
    /// Visits payload rows whose index has no leaf (they point at tampering).
    fn orphan_payloads(&mut self) -> Result<Vec<u64>, AuditError>;
    fn entry(&mut self, index: u64) -> Result<Option<StoredEntry>, AuditError>;
    /// Leaf bytes of entries `0..size`, in order (for proofs).
    fn leaves(&mut self, size: u64) -> Result<Vec<Vec<u8>>, AuditError>;
    fn count(&mut self) -> Result<u64, AuditError>;
    /// Deletes the payload and salt of one entry; false if there was none.
    fn erase_payload(&mut self, index: u64) -> Result<bool, AuditError>;
    fn add_checkpoint(&mut self, checkpoint: &StoredCheckpoint) -> Result<(), AuditError>;
    /// All checkpoints, by increasing size.
    fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>, AuditError>;
    fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, AuditError>;
    /// Removes entries with index >= `from` (crash recovery of an unsigned tail only).
    fn truncate(&mut self, from: u64) -> Result<u64, AuditError>;
}
