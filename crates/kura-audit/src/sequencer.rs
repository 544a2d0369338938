//! How the writer thread gets indices for its batches and signs checkpoints. A `LocalSequencer`
//! owns the log alone (SQLite behind the state directory's `flock`): the writer's tip is the
//! truth. A shared sequencer (`postgres::PgSequencer`) serialises appenders of several processes
//! inside the database and brings the tip forward with what the others wrote before each batch.

use crate::merkle::Hash;
use crate::note::LogKey;
use crate::store::{LeafStore, NewEntry, StoredCheckpoint};
use crate::tip::Tip;
use crate::AuditError;

/// Builds the entries of one batch after `tip` (the closure advances `tip` past them).
pub(crate) type BuildBatch<'a> = dyn FnMut(&mut Tip) -> Vec<NewEntry> + 'a;

pub(crate) trait Sequencer: Send {
    /// The store behind this sequencer, for reads and payload erasure.
    fn store(&mut self) -> &mut dyn LeafStore;

    /// True when other processes append to the same log: the writer then wakes every
    /// checkpoint interval, even when idle, to follow them and take part in signing.
    fn shared(&self) -> bool;

    /// Commits one batch durably. `build` is called once, with `tip` brought up to the end of
    /// the log inside whatever serialises appenders, and returns the entries to write after it.
    /// On `Err` the caller discards `tip`.
    fn append(&mut self, tip: &mut Tip, build: &mut BuildBatch<'_>) -> Result<(), AuditError>;

    /// Signs a checkpoint of the whole log if this writer may and there are unsigned entries;
    /// on success `tip` is the log as signed (and renewed leases are kept).
    fn sign(&mut self, tip: &mut Tip, key: &LogKey) -> Result<(), AuditError>;

    /// The last call before the writer stops: a final checkpoint, then any lease let go.
    fn close(&mut self, tip: &mut Tip, key: &LogKey) -> Result<(), AuditError> {
        self.sign(tip, key)
    }

    /// Whether `e` leaves the log in an unknown state, so that the writer must stop accepting
    /// entries until it is reopened.
    fn fatal(&self, e: &AuditError) -> bool;
}

/// The single-writer sequencer: indices come from the writer's own tip.
pub(crate) struct LocalSequencer {
    pub store: Box<dyn LeafStore>,
}

impl Sequencer for LocalSequencer {
    fn store(&mut self) -> &mut dyn LeafStore {
        self.store.as_mut()
    }

    fn shared(&self) -> bool {
        false
    }

    fn append(&mut self, tip: &mut Tip, build: &mut BuildBatch<'_>) -> Result<(), AuditError> {
        let entries = build(tip);
        self.store.append(&entries)
    }

    fn sign(&mut self, tip: &mut Tip, key: &LogKey) -> Result<(), AuditError> {
        let size = tip.size();
        if size <= tip.signed_size() {
            return Ok(());
        }
        let root: Hash = tip.frontier.root();
        let note = key.sign_checkpoint(size, &root);
        self.store
            .add_checkpoint(&StoredCheckpoint { size, root, note })?;
        tip.checkpoint = Some((size, root));
        Ok(())
    }

    /// The on-disk state after any failed write is unknown: stop (`docs/audit.md`).
    fn fatal(&self, _e: &AuditError) -> bool {
        true
    }
}
