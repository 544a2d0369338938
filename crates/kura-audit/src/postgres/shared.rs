//! Several writer processes on one PostgreSQL log: one sequence of indices with no gap and no
//! fork, and one checkpoint history.
//!
//! - **Appending.** A batch is one transaction: lock the `audit_head` row (`FOR UPDATE`; this
//!   serialises appenders of every node), read the entries other nodes committed since this
//!   node's tip and check them exactly as recovery does (index, chain link, timestamp order, the
//!   root at every checkpoint passed), check the tip against the head row, then insert the batch
//!   after it, move the head, and commit. The batch is acknowledged only after the commit.
//! - **Signing.** The `audit_lease` row names the one node that may sign, until when (by the
//!   database's clock). In one transaction a node locks the head, then the lease; renews it if it
//!   holds it, takes it (next term) if it has expired, and otherwise stops; catches up to the
//!   head; checks that the latest stored checkpoint is one it has checked against its own tree;
//!   and only then signs the head and stores the checkpoint with its term. Checkpoints are thus
//!   written only under the head lock, at the head's size, so every node meets every checkpoint
//!   while catching up and checks its root: a node never signs a tree that does not extend the
//!   last checkpoint, and a node whose lease expired (paused, cut off) cannot sign: the check
//!   and the insert are one transaction holding the lease row.

use std::path::Path;

use postgres::types::Type;
use postgres::{Client, GenericClient};

use super::{hash_of, insert_entries, pg_error, schema, to_i64, PgStore, PAGE};
use crate::log::AuditOptions;
use crate::merkle::Hash;
use crate::note::LogKey;
use crate::sequencer::{BuildBatch, Sequencer};
use crate::store::LeafStore;
use crate::tip::Tip;
use crate::AuditError;

pub(crate) struct PgSequencer {
    store: PgStore,
    node: String,
    lease_secs: f64,
    /// The lease term this node holds, as far as it knows (checked again under the row lock
    /// before every signature).
    term: Option<i64>,
}

/// A failed step of a transaction: a database error (the connection is dropped, which makes
/// the server roll the transaction back) or damage found in what other nodes wrote.
enum TxError {
    Pg(&'static str, postgres::Error),
    Audit(AuditError),
}

impl From<AuditError> for TxError {
    fn from(e: AuditError) -> Self {
        TxError::Audit(e)
    }
}

fn pg(step: &'static str) -> impl FnOnce(postgres::Error) -> TxError {
    move |e| TxError::Pg(step, e)
}

fn damaged(index: u64, what: String) -> TxError {
    TxError::Audit(AuditError::Damaged { index, what })
}

fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string());
    let mut r = [0u8; 4];
    // Without randomness the process id alone still tells processes of one host apart.
    let _ = getrandom::fill(&mut r);
    format!("{host}/{}/{}", std::process::id(), crate::note::hex(&r))
}

impl PgSequencer {
    /// Connects, creates the tables if needed and loads the log's key (`schema::log_key`).
    pub fn open(
        url: &str,
        key_file: &Path,
        options: &AuditOptions,
    ) -> Result<(PgSequencer, LogKey), AuditError> {
        crate::note::check_name(&options.origin)?;
        let interval = options.interval();
        if options.lease_ttl < interval * 2 {
            return Err(AuditError::Config(format!(
                "the signing lease ({:?}) must last at least twice the checkpoint interval ({:?})",
                options.lease_ttl, interval
            )));
        }
        // A transaction left idle longer than the lease (a paused node) is ended by the server,
        // so its locks never outlive its lease.
        let mut store = PgStore::open_writer(url, options.lease_ttl)?;
        let label = store.label().to_string();
        let key = schema::log_key(store.client()?, &label, key_file, &options.origin)?;
        let node = options.node_name.clone().unwrap_or_else(default_node_name);
        Ok((
            PgSequencer {
                store,
                node,
                lease_secs: options.lease_ttl.as_secs_f64(),
                term: None,
            },
            key,
        ))
    }

    /// Runs the writer's recovery on one snapshot of the log (see `PgStore::consistent_read`).
    pub fn recover<T>(
        &mut self,
        f: impl FnOnce(&mut dyn LeafStore) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        self.store.consistent_read(f)
    }

