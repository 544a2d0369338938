//! The log on PostgreSQL: the SQLite log's behaviours (append, receipts, erasure, every tampering
//! attack detected, forks and rollbacks), and what several writers on one database add: one
//! sequence with no gap or duplicate whichever node appends, one checkpoint history (sizes
//! increasing, each consistent with the last, every signature valid) through lease contention,
//! a paused holder's takeover, and SIGKILLed nodes losing no acknowledged entry.
//!
//! Needs PostgreSQL: `KURA_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`.
//! Each test works in a schema of its own (dropped at the end), so tests run in parallel and
//! again. An unreachable database fails the tests; it never skips them. The crash tests re-run
//! this test binary as their child nodes (selected by environment variables).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use kura_audit::merkle::{consistency_proof, leaf_hash};
use kura_audit::note::hex;
mod common;

use common::{chunked, DefaultScan};
use kura_audit::store::ScanEnd;
use kura_audit::verify::merkle::{hash_leaf, verify_consistency};
use kura_audit::verify::{
    open_checkpoint, verify_at, verify_reader, verify_receipt, verify_store_with, VerifierKey,
    VerifyOptions,
};
use kura_audit::{
    AuditError, AuditLocation, AuditLog, AuditOptions, AuditReader, AuditSink, Event, EventKind,
    LeafStore, PgStore,
};
use postgres::{Client, NoTls};

const URL_ENV: &str = "KURA_TEST_POSTGRES_URL";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn base_url() -> String {
    std::env::var(URL_ENV).unwrap_or_else(|_| DEFAULT_URL.to_string())
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).unwrap();
    hex(&b)
}

/// One test's schema and key directory; the schema is dropped when it goes out of scope, also
/// when the test fails.
struct Db {
    base: String,
    schema: String,
    url: String,
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Db {
        let base = base_url();
        let mut admin = Client::connect(&base, NoTls).unwrap_or_else(|e| {
            let cause = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            panic!(
                "these tests need PostgreSQL, which is not reachable at {base}: {e}{cause}; \
                 start it, or point {URL_ENV} at one"
            )
        });
        let schema = format!("kura_audit_test_{}_{}", std::process::id(), random_hex(6));
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        Db {
            base,
            schema,
            url,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("audit-signing.key")
    }

    fn location(&self) -> AuditLocation {
        AuditLocation::postgres(&self.url, self.key_file())
    }

    fn open(&self, options: AuditOptions) -> AuditLog {
        AuditLog::open_postgres(&self.url, &self.key_file(), options).unwrap()
    }

    /// The attacker's (or the test's) own connection, in this test's schema.
    fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).unwrap()
    }

    fn sql(&self, s: &str) {
        self.client().batch_execute(s).unwrap();
    }

    fn verify(&self, trusted: Option<&str>) -> kura_audit::verify::Report {
        verify_at(&self.location(), None, trusted).unwrap()
    }

    fn key(&self) -> VerifierKey {
        VerifierKey::parse(&self.location().verifier_key().unwrap()).unwrap()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&self.base, NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// Fast checkpoints and a short lease, so that the tests see many of both.
fn fast(node: &str) -> AuditOptions {
    AuditOptions {
        checkpoint_interval: Duration::from_millis(20),
        lease_ttl: Duration::from_millis(600),
        node_name: Some(node.to_string()),
        ..AuditOptions::default()
    }
}

fn event(actor: &str, i: u64) -> Event {
    Event::new(EventKind::QuerySubmitted, actor)
        .project("p1")
        .payload(serde_json::json!({ "sql": format!("SELECT {i}") }))
}

fn fill(db: &Db, n: u64) {
    let log = db.open(AuditOptions::default());
    for i in 0..n {
        log.append(event(&format!("user{}", i % 3), i)).unwrap();
        if i % 4 == 3 {
            log.checkpoint().unwrap();
        }
    }
    log.close().unwrap();
}

fn code(db: &Db, trusted: Option<&str>) -> u8 {
    db.verify(trusted).exit_code()
}

/// The stored checkpoint history, checked: ordered by size, signed in that order, terms never
/// going back, each note valid for its row, and each checkpoint consistent with the one before
/// (proof from the writer's code, checked with the verifier's). Returns (size, term, signer).
fn checked_history(db: &Db) -> Vec<(u64, i64, String)> {
    let key = db.key();
    let mut c = db.client();
    let rows = c
        .query(
            "SELECT size, root, note, term, signer, \
             (extract(epoch from signed_at) * 1000000)::bigint \
             FROM audit_checkpoints ORDER BY size",
            &[],
        )
        .unwrap();
    let mut reader = AuditReader::open_postgres(&db.url).unwrap();
    let last_size = rows.last().map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0);
    let hashes: Vec<[u8; 32]> = reader
        .store()
        .leaves(last_size)
        .unwrap()
        .iter()
        .map(|l| leaf_hash(l))
        .collect();
    assert_eq!(
        hashes.len() as u64,
        last_size,
        "a checkpoint exceeds the log"
    );
    let mut out = Vec::new();
    let mut prev: Option<(u64, [u8; 32], i64, i64)> = None;
    for r in &rows {
        let size = r.get::<_, i64>(0) as u64;
        let root: [u8; 32] = r.get::<_, Vec<u8>>(1).try_into().unwrap();
        let note: String = r.get(2);
        let term: i64 = r.get(3);
        let signer: String = r.get(4);
        let at: i64 = r.get(5);
        let cp = open_checkpoint(&note, &key).unwrap();
        assert_eq!(
            (cp.size, cp.root),
            (size, root),
            "note differs from its row"
        );
        if let Some((psize, proot, pterm, pat)) = prev {
            assert!(term >= pterm, "term went back at size {size}");
            assert!(at >= pat, "checkpoint {size} was signed before {psize}");
            let proof: Vec<Vec<u8>> = consistency_proof(psize as usize, &hashes[..size as usize])
                .iter()
                .map(|h| h.to_vec())
                .collect();
            verify_consistency(psize, size, &proot, &root, &proof)
                .unwrap_or_else(|e| panic!("{psize} -> {size} inconsistent: {e}"));
        }
        prev = Some((size, root, term, at));
        out.push((size, term, signer));
    }
    out
}

