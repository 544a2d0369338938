//! `AuditLog`: opening (with crash recovery), the group-commit writer thread, the checkpoint
//! signer, payload erasure and shutdown. Appends are acknowledged only after their batch's
//! transaction committed. With SQLite a failed commit puts the log into a permanent failed state;
//! with a shared PostgreSQL log (`postgres/`) a failed transaction fails its batch and the next one
//! starts again from what the database holds, and only damage stops the log.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::event::{Appended, AuditSink, Event};
use crate::leaf::{canonical_json, check_field, commitment, Leaf};
use crate::location::AuditLocation;
use crate::merkle::leaf_hash;
use crate::note::LogKey;
use crate::postgres::PgSequencer;
use crate::reader::AuditReader;
use crate::sequencer::{LocalSequencer, Sequencer};
use crate::sqlite::SqliteStore;
use crate::store::{LeafStore, NewEntry, StoredCheckpoint};
use crate::tip::Tip;
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
    /// PostgreSQL only: how long the checkpoint-signing lease lasts without renewal. The holder
    /// renews it every checkpoint interval; another node takes over only once it has expired
    /// (by the database's clock), so this is also the longest pause in signing after a node dies.
    /// At least twice the checkpoint interval.
    pub lease_ttl: Duration,
    /// PostgreSQL only: this writer's name in the lease and on the checkpoints it signs. Must
    /// differ between processes; the default (host name, process id, random suffix) does.
    pub node_name: Option<String>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            origin: "kura.local/audit".to_string(),
            checkpoint_interval: Duration::from_secs(1),
            max_batch: 4096,
            lease_ttl: Duration::from_secs(10),
            node_name: None,
        }
    }
}

