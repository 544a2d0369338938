//! `kura query ...` (one query through the sandbox, as the server runs it), the hidden
//! `kura sandbox-worker` the engine re-executes, and `kura bench query`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::ValueEnum;
use kura_query::{
    arrow, EngineConfig, Limits, Mechanism, ProjectScope, QueryEngine, QueryError, QueryRequest,
};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MissingMechanism {
    Landlock,
    Seccomp,
    Rlimits,
}

#[derive(clap::Args)]
pub struct Args {
    /// State directory (audit log; default scope files in <state>/projects/<project>.toml).
    #[arg(long)]
    pub state: PathBuf,
    /// The snapshot (DuckDB file) to query.
    #[arg(long)]
    pub snapshot: PathBuf,
    /// Project whose grant applies.
    #[arg(long)]
    pub project: String,
    /// Researcher recorded as the actor in the audit log.
    #[arg(long)]
    pub user: String,
    /// Scope file (TOML, docs/query.md); default <state>/projects/<project>.toml.
    #[arg(long)]
    pub scope: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Wall-clock timeout in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Refuse results with more rows than this.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_rows: u64,
    /// Run even though the kernel lacks this confinement mechanism (logged as a warning).
    #[arg(long = "allow-missing-sandbox", value_enum)]
    pub allow_missing: Vec<MissingMechanism>,
    /// The audit log in the PostgreSQL database the server nodes share.
    #[command(flatten)]
    pub db: super::database::DatabaseArgs,
    /// The SQL to run.
    pub sql: String,
}

/// Hidden: the query worker. Only the engine starts it, with its protocol on stdin/stdout.
#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Confine, then run escape probes instead of a query.
    #[arg(long, hide = true)]
    pub self_test: bool,
}

pub fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(kura_query::worker_main(args.self_test)))
}

/// Exit codes: 0 ok, 1 refused or failed query (message on stderr), 2 usage or I/O error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scope_path = args
        .scope
        .clone()
        .unwrap_or_else(|| ProjectScope::default_path(&args.state, &args.project));
    let scope = ProjectScope::load(&scope_path, &args.project)?;
    let mut config = EngineConfig::from_current_exe()?;
    // One query per invocation: a spare worker would only be started to be killed.
    config.spare_worker = false;
    config.limits = Limits {
        timeout_ms: args.timeout.saturating_mul(1000),
        max_rows: args.max_rows,
        ..Limits::default()
    };
    config.allow_missing = args
        .allow_missing
        .iter()
        .map(|m| match m {
            MissingMechanism::Landlock => Mechanism::Landlock,
            MissingMechanism::Seccomp => Mechanism::Seccomp,
            MissingMechanism::Rlimits => Mechanism::Rlimits,
        })
        .collect();
    let engine = QueryEngine::new(config)?;
    let audit_at = args.db.audit_location(&args.state)?;
    let audit = kura_audit::AuditLog::open_at(&audit_at, kura_audit::AuditOptions::default())
        .with_context(|| {
            format!(
                "opening the audit log in {}",
                super::database::describe_audit(&audit_at)
            )
        })?;
    let request = QueryRequest {
        sql: &args.sql,
        project: &scope,
        user: &args.user,
        session: None,
        snapshot: &args.snapshot,
        snapshot_sha256: None,
        id: None,
        limits: None,
    };
    match engine.run(&request, &audit) {
        Ok(result) => {
            print_batches(args.format, &result.batches, &result.outcome.schema)?;
            eprintln!(
                "{} rows, {} ms, sha256 {}",
                result.outcome.rows,
                result.outcome.duration.as_millis(),
                result.outcome.sha256
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ QueryError::Audit(_)) => Err(e.into()),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn print_batches(
    format: Format,
    batches: &[arrow::record_batch::RecordBatch],
    schema: &arrow::datatypes::SchemaRef,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        Format::Table => {
            let table = if batches.is_empty() {
                arrow::util::pretty::pretty_format_batches(&[
                    arrow::record_batch::RecordBatch::new_empty(schema.clone()),
                ])?
            } else {
                arrow::util::pretty::pretty_format_batches(batches)?
            };
            use std::io::Write;
            writeln!(out, "{table}")?;
        }
        Format::Csv => {
            let mut w = kura_query::export::csv_writer(&mut out);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = kura_query::export::json_writer(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Snapshot to query (needs the tables and columns of kura_query::fixture).
    #[arg(long, conflicts_with = "patients")]
    pub snapshot: Option<PathBuf>,
    /// Build a synthetic snapshot with this many patients instead (in a temp dir).
    #[arg(long, default_value_t = 100_000)]
    pub patients: u64,
    /// Runs of each query each way; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// DuckDB threads on both sides.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let temp = tempfile_dir()?;
    let snapshot = match &args.snapshot {
        Some(p) => p.clone(),
        None => {
            let p = temp.join("bench.duckdb");
            let t = std::time::Instant::now();
            kura_query::fixture::create(&p, args.patients)
                .with_context(|| format!("building a {}-patient snapshot", args.patients))?;
            eprintln!(
                "built {}-patient snapshot in {:.1?}",
                args.patients,
                t.elapsed()
            );
            p
        }
    };
    let config = EngineConfig::from_current_exe()?;
    let rows = kura_query::bench::run(&config, &snapshot, args.repeat, args.threads)?;
    println!("{}", kura_query::bench::markdown(&rows));
    let _ = std::fs::remove_dir_all(&temp);
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kura-bench-query-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
