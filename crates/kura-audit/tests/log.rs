//! The log as a whole: appends, erasure, receipts, fail-closed, crash recovery, and every
//! tampering attack from issue 3 detected by the verifier with the right exit code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use kura_audit::verify::{verify_receipt, verify_state, VerifierKey};
use kura_audit::{AuditError, AuditLog, AuditOptions, AuditReader, AuditSink, Event, EventKind};
use rusqlite::params;

fn fill(dir: &Path, n: u64) {
    let log = AuditLog::open(dir, AuditOptions::default()).unwrap();
    for i in 0..n {
        log.append(
            Event::new(EventKind::QuerySubmitted, format!("user{}", i % 3))
                .project("p1")
                .payload(serde_json::json!({ "sql": format!("SELECT {i}") })),
        )
        .unwrap();
        if i % 4 == 3 {
            log.checkpoint().unwrap();
        }
    }
    log.close().unwrap();
}

fn code(dir: &Path, trusted: Option<&str>) -> u8 {
    verify_state(dir, None, trusted).unwrap().exit_code()
}

/// The attacker's own connection to the store. It skips fsync (`synchronous=OFF`): tampering
/// needs no durability, and the bit-flip test makes thousands of writes.
fn attacker(dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join(kura_audit::sqlite::DB_FILE)).unwrap();
    c.execute_batch("PRAGMA synchronous=OFF;").unwrap();
    c
}

fn sql(dir: &Path, s: &str) {
    attacker(dir).execute_batch(s).unwrap();
}

fn leaf(dir: &Path, i: i64) -> Vec<u8> {
    attacker(dir)
        .query_row("SELECT leaf FROM audit_leaves WHERE idx=?1", [i], |r| {
            r.get(0)
        })
        .unwrap()
}

fn set_leaf(dir: &Path, i: i64, bytes: &[u8]) {
    attacker(dir)
        .execute(
            "UPDATE audit_leaves SET leaf=?2 WHERE idx=?1",
            params![i, bytes],
        )
        .unwrap();
}

#[test]
fn intact_log_verifies_and_receipts_check_out() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 10);
    assert_eq!(code(d.path(), None), 0);
    let key = VerifierKey::parse(&AuditReader::verifier_key(d.path()).unwrap()).unwrap();
    let mut r = AuditReader::open(d.path()).unwrap();
    for i in 0..10 {
        let receipt = r.receipt(i).unwrap();
        let v = verify_receipt(&receipt, &key).unwrap();
        assert_eq!(v.index, i);
        let forged = receipt.replacen(
            &format!("index {i}\n"),
            &format!("index {}\n", (i + 1) % 10),
            1,
        );
        assert!(verify_receipt(&forged, &key).is_err());
    }
}

#[test]
fn every_bit_flip_in_a_leaf_is_tampering() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 6);
    for i in [0i64, 3, 5] {
        let orig = leaf(d.path(), i);
        for bit in 0..orig.len() * 8 {
            let mut b = orig.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            set_leaf(d.path(), i, &b);
            let rep = verify_state(d.path(), None, None).unwrap();
            assert_eq!(rep.exit_code(), 1, "leaf {i} bit {bit}");
            // A changed leaf is caught at itself or, when it is still well-formed, at the next
            // leaf whose chain link no longer matches (the last leaf is caught by the checkpoint).
            let at = rep.tampering.as_ref().unwrap().0;
            assert!(
                at == i as u64 || at == i as u64 + 1,
                "leaf {i} bit {bit}: {rep:?}"
            );
        }
        set_leaf(d.path(), i, &orig);
    }
    assert_eq!(code(d.path(), None), 0);
}

#[test]
fn deletion_reordering_insertion_duplication_truncation_and_checkpoint_replacement() {
    let attacks: &[(&str, &str)] = &[
        ("delete", "DELETE FROM audit_leaves WHERE idx=4; DELETE FROM audit_payloads WHERE idx=4;"),
        ("reorder", "UPDATE audit_leaves SET idx=-1 WHERE idx=3; UPDATE audit_leaves SET idx=3 WHERE idx=4; UPDATE audit_leaves SET idx=4 WHERE idx=-1;"),
        ("insert", "UPDATE audit_leaves SET idx=idx+100 WHERE idx>=5; UPDATE audit_leaves SET idx=idx-99 WHERE idx>=100; INSERT INTO audit_leaves SELECT 5, leaf FROM audit_leaves WHERE idx=2;"),
        ("duplicate", "UPDATE audit_leaves SET idx=idx+100 WHERE idx>=5; UPDATE audit_leaves SET idx=idx-99 WHERE idx>=100; INSERT INTO audit_leaves SELECT 5, leaf FROM audit_leaves WHERE idx=4;"),
        ("truncate", "DELETE FROM audit_leaves WHERE idx>=9;"),
        ("payload", "UPDATE audit_payloads SET payload='{\"sql\":\"SELECT 0 -- hidden\"}' WHERE idx=2;"),
        ("checkpoint", "UPDATE audit_checkpoints SET note=replace(note, '\n8\n', '\n7\n') WHERE size=8;"),
        ("checkpoint-root", "UPDATE audit_checkpoints SET root=zeroblob(32) WHERE size=4;"),
    ];
    for (name, attack) in attacks {
        let d = tempfile::tempdir().unwrap();
        fill(d.path(), 10);
        sql(d.path(), attack);
        let rep = verify_state(d.path(), None, None).unwrap();
        assert_eq!(rep.exit_code(), 1, "{name}: {rep:?}");
        // The writer refuses to open over damage below a signed checkpoint.
        match AuditLog::open(d.path(), AuditOptions::default()) {
            Err(AuditError::Damaged { .. }) => {}
            Err(e) => panic!("{name}: wrong error {e}"),
            Ok(_) if *name == "payload" => {}
            Ok(_) => panic!("{name}: damaged log opened"),
        }
    }
}