#[test]
fn writer_session_commits_synchronously() {
    let db = Db::new();
    let mut store = PgStore::open(&db.url).unwrap();
    assert_eq!(store.session_setting("synchronous_commit").unwrap(), "on");
    assert_eq!(store.session_setting("search_path").unwrap(), db.schema);
    let mut ro = PgStore::open_read_only(&db.url).unwrap();
    assert_eq!(
        ro.session_setting("default_transaction_read_only").unwrap(),
        "on"
    );
}

#[test]
fn intact_log_verifies_receipts_check_out_and_erasure_keeps_it_verifiable() {
    let db = Db::new();
    fill(&db, 10);
    assert_eq!(code(&db, None), 0);
    let key = db.key();
    let mut r = AuditReader::open_postgres(&db.url).unwrap();
    for i in 0..10 {
        let receipt = r.receipt(i).unwrap();
        assert_eq!(verify_receipt(&receipt, &key).unwrap().index, i);
        let forged = receipt.replacen(
            &format!("index {i}\n"),
            &format!("index {}\n", (i + 1) % 10),
            1,
        );
        assert!(verify_receipt(&forged, &key).is_err());
    }
    let log = db.open(AuditOptions::default());
    assert!(log.erase_payload(2).unwrap());
    assert!(!log.erase_payload(2).unwrap());
    let mut hits = Vec::new();
    log.reader()
        .unwrap()
        .search(&Default::default(), &mut |h| {
            hits.push(h);
            Ok(())
        })
        .unwrap();
    log.close().unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits[2].payload.is_none() && hits[1].payload.is_some());
    let rep = db.verify(None);
    assert_eq!((rep.exit_code(), rep.erased_payloads), (0, 1));
    let history = checked_history(&db);
    assert_eq!(history.last().map(|h| h.0), Some(10));
}

