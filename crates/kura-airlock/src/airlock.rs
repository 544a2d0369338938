//! [`Airlock`]: the service the server calls. It owns the connection to the airlock's tables,
//! the configured rule pack and the limits, and runs each workflow step as load -> pure
//! transition (`workflow.rs`) -> save, inside one `BEGIN IMMEDIATE` transaction so that two
//! requests on the same review cannot interleave.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use kura_sdc::{CheckContext, Report, RulePack, StagedTable};
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::db::{self, db_err, Stored};
use crate::error::AirlockError;
use crate::ledger::TxLedger;
use crate::staged::{load_staged, refusal, sha256_hex, staged_path, StagedLimits};
use crate::workflow::{CheckStamp, Context, Decision, Outcome, Review, StagedOutput, State};

/// Where the airlock keeps its state and which rules it applies.
#[derive(Debug, Clone, PartialEq)]
pub struct AirlockConfig {
    /// The server's state directory: `kura.sqlite`, `outputs/`, `releases/`, `keys/`.
    pub state_dir: PathBuf,
    /// Directory of SDC rule packs searched before the built-in ones (`policies/sdc`).
    pub policies_dir: Option<PathBuf>,
    /// Rule pack name (or path to a `.toml`).
    pub rule_pack: String,
    pub limits: StagedLimits,
    /// The signed-note key name of the release key.
    pub release_key_name: String,
}

impl AirlockConfig {
    /// Defaults: built-in packs (unless `policies_dir` is set), `japan-rare-disease`, 10,000
    /// rows, 256 MiB, key name `kura.local/releases`.
    pub fn new(state_dir: impl Into<PathBuf>) -> AirlockConfig {
        AirlockConfig {
            state_dir: state_dir.into(),
            policies_dir: None,
            rule_pack: kura_sdc::pack::DEFAULT_PACK.to_string(),
            limits: StagedLimits::default(),
            release_key_name: "kura.local/releases".to_string(),
        }
    }
}

pub struct Airlock {
    conn: Mutex<Connection>,
    pub(crate) config: AirlockConfig,
    pub(crate) pack: RulePack,
}

impl Airlock {
    /// Opens the airlock's tables in `<state_dir>/kura.sqlite` and loads the rule pack (an
    /// unknown or invalid pack stops here, at start-up).
    pub fn open(config: AirlockConfig) -> Result<Airlock, AirlockError> {
        let dirs: Vec<PathBuf> = config.policies_dir.iter().cloned().collect();
        let pack = RulePack::find(&config.rule_pack, &dirs)?;
        kura_audit::note::check_name(&config.release_key_name).map_err(|e| AirlockError::Key {
            path: config.state_dir.join("keys"),
            why: e.to_string(),
        })?;
        let conn = db::open(&config.state_dir)?;
        Ok(Airlock {
            conn: Mutex::new(conn),
            config,
            pack,
        })
    }

    pub fn config(&self) -> &AirlockConfig {
        &self.config
    }

