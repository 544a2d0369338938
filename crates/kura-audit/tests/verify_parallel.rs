//! The parallel verifier gives the same report as a sequential pass: the first bad index is exact
//! whatever the thread count and wherever chunk boundaries fall; and the bulk `scan_chunks` of
//! `SqliteStore` agrees with the trait's default (the one a new backend inherits).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

mod common;

use common::{chunked, DefaultScan};
use kura_audit::store::ScanEnd;
use kura_audit::verify::{verify_store_with, Report, VerifierKey, VerifyOptions};
use kura_audit::{
    AuditLog, AuditOptions, AuditReader, AuditSink, Event, EventKind, LeafStore, SqliteStore,
};

const N: u64 = 200;

/// `N` entries from 8 threads (so group commit batches them), checkpoints along the way.
fn fill(dir: &Path) {
    let log = Arc::new(AuditLog::open(dir, AuditOptions::default()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..N / 8 {
                    log.append(
                        Event::new(EventKind::QuerySubmitted, format!("user{t}"))
                            .project("p1")
                            .object(format!("o{i}"))
                            .payload(serde_json::json!({ "sql": format!("SELECT {i}") })),
                    )
                    .unwrap();
                    if i % 10 == 9 {
                        log.checkpoint().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(log).ok().unwrap().close().unwrap();
}

fn attack(dir: &Path, sql: &str) {
    let c = rusqlite::Connection::open(dir.join(kura_audit::sqlite::DB_FILE)).unwrap();
    c.execute_batch("PRAGMA synchronous=OFF;").unwrap();
    c.execute_batch(sql).unwrap();
}

fn key(dir: &Path) -> VerifierKey {
    VerifierKey::parse(&AuditReader::verifier_key(dir).unwrap()).unwrap()
}

fn verify(dir: &Path, threads: usize, chunk_len: usize) -> Report {
    let mut store = SqliteStore::open_read_only(dir).unwrap();
    verify_store_with(
        &mut store,
        &key(dir),
        None,
        VerifyOptions { threads, chunk_len },
    )
    .unwrap()
}

/// Every thread count and chunk size gives exactly the sequential report.
fn same_report_everywhere(dir: &Path) -> Report {
    let reference = verify(dir, 1, 4096);
    for threads in [1, 2, 3, 5] {
        for chunk_len in [1, 7, 64, 4096] {
            assert_eq!(
                verify(dir, threads, chunk_len),
                reference,
                "threads {threads}, chunk {chunk_len}"
            );
        }
    }
    reference
}

#[test]
fn first_bad_index_is_exact_for_any_threads_and_chunk_size() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path());
    let intact = same_report_everywhere(d.path());
    assert_eq!((intact.exit_code(), intact.entries), (0, N));
    // Around the chunk boundaries of sizes 7 and 64, and both ends of the log.
    for k in [0u64, 6, 7, 8, 63, 64, 65, 127, 199] {
        attack(
            d.path(),
            &format!("UPDATE audit_payloads SET payload = payload || ' ' WHERE idx = {k}"),
        );
        let rep = same_report_everywhere(d.path());
        let (at, what) = rep.tampering.clone().unwrap();
        assert_eq!(at, k, "{what}");
        assert!(what.contains("commitment"), "{what}");
        attack(
            d.path(),
            &format!("UPDATE audit_payloads SET payload = rtrim(payload, ' ') WHERE idx = {k}"),
        );
    }
    assert_eq!(same_report_everywhere(d.path()), intact);
    // Several damages at once, the later one in an earlier-finishing chunk: the lowest wins.
    attack(
        d.path(),
        "UPDATE audit_payloads SET payload = '{}' WHERE idx = 150; \
         UPDATE audit_leaves SET leaf = substr(leaf, 1, 30) WHERE idx = 90;",
    );
    let rep = same_report_everywhere(d.path());
    let (at, what) = rep.tampering.unwrap();
    assert_eq!(at, 90);
    assert!(what.contains("malformed"), "{what}");
    // A gap stops the fold early; the reader and workers must wind down without hanging.
    attack(d.path(), "DELETE FROM audit_leaves WHERE idx = 40;");
    let rep = same_report_everywhere(d.path());
    assert_eq!(rep.entries, 40);
    assert!(rep.tampering.unwrap().1.contains("entry 40 is missing"));
}

#[test]
fn sqlite_bulk_scan_agrees_with_the_default_and_finds_orphans() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path());
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    assert!(log.erase_payload(17).unwrap());
    log.close().unwrap();
    attack(
        d.path(),
        "INSERT INTO audit_payloads (idx, salt, payload) VALUES (-5, x'00', '{}'), \
         (1000, x'00', '{}'), (1001, x'00', '{}')",
    );
    let mut fast = SqliteStore::open_read_only(d.path()).unwrap();
    let mut plain = DefaultScan(SqliteStore::open_read_only(d.path()).unwrap());
    let mut reference = Vec::new();
    fast.scan(0, &mut |e| {
        let p = e.payload.map(|p| (p.salt, p.payload.into_bytes()));
        reference.push((e.index, e.leaf, p));
        Ok(true)
    })
    .unwrap();
    assert_eq!(reference.len() as u64, N);
    assert!(reference[17].2.is_none() && reference[18].2.is_some());
    for chunk_len in [1, 7, 4096] {
        for store in [&mut fast as &mut dyn LeafStore, &mut plain] {
            let (rows, end) = chunked(store, 0, chunk_len);
            assert_eq!(rows, reference, "chunk {chunk_len}");
            // In the store's order (signed SQL integers), a negative index included.
            let orphans = vec![-5i64 as u64, 1000, 1001];
            assert_eq!(end, ScanEnd::Complete { orphans }, "chunk {chunk_len}");
            let (tail, _) = chunked(store, 150, chunk_len);
            assert_eq!(tail, reference[150..]);
        }
    }
    let key = key(d.path());
    let a = verify_store_with(&mut fast, &key, None, VerifyOptions::default()).unwrap();
    let b = verify_store_with(&mut plain, &key, None, VerifyOptions::default()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.erased_payloads, 1);
    let (at, what) = a.tampering.unwrap();
    assert_eq!(at, 1000, "{what}");
    assert!(what.contains("does not exist"), "{what}");
}
