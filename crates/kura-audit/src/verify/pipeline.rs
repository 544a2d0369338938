//! The parallel half of verification. The caller's thread reads chunks of entries from the store;
//! a pool of threads does the per-entry work that needs nothing from other entries (parse the
//! leaf, check the payload commitment, hash the leaf); one fold thread takes the results back in
//! index order and runs the order-dependent checks (position, chain, timestamps, tree roots). The
//! fold sees entries in exactly the order a sequential pass would, so the first bad index it
//! reports is the same.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use sha2::{Digest, Sha256};

use super::leaf::{parse_leaf, LeafHead};
use super::merkle::hash_leaf;
use crate::store::{EntryChunk, LeafStore, ScanEnd};
use crate::AuditError;

/// What the payload commitment check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commitment {
    Erased,
    Matches,
    Differs,
    /// The leaf did not parse, so there is no commitment to compare with.
    Unchecked,
}

/// The order-independent results for one stored entry.
#[derive(Debug)]
pub struct Checked {
    /// The index the store filed the entry under.
    pub stored_index: u64,
    pub hash: [u8; 32],
    pub head: Result<LeafHead, String>,
    pub commitment: Commitment,
}

fn check_chunk(chunk: &EntryChunk) -> Vec<Checked> {
    chunk
        .iter()
        .map(|e| {
            let head = parse_leaf(e.leaf);
            let commitment = match (e.payload, &head) {
                (None, _) => Commitment::Erased,
                (Some(_), Err(_)) => Commitment::Unchecked,
                (Some((salt, payload)), Ok(h)) => {
                    let mut d = Sha256::new();
                    d.update(salt);
                    d.update(payload);
                    if <[u8; 32]>::from(d.finalize()) == h.commitment {
                        Commitment::Matches
                    } else {
                        Commitment::Differs
                    }
                }
            };
            Checked {
                stored_index: e.index,
                hash: hash_leaf(e.leaf),
                head,
                commitment,
            }
        })
        .collect()
}

fn thread_died(what: &str) -> AuditError {
    AuditError::Store(format!(
        "the verifier's {what} thread panicked; the result is unknown"
    ))
}

/// Scans every entry of `store`, calling `fold` for each in index order until it returns false.
/// `threads` is the number of checking threads; 1 runs everything on the caller's thread.
pub fn run(
    store: &mut dyn LeafStore,
    threads: usize,
    chunk_len: usize,
    fold: &mut (dyn FnMut(&Checked) -> bool + Send),
) -> Result<ScanEnd, AuditError> {
    if threads <= 1 {
        return store.scan_chunks(0, chunk_len, &mut |chunk| {
            Ok(check_chunk(&chunk).iter().all(&mut *fold))
        });
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Bounded queues keep memory flat: the reader runs at most a few chunks ahead.
        let (work_tx, work_rx) = mpsc::sync_channel::<(u64, EntryChunk)>(threads * 2);
        let (done_tx, done_rx) = mpsc::sync_channel::<(u64, Vec<Checked>)>(threads * 2);
        // Each worker owns a handle, so once they have all gone the reader's send fails
        // instead of blocking on a full queue.
        let work_rx = Arc::new(Mutex::new(work_rx));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&work_rx);
                let tx = done_tx.clone();
                s.spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    let Ok((seq, chunk)) = job else { break };
                    if tx.send((seq, check_chunk(&chunk))).is_err() {
                        break;
                    }
                })
            })
            .collect();
        drop(work_rx);
        drop(done_tx);
        let stop = &stop;
        let folder = s.spawn(move || {
            let mut pending: BTreeMap<u64, Vec<Checked>> = BTreeMap::new();
            let mut next = 0u64;
            for (seq, checked) in done_rx {
                pending.insert(seq, checked);
                while let Some(batch) = pending.remove(&next) {
                    next += 1;
                    if !batch.iter().all(&mut *fold) {
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
        let mut seq = 0u64;
        let scanned = store.scan_chunks(0, chunk_len, &mut |chunk| {
            if stop.load(Ordering::Relaxed) || work_tx.send((seq, chunk)).is_err() {
                return Ok(false);
            }
            seq += 1;
            Ok(true)
        });
        drop(work_tx);
        for w in workers {
            w.join().map_err(|_| thread_died("checking"))?;
        }
        folder.join().map_err(|_| thread_died("fold"))?;
        scanned
    })
}