    pub fn rule_pack(&self) -> &RulePack {
        &self.pack
    }

    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }

    /// The author opens the review of a staged output (state `draft`). `output` carries what
    /// kura-store recorded at staging (`ctl_outputs`, and the query's SQL and snapshot hash).
    pub fn open_review(
        &self,
        output: StagedOutput,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Review, AirlockError> {
        validate_output(&output)?;
        self.transact(|tx| {
            if db::load_review(tx, &output.id)?.is_some() {
                return Err(AirlockError::Conflict {
                    what: "review of output",
                    id: output.id.clone(),
                });
            }
            let review = Review::new(output, actor, now)?;
            db::save_review(tx, &review, Stored::new_review())?;
            Ok(review)
        })
    }

    pub fn review(&self, output_id: &str) -> Result<Review, AirlockError> {
        let conn = self.lock();
        load(&conn, output_id).map(|(r, _)| r)
    }

    /// Runs `f` with the persistent release ledger, read through the airlock's own connection:
    /// for checks outside a review (the explorer's differencing against released cells).
    pub fn with_ledger<T>(&self, f: impl FnOnce(&dyn kura_sdc::ReleaseLedger) -> T) -> T {
        let conn = self.lock();
        f(&TxLedger(&conn))
    }

    /// Reviews of a project, most recently changed first.
    pub fn project_reviews(&self, project: &str) -> Result<Vec<Review>, AirlockError> {
        self.reviews_where(Some(project), None)
    }

    /// Reviews in a state, most recently changed first (`Submitted`: the checkers' queue).
    pub fn reviews_in_state(&self, state: State) -> Result<Vec<Review>, AirlockError> {
        self.reviews_where(None, Some(state))
    }

    fn reviews_where(
        &self,
        project: Option<&str>,
        state: Option<State>,
    ) -> Result<Vec<Review>, AirlockError> {
        let conn = self.lock();
        db::review_ids(&conn, project, state)?
            .iter()
            .map(|id| load(&conn, id).map(|(r, _)| r))
            .collect()
    }

    pub fn set_context(
        &self,
        output_id: &str,
        actor: &str,
        context: Context,
        now: DateTime<Utc>,
    ) -> Result<Review, AirlockError> {
        self.update(output_id, |review, _| {
            review.set_context(actor, context, now)
        })
        .map(|(r, _)| r)
    }

    /// The author submits: the staged file is re-read and hash-checked, the automatic check runs
    /// (against everything already released from the snapshot), and a refused output stays a
    /// draft. Otherwise a new round opens with the protected table's hash.
    pub fn submit(
        &self,
        output_id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Review, AirlockError> {
        self.update(output_id, |review, tx| {
            let context = review.can_submit(actor)?.clone();
            let (_, report) = self.check_output(tx, review, Some(&context))?;
            let stamp = self.stamp(&review.output.id, &report)?;
            review.submit(actor, stamp, now)
        })
        .map(|(r, _)| r)
    }

    /// A checker votes. Returns the review and, if this vote closed the round, its outcome.
    pub fn vote(
        &self,
        output_id: &str,
        checker: &str,
        decision: Decision,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<(Review, Option<Outcome>), AirlockError> {
        self.update(output_id, |review, _| {
            review.vote(checker, decision, comment, now)
        })
    }

    pub fn withdraw(
        &self,
        output_id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Review, AirlockError> {
        self.update(output_id, |review, _| review.withdraw(actor, now))
            .map(|(r, _)| r)
    }

    /// Loads the staged output (hash-checked), applies the context's population filters and runs
    /// the rule pack against the persistent ledger, through `conn`.
    pub(crate) fn check_output(
        &self,
        conn: &Connection,
        review: &Review,
        context: Option<&Context>,
    ) -> Result<(StagedTable, Report), AirlockError> {
        let o = &review.output;
        let path = staged_path(&self.config.state_dir, &o.id);
        let mut table = load_staged(&path, &o.sha256, &o.id, &self.config.limits)?;
        table.population_filters = context
            .map(|c| c.population_filters.clone())
            .unwrap_or_default();
        let ledger = TxLedger(conn);
        let ctx = CheckContext {
            snapshot: &o.snapshot_sha256,
            ledger: Some(&ledger),
        };
        let report = kura_sdc::check(&table, &self.pack, &ctx).map_err(|e| refusal(&o.id, e))?;
        Ok((table, report))
    }

    /// What the checkers review: refused outputs have no stamp (they cannot be submitted).
    pub(crate) fn stamp(&self, output: &str, report: &Report) -> Result<CheckStamp, AirlockError> {
        let protected = match report.protected_csv() {
            Some(csv) if report.refusals.is_empty() => csv,
            _ => {
                return Err(AirlockError::Refused {
                    output: output.to_string(),
                    reasons: report.refusals.iter().map(|f| f.reason.clone()).collect(),
                })
            }
        };
        Ok(CheckStamp {
            rule_pack: report.pack.clone(),
            rule_pack_version: report.pack_version.clone(),
            protected_sha256: sha256_hex(protected.as_bytes()),
            cells: report.cells.len(),
            failing_cells: report.failing_cells().count(),
        })
    }

    /// Load, change, save, commit; nothing is saved when `f` fails.
    fn update<T>(
        &self,
        output_id: &str,
        f: impl FnOnce(&mut Review, &Transaction<'_>) -> Result<T, AirlockError>,
    ) -> Result<(Review, T), AirlockError> {
        self.transact(|tx| {
            let (mut review, stored) = load(tx, output_id)?;
            let out = f(&mut review, tx)?;
            db::save_review(tx, &review, stored)?;
            Ok((review, out))
        })
    }

    fn transact<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, AirlockError>,
    ) -> Result<T, AirlockError> {
        let mut conn = self.lock();
        let tx = begin(&mut conn)?;
        let out = f(&tx)?;
        tx.commit().map_err(db_err(&conn))?;
        Ok(out)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // SQLite rolls back an open transaction when its guard drops, so a panic cannot leave
        // a half-done change behind: the poison is ignored.
        match self.conn.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

pub(crate) fn begin(conn: &mut Connection) -> Result<Transaction<'_>, AirlockError> {
    let path = conn.path().map(PathBuf::from).unwrap_or_default();
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|source| AirlockError::Db { path, source })
}

pub(crate) fn load(conn: &Connection, output_id: &str) -> Result<(Review, Stored), AirlockError> {
    db::load_review(conn, output_id)?.ok_or_else(|| AirlockError::NotFound {
        what: "review of output",
        id: output_id.to_string(),
    })
}

/// Output ids name files (`outputs/<id>.arrow`, `releases/<id>/`): the kura-store id rule.
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.len() <= 64
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        })
}

fn validate_output(o: &StagedOutput) -> Result<(), AirlockError> {
    let bad = |why: String| Err(AirlockError::Invalid(why));
    if !valid_id(&o.id) {
        return bad(format!(
            "output id {:?} is not valid (lower-case letters, digits, - _ ., at most 64)",
            o.id
        ));
    }
    let is_sha = |s: &str| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit());
    if !is_sha(&o.sha256) || !is_sha(&o.snapshot_sha256) {
        return bad("the output and snapshot hashes must be SHA-256 in hex".into());
    }
    if o.project.is_empty() || o.author.is_empty() || o.query_id.is_empty() {
        return bad("the output needs a project, an author and a query".into());
    }
    Ok(())
}
