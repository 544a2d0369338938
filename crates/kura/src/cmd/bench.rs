//! `kura bench ...`: each benchmark compares Kura against the baseline its issue names, in the
//! same run, and prints a Markdown table ready for docs/benchmarks.md.

use std::path::PathBuf;
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
}

#[derive(clap::Args)]
pub struct ServerArgs {
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

fn server(a: ServerArgs) -> anyhow::Result<ExitCode> {
    let state = a.state.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kura-bench-server-{}", std::process::id()))
    });
    kura_server::bench::check_state_dir(&state)?;
    let snapshot = match a.snapshot {
        Some(file) => SnapshotSource::File(file),
        None if state.join("snapshots/demo.duckdb").is_file() => SnapshotSource::Installed,
        None => {
            let raw = state.join("raw");
            if !raw.join(kura_registry::NANBYO_FORMS).exists() {
                eprintln!(
                    "generating {} synthetic patients into {}",
                    a.patients,
                    raw.display()
                );
                let options = kura_registry::GenerateOptions {
                    patients: a.patients,
                    seed: 1,
                    out: raw.clone(),
                };
                kura_registry::generate(&options, &mut |_| {})
                    .with_context(|| format!("generating {}", raw.display()))?;
            }
            SnapshotSource::Build {
                raw,
                policy: a.policy,
            }
        }
    };
    let options = Options {
        state_dir: state.clone(),
        snapshot,
        warmup: a.warmup,
        requests_single: a.requests.max(1),
        clients: a.clients.max(1),
        requests_concurrent: a.concurrent_requests.max(1),
        one_account: a.one_account,
    };
    let report = kura_query::EngineConfig::from_current_exe()
        .map_err(anyhow::Error::from)
        .and_then(|engine| Ok(kura_server::bench::run(&options, engine)?));
    if a.state.is_none() {
        let _ = std::fs::remove_dir_all(&state);
    }
    let report = report?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", kura_server::bench::markdown(&report));
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
    }
}
