//! `kura bench ...`: each benchmark compares Kura against the baseline its issue names, in the
//! same run, and prints a Markdown table ready for docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kura_server::bench::{Options, SnapshotSource};

#[derive(Subcommand)]
pub enum Command {
    /// Synthetic extract generation (patients/s) against writing the same bytes without generating.
    Registry(super::registry::BenchArgs),
    /// Snapshot build rows/s against a plain DuckDB `read_csv` load of the same extract.
    Snapshot(super::snapshot::BenchArgs),
    /// Durable audit appends/s and verification speed against the disk's raw fsync rate.
    Audit(super::audit::BenchArgs),
    /// Disclosure checks (cells/s) on a 1,000,000-cell table against the `acro` Python package.
    Sdc(super::sdc::BenchArgs),
    /// Analytical queries through the sandbox against a plain DuckDB connection.
    Query(super::query::BenchArgs),
    /// An authenticated small query over HTTPS (1 and N clients) against DuckDB directly.
    Server(ServerArgs),
    /// Trial-feasibility explorer requests from N concurrent users against their SQL on DuckDB.
    Explorer(ExplorerArgs),
    /// A soak at a steady request rate over 1, 2, 3 `kura serve` nodes sharing PostgreSQL.
    Load(LoadArgs),
}

/// Where a server benchmark keeps its state and which snapshot its nodes serve (`kura bench
/// server`, `kura bench load`; the explorer's has another default size).
#[derive(clap::Args)]
pub struct ServedArgs {
    /// State directory to use and keep for later runs (default: a temporary one, removed).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Snapshot to install as `demo` (its manifest beside it); default: build one.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Patients in the synthetic registry the snapshot is built from.
    #[arg(long, default_value_t = 100_000)]
    patients: u64,
    /// Pseudonymisation policy for that build.
    #[arg(long, default_value = "policies/pseudonymise.toml")]
    policy: PathBuf,
}

#[derive(clap::Args)]
pub struct ServerArgs {
    #[command(flatten)]
    served: ServedArgs,
    /// Untimed requests before each timed run (at least one per client).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Timed requests with one client.
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Concurrent clients of the second run.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Timed requests in total with concurrent clients.
    #[arg(long, default_value_t = 2000)]
    concurrent_requests: usize,
    /// All clients sign in as one account (default: one account per client).
    #[arg(long)]
    one_account: bool,
    /// Print the report as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

/// The snapshot of a bench state directory: `--snapshot FILE`, the one installed there, or one
/// built from a synthetic registry generated there (seed 1) on the first run.
fn snapshot_source(
    state: &Path,
    snapshot: Option<PathBuf>,
    patients: u64,
    policy: PathBuf,
) -> anyhow::Result<SnapshotSource> {
    Ok(match snapshot {
        Some(file) => SnapshotSource::File(file),
        None if state.join("snapshots/demo.duckdb").is_file() => SnapshotSource::Installed,
        None => {
            let raw = state.join("raw");
            if !raw.join(kura_registry::NANBYO_FORMS).exists() {
                eprintln!(
                    "generating {patients} synthetic patients into {}",
                    raw.display()
                );
                let options = kura_registry::GenerateOptions {
                    patients,
                    seed: 1,
                    out: raw.clone(),
                };
                kura_registry::generate(&options, &mut |_| {})
                    .with_context(|| format!("generating {}", raw.display()))?;
            }
            eprintln!("building the snapshot (once per state directory)");
            SnapshotSource::Build { raw, policy }
        }
    })
}

/// `--state DIR`, or a temporary directory (removed afterwards) named after the benchmark.
fn state_dir(state: &Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    let dir = state.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kura-bench-{name}-{}", std::process::id()))
    });
    kura_server::bench::check_state_dir(&dir)?;
    Ok(dir)
}

/// Runs a benchmark on its state directory, removing the directory afterwards unless the user
/// named it.
fn in_state<T>(
    named: bool,
    state: &Path,
    f: impl FnOnce(kura_query::EngineConfig) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let out = kura_query::EngineConfig::from_current_exe()
        .map_err(anyhow::Error::from)
        .and_then(f);
    if !named {
        let _ = std::fs::remove_dir_all(state);
    }
    out
}

