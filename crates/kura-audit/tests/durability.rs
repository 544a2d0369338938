//! Durability at the library level: the store's connection really runs WAL with
//! `synchronous=FULL`, and a process appending under load that is SIGKILLed loses no entry it
//! acknowledged. The crash test re-runs this test binary as the child (selected by an
//! environment variable), so it needs no `kura` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kura_audit::verify::{merkle::hash_leaf, verify_state};
use kura_audit::{
    AuditLog, AuditOptions, AuditReader, AuditSink, Event, EventKind, LeafStore, SqliteStore,
};

#[test]
fn store_connection_runs_wal_with_full_sync() {
    let d = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(d.path()).unwrap();
    let c = store.connection();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    assert_eq!(sync, 2, "2 is FULL: fsync of the WAL at every commit");
    drop(store);
    // The log's writer uses the same open path; after it has written, the file itself is in WAL
    // mode (journal_mode is persistent), so every later connection commits through the WAL.
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    log.append(Event::new(EventKind::SignIn, "a")).unwrap();
    log.close().unwrap();
    let plain = rusqlite::Connection::open(d.path().join(kura_audit::sqlite::DB_FILE)).unwrap();
    let mode: String = plain
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
}

const CHILD: &str = "KURA_AUDIT_CRASH_CHILD";
const TEST: &str = "sigkilled_appender_loses_no_acknowledged_entry";

/// One child run: waits until the child has acknowledged at least `min_acks` entries, lets it
/// run `extra` longer, SIGKILLs it and returns every `(index, leaf hash)` it acknowledged.
fn crash_round(dir: &Path, min_acks: usize, extra: Duration) -> Vec<(u64, String)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The test harness prints its own lines too; only ours start with "ack".
            let mut p = line.split(' ');
            if let (Some("ack"), Some(i), Some(h)) = (p.next(), p.next(), p.next()) {
                acks.push((i.parse::<u64>().unwrap(), h.to_string()));
                let _ = tx.send(());
            }
        }
        acks
    });
    for _ in 0..min_acks {
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            panic!(
                "crash child stopped acknowledging (status {:?})",
                child.try_wait()
            );
        }
    }
    std::thread::sleep(extra);
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no close, no final checkpoint
    child.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn sigkilled_appender_loses_no_acknowledged_entry() {
    if let Some(dir) = std::env::var_os(CHILD) {
        kura_audit::stress::run_child(Path::new(&dir), 8).unwrap();
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for round in 0..4u64 {
        for (i, h) in crash_round(d.path(), 30, Duration::from_millis(5 + round * 23)) {
            // An index handed out twice would mean an acknowledged entry was overwritten.
            assert!(acked.insert(i, h).is_none(), "index {i} acknowledged twice");
        }
    }
    assert!(acked.len() >= 4 * 30);
    let report = verify_state(d.path(), None, None).unwrap();
    assert_eq!(report.exit_code(), 0, "{report:?}");
    let mut reader = AuditReader::open(d.path()).unwrap();
    for (i, h) in &acked {
        let e = reader
            .store()
            .entry(*i)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged entry {i} was lost"));
        // The verifier's hash, not the writer's, must match what the child acknowledged.
        assert_eq!(&kura_audit::note::hex(&hash_leaf(&e.leaf)), h, "entry {i}");
    }
    // The log is still writable after the crashes: recovery ran in every child, and runs here.
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    let next = log.append(Event::new(EventKind::SignIn, "after")).unwrap();
    assert!(next.index >= report.entries);
    log.close().unwrap();
    assert_eq!(verify_state(d.path(), None, None).unwrap().exit_code(), 0);
}