#[test]
fn every_bit_flip_in_a_leaf_is_tampering() {
    let db = Db::new();
    fill(&db, 6);
    let key = db.location().verifier_key().unwrap();
    let mut reader = AuditReader::open_postgres(&db.url).unwrap();
    let mut c = db.client();
    for i in [0i64, 5] {
        let orig: Vec<u8> = c
            .query_one("SELECT leaf FROM audit_leaves WHERE idx = $1", &[&i])
            .unwrap()
            .get(0);
        for bit in 0..orig.len() * 8 {
            let mut b = orig.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            c.execute(
                "UPDATE audit_leaves SET leaf = $2 WHERE idx = $1",
                &[&i, &b],
            )
            .unwrap();
            let rep = verify_reader(&mut reader, &key, None).unwrap();
            assert_eq!(rep.exit_code(), 1, "leaf {i} bit {bit}");
            let at = rep.tampering.as_ref().unwrap().0;
            assert!(
                at == i as u64 || at == i as u64 + 1,
                "leaf {i} bit {bit}: {rep:?}"
            );
        }
        c.execute(
            "UPDATE audit_leaves SET leaf = $2 WHERE idx = $1",
            &[&i, &orig],
        )
        .unwrap();
    }
    assert_eq!(code(&db, None), 0);
}

#[test]
fn deletion_reordering_insertion_truncation_and_checkpoint_replacement() {
    let attacks: &[(&str, &str)] = &[
        ("delete", "DELETE FROM audit_leaves WHERE idx=4; DELETE FROM audit_payloads WHERE idx=4;"),
        ("reorder", "UPDATE audit_leaves SET idx=-1 WHERE idx=3; UPDATE audit_leaves SET idx=3 WHERE idx=4; UPDATE audit_leaves SET idx=4 WHERE idx=-1;"),
        ("insert", "UPDATE audit_leaves SET idx=idx+100 WHERE idx>=5; UPDATE audit_leaves SET idx=idx-99 WHERE idx>=100; INSERT INTO audit_leaves SELECT 5, leaf FROM audit_leaves WHERE idx=2;"),
        ("truncate", "DELETE FROM audit_leaves WHERE idx>=9;"),
        ("payload", "UPDATE audit_payloads SET payload='{\"sql\":\"SELECT 0 -- hidden\"}' WHERE idx=2;"),
        ("checkpoint", "UPDATE audit_checkpoints SET note=replace(note, E'\\n8\\n', E'\\n7\\n') WHERE size=8;"),
        ("checkpoint-root", "UPDATE audit_checkpoints SET root=decode(repeat('00', 32), 'hex') WHERE size=4;"),
        ("orphan", "INSERT INTO audit_payloads VALUES (50, '\\x00', '{}');"),
    ];
    for (name, attack) in attacks {
        let db = Db::new();
        fill(&db, 10);
        db.sql(attack);
        let rep = db.verify(None);
        assert_eq!(rep.exit_code(), 1, "{name}: {rep:?}");
        // A shared log refuses to open over any damage: every entry may have been acknowledged.
        match AuditLog::open_postgres(&db.url, &db.key_file(), AuditOptions::default()) {
            Err(AuditError::Damaged { .. }) => {}
            Err(e) => panic!("{name}: wrong error {e}"),
            Ok(_) if *name == "payload" || *name == "orphan" => {}
            Ok(_) => panic!("{name}: damaged log opened"),
        }
    }
}

#[test]
fn rewritten_history_resigned_with_the_log_key_is_a_fork_and_rollback_is_detected() {
    let db = Db::new();
    fill(&db, 12);
    let trusted = AuditReader::open_postgres(&db.url)
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap()
        .note;
    assert_eq!(code(&db, Some(&trusted)), 0);
    // Rolled back below the trusted checkpoint (and re-headed, as a restored backup would be).
    db.sql(
        "DELETE FROM audit_leaves WHERE idx>=8; DELETE FROM audit_payloads WHERE idx>=8; \
         DELETE FROM audit_checkpoints WHERE size>8; \
         UPDATE audit_head SET size = 8, last_hash = \
         (SELECT sha256('\\x00'::bytea || leaf) FROM audit_leaves WHERE idx = 7);",
    );
    assert_eq!(code(&db, None), 0);
    assert_eq!(code(&db, Some(&trusted)), 3);
    // The attacker keeps the key, wipes the log and writes a different history.
    db.sql(
        "DELETE FROM audit_leaves; DELETE FROM audit_payloads; DELETE FROM audit_checkpoints; \
         UPDATE audit_head SET size = 0, last_hash = decode(repeat('00', 32), 'hex'); \
         UPDATE audit_lease SET holder = NULL, expires_at = '-infinity';",
    );
    let log = db.open(AuditOptions::default());
    for i in 0..14 {
        log.append(Event::new(EventKind::SignIn, format!("mallory{i}")))
            .unwrap();
    }
    log.close().unwrap();
    assert_eq!(code(&db, None), 0, "internally consistent rewrite");
    let rep = db.verify(Some(&trusted));
    assert_eq!(rep.exit_code(), 3, "{rep:?}");
    assert_eq!(rep.conflict.unwrap().trusted_checkpoint, trusted);
}