fn server(a: ServerArgs) -> anyhow::Result<ExitCode> {
    let s = a.served;
    let state = state_dir(&s.state, "server")?;
    let report = in_state(s.state.is_some(), &state, |engine| {
        let options = Options {
            state_dir: state.clone(),
            snapshot: snapshot_source(&state, s.snapshot, s.patients, s.policy)?,
            warmup: a.warmup,
            requests_single: a.requests.max(1),
            clients: a.clients.max(1),
            requests_concurrent: a.concurrent_requests.max(1),
            one_account: a.one_account,
        };
        Ok(kura_server::bench::run(&options, engine)?)
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", kura_server::bench::markdown(&report));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ExplorerArgs {
    /// State directory to use and keep for later runs (default: a temporary one, removed).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Snapshot to install as `demo` (its manifest beside it); default: build one.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Patients in the synthetic registry the snapshot is built from (first run of a state).
    #[arg(long, default_value_t = 1_000_000)]
    patients: u64,
    /// Pseudonymisation policy for that build.
    #[arg(long, default_value = "policies/pseudonymise.toml")]
    policy: PathBuf,
    /// Concurrent users, each with its own account and session.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Timed requests in total.
    #[arg(long, default_value_t = 400)]
    requests: usize,
    /// Untimed requests before the timed ones (at least one per client).
    #[arg(long, default_value_t = 40)]
    warmup: usize,
    /// Mean pause of a user before each request, in ms (uniform 0.5-1.5x); 0: each user sends
    /// the next request as soon as the answer is in.
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// Seed of the request generator (the synthetic registry always uses seed 1).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of requests without a disease filter (national overview), 0..=1.
    #[arg(long, default_value_t = 0.1)]
    national_share: f64,
    /// Users per project: 1 gives each user a project, the number of clients one shared project.
    #[arg(long, default_value_t = 5)]
    team_size: usize,
    /// Requests of each class (with / without a disease filter) timed one at a time afterwards.
    #[arg(long, default_value_t = 10)]
    profile: usize,
    /// Also time the profile requests on DuckDB in variants: record hash, one statement for the
    /// three views, forms sorted by disease number.
    #[arg(long)]
    what_if: bool,
    /// Print the report as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

fn explorer(a: ExplorerArgs) -> anyhow::Result<ExitCode> {
    use kura_server::bench::explorer;
    if !(0.0..=1.0).contains(&a.national_share) {
        anyhow::bail!("--national-share must be between 0 and 1");
    }
    let state = state_dir(&a.state, "explorer")?;
    let report = in_state(a.state.is_some(), &state, |engine| {
        let options = explorer::Options {
            state_dir: state.clone(),
            snapshot: snapshot_source(&state, a.snapshot, a.patients, a.policy)?,
            clients: a.clients.max(1),
            requests: a.requests.max(1),
            warmup: a.warmup,
            think_ms: a.think_ms,
            seed: a.seed,
            national_share: a.national_share,
            team_size: a.team_size.max(1),
            profile: a.profile,
            what_if: a.what_if,
        };
        Ok(explorer::run(&options, engine)?)
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", explorer::markdown(&report));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Registry(a) => super::registry::bench(a),
        Command::Snapshot(a) => super::snapshot::bench(a),
        Command::Audit(a) => super::audit::bench(a),
        Command::Sdc(a) => super::sdc::bench(a),
        Command::Query(a) => super::query::bench(a),
        Command::Server(a) => server(a),
        Command::Explorer(a) => explorer(a),
        Command::Load(a) => load(a),
    }
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// The PostgreSQL the nodes share; the run creates a schema of its own there and drops it.
    #[arg(long, env = super::database::URL_ENV, hide_env_values = true)]
    database_url: String,
    /// Node counts, one run each, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    nodes: Vec<usize>,
    /// Seconds of load per node count.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Requests started per second, over all nodes (an open load: late answers do not slow it).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Researcher accounts, each with its own session.
    #[arg(long, default_value_t = 20)]
    users: usize,
    #[command(flatten)]
    served: ServedArgs,
    /// Print the report as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

/// Exit 1 when any request failed or the audit log does not verify.
fn load(a: LoadArgs) -> anyhow::Result<ExitCode> {
    use kura_server::bench::soak;
    let s = a.served;
    let state = state_dir(&s.state, "load")?;
    let report = in_state(s.state.is_some(), &state, |_| {
        let options = soak::Options {
            state_dir: state.clone(),
            snapshot: snapshot_source(&state, s.snapshot, s.patients, s.policy)?,
            database_url: a.database_url.clone(),
            nodes: a.nodes.clone(),
            duration: std::time::Duration::from_secs(a.duration.max(1)),
            rate: a.rate,
            users: a.users.max(1),
            kura: std::env::current_exe().context("locating the kura binary")?,
        };
        Ok(soak::run(&options)?)
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", soak::markdown(&report));
    }
    let failed = report.runs.iter().any(|r| r.errors > 0) || !report.audit_intact;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
