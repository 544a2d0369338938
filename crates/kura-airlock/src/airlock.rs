//! [`Airlock`]: the service the server calls. It owns the airlock's database (the state
//! directory's SQLite file, or PostgreSQL shared by several nodes: `store.rs`), the configured
//! rule pack and the limits, and runs each workflow step as load -> pure transition
//! (`workflow.rs`) -> save, inside one write transaction in which the review is locked, so that
//! two requests on the same review cannot interleave, on one node or several.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use kura_sdc::{CheckContext, Report, RulePack, StagedTable};

use crate::error::AirlockError;
use crate::ledger::{DbLedger, TxLedger};
use crate::reviews::{self, Load, Stored};
use crate::staged::{load_staged, refusal, sha256_hex, staged_path, StagedLimits};
use crate::store::{AirlockDatabase, Db};
use crate::workflow::{CheckStamp, Context, Decision, Outcome, Review, StagedOutput, State};
use kura_sql::Sql;

/// Where the airlock keeps its state and which rules it applies.
#[derive(Debug, Clone, PartialEq)]
pub struct AirlockConfig {
    /// The server's state directory: `kura.sqlite`, `outputs/`, `releases/`, `keys/`. With
    /// PostgreSQL, the nodes share it (a network file system) for the staged and released files.
    pub state_dir: PathBuf,
    /// Where the `airlock_*` tables live: `<state_dir>/kura.sqlite` (the default) or PostgreSQL.
    pub database: AirlockDatabase,
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
            database: AirlockDatabase::StateDir,
            policies_dir: None,
            rule_pack: kura_sdc::pack::DEFAULT_PACK.to_string(),
            limits: StagedLimits::default(),
            release_key_name: "kura.local/releases".to_string(),
        }
    }

    /// The tables in the configured `database_url` (PostgreSQL) if any, else in the state
    /// directory: `AirlockConfig::new(dir).with_database_url(config.database_url.as_deref())`.
    pub fn with_database_url(mut self, database_url: Option<&str>) -> AirlockConfig {
        self.database = AirlockDatabase::from_url(database_url);
        self
    }
}

pub struct Airlock {
    db: Db,
    pub(crate) config: AirlockConfig,
    pub(crate) pack: RulePack,
}

impl Airlock {
    /// Opens the airlock's tables (in `<state_dir>/kura.sqlite`, or in PostgreSQL when
    /// `config.database` says so) and loads the rule pack. An unknown or invalid pack, or a
    /// database that cannot be reached, stops here, at start-up.
    pub fn open(config: AirlockConfig) -> Result<Airlock, AirlockError> {
        let dirs: Vec<PathBuf> = config.policies_dir.iter().cloned().collect();
        let pack = RulePack::find(&config.rule_pack, &dirs)?;
        kura_audit::note::check_name(&config.release_key_name).map_err(|e| AirlockError::Key {
            path: config.state_dir.join("keys"),
            why: e.to_string(),
        })?;
        let db = Db::open(&config.state_dir, &config.database)?;
        Ok(Airlock { db, config, pack })
    }

    /// Opens the airlock with its tables in PostgreSQL (`postgres://user@host:port/db`),
    /// whatever `config.database` said.
    pub fn open_postgres(mut config: AirlockConfig, url: &str) -> Result<Airlock, AirlockError> {
        config.database = AirlockDatabase::Postgres(url.to_string());
        Airlock::open(config)
    }

    /// The SQLite file, or `postgres://user@host:port/db` (no password): for messages.
    pub fn database_label(&self) -> String {
        self.db.label()
    }

    pub fn is_postgres(&self) -> bool {
        self.db.is_postgres()
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
        self.db.write(|c| {
            if reviews::load_review(c, &output.id, Load::Read)?.is_some() {
                return Err(AirlockError::Conflict {
                    what: "review of output",
                    id: output.id.clone(),
                });
            }
            // A node opening the same review meanwhile makes the insert a `Conflict`.
            let review = Review::new(output.clone(), actor, now)?;
            reviews::save_review(c, &review, Stored::new_review())?;
            Ok(review)
        })
    }

    pub fn review(&self, output_id: &str) -> Result<Review, AirlockError> {
        self.db
            .read(|c| load(c, output_id, Load::Read))
            .map(|(r, _)| r)
    }

    /// Runs `f` with the persistent release ledger, read through the airlock's own database
    /// (each read one consistent snapshot): for checks outside a review (the explorer's
    /// differencing against released cells).
    pub fn with_ledger<T>(&self, f: impl FnOnce(&dyn kura_sdc::ReleaseLedger) -> T) -> T {
        f(&DbLedger(&self.db))
    }

    /// Reviews of a project, most recently changed first.
    pub fn project_reviews(&self, project: &str) -> Result<Vec<Review>, AirlockError> {
        self.reviews_where(Some(project), None)
    }

    /// Reviews in a state, most recently changed first (`Submitted`: the checkers' queue).
    pub fn reviews_in_state(&self, state: State) -> Result<Vec<Review>, AirlockError> {
        self.reviews_where(None, Some(state))
    }

    /// How many reviews are in each state (every state, zeros included): one grouped count,
    /// cheap enough for a metrics scrape.
    pub fn review_counts(&self) -> Result<Vec<(State, u64)>, AirlockError> {
        self.db.read(reviews::review_counts)
    }

    fn reviews_where(
        &self,
        project: Option<&str>,
        state: Option<State>,
    ) -> Result<Vec<Review>, AirlockError> {
        self.db.read(|c| {
            reviews::review_ids(c, project, state)?
                .iter()
                .map(|id| load(c, id, Load::Read).map(|(r, _)| r))
                .collect()
        })
    }

    pub fn set_context(
        &self,
        output_id: &str,
        actor: &str,
        context: Context,
        now: DateTime<Utc>,
    ) -> Result<Review, AirlockError> {
        self.update(output_id, |review, _| {
            review.set_context(actor, context.clone(), now)
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
    /// the rule pack against the persistent ledger, through `c` (the caller's transaction).
    pub(crate) fn check_output(
        &self,
        c: &mut dyn Sql,
        review: &Review,
        context: Option<&Context>,
    ) -> Result<(StagedTable, Report), AirlockError> {
        let o = &review.output;
        let path = staged_path(&self.config.state_dir, &o.id);
        let mut table = load_staged(&path, &o.sha256, &o.id, &self.config.limits)?;
        table.population_filters = context
            .map(|c| c.population_filters.clone())
            .unwrap_or_default();
        let ledger = TxLedger::new(c, self.db.ledger_cache());
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

    /// Lock and load, change, save, commit; nothing is saved when `f` fails. `f` may run again
    /// (PostgreSQL, after a deadlock) on the review as then stored.
    fn update<T: Send>(
        &self,
        output_id: &str,
        mut f: impl FnMut(&mut Review, &mut dyn Sql) -> Result<T, AirlockError> + Send,
    ) -> Result<(Review, T), AirlockError> {
        self.db.write(|c| {
            let (mut review, stored) = load(c, output_id, Load::ForUpdate)?;
            let out = f(&mut review, c)?;
            reviews::save_review(c, &review, stored)?;
            Ok((review, out))
        })
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }
}

/// The review of `output_id` (`Load::ForUpdate`: locked until the transaction ends).
pub(crate) fn load(
    c: &mut dyn Sql,
    output_id: &str,
    how: Load,
) -> Result<(Review, Stored), AirlockError> {
    reviews::load_review(c, output_id, how)?.ok_or_else(|| AirlockError::NotFound {
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