#[test]
fn a_running_node_refuses_to_write_after_the_database_is_rolled_back() {
    let db = Db::new();
    let log = db.open(fast("a"));
    for i in 0..10 {
        log.append(event("a", i)).unwrap();
    }
    // A restore from an older backup: entries 6.. are gone and the head says 6.
    db.sql(
        "DELETE FROM audit_leaves WHERE idx>=6; DELETE FROM audit_payloads WHERE idx>=6; \
         DELETE FROM audit_checkpoints WHERE size>6; \
         UPDATE audit_head SET size = 6, last_hash = \
         (SELECT sha256('\\x00'::bytea || leaf) FROM audit_leaves WHERE idx = 5);",
    );
    match log.append(event("a", 10)) {
        Err(AuditError::Failed(why)) => assert!(why.contains("rolled back"), "{why}"),
        other => panic!("appended over a rolled-back database: {other:?}"),
    }
    assert!(matches!(
        log.append(event("a", 11)),
        Err(AuditError::Failed(_))
    ));
    drop(log);
    let count: i64 = db
        .client()
        .query_one("SELECT count(*) FROM audit_leaves", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 6, "nothing written after the rollback");
}

/// A checkpoint signed with the log's key (a node with a diverged view, or a thief of the key)
/// that does not match the tree stops a node instead of being extended: at the head's size it
/// is caught when the node passes it, above the head when the node would sign after it.
#[test]
fn a_node_never_signs_after_a_checkpoint_that_does_not_match_its_tree() {
    for (case, forged_size) in [("at the head", 5u64), ("above the head", 7)] {
        let db = Db::new();
        let log = db.open(fast("a"));
        for i in 0..5 {
            log.append(event("a", i)).unwrap();
        }
        wait_until("the node signs its entries", || {
            log.checkpoint().unwrap().is_some_and(|c| c.size == 5)
        });
        let key = kura_audit::note::LogKey::load(&db.key_file(), "kura.local/audit").unwrap();
        let root = [7u8; 32];
        let note = key.sign_checkpoint(forged_size, &root);
        let size = forged_size as i64;
        let mut c = db.client();
        let mut tx = c.transaction().unwrap();
        tx.execute("DELETE FROM audit_checkpoints WHERE size = $1", &[&size])
            .unwrap();
        tx.execute(
            "INSERT INTO audit_checkpoints (size, root, note) VALUES ($1, $2, $3)",
            &[&size, &&root[..], &note],
        )
        .unwrap();
        tx.commit().unwrap();
        let mut stopped = None;
        for i in 5..20 {
            match log.append(event("a", i)) {
                Ok(_) => {}
                Err(AuditError::Failed(why)) => {
                    stopped = Some(why);
                    break;
                }
                Err(e) => panic!("{case}: {e}"),
            }
            // Let the node's own signing round run between appends.
            let _ = log.checkpoint();
        }
        let why = stopped.unwrap_or_else(|| panic!("{case}: the node kept going"));
        assert!(
            why.contains("differs from the signed checkpoint")
                || why.contains("not one this node has checked"),
            "{case}: {why}"
        );
        drop(log);
        let signed_after: i64 = c
            .query_one(
                "SELECT count(*) FROM audit_checkpoints WHERE size > $1",
                &[&size],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            signed_after, 0,
            "{case}: a checkpoint extends the forged one"
        );
        assert_eq!(code(&db, None), 1, "{case}");
    }
}

