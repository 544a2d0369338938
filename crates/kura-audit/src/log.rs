//! `AuditLog`: opening (with crash recovery), the group-commit writer thread, the checkpoint
//! signer, payload erasure and shutdown. Appends are acknowledged only after their batch's
//! transaction committed; a failed commit puts the log into a permanent failed state.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::event::{Appended, AuditSink, Event};
use crate::leaf::{canonical_json, check_field, commitment, Leaf};
use crate::merkle::{leaf_hash, Frontier, Hash};
use crate::note::LogKey;
use crate::sqlite::SqliteStore;
use crate::store::{LeafStore, NewEntry, StoredCheckpoint};
use crate::AuditError;

pub const KEY_FILE: &str = "audit-signing.key";
pub const LOCK_FILE: &str = "audit.lock";

#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Checkpoint origin line and signing key name; stable for the life of the log.
    pub origin: String,
    /// How often new entries are covered by a signed checkpoint (at most one second).
    pub checkpoint_interval: Duration,
    /// Most entries committed in one transaction.
    pub max_batch: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            origin: "kura.local/audit".to_string(),
            checkpoint_interval: Duration::from_secs(1),
            max_batch: 4096,
        }
    }
}

/// What crash recovery found when the log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Entries in the log after recovery.
    pub entries: u64,
    /// Size of the latest signed checkpoint.
    pub signed_size: u64,
    /// First removed index and why, when an unsigned tail was damaged and truncated.
    pub truncated: Option<(u64, String)>,
    /// How many entries the truncation removed.
    pub removed: u64,
}

enum Reply {
    Blocking(mpsc::SyncSender<Result<Appended, AuditError>>),
    Async(tokio::sync::oneshot::Sender<Result<Appended, AuditError>>),
}

impl Reply {
    fn send(self, r: Result<Appended, AuditError>) {
        // A caller that gave up waiting is not an error for the log.
        match self {
            Reply::Blocking(s) => {
                let _ = s.send(r);
            }
            Reply::Async(s) => {
                let _ = s.send(r);
            }
        }
    }
}

type Ack<T> = mpsc::SyncSender<Result<T, AuditError>>;

enum Request {
    Append(Event, Reply),
    Erase(u64, Ack<bool>),
    Checkpoint(Ack<Option<StoredCheckpoint>>),
    Shutdown(Ack<()>),
}