impl AuditOptions {
    /// The signing interval the writer uses: at most one second.
    pub(crate) fn interval(&self) -> Duration {
        self.checkpoint_interval.min(Duration::from_secs(1))
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
    location: AuditLocation,
    /// The state directory's writer lock (SQLite only; PostgreSQL logs take many writers).
    _lock: Option<File>,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl AuditLog {
    /// Opens (creating if needed) the SQLite log of a state directory, as its only writer.
    pub fn open(state_dir: &Path, options: AuditOptions) -> Result<AuditLog, AuditError> {
        AuditLog::open_at(&AuditLocation::State(state_dir.to_path_buf()), options)
    }

    /// Opens (creating the tables if needed) a log in PostgreSQL that other processes may be
    /// writing at the same time. `key_file` is the log's signing key: the first node to open an
    /// empty database creates it if it is missing; every other node needs a copy of that file.
    pub fn open_postgres(
        url: &str,
        key_file: &Path,
        options: AuditOptions,
    ) -> Result<AuditLog, AuditError> {
        AuditLog::open_at(&AuditLocation::postgres(url, key_file), options)
    }

    pub fn open_at(
        location: &AuditLocation,
        options: AuditOptions,
    ) -> Result<AuditLog, AuditError> {
        let (lock, key, mut seq, tip, recovery): (_, _, Box<dyn Sequencer>, _, _) = match location {
            AuditLocation::State(state_dir) => {
                std::fs::create_dir_all(state_dir).map_err(|e| AuditError::Io {
                    path: state_dir.to_path_buf(),
                    source: e,
                })?;
                let lock = lock_state(state_dir)?;
                let key = LogKey::load_or_create(&state_dir.join(KEY_FILE), &options.origin)?;
                let mut store = SqliteStore::open(state_dir)?;
                let (tip, recovery) = recover(&mut store, &key, true)?;
                let seq = LocalSequencer {
                    store: Box::new(store),
                };
                (Some(lock), key, Box::new(seq), tip, recovery)
            }
            AuditLocation::Postgres { url, key_file } => {
                let (mut seq, key) = PgSequencer::open(url, key_file, &options)?;
                let (tip, recovery) = seq.recover(|store| recover(store, &key, false))?;
                (None, key, Box::new(seq), tip, recovery)
            }
        };
        if let Some((index, why)) = &recovery.truncated {
            tracing::warn!(
                index,
                removed = recovery.removed,
                "audit log: truncated a damaged unsigned tail: {why}"
            );
        }
        let mut writer = Writer {
            key,
            tip,
            interval: options.interval(),
            max_batch: options.max_batch.max(1),
            failed: None,
            committed: Arc::new(AtomicU64::new(0)),
        };
        if writer.tip.size() > writer.tip.signed_size() {
            seq.sign(&mut writer.tip, &writer.key)?;
        }
        let verifier_key = writer.key.verifier_key();
        writer.committed.store(writer.tip.size(), Ordering::Release);
        let committed = writer.committed.clone();
        let (sender, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kura-audit-writer".into())
            .spawn(move || writer.run(seq, rx))
            .map_err(|e| AuditError::Failed(format!("cannot start the writer thread: {e}")))?;
        Ok(AuditLog {
            sender,
            thread: Mutex::new(Some(thread)),
            committed,
            verifier_key,
            recovery,
            location: location.clone(),
            _lock: lock,
        })
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The state directory of a SQLite log; for a PostgreSQL log, the key file's directory.
    pub fn state_dir(&self) -> &Path {
        match &self.location {
            AuditLocation::State(dir) => dir,
            AuditLocation::Postgres { key_file, .. } => {
                key_file.parent().unwrap_or_else(|| Path::new("."))
            }
        }
    }

    pub fn location(&self) -> &AuditLocation {
        &self.location
    }

    /// A read-only view of this log's store (search, receipts, verification), beside the writer.
    pub fn reader(&self) -> Result<AuditReader, AuditError> {
        AuditReader::open_at(&self.location)
    }

    /// Entries durably committed so far (with PostgreSQL: as far as this writer has seen).
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

    /// Signs a checkpoint now if there are unsigned entries; returns the latest checkpoint. On a
    /// shared PostgreSQL log only the lease holder signs: on another node this returns the latest
    /// stored checkpoint, which the holder extends within a checkpoint interval.
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

/// Rebuilds the writer's tip from the store, checking every leaf against the chain and every
/// checkpoint. With `truncate`, damage past the last signed checkpoint is truncated (SQLite: a
/// torn tail this process wrote); without it (a shared log, where every stored entry may have
/// been acknowledged by another node) any damage refuses to open.
pub(crate) fn recover(
    store: &mut dyn LeafStore,
    key: &LogKey,
    truncate: bool,
) -> Result<(Tip, RecoveryReport), AuditError> {
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
    let mut tip = Tip::default();
    let mut next_cp = checkpoints.iter().peekable();
    let mut problem: Option<(u64, String)> = None;
    store.scan(0, &mut |entry| {
        let i = tip.size();
        if let Err(what) = tip.absorb(entry.index, &entry.leaf) {
            problem = Some((i, what));
            return Ok(false);
        }
        let size = tip.size();
        while let Some(c) = next_cp.peek() {
            if c.size > size {
                break;
            }
            if c.size == size {
                if let Err(what) = tip.check_checkpoint(size, &c.root) {
                    problem = Some((size - 1, what));
                    return Ok(false);
                }
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
        if index < signed_size || !truncate {
            return Err(AuditError::Damaged { index, what });
        }
        report.removed = store.truncate(index)?;
        report.truncated = Some((index, what));
    } else if tip.size() < signed_size {
        return Err(AuditError::Damaged {
            index: tip.size(),
            what: format!(
                "entries {}..{} are missing below the signed checkpoint of size {signed_size}",
                tip.size(),
                signed_size
            ),
        });
    }
    report.entries = tip.size();
    Ok((tip, report))
}

struct Writer {
    key: LogKey,
    tip: Tip,
    interval: Duration,
    max_batch: usize,
    failed: Option<String>,
    committed: Arc<AtomicU64>,
}

/// What a batch entry needs besides its position: computed before the batch's transaction so
/// that the time spent holding a shared log's append lock is only the position-dependent work.
struct Prepared {
    salt: [u8; 32],
    payload: String,
    commitment: [u8; 32],
}

impl Writer {
    fn run(mut self, mut seq: Box<dyn Sequencer>, rx: mpsc::Receiver<Request>) {
        let mut last_sign = Instant::now();
        let mut pending: Vec<(Event, Reply)> = Vec::new();
        loop {
            // A shared log wakes every interval: other nodes' entries may need signing.
            let wait = if seq.shared() || self.tip.size() > self.tip.signed_size() {
                self.interval.saturating_sub(last_sign.elapsed())
            } else {
                self.interval
            };
            let first = match rx.recv_timeout(wait) {
                Ok(r) => Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.flush(seq.as_mut(), &mut pending);
                    let _ = self.close(seq.as_mut());
                    return;
                }
            };
            let mut next = first;
            while let Some(req) = next {
                match req {
                    Request::Append(e, r) => {
                        pending.push((e, r));
                        if pending.len() >= self.max_batch {
                            self.flush(seq.as_mut(), &mut pending);
                        }
                    }
                    Request::Erase(index, ack) => {
                        self.flush(seq.as_mut(), &mut pending);
                        let r = match &self.failed {
                            Some(f) => Err(AuditError::Failed(f.clone())),
                            None => seq.store().erase_payload(index),
                        };
                        let _ = ack.send(r);
                    }
                    Request::Checkpoint(ack) => {
                        self.flush(seq.as_mut(), &mut pending);
                        let r = self
                            .checkpoint_or_fail(seq.as_mut())
                            .and_then(|()| seq.store().latest_checkpoint());
                        last_sign = Instant::now();
                        let _ = ack.send(r);
                    }
                    Request::Shutdown(ack) => {
                        self.flush(seq.as_mut(), &mut pending);
                        let _ = ack.send(self.close(seq.as_mut()));
                        return;
                    }
                }
                next = rx.try_recv().ok();
            }
            self.flush(seq.as_mut(), &mut pending);
            let due = seq.shared() || self.tip.size() > self.tip.signed_size();
            if due && last_sign.elapsed() >= self.interval {
                let _ = self.checkpoint_or_fail(seq.as_mut());
                last_sign = Instant::now();
            }
        }
    }

    fn close(&mut self, seq: &mut dyn Sequencer) -> Result<(), AuditError> {
        if let Some(f) = &self.failed {
            return Err(AuditError::Failed(f.clone()));
        }
        let r = seq.close(&mut self.tip, &self.key);
        self.committed.store(self.tip.size(), Ordering::Release);
        r
    }

    fn checkpoint_or_fail(&mut self, seq: &mut dyn Sequencer) -> Result<(), AuditError> {
        if let Some(f) = &self.failed {
            return Err(AuditError::Failed(f.clone()));
        }
        let r = seq.sign(&mut self.tip, &self.key);
        self.committed.store(self.tip.size(), Ordering::Release);
        r.inspect_err(|e| {
            if seq.fatal(e) {
                self.failed = Some(format!("writing a checkpoint failed: {e}"));
                tracing::error!("audit log failed closed: {e}");
            } else {
                tracing::warn!("audit log: checkpoint not signed, will retry: {e}");
            }
        })
    }

    /// Commits every pending append in one transaction, then acknowledges them all. A failed
    /// commit is never retried. When the failure leaves the log's state unknown (SQLite, or
    /// damage found in a shared log) the log stops accepting work; a shared log whose
    /// transaction failed re-reads the database's state in its next transaction instead.
    fn flush(&mut self, seq: &mut dyn Sequencer, pending: &mut Vec<(Event, Reply)>) {
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
        let prepared: Vec<Prepared> = batch
            .iter()
            .enumerate()
            .map(|(i, (event, _))| {
                let mut salt = [0u8; 32];
                salt.copy_from_slice(&salts[i * 32..i * 32 + 32]);
                let payload = canonical_json(&event.payload);
                let commitment = commitment(&salt, &payload);
                Prepared {
                    salt,
                    payload,
                    commitment,
                }
            })
            .collect();
        let mut tip = self.tip.clone();
        let mut acks = Vec::with_capacity(batch.len());
        let mut build = |tip: &mut Tip| {
            acks.clear();
            // One timestamp per batch: non-decreasing across the log even if this clock steps
            // back or runs behind another node's.
            let ts = tip.last_ts.max(now_micros());
            let mut entries = Vec::with_capacity(batch.len());
            for ((event, _), p) in batch.iter().zip(&prepared) {
                let index = tip.size();
                let leaf = Leaf {
                    index,
                    prev_hash: tip.last_hash,
                    timestamp_micros: ts,
                    kind: event.kind.as_str().to_string(),
                    actor: event.actor.clone(),
                    session: event.session.clone(),
                    project: event.project.clone(),
                    objects: event.object.iter().cloned().collect(),
                    commitment: p.commitment,
                }
                .encode();
                tip.last_hash = leaf_hash(&leaf);
                tip.last_ts = ts;
                tip.frontier.push(tip.last_hash);
                acks.push(Appended {
                    index,
                    leaf_hash: tip.last_hash,
                });
                entries.push(NewEntry {
                    index,
                    leaf,
                    salt: p.salt,
                    payload: p.payload.clone(),
                });
            }
            entries
        };
        let result = seq.append(&mut tip, &mut build);
        match result {
            Ok(()) => {
                self.tip = tip;
                self.committed.store(self.tip.size(), Ordering::Release);
                for ((_, reply), ack) in batch.into_iter().zip(acks) {
                    reply.send(Ok(ack));
                }
            }
            Err(e) if seq.fatal(&e) => {
                let msg = format!("committing entries {}.. failed: {e}", self.tip.size());
                tracing::error!("audit log failed closed: {msg}");
                self.failed = Some(msg.clone());
                for (_, reply) in batch {
                    reply.send(Err(AuditError::Failed(msg.clone())));
                }
            }
            Err(e) => {
                let msg = format!("the entry was not acknowledged: {e}");
                tracing::error!("audit log: a batch of {} failed: {e}", batch.len());
                for (_, reply) in batch {
                    reply.send(Err(AuditError::Store(msg.clone())));
                }
            }
        }
    }
}