#[test]
fn rewritten_history_resigned_with_the_log_key_is_a_fork() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 8);
    let trusted = AuditReader::open(d.path())
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap()
        .note;
    assert_eq!(code(d.path(), Some(&trusted)), 0);
    // The attacker keeps the key, wipes the log and writes a different history of equal length.
    sql(
        d.path(),
        "DELETE FROM audit_leaves; DELETE FROM audit_payloads; DELETE FROM audit_checkpoints;",
    );
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    for i in 0..12 {
        log.append(Event::new(EventKind::SignIn, format!("mallory{i}")))
            .unwrap();
    }
    log.close().unwrap();
    assert_eq!(code(d.path(), None), 0, "internally consistent rewrite");
    let rep = verify_state(d.path(), None, Some(&trusted)).unwrap();
    assert_eq!(rep.exit_code(), 3, "{rep:?}");
    assert_eq!(rep.conflict.unwrap().trusted_checkpoint, trusted);
}

#[test]
fn rollback_below_a_trusted_checkpoint_is_detected() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 12);
    let trusted = AuditReader::open(d.path())
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap()
        .note;
    sql(d.path(), "DELETE FROM audit_leaves WHERE idx>=8; DELETE FROM audit_payloads WHERE idx>=8; DELETE FROM audit_checkpoints WHERE size>8;");
    assert_eq!(code(d.path(), None), 0);
    assert_eq!(code(d.path(), Some(&trusted)), 3);
}

#[test]
fn erasing_a_payload_keeps_the_log_verifiable() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 5);
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    assert!(log.erase_payload(2).unwrap());
    assert!(!log.erase_payload(2).unwrap());
    log.close().unwrap();
    let rep = verify_state(d.path(), None, None).unwrap();
    assert_eq!((rep.exit_code(), rep.erased_payloads), (0, 1));
    let mut hits = Vec::new();
    AuditReader::open(d.path())
        .unwrap()
        .search(&Default::default(), &mut |h| {
            hits.push(h);
            Ok(())
        })
        .unwrap();
    assert!(hits[2].payload.is_none() && hits[1].payload.is_some());
}

#[test]
fn unsigned_damaged_tail_is_truncated_and_reported() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 10);
    // Simulate a crash before the last checkpoints were signed, with a torn entry 9.
    sql(d.path(), "DELETE FROM audit_checkpoints WHERE size>8; UPDATE audit_leaves SET leaf=substr(leaf,1,20) WHERE idx=9;");
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    let rec = log.recovery().clone();
    assert_eq!(rec.truncated.as_ref().map(|t| t.0), Some(9), "{rec:?}");
    assert_eq!((rec.removed, rec.entries), (1, 9));
    log.close().unwrap();
    assert_eq!(code(d.path(), None), 0);
}

#[test]
fn a_failed_commit_fails_closed_for_every_later_append() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 3);
    sql(d.path(), "CREATE TRIGGER audit_test_fail BEFORE INSERT ON audit_leaves WHEN NEW.idx = 4 BEGIN SELECT RAISE(ABORT, 'disk gone'); END;");
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    log.append(Event::new(EventKind::SignIn, "a")).unwrap();
    assert!(matches!(
        log.append(Event::new(EventKind::SignIn, "b")),
        Err(AuditError::Failed(_))
    ));
    assert!(matches!(
        log.append(Event::new(EventKind::SignIn, "c")),
        Err(AuditError::Failed(_))
    ));
    drop(log);
    assert_eq!(code(d.path(), None), 0);
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_log() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    assert!(matches!(
        AuditLog::open(d.path(), AuditOptions::default()),
        Err(AuditError::Locked(_))
    ));
    log.close().unwrap();
}

#[test]
fn concurrent_async_and_blocking_appends_get_distinct_indices() {
    let d = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(AuditLog::open(d.path(), AuditOptions::default()).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| {
                        log.append(Event::new(EventKind::SignIn, format!("t{t}")))
                            .unwrap()
                            .index
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let a = rt.block_on(async {
        log.append_async(Event::new(EventKind::SignOut, "async"))
            .await
            .unwrap()
            .index
    });
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.push(a);
    all.sort();
    assert_eq!(all, (0..401).collect::<Vec<_>>());
    std::sync::Arc::try_unwrap(log)
        .ok()
        .unwrap()
        .close()
        .unwrap();
    assert_eq!(code(d.path(), None), 0);
}