pub struct AuditLog {
    sender: mpsc::Sender<Request>,
    thread: Mutex<Option<JoinHandle<()>>>,
    committed: Arc<AtomicU64>,
    verifier_key: String,
    recovery: RecoveryReport,
    state_dir: PathBuf,
    _lock: File,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl AuditLog {
    pub fn open(state_dir: &Path, options: AuditOptions) -> Result<AuditLog, AuditError> {
        std::fs::create_dir_all(state_dir).map_err(|e| AuditError::Io {
            path: state_dir.to_path_buf(),
            source: e,
        })?;
        let lock = lock_state(state_dir)?;
        let key = LogKey::load_or_create(&state_dir.join(KEY_FILE), &options.origin)?;
        let mut store = SqliteStore::open(state_dir)?;
        let (mut writer, recovery) = Writer::recover(&mut store, key, &options)?;
        if let Some((index, why)) = &recovery.truncated {
            tracing::warn!(
                index,
                removed = recovery.removed,
                "audit log: truncated a damaged unsigned tail: {why}"
            );
        }
        let mut store: Box<dyn LeafStore> = Box::new(store);
        if writer.frontier.size() > writer.signed_size {
            writer.sign(store.as_mut())?;
        }
        let verifier_key = writer.key.verifier_key();
        let committed = Arc::new(AtomicU64::new(writer.frontier.size()));
        writer.committed = committed.clone();
        let (sender, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kura-audit-writer".into())
            .spawn(move || writer.run(store, rx))
            .map_err(|e| AuditError::Failed(format!("cannot start the writer thread: {e}")))?;
        Ok(AuditLog {
            sender,
            thread: Mutex::new(Some(thread)),
            committed,
            verifier_key,
            recovery,
            state_dir: state_dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Entries durably committed so far.
    pub fn size(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    fn request<T>(&self, make: impl FnOnce(Ack<T>) -> Request) -> Result<T, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.sender.send(make(tx)).map_err(|_| AuditError::Closed)?;
        rx.recv().map_err(|_| AuditError::Closed)?
    }

    /// Appends without blocking the async executor; resolves once the entry is durable.
    pub async fn append_async(&self, event: Event) -> Result<Appended, AuditError> {
        check_event(&event)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sender
            .send(Request::Append(event, Reply::Async(tx)))
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Deletes an entry's payload and salt; the leaf and its commitment stay, so the log still
    /// verifies. Returns false when the payload was already erased.
    pub fn erase_payload(&self, index: u64) -> Result<bool, AuditError> {
        self.request(|ack| Request::Erase(index, ack))
    }

    /// Signs a checkpoint now if there are unsigned entries; returns the latest checkpoint.
    pub fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, AuditError> {
        self.request(Request::Checkpoint)
    }

    /// Flushes pending appends, signs a final checkpoint and stops the writer.
    pub fn close(self) -> Result<(), AuditError> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<(), AuditError> {
        let handle = match self.thread.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        let Some(handle) = handle else {
            return Ok(());
        };
        let result = self.request(Request::Shutdown);
        let _ = handle.join();
        result
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("audit log: shutdown failed: {e}");
        }
    }
}

impl AuditSink for AuditLog {
    fn append(&self, event: Event) -> Result<Appended, AuditError> {
        check_event(&event)?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.sender
            .send(Request::Append(event, Reply::Blocking(tx)))
            .map_err(|_| AuditError::Closed)?;
        rx.recv().map_err(|_| AuditError::Closed)?
    }
}

fn check_event(e: &Event) -> Result<(), AuditError> {
    check_field("actor", &e.actor)?;
    for (name, v) in [
        ("session", &e.session),
        ("project", &e.project),
        ("object", &e.object),
    ] {
        if let Some(v) = v {
            check_field(name, v)?;
        }
    }
    Ok(())
}

fn lock_state(state_dir: &Path) -> Result<File, AuditError> {
    let path = state_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| AuditError::Io {
            path: path.clone(),
            source: e,
        })?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| {
            AuditError::Locked(format!(
                "{} is locked: another process (the server?) has this audit log open",
                path.display()
            ))
        },
    )?;
    Ok(file)
}

struct Writer {
    key: LogKey,
    frontier: Frontier,
    last_hash: Hash,
    last_ts: i64,
    signed_size: u64,
    interval: Duration,
    max_batch: usize,
    failed: Option<String>,
    committed: Arc<AtomicU64>,
}

impl Writer {
    /// Rebuilds the in-memory tree from the store, checking every leaf against the chain and
    /// every checkpoint. Damage past the last signed checkpoint is truncated; damage at or below
    /// it refuses to open.
    fn recover(
        store: &mut dyn LeafStore,
        key: LogKey,
        options: &AuditOptions,
    ) -> Result<(Writer, RecoveryReport), AuditError> {
        let checkpoints = store.checkpoints()?;
        for c in &checkpoints {
            if c.note != key.sign_checkpoint(c.size, &c.root) {
                return Err(AuditError::Damaged {
                    index: c.size.saturating_sub(1),
                    what: format!(
                        "the stored checkpoint for size {} is not one this log's key signed",
                        c.size
                    ),
                });
            }
        }
        let signed_size = checkpoints.last().map(|c| c.size).unwrap_or(0);
        let mut w = Writer {
            key,
            frontier: Frontier::default(),
            last_hash: [0; 32],
            last_ts: i64::MIN,
            signed_size,
            interval: options.checkpoint_interval.min(Duration::from_secs(1)),
            max_batch: options.max_batch.max(1),
            failed: None,
            committed: Arc::new(AtomicU64::new(0)),
        };
        let mut next_cp = checkpoints.iter().peekable();
        let mut problem: Option<(u64, String)> = None;
        store.scan(0, &mut |entry| {
            let i = w.frontier.size();
            let what = if entry.index != i {
                Some(format!(
                    "entry {i} is missing (next stored index is {})",
                    entry.index
                ))
            } else {
                match Leaf::decode(&entry.leaf) {
                    Err(e) => Some(format!("leaf does not decode: {e}")),
                    Ok(l) if l.index != i => Some(format!("leaf says index {}", l.index)),
                    Ok(l) if l.prev_hash != w.last_hash => {
                        Some("previous-leaf hash does not match the chain".into())
                    }
                    Ok(l) if l.timestamp_micros < w.last_ts => {
                        Some("timestamp earlier than the previous entry".into())
                    }
                    Ok(l) => {
                        w.last_ts = l.timestamp_micros;
                        None
                    }
                }
            };
            if let Some(what) = what {
                problem = Some((i, what));
                return Ok(false);
            }
            w.last_hash = leaf_hash(&entry.leaf);
            w.frontier.push(w.last_hash);
            let size = w.frontier.size();
            while let Some(c) = next_cp.peek() {
                if c.size > size {
                    break;
                }
                if c.size == size && c.root != w.frontier.root() {
                    problem = Some((
                        size - 1,
                        format!("tree root at size {size} differs from the signed checkpoint"),
                    ));
                    return Ok(false);
                }
                next_cp.next();
            }
            Ok(true)
        })?;
        let mut report = RecoveryReport {
            signed_size,
            ..Default::default()
        };
        if let Some((index, what)) = problem {
            if index < signed_size {
                return Err(AuditError::Damaged { index, what });
            }
            report.removed = store.truncate(index)?;
            report.truncated = Some((index, what));
        } else if w.frontier.size() < signed_size {
            return Err(AuditError::Damaged {
                index: w.frontier.size(),
                what: format!(
                    "entries {}..{} are missing below the signed checkpoint of size {signed_size}",
                    w.frontier.size(),
                    signed_size
                ),
            });
        }
        report.entries = w.frontier.size();
        Ok((w, report))
    }

    fn sign(&mut self, store: &mut dyn LeafStore) -> Result<(), AuditError> {
        let size = self.frontier.size();
        if size <= self.signed_size {
            return Ok(());
        }
        let root = self.frontier.root();
        let note = self.key.sign_checkpoint(size, &root);
        store.add_checkpoint(&StoredCheckpoint { size, root, note })?;
        self.signed_size = size;
        Ok(())
    }

    fn run(mut self, mut store: Box<dyn LeafStore>, rx: mpsc::Receiver<Request>) {
        let mut last_sign = Instant::now();
        let mut pending: Vec<(Event, Reply)> = Vec::new();
        loop {
            let wait = if self.frontier.size() > self.signed_size {
                self.interval.saturating_sub(last_sign.elapsed())
            } else {
                self.interval
            };
            let first = match rx.recv_timeout(wait) {
                Ok(r) => Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.flush(store.as_mut(), &mut pending);
                    let _ = self.checkpoint_or_fail(store.as_mut());
                    return;
                }
            };
            let mut next = first;
            while let Some(req) = next {
                match req {
                    Request::Append(e, r) => {
                        pending.push((e, r));
                        if pending.len() >= self.max_batch {
                            self.flush(store.as_mut(), &mut pending);
                        }
                    }
                    Request::Erase(index, ack) => {
                        self.flush(store.as_mut(), &mut pending);
                        let r = match &self.failed {
                            Some(f) => Err(AuditError::Failed(f.clone())),
                            None => store.erase_payload(index),
                        };
                        let _ = ack.send(r);
                    }
                    Request::Checkpoint(ack) => {
                        self.flush(store.as_mut(), &mut pending);
                        let r = self
                            .checkpoint_or_fail(store.as_mut())
                            .and_then(|()| store.latest_checkpoint());
                        last_sign = Instant::now();
                        let _ = ack.send(r);
                    }
                    Request::Shutdown(ack) => {
                        self.flush(store.as_mut(), &mut pending);
                        let _ = ack.send(self.checkpoint_or_fail(store.as_mut()));
                        return;
                    }
                }
                next = rx.try_recv().ok();
            }
            self.flush(store.as_mut(), &mut pending);
            if self.frontier.size() > self.signed_size && last_sign.elapsed() >= self.interval {
                let _ = self.checkpoint_or_fail(store.as_mut());
                last_sign = Instant::now();
            }
        }
    }

    fn checkpoint_or_fail(&mut self, store: &mut dyn LeafStore) -> Result<(), AuditError> {
        if let Some(f) = &self.failed {
            return Err(AuditError::Failed(f.clone()));
        }
        self.sign(store).inspect_err(|e| {
            self.failed = Some(format!("writing a checkpoint failed: {e}"));
            tracing::error!("audit log failed closed: {e}");
        })
    }

    /// Commits every pending append in one transaction, then acknowledges them all. A failed
    /// commit is never retried: the log's on-disk state is unknown, so it stops accepting work.
    fn flush(&mut self, store: &mut dyn LeafStore, pending: &mut Vec<(Event, Reply)>) {
        if pending.is_empty() {
            return;
        }
        let batch = std::mem::take(pending);
        if let Some(f) = &self.failed {
            for (_, reply) in batch {
                reply.send(Err(AuditError::Failed(f.clone())));
            }
            return;
        }
        let mut salts = vec![0u8; 32 * batch.len()];
        if let Err(e) = getrandom::fill(&mut salts) {
            for (_, reply) in batch {
                reply.send(Err(AuditError::Failed(format!(
                    "no randomness for salts: {e}"
                ))));
            }
            return;
        }
        let mut frontier = self.frontier.clone();
        let mut last_hash = self.last_hash;
        // One timestamp per batch: non-decreasing across the log even if the clock steps back.
        let ts = self.last_ts.max(now_micros());
        let mut entries = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        for (i, (event, _)) in batch.iter().enumerate() {
            let index = frontier.size();
            let mut salt = [0u8; 32];
            salt.copy_from_slice(&salts[i * 32..i * 32 + 32]);
            let payload = canonical_json(&event.payload);
            let leaf = Leaf {
                index,
                prev_hash: last_hash,
                timestamp_micros: ts,
                kind: event.kind.as_str().to_string(),
                actor: event.actor.clone(),
                session: event.session.clone(),
                project: event.project.clone(),
                objects: event.object.iter().cloned().collect(),
                commitment: commitment(&salt, &payload),
            }
            .encode();
            last_hash = leaf_hash(&leaf);
            frontier.push(last_hash);
            acks.push(Appended {
                index,
                leaf_hash: last_hash,
            });
            entries.push(NewEntry {
                index,
                leaf,
                salt,
                payload,
            });
        }
        match store.append(&entries) {
            Ok(()) => {
                self.frontier = frontier;
                self.last_hash = last_hash;
                self.last_ts = ts;
                self.committed
                    .store(self.frontier.size(), Ordering::Release);
                for ((_, reply), ack) in batch.into_iter().zip(acks) {
                    reply.send(Ok(ack));
                }
            }
            Err(e) => {
                let msg = format!("committing entries {}.. failed: {e}", self.frontier.size());
                tracing::error!("audit log failed closed: {msg}");
                self.failed = Some(msg.clone());
                for (_, reply) in batch {
                    reply.send(Err(AuditError::Failed(msg.clone())));
                }
            }
        }
    }
}