#[test]
fn a_failed_transaction_fails_its_batch_and_the_next_batch_starts_afresh() {
    let db = Db::new();
    let log = db.open(AuditOptions::default());
    for i in 0..3 {
        log.append(event("a", i)).unwrap();
    }
    db.sql(
        "CREATE FUNCTION audit_test_fail() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'disk gone'; END $$; \
         CREATE TRIGGER audit_test_fail BEFORE INSERT ON audit_leaves \
         FOR EACH ROW WHEN (NEW.idx = 3) EXECUTE FUNCTION audit_test_fail();",
    );
    match log.append(event("a", 3)) {
        Err(AuditError::Store(why)) => assert!(why.contains("disk gone"), "{why}"),
        other => panic!("expected the batch to fail: {other:?}"),
    }
    db.sql("DROP TRIGGER audit_test_fail ON audit_leaves;");
    // Nothing of the failed batch was stored; the log goes on from what the database holds.
    assert_eq!(log.append(event("a", 4)).unwrap().index, 3);
    log.close().unwrap();
    assert_eq!(db.verify(None).entries, 4);
    assert_eq!(code(&db, None), 0);
}

#[test]
fn nodes_must_share_the_logs_key_file() {
    let db = Db::new();
    fill(&db, 2);
    let other = tempfile::tempdir().unwrap();
    let missing = other.path().join("audit-signing.key");
    match AuditLog::open_postgres(&db.url, &missing, AuditOptions::default()) {
        Err(AuditError::Key { why, .. }) => assert!(why.contains("copy the key file"), "{why}"),
        other => panic!("opened without the key: {:?}", other.err()),
    }
    assert!(!missing.exists(), "a second node must not make up a key");
    kura_audit::note::LogKey::load_or_create(&missing, "kura.local/audit").unwrap();
    match AuditLog::open_postgres(&db.url, &missing, AuditOptions::default()) {
        Err(AuditError::Key { why, .. }) => {
            assert!(why.contains("same key file"), "{why}")
        }
        other => panic!("opened with another key: {:?}", other.err()),
    }
    std::fs::copy(db.key_file(), &missing).unwrap();
    let log = AuditLog::open_postgres(&db.url, &missing, AuditOptions::default()).unwrap();
    assert_eq!(log.append(event("b", 2)).unwrap().index, 2);
    log.close().unwrap();
    assert_eq!(code(&db, None), 0);
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://postgres@127.0.0.1:1/test?connect_timeout=5";
    match AuditLog::open_postgres(url, &dir.path().join("k"), AuditOptions::default()) {
        Err(AuditError::Store(why)) => {
            assert!(why.contains("cannot connect"), "{why}");
            assert!(why.contains("127.0.0.1:1"), "{why}");
        }
        other => panic!("expected a connection error: {:?}", other.err()),
    }
    let base = base_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    for url in ["mysql://x", &format!("{base}{sep}sslmode=require")] {
        assert!(
            matches!(
                AuditLog::open_postgres(url, &dir.path().join("k"), AuditOptions::default()),
                Err(AuditError::Config(_))
            ),
            "{url}"
        );
    }
}