    /// Maps a transaction's outcome; after any error the connection is dropped, so the server
    /// rolls back whatever was open and releases its locks.
    fn finish<T>(&mut self, r: Result<T, TxError>) -> Result<T, AuditError> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                self.store.reset();
                Err(match e {
                    TxError::Audit(e) => e,
                    TxError::Pg(step, e) => pg_error(self.store.label(), step, &e),
                })
            }
        }
    }
}

/// Locks the head row; returns the log's size and last leaf hash.
fn lock_head(c: &mut impl GenericClient) -> Result<(u64, Hash), TxError> {
    let row = c
        .query_typed_one(
            "SELECT size, last_hash FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .map_err(pg("locking the log's head"))?;
    let size: i64 = row.try_get(0).map_err(pg("reading the log's head"))?;
    let last: &[u8] = row.try_get(1).map_err(pg("reading the log's head"))?;
    Ok((size as u64, hash_of(last)))
}

/// Checks every checkpoint in `cps` (sorted) whose size the tip has reached.
fn check_passed(
    tip: &mut Tip,
    cps: &mut std::iter::Peekable<std::vec::IntoIter<(u64, Hash)>>,
) -> Result<(), TxError> {
    while let Some(&(size, root)) = cps.peek() {
        if size > tip.size() {
            break;
        }
        if size == tip.size() {
            tip.check_checkpoint(size, &root)
                .map_err(|what| damaged(size.saturating_sub(1), what))?;
        }
        cps.next();
    }
    Ok(())
}

/// Brings `tip` forward with the entries stored after it, checking each, and checks every
/// checkpoint it reaches. With `head` (read under the head lock) it must end exactly there.
///
/// Leaves are read before the checkpoints of the same range: a checkpoint is only ever written
/// under the head lock at the head's size, so one at a size below the last leaf read committed
/// before that leaf and is seen; one at the last size may commit later and is checked by the
/// next catch-up, which starts at that size.
fn catch_up(
    c: &mut impl GenericClient,
    tip: &mut Tip,
    head: Option<(u64, Hash)>,
) -> Result<(), TxError> {
    let end = head.map(|(size, _)| to_i64(size)).unwrap_or(i64::MAX);
    loop {
        let start = tip.size();
        let rows = c
            .query_typed(
                "SELECT idx, leaf FROM audit_leaves WHERE idx >= $1 AND idx < $2 \
                 ORDER BY idx LIMIT $3",
                &[
                    (&to_i64(start), Type::INT8),
                    (&end, Type::INT8),
                    (&PAGE, Type::INT8),
                ],
            )
            .map_err(pg("reading entries appended by other nodes"))?;
        let last = start + rows.len() as u64;
        let cps = c
            .query_typed(
                "SELECT size, root FROM audit_checkpoints WHERE size >= $1 AND size <= $2 \
                 ORDER BY size",
                &[(&to_i64(start), Type::INT8), (&to_i64(last), Type::INT8)],
            )
            .map_err(pg("reading checkpoints"))?;
        let mut passed = Vec::with_capacity(cps.len());
        for r in &cps {
            let size: i64 = r.try_get(0).map_err(pg("reading a checkpoint"))?;
            let root: &[u8] = r.try_get(1).map_err(pg("reading a checkpoint"))?;
            passed.push((size as u64, hash_of(root)));
        }
        let mut passed = passed.into_iter().peekable();
        check_passed(tip, &mut passed)?;
        for r in &rows {
            let idx: i64 = r.try_get(0).map_err(pg("reading an entry"))?;
            let leaf: &[u8] = r.try_get(1).map_err(pg("reading an entry"))?;
            let at = tip.size();
            tip.absorb(idx as u64, leaf)
                .map_err(|what| damaged(at, what))?;
            check_passed(tip, &mut passed)?;
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    if let Some((size, last_hash)) = head {
        if tip.size() > size {
            return Err(damaged(
                size,
                format!(
                    "the database holds {size} entries but this node has already seen {}: the \
                     database was rolled back (restored from a backup, or failed over to a \
                     replica that missed commits); refusing to write a different history",
                    tip.size()
                ),
            ));
        }
        if tip.size() < size {
            return Err(damaged(
                tip.size(),
                format!(
                    "entry {} is missing (the log's head says {size} entries)",
                    tip.size()
                ),
            ));
        }
        if tip.last_hash != last_hash {
            return Err(damaged(
                size.saturating_sub(1),
                "the last leaf's hash differs from the one recorded with the log's head".into(),
            ));
        }
    }
    Ok(())
}

fn append_tx(c: &mut Client, tip: &mut Tip, build: &mut BuildBatch<'_>) -> Result<(), TxError> {
    let mut tx = c.transaction().map_err(pg("starting a transaction"))?;
    let head = lock_head(&mut tx)?;
    catch_up(&mut tx, tip, Some(head))?;
    let entries = build(tip);
    let Some(last) = entries.last() else {
        return Ok(());
    };
    insert_entries(&mut tx, &entries).map_err(pg("inserting entries"))?;
    tx.execute_typed(
        "UPDATE audit_head SET size = $1, last_hash = $2 WHERE id = 1",
        &[
            (&to_i64(last.index + 1), Type::INT8),
            (&&tip.last_hash[..], Type::BYTEA),
        ],
    )
    .map_err(pg("moving the log's head"))?;
    tx.commit().map_err(pg("committing entries"))
}

/// The lease row as read: holder, term, and whether it is still live by the database's clock.
fn lease_of(row: &postgres::Row) -> Result<(Option<String>, i64, bool), TxError> {
    let step = "reading the signing lease";
    Ok((
        row.try_get(0).map_err(pg(step))?,
        row.try_get(1).map_err(pg(step))?,
        row.try_get(2).map_err(pg(step))?,
    ))
}

/// One signing round; returns the lease term this node holds afterwards, if any.
fn sign_round(
    c: &mut Client,
    tip: &mut Tip,
    key: &LogKey,
    node: &str,
    lease_secs: f64,
    held: Option<i64>,
) -> Result<Option<i64>, TxError> {
    // A look without locks first: most rounds of most nodes end here.
    let row = c
        .query_typed_one(
            "SELECT l.holder, l.term, l.expires_at > clock_timestamp(), h.size, \
             (SELECT max(size) FROM audit_checkpoints) \
             FROM audit_lease l CROSS JOIN audit_head h WHERE l.id = 1 AND h.id = 1",
            &[],
        )
        .map_err(pg("reading the signing lease"))?;
    let (holder, term, live) = lease_of(&row)?;
    let head: i64 = row.try_get(3).map_err(pg("reading the log's head"))?;
    let signed: Option<i64> = row.try_get(4).map_err(pg("reading checkpoints"))?;
    let mine = live && holder.as_deref() == Some(node) && held == Some(term);
    if live && !mine {
        // Another node signs. Follow the log meanwhile: later transactions have less to read,
        // and the holder's checkpoints are checked as they appear.
        catch_up(c, tip, None)?;
        return Ok(None);
    }
    if mine && signed.unwrap_or(0) >= head {
        let renewed = c
            .execute_typed(
                "UPDATE audit_lease SET expires_at = clock_timestamp() + make_interval(secs => $3) \
                 WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at > clock_timestamp()",
                &[
                    (&node, Type::TEXT),
                    (&term, Type::INT8),
                    (&lease_secs, Type::FLOAT8),
                ],
            )
            .map_err(pg("renewing the signing lease"))?;
        catch_up(c, tip, None)?;
        return Ok((renewed == 1).then_some(term));
    }
    let mut next = tip.clone();
    let mut tx = c.transaction().map_err(pg("starting a transaction"))?;
    let head = lock_head(&mut tx)?;
    let row = tx
        .query_typed_one(
            "SELECT holder, term, expires_at > clock_timestamp() FROM audit_lease \
             WHERE id = 1 FOR UPDATE",
            &[],
        )
        .map_err(pg("locking the signing lease"))?;
    let (holder, term, live) = lease_of(&row)?;
    let term = if live && holder.as_deref() == Some(node) && held == Some(term) {
        term
    } else if !live {
        term + 1
    } else {
        // Taken by another node since the first look; dropping `tx` rolls back.
        return Ok(None);
    };
    catch_up(&mut tx, &mut next, Some(head))?;
    let latest = tx
        .query_typed_opt(
            "SELECT size, root FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
            &[],
        )
        .map_err(pg("reading the latest checkpoint"))?;
    let latest = match latest {
        None => None,
        Some(r) => {
            let size: i64 = r.try_get(0).map_err(pg("reading a checkpoint"))?;
            let root: &[u8] = r.try_get(1).map_err(pg("reading a checkpoint"))?;
            Some((size as u64, hash_of(root)))
        }
    };
    if latest != next.checkpoint {
        let at = latest.map(|(s, _)| s).unwrap_or(0);
        return Err(damaged(
            at.saturating_sub(1),
            format!(
                "the latest stored checkpoint (size {at}) is not one this node has checked \
                 against its own tree (size {}): refusing to sign after it",
                next.signed_size()
            ),
        ));
    }
    if next.size() > next.signed_size() {
        let size = next.size();
        let root = next.frontier.root();
        let note = key.sign_checkpoint(size, &root);
        let stored = tx
            .execute_typed(
                "INSERT INTO audit_checkpoints (size, root, note, term, signer) \
                 SELECT $1, $2, $3, $4, $5 \
                 WHERE NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE size >= $1)",
                &[
                    (&to_i64(size), Type::INT8),
                    (&&root[..], Type::BYTEA),
                    (&note, Type::TEXT),
                    (&term, Type::INT8),
                    (&node, Type::TEXT),
                ],
            )
            .map_err(pg("storing a checkpoint"))?;
        if stored != 1 {
            return Err(damaged(
                size - 1,
                format!("a checkpoint at or above size {size} appeared under the head lock"),
            ));
        }
        next.checkpoint = Some((size, root));
    }
    tx.execute_typed(
        "UPDATE audit_lease SET holder = $1, term = $2, \
         expires_at = clock_timestamp() + make_interval(secs => $3) WHERE id = 1",
        &[
            (&node, Type::TEXT),
            (&term, Type::INT8),
            (&lease_secs, Type::FLOAT8),
        ],
    )
    .map_err(pg("taking the signing lease"))?;
    tx.commit().map_err(pg("committing a checkpoint"))?;
    *tip = next;
    Ok(Some(term))
}

impl Sequencer for PgSequencer {
    fn store(&mut self) -> &mut dyn LeafStore {
        &mut self.store
    }

    fn shared(&self) -> bool {
        true
    }

    fn append(&mut self, tip: &mut Tip, build: &mut BuildBatch<'_>) -> Result<(), AuditError> {
        let r = match self.store.client() {
            Ok(c) => append_tx(c, tip, build),
            Err(e) => Err(TxError::Audit(e)),
        };
        self.finish(r)
    }

    fn sign(&mut self, tip: &mut Tip, key: &LogKey) -> Result<(), AuditError> {
        let held = self.term;
        let r = match self.store.client() {
            Ok(c) => sign_round(c, tip, key, &self.node, self.lease_secs, held),
            Err(e) => Err(TxError::Audit(e)),
        };
        // On an error the term is kept: whether the transaction committed or not, the lease is
        // checked again under its row lock before the next signature.
        let term = self.finish(r)?;
        if term.is_some() && term != held {
            tracing::info!(
                node = %self.node,
                term = term.unwrap_or(0),
                "audit log: this node now signs checkpoints"
            );
        }
        self.term = term;
        Ok(())
    }

    /// A final checkpoint if this node may sign, then the lease is let go at once, so that
    /// another node need not wait for it to expire.
    fn close(&mut self, tip: &mut Tip, key: &LogKey) -> Result<(), AuditError> {
        let result = self.sign(tip, key);
        if let Some(term) = self.term.take() {
            let node = self.node.clone();
            let released = self.store.with("letting the signing lease go", |c| {
                c.execute_typed(
                    "UPDATE audit_lease SET expires_at = clock_timestamp() \
                     WHERE id = 1 AND holder = $1 AND term = $2",
                    &[(&node, Type::TEXT), (&term, Type::INT8)],
                )
            });
            // Not letting go only delays the next holder until the lease expires.
            if let Err(e) = released {
                tracing::warn!("audit log: {e}");
            }
        }
        result
    }

    /// A failed transaction was rolled back or committed, and the next one reads which from the
    /// database; only damage (or a rollback of the database) leaves nothing safe to do.
    fn fatal(&self, e: &AuditError) -> bool {
        matches!(e, AuditError::Damaged { .. })
    }
}
