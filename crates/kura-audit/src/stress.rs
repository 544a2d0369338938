//! Crash-test child: appends from several threads forever and prints `ack <index> <leaf hash>`
//! for each acknowledged entry, so a parent that SIGKILLs it can check every acknowledged entry
//! survived. Used by `kura audit stress` (hidden), the tests and `kura bench audit`; the tests
//! also run several at once on one PostgreSQL log.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::note::hex;
use crate::{AuditError, AuditLocation, AuditLog, AuditOptions, AuditSink, Event, EventKind};

pub fn run_child(state_dir: &Path, writers: usize) -> Result<(), AuditError> {
    run_child_at(
        &AuditLocation::State(state_dir.to_path_buf()),
        writers,
        AuditOptions::default(),
    )
}

/// `run_child` on any log, e.g. one node of several appending to a shared PostgreSQL log.
pub fn run_child_at(
    location: &AuditLocation,
    writers: usize,
    options: AuditOptions,
) -> Result<(), AuditError> {
    let log = Arc::new(AuditLog::open_at(location, options)?);
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut handles = Vec::new();
    for w in 0..writers.max(1) {
        let log = log.clone();
        let out = out.clone();
        handles.push(std::thread::spawn(move || -> Result<(), AuditError> {
            for n in 0u64.. {
                let event = Event::new(EventKind::AdminAction, format!("stress-{w}"))
                    .payload(serde_json::json!({ "n": n }));
                let line = match log.append(event) {
                    Ok(a) => format!("ack {} {}\n", a.index, hex(&a.leaf_hash)),
                    // A shared log's batch can fail without stopping the log (a node
                    // paused past its lease); that entry is simply not acknowledged.
                    Err(AuditError::Store(why)) => format!("err {why}\n"),
                    Err(e) => return Err(e),
                };
                let mut o = match out.lock() {
                    Ok(o) => o,
                    Err(p) => p.into_inner(),
                };
                // The parent only counts what it read; a broken pipe ends the child.
                if o.write_all(line.as_bytes())
                    .and_then(|()| o.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
            Ok(())
        }));
    }
    for h in handles {
        if let Ok(Err(e)) = h.join() {
            return Err(e);
        }
    }
    Ok(())
}