#[test]
fn concurrent_writers_on_one_database_get_one_gapless_sequence() {
    let db = Db::new();
    let nodes: Vec<Arc<AuditLog>> = (0..4)
        .map(|n| Arc::new(db.open(fast(&format!("n{n}")))))
        .collect();
    let threads: Vec<_> = (0..12)
        .map(|t| {
            let log = nodes[t % 4].clone();
            std::thread::spawn(move || {
                (0..60)
                    .map(|i| {
                        let a = log.append(event(&format!("t{t}"), i)).unwrap();
                        (a.index, a.leaf_hash)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acked: Vec<(u64, [u8; 32])> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    for log in nodes {
        Arc::try_unwrap(log).ok().unwrap().close().unwrap();
    }
    let mut indices: Vec<u64> = acked.iter().map(|a| a.0).collect();
    indices.sort();
    assert_eq!(indices, (0..720).collect::<Vec<_>>());
    let mut store = PgStore::open_read_only(&db.url).unwrap();
    for (i, h) in &acked {
        let e = store.entry(*i).unwrap().unwrap();
        assert_eq!(hash_leaf(&e.leaf), *h, "entry {i}");
    }
    let rep = db.verify(None);
    assert_eq!((rep.exit_code(), rep.entries), (0, 720), "{rep:?}");
    let history = checked_history(&db);
    assert_eq!(
        history.last().map(|h| h.0),
        Some(720),
        "closing signs the end"
    );
}

#[test]
fn lease_contention_and_handover_give_one_checkpoint_history() {
    let db = Db::new();
    let open = |n: usize| Arc::new(db.open(fast(&format!("n{n}"))));
    let run = |nodes: &[Arc<AuditLog>], rounds: u64| {
        let threads: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(n, log)| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..rounds {
                        log.append(event(&format!("n{n}"), i)).unwrap();
                        if i % 10 == 0 {
                            // Every node asks to sign; only the lease holder may.
                            log.checkpoint().unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    let mut nodes: Vec<Arc<AuditLog>> = (0..3).map(open).collect();
    run(&nodes, 100);
    // Close whoever holds the lease: it signs, lets go, and another node takes over.
    let holder: String = db
        .client()
        .query_one("SELECT holder FROM audit_lease", &[])
        .unwrap()
        .get(0);
    let at: usize = holder.trim_start_matches('n').parse().unwrap();
    let closed = nodes.remove(at);
    Arc::try_unwrap(closed).ok().unwrap().close().unwrap();
    run(&nodes, 100);
    nodes.push(open(at));
    run(&nodes, 50);
    for log in nodes {
        Arc::try_unwrap(log).ok().unwrap().close().unwrap();
    }
    let history = checked_history(&db);
    let terms: BTreeSet<i64> = history.iter().map(|h| h.1).collect();
    assert!(terms.len() >= 2, "the lease changed hands: {history:?}");
    // One signer per term: a term is one node's tenure.
    let mut signers: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
    for (_, term, signer) in &history {
        signers.entry(*term).or_default().insert(signer);
    }
    assert!(signers.values().all(|s| s.len() == 1), "{signers:?}");
    assert_eq!(
        history.last().map(|h| h.0),
        Some(3 * 100 + 2 * 100 + 3 * 50)
    );
    assert_eq!(code(&db, None), 0);
}

#[test]
fn bulk_scan_agrees_with_the_default_finds_orphans_and_verifies_alike() {
    let db = Db::new();
    fill(&db, 40);
    let log = db.open(AuditOptions::default());
    assert!(log.erase_payload(17).unwrap());
    log.close().unwrap();
    db.sql(
        "INSERT INTO audit_payloads (idx, salt, payload) VALUES (-5, '\\x00', '{}'), \
         (1000, '\\x00', '{}'), (1001, '\\x00', '{}')",
    );
    let mut fast = PgStore::open_read_only(&db.url).unwrap();
    let mut plain = DefaultScan(PgStore::open_read_only(&db.url).unwrap());
    let mut reference = Vec::new();
    fast.scan(0, &mut |e| {
        let p = e.payload.map(|p| (p.salt, p.payload.into_bytes()));
        reference.push((e.index, e.leaf, p));
        Ok(true)
    })
    .unwrap();
    assert_eq!(reference.len(), 40);
    assert!(reference[17].2.is_none() && reference[18].2.is_some());
    for chunk_len in [1, 7, 4096] {
        for store in [&mut fast as &mut dyn LeafStore, &mut plain] {
            let (rows, end) = chunked(store, 0, chunk_len);
            assert_eq!(rows, reference, "chunk {chunk_len}");
            let orphans = vec![-5i64 as u64, 1000, 1001];
            assert_eq!(end, ScanEnd::Complete { orphans }, "chunk {chunk_len}");
            let (tail, _) = chunked(store, 30, chunk_len);
            assert_eq!(tail, reference[30..]);
        }
    }
    let key = db.key();
    for threads in [1, 3] {
        let options = VerifyOptions {
            threads,
            chunk_len: 7,
        };
        let a = verify_store_with(&mut fast, &key, None, options).unwrap();
        let b = verify_store_with(&mut plain, &key, None, options).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.erased_payloads, 1);
        let (at, what) = a.tampering.unwrap();
        assert_eq!(at, 1000, "{what}");
    }
    assert!(matches!(fast.truncate(3), Err(AuditError::Config(_))));
}

// ---- several processes: the crash and takeover tests ----

const CHILD_URL: &str = "KURA_AUDIT_PG_CHILD_URL";
const CHILD_KEY: &str = "KURA_AUDIT_PG_CHILD_KEY";
const CHILD_NODE: &str = "KURA_AUDIT_PG_CHILD_NODE";
const CHILD_TEST: &str = "pg_child_node";

/// Not a test of its own: the body of a child node when the parent sets the environment.
#[test]
fn pg_child_node() {
    let (Ok(url), Ok(key), Ok(node)) = (
        std::env::var(CHILD_URL),
        std::env::var(CHILD_KEY),
        std::env::var(CHILD_NODE),
    ) else {
        return;
    };
    let options = AuditOptions {
        checkpoint_interval: Duration::from_millis(50),
        lease_ttl: Duration::from_millis(1000),
        node_name: Some(node),
        ..AuditOptions::default()
    };
    kura_audit::stress::run_child_at(&AuditLocation::postgres(url, key), 4, options).unwrap();
}

/// A child node appending from 4 threads; its acknowledgements arrive on `acks`.
struct Node {
    child: Child,
    acks: mpsc::Receiver<(u64, String)>,
    reader: Option<std::thread::JoinHandle<()>>,
    seen: Vec<(u64, String)>,
}

impl Node {
    fn start(db: &Db, node: &str) -> Node {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_URL, &db.url)
            .env(CHILD_KEY, db.key_file())
            .env(CHILD_NODE, node)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, acks) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut p = line.split(' ');
                if let (Some("ack"), Some(i), Some(h)) = (p.next(), p.next(), p.next()) {
                    if tx.send((i.parse::<u64>().unwrap(), h.to_string())).is_err() {
                        return;
                    }
                }
            }
        });
        Node {
            child,
            acks,
            reader: Some(reader),
            seen: Vec::new(),
        }
    }

    /// Waits for `n` more acknowledgements (the child must keep appending).
    fn wait_acks(&mut self, n: usize) {
        for _ in 0..n {
            match self.acks.recv_timeout(Duration::from_secs(60)) {
                Ok(a) => self.seen.push(a),
                Err(_) => panic!(
                    "child node stopped acknowledging (status {:?})",
                    self.child.try_wait()
                ),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// SIGKILL (no destructor, no final checkpoint, no lease release); returns every
    /// acknowledgement the child printed.
    fn kill(mut self) -> Vec<(u64, String)> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        while let Ok(a) = self.acks.try_recv() {
            self.seen.push(a);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lease(db: &Db) -> (Option<String>, i64, bool) {
    let r = db
        .client()
        .query_one(
            "SELECT holder, term, expires_at > clock_timestamp() FROM audit_lease",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// Polls (without a deadline of its own: the harness's timeout applies) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("gave up waiting until {what}");
}

/// Every acknowledged index is stored exactly once with the acknowledged leaf hash (by the
/// verifier's hash), the whole log verifies, and the checkpoint history is one.
fn check_acked(db: &Db, acked: &[(u64, String)]) -> Vec<(u64, i64, String)> {
    let mut by_index: BTreeMap<u64, &str> = BTreeMap::new();
    for (i, h) in acked {
        assert!(
            by_index.insert(*i, h).is_none(),
            "index {i} acknowledged twice"
        );
    }
    let mut store = PgStore::open_read_only(&db.url).unwrap();
    for (i, h) in &by_index {
        let e = store
            .entry(*i)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged entry {i} was lost"));
        assert_eq!(&hex(&hash_leaf(&e.leaf)), h, "entry {i}");
    }
    let rep = db.verify(None);
    assert_eq!(rep.exit_code(), 0, "{rep:?}");
    checked_history(db)
}

#[test]
fn sigkilled_nodes_lose_no_acknowledged_entry_and_the_log_stays_one() {
    let db = Db::new();
    // The first node creates the key; the others share the file (as copies would).
    AuditLog::open_postgres(&db.url, &db.key_file(), AuditOptions::default())
        .unwrap()
        .close()
        .unwrap();
    let mut nodes: Vec<Node> = (0..3).map(|n| Node::start(&db, &format!("c{n}"))).collect();
    for n in &mut nodes {
        n.wait_acks(40);
    }
    // One node dies mid-load; the others carry on past it.
    let mut acked = nodes.remove(0).kill();
    for n in &mut nodes {
        n.wait_acks(40);
    }
    let survivor = Node::start(&db, "c3");
    nodes.push(survivor);
    for n in &mut nodes {
        n.wait_acks(20);
    }
    for n in nodes {
        acked.extend(n.kill());
    }
    assert!(acked.len() >= 40 * 3 + 40 * 2 + 20 * 3);
    let before = check_acked(&db, &acked);
    // A new node recovers the log and goes on from its end.
    let log = db.open(fast("after"));
    let count = db.verify(None).entries;
    assert_eq!(log.append(event("after", 0)).unwrap().index, count);
    log.close().unwrap();
    let after = check_acked(&db, &acked);
    assert!(after.len() >= before.len());
}

#[test]
fn a_paused_lease_holder_is_taken_over_and_never_signs_again() {
    let db = Db::new();
    AuditLog::open_postgres(&db.url, &db.key_file(), AuditOptions::default())
        .unwrap()
        .close()
        .unwrap();
    let mut paused = Node::start(&db, "paused");
    paused.wait_acks(20);
    wait_until("the child holds the lease and has signed", || {
        let (holder, _, live) = lease(&db);
        let signed: i64 = db
            .client()
            .query_one(
                "SELECT count(*) FROM audit_checkpoints WHERE signer = 'paused'",
                &[],
            )
            .unwrap()
            .get(0);
        live && holder.as_deref() == Some("paused") && signed > 0
    });
    let (_, paused_term, _) = lease(&db);
    let other = db.open(AuditOptions {
        lease_ttl: Duration::from_millis(1000),
        ..fast("other")
    });
    paused.signal("-STOP");
    // The other node keeps appending (waiting at most until the server ends the paused node's
    // open transaction) and takes the lease once it has expired.
    let mut i = 0;
    wait_until("the other node signs", || {
        other.append(event("other", i)).unwrap();
        i += 1;
        let (holder, _, _) = lease(&db);
        holder.as_deref() == Some("other")
            && db
                .client()
                .query_one(
                    "SELECT count(*) FROM audit_checkpoints WHERE signer = 'other'",
                    &[],
                )
                .unwrap()
                .get::<_, i64>(0)
                > 0
    });
    let (_, other_term, _) = lease(&db);
    assert!(other_term > paused_term);
    paused.signal("-CONT");
    // Back, the paused node appends again (its lost transaction failed without an ack), but
    // the entries it appends now are signed by the holder, not by it.
    let seen_before = paused.seen.len();
    paused.wait_acks(30);
    let last_ack = paused.seen[seen_before..]
        .iter()
        .map(|a| a.0)
        .max()
        .unwrap();
    wait_until("the holder signs the resumed node's entries", || {
        other
            .checkpoint()
            .unwrap()
            .is_some_and(|c| c.size > last_ack)
    });
    let acked = paused.kill();
    other.close().unwrap();
    let history = check_acked(&db, &acked);
    let first_other = history
        .iter()
        .position(|h| h.2 == "other")
        .expect("the other node signed");
    assert!(first_other > 0, "the paused node signed first: {history:?}");
    assert!(
        history[first_other..].iter().all(|h| h.2 != "paused"),
        "the paused node signed after losing its lease: {history:?}"
    );
    assert!(history[..first_other]
        .iter()
        .all(|h| h.2 == "paused" && h.1 == paused_term));
}

#[test]
fn the_location_opens_the_same_log_for_writer_reader_and_verifier() {
    let db = Db::new();
    let loc = db.location();
    let log = AuditLog::open_at(&loc, AuditOptions::default()).unwrap();
    log.append(event("a", 0)).unwrap();
    assert_eq!(log.location(), &loc);
    assert_eq!(log.verifier_key(), loc.verifier_key().unwrap());
    log.close().unwrap();
    let rep = verify_at(&loc, None, None).unwrap();
    assert_eq!((rep.exit_code(), rep.entries, rep.checkpoints), (0, 1, 1));
    let path: &Path = &db.key_file();
    assert_eq!(
        kura_audit::key_file_verifier_key(path).unwrap(),
        loc.verifier_key().unwrap()
    );
}
